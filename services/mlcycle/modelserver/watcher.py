"""The background loop: poll the model base paths and the model config file.

- every ``--file_system_poll_wait_seconds``: :meth:`ModelManager.sync` (new
  versions load, old ones unload); 0 means once, at start, as in TF Serving;
- every ``--model_config_file_poll_wait_seconds``: re-read the config file
  and, when its content changed, reconfigure the manager; 0 means never.

A config file that becomes invalid is reported and the running config stays; a
config whose version labels are refused (TF Serving's rule, see
:mod:`~mlcycle.modelserver.manager`) is served with the labels in force before.
A config applied through ``HandleReloadConfigRequest`` stays until the file
itself changes again.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from mlcycle.common.errors import MlcycleError
from mlcycle.modelserver.config import (
    ModelServerConfig,
    ModelSettings,
    model_settings,
    parse_model_server_config,
    read_file,
)
from mlcycle.modelserver.manager import ModelManager

log = logging.getLogger(__name__)


class ConfigFile:
    """A ``--model_config_file``, remembering the content last applied."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._applied: str | None = None

    def read(self) -> ModelServerConfig:
        """Parse the file now (InvalidInput naming it when it is not valid)."""
        text = read_file(self.path, "model config file")
        config = parse_model_server_config(text, str(self.path))
        self._applied = text
        return config

    def changed(self) -> list[ModelSettings] | None:
        """The new models when the file's content changed since last read, else None."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            log.warning("cannot read the model config file %s: %s", self.path, exc)
            return None
        if text == self._applied:
            return None
        try:
            config = parse_model_server_config(text, str(self.path))
        except MlcycleError as exc:
            log.error("keeping the running config: %s", exc.message)
            self._applied = text  # report a broken file once, not on every poll
            return None
        self._applied = text
        return model_settings(config, str(self.path))


class Watcher:
    """Runs the initial load, then the polls, on one daemon thread."""

    def __init__(
        self,
        manager: ModelManager,
        *,
        file_system_poll_s: float,
        config_file: ConfigFile | None = None,
        config_poll_s: float = 0.0,
    ) -> None:
        self.manager = manager
        self.file_system_poll_s = file_system_poll_s
        self.config_file = config_file
        self.config_poll_s = config_poll_s if config_file is not None else 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelserver-watch", daemon=True)

    def start(self) -> Watcher:
        """Start loading the models in the background."""
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop polling (a load in progress finishes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        self.manager.sync()
        now = time.monotonic()
        next_sync = now + self.file_system_poll_s if self.file_system_poll_s > 0 else None
        next_config = now + self.config_poll_s if self.config_poll_s > 0 else None
        while next_sync is not None or next_config is not None:
            due = min(t for t in (next_sync, next_config) if t is not None)
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            now = time.monotonic()
            if next_config is not None and now >= next_config:
                self._check_config()
                next_config = now + self.config_poll_s
            if next_sync is not None and now >= next_sync:
                self._sync()
                next_sync = time.monotonic() + self.file_system_poll_s

    def _check_config(self) -> None:
        assert self.config_file is not None
        models = self.config_file.changed()
        if models is not None:
            log.info(
                "model config file changed; reloading", extra={"models": [m.name for m in models]}
            )
            try:
                self.manager.reconfigure(models)
            except MlcycleError as exc:  # labels refused: the versions serve, old labels stay
                log.error("the model config file's labels were not applied: %s", exc.message)

    def _sync(self) -> None:
        try:
            self.manager.sync()
        except Exception:  # the loop must outlive any one bad poll
            log.exception("polling the model base paths failed")
