"""What this process serves of a model: the stable version, and a rollout's canary and shadow.

The registry publishes a :class:`~mlcycle.contracts.rollouts.RoutingState` per model
name in ``routing.json`` on the models volume
(:func:`~mlcycle.contracts.serving.read_routing_table`). :class:`RoutingWatcher`
re-reads it when it changes; the :class:`~mlcycle.inference.versions.VersionTracker`
turns it, with the versions the model server reports AVAILABLE, into one
:class:`Serving` snapshot that requests read without a lock. A canary or shadow
version appears in the snapshot only once it is loaded here (metadata and transform),
so until then its traffic goes to the stable version and nothing is counted for it.
Without a routing table, or without an entry for the name, the snapshot is the
highest AVAILABLE version alone, as before rollouts existed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from mlcycle.contracts.rollouts import RoutingState
from mlcycle.contracts.serving import read_routing_table, routing_path
from mlcycle.inference.servable import ModelVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Serving:
    """The versions one request is routed between, as one immutable snapshot.

    ``state`` is the published routing state narrowed to what is loaded here: its
    ``stable`` is the version that answers, its ``canary``/``shadow`` are None until
    those versions are loaded. ``routed`` is False when the stable version answers
    everything alone (no rollout, none of its versions loaded yet, or their shares 0):
    the fast path.
    """

    stable: ModelVersion
    state: RoutingState | None = None
    canary: ModelVersion | None = None
    shadow: ModelVersion | None = None
    routed: bool = field(init=False)

    def __post_init__(self) -> None:
        state = self.state
        routed = state is not None and (
            (self.canary is not None and state.canary_share > 0.0)
            or (self.shadow is not None and state.shadow_share > 0.0)
        )
        object.__setattr__(self, "routed", routed)

    @property
    def rollout(self) -> str | None:
        """The running rollout's id (what the evidence is pooled under), if any."""
        return None if self.state is None else self.state.rollout

    def version(self, number: int) -> ModelVersion:
        """The loaded version ``number`` among the snapshot's (KeyError otherwise)."""
        for model in (self.stable, self.canary, self.shadow):
            if model is not None and model.version == number:
                return model
        raise KeyError(number)


class RoutingWatcher:
    """The registry's routing state of one model name, re-read when ``routing.json`` changes.

    :meth:`poll` is cheap when nothing changed (one ``stat``); the tracker calls it
    every ``refresh_s``. An unreadable or missing file reads as no routing (serve the
    highest AVAILABLE version), exactly as before the registry wrote one.
    """

    def __init__(self, models_path: Path, name: str, refresh_s: float) -> None:
        self.path = routing_path(models_path)
        self.models_path = models_path
        self.name = name
        self.refresh_s = refresh_s
        self._seen: tuple[int, int, int] | None = None
        self._state: RoutingState | None = None

    def state(self) -> RoutingState | None:
        """The name's routing state as last read (None: no table, or no entry for the name)."""
        return self._state

    def poll(self) -> bool:
        """Re-read the table if the file changed; True when the name's state changed."""
        try:
            info = os.stat(self.path)
            seen: tuple[int, int, int] | None = (info.st_ino, info.st_mtime_ns, info.st_size)
        except OSError:
            seen = None
        if seen == self._seen:
            return False
        self._seen = seen
        table = read_routing_table(self.models_path) if seen is not None else None
        state = None if table is None else table.models.get(self.name)
        if state == self._state:
            return False
        log.info(
            "routing state changed",
            extra={"model": self.name, "routing": None if state is None else state.model_dump()},
        )
        self._state = state
        return True
