"""`mlcycle demo` without `--data` on a machine without network: a quick, clear stop.

The network is taken away inside this process: name resolution fails as it
does offline, or the download location refuses connections. The demo must
stop within seconds, before it starts any part of the stack, naming the
local-file option and every supported format.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlcycle.cli import app, context
from mlcycle.importers import download

HINT = "--data PATH --format wikidetox|davidson|lewidi|hatexplain|jsonl|csv|corpora"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_demo_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, float]:
    """`mlcycle demo` with no `--data`: its exit code, output (one line) and seconds."""
    monkeypatch.setenv("MLCYCLE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "400")  # rich wraps at the terminal width
    monkeypatch.setattr(context, "configure_logging", lambda *args, **kwargs: None)
    started = time.monotonic()
    result = CliRunner().invoke(app, ["demo", "--trials", "1"])
    return result.exit_code, " ".join(result.output.split()), time.monotonic() - started


def assert_stopped_before_the_stack(data_dir: Path) -> None:
    # The stack would create the store and the service logs; the dataset stage comes first.
    assert not (data_dir / "store.sqlite3").exists()
    assert not (data_dir / "logs").exists()
    assert not [p for p in (data_dir / "downloads").glob("*") if p.is_file()]


def test_without_name_resolution_the_demo_stops_and_says_how_to_pass_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def offline_lookup(host: str, *args: object, **kwargs: object) -> list[object]:
        asked.append(host)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(download.socket, "getaddrinfo", offline_lookup)
    code, output, seconds = run_demo_offline(tmp_path, monkeypatch)

    assert code == 2, output
    assert seconds < 5
    assert asked == ["ndownloader.figshare.com"]  # the real location was tried, once
    assert "cannot download the Wikipedia Talk Labels dataset" in output
    assert "Temporary failure in name resolution" in output
    assert HINT in output
    assert "Traceback" not in output
    assert_stopped_before_the_stack(tmp_path / "data")


def test_a_refused_connection_stops_the_demo_within_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    dead = {name: f"http://127.0.0.1:{port}/{name}" for name in download.WIKIDETOX_URLS}
    monkeypatch.setattr(download, "WIKIDETOX_URLS", dead)
    code, output, seconds = run_demo_offline(tmp_path, monkeypatch)

    assert code == 2, output
    assert seconds < 5
    assert "cannot download the Wikipedia Talk Labels dataset from 127.0.0.1" in output
    assert HINT in output
    assert_stopped_before_the_stack(tmp_path / "data")


@pytest.mark.integration
def test_a_network_that_drops_connections_costs_the_short_connect_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A listener whose accept queue is full drops every new SYN: the connection neither
    # succeeds nor is refused, as behind a firewall that drops packets. The demo gives up
    # after the connect timeout (3 s), not the 10 s a silent, connected server gets.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        queued = [socket.socket() for _ in range(3)]
        try:
            for sock in queued:
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
            dropped = {name: f"http://127.0.0.1:{port}/{name}" for name in download.WIKIDETOX_URLS}
            monkeypatch.setattr(download, "WIKIDETOX_URLS", dropped)
            code, output, seconds = run_demo_offline(tmp_path, monkeypatch)
        finally:
            for sock in queued:
                sock.close()

    assert code == 2, output
    assert download.CONNECT_TIMEOUT_S - 0.5 < seconds < download.CONNECT_TIMEOUT_S + 3
    assert "ConnectTimeout" in output
    assert HINT in output
    assert_stopped_before_the_stack(tmp_path / "data")
