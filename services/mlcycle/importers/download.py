"""Download the Wikipedia Talk Labels toxicity files once, keep them, and check them every time.

The two files (figshare article 4563973) are streamed to a temporary
file beside their final place, checked, then renamed, so an interrupted
download never leaves a half file where a complete one is expected. Each file's
SHA-256 is written next to it as ``<file>.sha256`` (``sha256sum`` format) and
compared on every later use; a cached file that no longer matches is fetched
again. A cache hit touches no network at all.

The publisher lists no SHA-256 for these files, so none is pinned: the digest
recorded at the first download is the reference (trust on first use). A digest
added to :data:`PINNED_SHA256` is enforced on download and on every use.

Without network the call fails within a few seconds with
:class:`~mlcycle.common.errors.Unavailable`, telling the user how to import
local files instead: name resolution and the connection each get
``connect_timeout_s`` (3 s; the resolver is bounded separately, since the
system resolver takes no timeout of its own), and a connected server that goes
silent ``timeout_s``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import httpx

from mlcycle.common.errors import Unavailable

logger = logging.getLogger(__name__)

WIKIDETOX_URLS: dict[str, str] = {
    "toxicity_annotated_comments.tsv": "https://ndownloader.figshare.com/files/7394542",
    "toxicity_annotations.tsv": "https://ndownloader.figshare.com/files/7394539",
}
PINNED_SHA256: dict[str, str] = {}
# Both files start with this column; anything else (an HTML error page served
# with 200, a captcha) is refused before it can land in the cache.
EXPECTED_PREFIX = b"rev_id"
OFFLINE_HINT = (
    "To run without network, pass local files: "
    "--data PATH --format wikidetox|davidson|lewidi|hatexplain|jsonl|csv|corpora"
)
_CHUNK = 1 << 20
# Finding the host and connecting: a machine without network fails here, so keep it short.
CONNECT_TIMEOUT_S = 3.0

Progress = Callable[[str, int, int | None], None]


class ChecksumMismatch(Unavailable):
    """A downloaded file does not have the published digest."""

    code = "checksum_mismatch"


def download_wikidetox(
    cache_dir: Path,
    *,
    timeout_s: float = 10,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    urls: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> list[Path]:
    """The local paths of the toxicity TSV pair, downloading whatever the cache lacks.

    ``urls`` (file name -> URL) replaces the public location, for mirrors and
    tests. ``progress(name, bytes_done, bytes_total_or_None)`` is called while
    downloading. Resolving and connecting give up after ``connect_timeout_s``,
    a silent server after ``timeout_s``. Raises :class:`Unavailable` when the
    files cannot be fetched.
    """
    urls = dict(urls or WIKIDETOX_URLS)
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = [cache_dir / name for name in urls]
    missing = [path for path in paths if not _cached_ok(path)]
    if not missing:
        return paths
    connect_s = min(timeout_s, connect_timeout_s)
    timeout = httpx.Timeout(timeout_s, connect=connect_s)
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        for path in missing:
            _fetch(client, urls[path.name], path, connect_s, progress)
    return paths


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_path(path: Path) -> Path:
    """Where the digest of ``path`` is recorded."""
    return path.with_name(path.name + ".sha256")


def _recorded(path: Path) -> str | None:
    try:
        return checksum_path(path).read_text(encoding="ascii").split()[0].lower()
    except (OSError, IndexError, UnicodeDecodeError):
        return None


def _cached_ok(path: Path) -> bool:
    """True when ``path`` exists and matches its recorded (and any pinned) digest."""
    if not path.is_file():
        return False
    expected = PINNED_SHA256.get(path.name) or _recorded(path)
    if expected is None:
        logger.warning("%s has no recorded checksum; downloading it again", path)
        return False
    actual = sha256_of(path)
    if actual != expected:
        logger.warning("%s does not match its checksum (%s); downloading it again", path, actual)
        return False
    return True


def _fetch(
    client: httpx.Client, url: str, path: Path, connect_s: float, progress: Progress | None
) -> None:
    _check_resolves(url, connect_s)
    logger.info("downloading %s from %s", path.name, url)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _stream_to(client, url, out, path.name, progress)
        pinned = PINNED_SHA256.get(path.name)
        if pinned and digest != pinned:
            raise ChecksumMismatch(
                f"{path.name} from {url} has SHA-256 {digest}, expected {pinned}",
                details={"url": url, "sha256": digest, "expected": pinned},
            )
        # Digest first, then the rename: a crash in between leaves no trusted file.
        checksum_path(path).write_text(f"{digest}  {path.name}\n", encoding="ascii")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _stream_to(
    client: httpx.Client, url: str, out: BinaryIO, name: str, progress: Progress | None
) -> str:
    """Copy the body of ``url`` into ``out``; return its SHA-256."""
    digest = hashlib.sha256()
    done = 0
    try:
        with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise _unavailable(url, f"the server answered HTTP {response.status_code}")
            total = int(response.headers.get("content-length", 0)) or None
            for block in response.iter_bytes(_CHUNK):
                if done == 0 and not block.lstrip().startswith(EXPECTED_PREFIX):
                    kind = response.headers.get("content-type", "unknown content")
                    raise _unavailable(url, f"the server sent {kind}, not the expected TSV")
                digest.update(block)
                out.write(block)
                done += len(block)
                if progress is not None:
                    progress(name, done, total)
    except httpx.TimeoutException as exc:
        raise _unavailable(url, f"no answer within the time limit ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise _unavailable(url, str(exc) or type(exc).__name__) from exc
    if done == 0:
        raise _unavailable(url, "the server sent an empty file")
    return digest.hexdigest()


def _check_resolves(url: str, timeout_s: float) -> None:
    """Fail fast when the host name cannot be resolved within ``timeout_s``.

    ``getaddrinfo`` ignores socket timeouts and can block for much longer when
    no DNS server answers, so it runs in a daemon thread that is abandoned
    if it overruns.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list[BaseException | None] = []

    def resolve() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=resolve, name="dns-check", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not outcome:
        raise _unavailable(url, f"could not resolve {host} within {timeout_s:g} s")
    if outcome[0] is not None:
        raise _unavailable(url, f"could not resolve {host} ({outcome[0]})")


def _unavailable(url: str, reason: str) -> Unavailable:
    host = urlsplit(url).hostname or url
    return Unavailable(
        f"cannot download the Wikipedia Talk Labels dataset from {host}: {reason}. {OFFLINE_HINT}",
        details={"url": url, "reason": reason},
    )
