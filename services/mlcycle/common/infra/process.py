"""Child processes for embedded infrastructure: started detached from the terminal, tied to us.

The broker and Redis run in their own session so that a Ctrl-C in the
terminal reaches only mlcycle, which then stops its services first and the
infrastructure last (services need the broker for their final commit). They
are also tied to the thread that started them with ``PR_SET_PDEATHSIG``, so a
crashed or SIGKILLed parent never leaves an orphan listening on a port. The
kernel watches the starting *thread*: start them from a thread that lives as
long as they should (the main thread, in practice).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from mlcycle.common.errors import Unavailable

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _death_signal_hook(sig: signal.Signals) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to send ``sig`` to the child when its parent dies.

    libc is looked up here, in the parent: the hook that runs between fork and
    exec only makes one foreign call, with no imports or allocation.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return hook


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Fail clearly if ``port`` is taken, rather than talking to someone else's server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise Unavailable(
                f"cannot start the embedded {what}: {host}:{port} is already in use",
                details={"port": port},
            ) from exc


class ChildProcess:
    """One long-running server binary, its output appended to a log file (or discarded).

    ``stop_signal`` is what the binary treats as "shut down now"; it is also
    what the child receives if this process dies.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        name: str,
        log_path: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = argv
        self.name = name
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.env = env  # None: this process's environment
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The child's pid while it is running."""
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """Spawn the binary; it has no stdin and never writes into a pipe nobody reads."""
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # closed in stop()
        out = self._log if self._log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_death_signal_hook(self.stop_signal),
            env=self.env,
        )
        log.info("started %s", self.name, extra={"pid": self.proc.pid, "argv": self.argv})

    def exit_code(self) -> int | None:
        """None while running, else the exit status."""
        return None if self.proc is None else self.proc.poll()

    def wait_until(self, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Poll ``ready()`` until it holds; fail fast if the child exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.exit_code()
            if code is not None:
                raise Unavailable(
                    f"the embedded {what} exited with code {code} at start-up"
                    + (f"; see {self.log_path}" if self.log_path else ""),
                )
            if ready():
                return
            time.sleep(0.05)
        raise Unavailable(f"the embedded {what} was not ready within {timeout_s:.0f} s")

    def stop(self, grace_s: float = 10.0) -> int | None:
        """Send the stop signal, wait up to ``grace_s``, then SIGKILL. Returns the exit status."""
        proc, self.proc = self.proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(self.stop_signal)
                try:
                    proc.wait(grace_s)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in time; killing it", self.name)
                    proc.kill()
                    proc.wait()
            code = proc.returncode
            log.info("stopped %s", self.name, extra={"exit_code": code})
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None
        return code


class EmbeddedServer:
    """A server binary mlcycle starts on ``127.0.0.1:port`` (``port=0`` picks a free one).

    Subclasses say how to launch it (``_argv``) and how to tell it is ready
    (``_answers``). ``start()`` returns once it answers; ``stop()`` sends the
    stop signal, then SIGKILLs after a grace period. Used as a context manager
    it starts on enter and stops on exit.
    """

    host = "127.0.0.1"
    what = "server"  # "the embedded <what> ..." in errors
    stop_signal = signal.SIGTERM

    def __init__(self, port: int, *, start_timeout_s: float) -> None:
        self.port = port
        self.start_timeout_s = start_timeout_s
        self._child: ChildProcess | None = None

    @property
    def pid(self) -> int | None:
        """The server process id while it runs."""
        return self._child.pid if self._child is not None else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._child is not None and self._child.exit_code() is None

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _answers(self) -> bool:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Hook run before launch, once the port is known."""

    def _log_path(self) -> Path | None:
        return None

    def _env(self) -> Mapping[str, str] | None:
        """The server's environment; None: this process's."""
        return None

    def start(self) -> Self:
        """Launch the binary and wait until it answers."""
        if self._child is not None:
            return self
        if self.port == 0:
            self.port = free_port(self.host)
        else:
            ensure_port_free(self.host, self.port, self.what)
        self._prepare()
        child = ChildProcess(
            self._argv(),
            name=self.what,
            log_path=self._log_path(),
            stop_signal=self.stop_signal,
            env=self._env(),
        )
        child.start()
        self._child = child
        try:
            child.wait_until(self._answers, self.start_timeout_s, self.what)
        except BaseException:
            self.stop()
            raise
        log.info("embedded %s ready", self.what, extra={"port": self.port})
        return self

    def stop(self, grace_s: float = 10.0) -> None:
        """Shut the server down (idempotent)."""
        child, self._child = self._child, None
        if child is not None:
            child.stop(grace_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
