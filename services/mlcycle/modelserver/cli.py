"""``mlcycle modelserver [tensorflow_model_server flags]``: serve until SIGINT or SIGTERM.

Flags are parsed before TensorFlow is imported, so ``--help`` and flag errors
answer at once.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence

from mlcycle.common.errors import MlcycleError
from mlcycle.common.keys import KeyConfigError
from mlcycle.common.settings import Settings, load_settings
from mlcycle.modelserver.flags import ModelServerOptions, parse_flags

log = logging.getLogger(__name__)

# Every gRPC call passes between threads: the one polling gRPC's completion queue, a
# worker, TensorFlow's. A thread woken while another runs Python waits for the GIL for up
# to the switch interval, 5 ms by default: several times a whole one-row Predict. 0.5 ms
# bounds that wait without the GIL changing hands often enough to cost measurable CPU.
SWITCH_INTERVAL_S = 0.0005


def run(argv: Sequence[str], settings: Settings | None = None) -> int:
    """Run the model server in the foreground; returns the process exit code.

    0 after a clean stop (or ``--help``, ``--version``), 2 for a bad command line,
    1 when the server cannot start (an invalid config file, a port in use, unreadable
    keys, or a non-loopback address without keys).
    """
    settings = settings or load_settings()
    defaults = ModelServerOptions.from_settings(
        settings.modelserver, host=settings.host, model_name=settings.trainer.model_name
    )
    try:
        options = parse_flags(argv, defaults)
    except SystemExit as exc:  # --help, or a bad flag (argparse printed why)
        return exc.code if isinstance(exc.code, int) else 2
    if options.show_version:
        print(version_text())
        return 0
    from mlcycle.modelserver.heap import HeapFreezer
    from mlcycle.modelserver.server import ModelServer

    sys.setswitchinterval(SWITCH_INTERVAL_S)

    try:
        server = ModelServer(
            options,
            settings.modelserver,
            models_dir=settings.trainer.models_dir,
            edge=settings.edge,
        )
        HeapFreezer(server.manager).install()
        server.start(wait_for_models=False)
    except (MlcycleError, KeyConfigError) as exc:  # KeyConfigError: a bad key, or none off loopback
        message = exc.message if isinstance(exc, MlcycleError) else str(exc)
        log.error("the model server cannot start: %s", message)
        print(f"mlcycle modelserver: error: {message}", file=sys.stderr)
        return 1
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        log.info("model server stopping", extra={"signal": signal.Signals(signum).name})
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def version_text() -> str:
    """What ``--version`` prints: this server's version and TensorFlow's, as TF Serving does."""
    from importlib.metadata import version

    import tensorflow as tf

    return f"mlcycle model server: {version('mlcycle')}\nTensorFlow Library: {tf.__version__}"
