"""The Wikipedia Talk Labels download: a local HTTP server on loopback stands in for figshare."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlcycle.common.errors import Unavailable
from mlcycle.importers import download, get_importer
from mlcycle.importers.download import ChecksumMismatch, checksum_path, download_wikidetox

COMMENTS = (
    b"rev_id\tcomment\tyear\tlogged_in\tns\tsample\tsplit\n"
    b"101.0\tHello NEWLINE_TOKENthere\t2010\tTrue\tuser\trandom\ttrain\n"
)
VOTES = b"rev_id\tworker_id\ttoxicity\ttoxicity_score\n101.0\t7\t0\t1.0\n101.0\t8\t1\t-1.0\n"
ROUTES = {
    "/comments": (200, "text/tab-separated-values", COMMENTS),
    "/votes": (200, "text/tab-separated-values", VOTES),
    "/challenge": (200, "text/html", b"<html>please enable JavaScript</html>"),
}


class Handler(BaseHTTPRequestHandler):
    """Serves ROUTES, redirects /moved to /votes, answers 404 otherwise, and counts requests."""

    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        type(self).requests.append(self.path)
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/votes")
            self.end_headers()
            return
        status, content_type, body = ROUTES.get(self.path, (404, "text/plain", b"no"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server: its base URL and the paths it was asked for."""
    requests: list[str] = []
    handler = type("CountingHandler", (Handler,), {"requests": requests})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def urls(base: str, comments: str = "/comments", votes: str = "/votes") -> dict[str, str]:
    return {
        "toxicity_annotated_comments.tsv": base + comments,
        "toxicity_annotations.tsv": base + votes,
    }


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.integration
def test_download_streams_records_checksums_and_imports(
    server: tuple[str, list[str]], tmp_path: Path
) -> None:
    base, requests = server
    seen: list[tuple[str, int, int | None]] = []
    paths = download_wikidetox(
        tmp_path, urls=urls(base, votes="/moved"), progress=lambda *a: seen.append(a)
    )

    assert [p.name for p in paths] == list(urls(base))
    assert paths[0].read_bytes() == COMMENTS and paths[1].read_bytes() == VOTES
    for path, body in zip(paths, (COMMENTS, VOTES), strict=True):
        digest = hashlib.sha256(body).hexdigest()
        assert checksum_path(path).read_text() == f"{digest}  {path.name}\n"
    assert requests == ["/comments", "/moved", "/votes"]
    assert ("toxicity_annotated_comments.tsv", len(COMMENTS), len(COMMENTS)) in seen
    assert not list(tmp_path.glob("*.part"))

    records = list(get_importer("wikidetox").read(paths))
    assert [r.id for r in records] == ["101", "toxicity:101:7", "toxicity:101:8"]


@pytest.mark.integration
def test_a_cache_hit_touches_no_network(server: tuple[str, list[str]], tmp_path: Path) -> None:
    base, requests = server
    first = download_wikidetox(tmp_path, urls=urls(base))
    asked = len(requests)
    # Pointing at a closed port proves no connection is even tried.
    dead = urls(f"http://127.0.0.1:{closed_port()}")
    assert download_wikidetox(tmp_path, urls=dead) == first
    assert len(requests) == asked


@pytest.mark.integration
def test_a_changed_or_unrecorded_cached_file_is_fetched_again(
    server: tuple[str, list[str]], tmp_path: Path
) -> None:
    base, requests = server
    comments, votes = download_wikidetox(tmp_path, urls=urls(base))
    comments.write_bytes(COMMENTS.replace(b"Hello", b"Jello"))
    checksum_path(votes).unlink()
    requests.clear()

    download_wikidetox(tmp_path, urls=urls(base))
    assert sorted(requests) == ["/comments", "/votes"]
    assert comments.read_bytes() == COMMENTS and checksum_path(votes).is_file()


def test_offline_fails_fast_with_the_local_files_hint(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(Unavailable) as raised:
        download_wikidetox(tmp_path, urls=urls(f"http://127.0.0.1:{closed_port()}"))
    assert time.monotonic() - started < 3
    hint = "--data PATH --format wikidetox|davidson|lewidi|hatexplain|jsonl|csv|corpora"
    assert hint in raised.value.message
    assert raised.value.http_status == 503
    assert not [p for p in tmp_path.iterdir() if p.is_file()]


@pytest.mark.integration
def test_a_silent_server_times_out_instead_of_hanging(tmp_path: Path) -> None:
    with socket.socket() as listener:  # accepts connections in the kernel, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        base = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(Unavailable, match="no answer within the time limit"):
            download_wikidetox(tmp_path, urls=urls(base), timeout_s=0.5)
        assert time.monotonic() - started < 3
    assert not list(tmp_path.glob("*.part"))


def test_a_hanging_name_lookup_is_cut_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_lookup(*args: object, **kwargs: object) -> list[object]:
        time.sleep(5)
        return []

    monkeypatch.setattr(download.socket, "getaddrinfo", slow_lookup)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="could not resolve dataset-host.test within 0.3 s"):
        download_wikidetox(tmp_path, urls=urls("http://dataset-host.test"), timeout_s=0.3)
    assert time.monotonic() - started < 2


@pytest.mark.integration
def test_an_html_page_or_an_error_status_is_not_cached(
    server: tuple[str, list[str]], tmp_path: Path
) -> None:
    base, _ = server
    with pytest.raises(Unavailable, match="text/html, not the expected TSV"):
        download_wikidetox(tmp_path, urls=urls(base, comments="/challenge"))
    with pytest.raises(Unavailable, match="HTTP 404"):
        download_wikidetox(tmp_path, urls=urls(base, comments="/gone"))
    assert not (tmp_path / "toxicity_annotated_comments.tsv").exists()
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.integration
def test_a_pinned_checksum_is_enforced(
    server: tuple[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _ = server
    monkeypatch.setitem(download.PINNED_SHA256, "toxicity_annotations.tsv", "0" * 64)
    with pytest.raises(ChecksumMismatch, match="expected 0000"):
        download_wikidetox(tmp_path, urls=urls(base))
    assert not (tmp_path / "toxicity_annotations.tsv").exists()
    assert not checksum_path(tmp_path / "toxicity_annotations.tsv").exists()

    monkeypatch.setitem(
        download.PINNED_SHA256, "toxicity_annotations.tsv", hashlib.sha256(VOTES).hexdigest()
    )
    assert download_wikidetox(tmp_path, urls=urls(base))[1].read_bytes() == VOTES
