"""The registry's stage moves: shadow, canary, promotion, a candidate's roll-back, rollback.

Each move is one edge of the contracts' state machine
(:data:`~mlcycle.contracts.models.TRANSITIONS`, checked by
:func:`~mlcycle.contracts.models.check_transition`) plus the change of the name's
:class:`~mlcycle.contracts.models.ServingPointer`. Every pointer change runs in the
same order: the revision grows, the store write (versions and pointer in one
call), ``models.config``, ``routing.json``, then the ``models`` topic events. A
crash between the store write and the files leaves files that
:meth:`ModelRegistry.write_serving_config` (called at service start) repairs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlcycle.common.errors import InvalidInput, NotFound, ValidationFailed
from mlcycle.common.settings import TrainerSettings
from mlcycle.contracts.models import (
    TRANSITIONS,
    Action,
    ModelVersion,
    ServingPointer,
    check_transition,
)
from mlcycle.contracts.repositories.model_versions import ModelVersions
from mlcycle.contracts.repositories.serving_pointers import ServingPointers
from mlcycle.contracts.rollouts import Comparison
from mlcycle.trainer.registry_checks import check_reason

log = logging.getLogger(__name__)

# (model, action, extra event fields) of one move, published once the files are written.
Published = tuple[ModelVersion, Action, dict[str, int | None]]


def now() -> str:
    """The time every record of one move carries."""
    return datetime.now(UTC).isoformat()


def check_share(share: float, what: str) -> float:
    """A share of traffic in [0, 1], or InvalidInput naming ``what``."""
    if isinstance(share, bool) or not isinstance(share, int | float) or not math.isfinite(share):
        raise InvalidInput(f"{what} must be a number from 0 to 1", details={what: str(share)})
    if not 0.0 <= share <= 1.0:
        raise InvalidInput(f"{what} must be from 0 to 1, not {share}", details={what: share})
    return float(share)


def check_move(model: ModelVersion, action: Action, force: bool) -> bool:
    """Whether ``action`` needs (and has) force; ValidationFailed naming the stages otherwise."""
    try:
        return check_transition(action, model.state, force=force)
    except ValueError as exc:
        edge = TRANSITIONS[action]
        raise ValidationFailed(
            f"model {model.name!r} version {model.version}: {exc}",
            details={
                "name": model.name,
                "version": model.version,
                "state": model.state,
                "action": action,
                "allowed_from": sorted(edge.allowed),
                "with_force": sorted(edge.forced),
            },
        ) from None


def refuse_running(pointer: ServingPointer, version: int, keep: str | None = None) -> None:
    """ValidationFailed when another version is shadow or canary of the name (``keep``: a slot
    ``version`` may hold itself, the shadow a canary starts from)."""
    for slot in ("shadow", "canary"):
        running = getattr(pointer, slot)
        if running is None or (slot == keep and running == version):
            continue
        raise ValidationFailed(
            f"model {pointer.name!r} version {running} is the {slot} of rollout "
            f"{pointer.rollout or '(none)'}: finish or roll it back before trying version "
            f"{version}",
            details={"name": pointer.name, slot: running, "rollout": pointer.rollout},
        )


def clear_slots(pointer: ServingPointer, version: int) -> None:
    """Take ``version`` out of the canary and shadow slots; no slot left: no rollout either."""
    if pointer.canary == version:
        pointer.canary, pointer.canary_share = None, 0.0
    if pointer.shadow == version:
        pointer.shadow, pointer.shadow_share = None, 0.0
    if pointer.canary is None and pointer.shadow is None:
        pointer.rollout = None


class StageMoves:
    """The moves of :class:`~mlcycle.trainer.registry.ModelRegistry` that change what is served.

    ``actor`` is who asked (an API key's name, ``job:<id>``, ``rollout:<id>``),
    ``evidence`` the figures the move was decided on and ``rollout`` the rollout it
    belongs to; all three are kept in the version's history and in its event.

    The registry provides the rest (a mixin's declared needs, overridden there).
    """

    settings: TrainerSettings
    versions: ModelVersions
    pointers: ServingPointers
    _lock: AbstractContextManager

    def get(self, name: str, version: int) -> ModelVersion:
        """A model version (the registry's)."""
        raise NotImplementedError

    def write_serving_config(self) -> Path:
        """Rewrite models.config and routing.json (the registry's)."""
        raise NotImplementedError

    def _serving(self, pointer: ServingPointer, exclude: int | None = None) -> ModelVersion | None:
        raise NotImplementedError

    def _check_saved_model(self, name: str, version: int) -> None:
        raise NotImplementedError

    def _emit_step(self, model: ModelVersion, event: Action, **extra: Any) -> None:
        raise NotImplementedError

    def start_shadow(
        self,
        name: str,
        version: int,
        reason: str,
        *,
        share: float,
        rollout: str | None = None,
        actor: str | None = None,
        evidence: Comparison | None = None,
        force: bool = False,
    ) -> ModelVersion:
        """``version`` becomes the shadow of ``name``: it also scores ``share`` of traffic, off
        the answer's path. From blessed or archived (with ``force``: candidate, unblessed,
        rolled_back); refused while another shadow or canary of the name runs."""

        def place(pointer: ServingPointer, share: float) -> None:
            pointer.shadow, pointer.shadow_share, pointer.rollout = version, share, rollout

        tags = {"rollout": rollout, "actor": actor, "evidence": evidence}
        return self._enter_slot("shadowed", name, version, reason, share, place, force, **tags)

    def start_canary(
        self,
        name: str,
        version: int,
        reason: str,
        *,
        share: float,
        rollout: str | None = None,
        actor: str | None = None,
        evidence: Comparison | None = None,
        force: bool = False,
    ) -> ModelVersion:
        """``version`` becomes the canary of ``name``, answering ``share`` of traffic. From the
        shadow (its slot is cleared), blessed or archived (with ``force``: candidate,
        unblessed, rolled_back); refused while another shadow or canary of the name runs."""

        def place(pointer: ServingPointer, share: float) -> None:
            if pointer.shadow == version:
                pointer.shadow, pointer.shadow_share = None, 0.0
            pointer.canary, pointer.canary_share = version, share
            pointer.rollout = rollout if rollout is not None else pointer.rollout

        tags = {"rollout": rollout, "actor": actor, "evidence": evidence}
        return self._enter_slot(
            "canaried", name, version, reason, share, place, force, keep="shadow", **tags
        )

    def _enter_slot(
        self,
        action: Action,
        name: str,
        version: int,
        reason: str,
        share: float,
        place: Callable[[ServingPointer, float], None],
        force: bool,
        keep: str | None = None,
        **tags: Any,
    ) -> ModelVersion:
        """The start of a shadow or a canary: check the inputs and the move, refuse while another
        version runs (but in the slot ``keep``), record the transition with ``tags`` (actor,
        evidence, rollout), let ``place`` fill the pointer's slot, commit."""
        reason, share = check_reason(reason), check_share(share, "share")
        with self._lock:
            model, pointer = self.get(name, version), self.pointers.of(name)
            forced = check_move(model, action, force)
            refuse_running(pointer, version, keep=keep)
            self._check_saved_model(name, version)
            time = now()
            to_state = TRANSITIONS[action].to_state
            model.transition(action, to_state, reason, time, forced=forced or None, **tags)
            place(pointer, share)
            self._commit([model], pointer, time, [(model, action, {})])
            return model

    def set_canary_share(
        self,
        name: str,
        share: float,
        *,
        reason: str,
        rollout: str | None = None,
        actor: str | None = None,
        evidence: Comparison | None = None,
    ) -> ServingPointer:
        """Let the canary of ``name`` answer ``share`` of traffic. No stage changes, so nothing
        goes into a history (the rollout keeps its own decisions); the pointer and the
        routing table change."""
        reason, share = check_reason(reason), check_share(share, "share")
        with self._lock:
            pointer = self.pointers.of(name)
            if pointer.canary is None:
                raise ValidationFailed(
                    f"model {name!r} has no canary: start one before setting its share",
                    details={"name": name, "canary": None},
                )
            pointer.canary_share = share
            pointer.rollout = rollout if rollout is not None else pointer.rollout
            log.info(
                "canary share set",
                extra={
                    "model": name,
                    "canary": pointer.canary,
                    "share": share,
                    "reason": reason,
                    "actor": actor,
                    "rollout": pointer.rollout,
                },
            )
            self._commit([], pointer, now(), [])
            return pointer

    def promote(
        self,
        name: str,
        version: int,
        reason: str,
        *,
        force: bool = False,
        actor: str | None = None,
        evidence: Comparison | None = None,
        rollout: str | None = None,
    ) -> ModelVersion:
        """Make ``version`` the production version of ``name``; the one it replaces is archived
        and goes on the rollback stack.

        From blessed, shadow, canary or archived (with ``force``: candidate, unblessed,
        rolled_back); a canary or shadow leaves its slot. Promoting the production
        version is a no-op.
        """
        reason = check_reason(reason)
        with self._lock:
            model, pointer = self.get(name, version), self.pointers.of(name)
            if model.state == "production" and pointer.version == version:
                return model
            forced = check_move(model, "promoted", force)
            self._check_saved_model(name, version)
            time = now()
            old = self._serving(pointer, exclude=version)
            changed, published = [model], []
            tags = {"actor": actor, "evidence": evidence, "rollout": rollout}
            if old is not None:
                why = f"replaced by version {version}: {reason}"
                old.transition("archived", "archived", why, time, **tags)
                changed.insert(0, old)
                published.append((old, "archived", {}))
            replaced = pointer.version if pointer.version != version else None
            model.transition("promoted", "production", reason, time, forced=forced or None, **tags)
            published.append((model, "promoted", {"previous_version": replaced}))
            stack = [v for v in pointer.previous if v not in (version, replaced)]
            if replaced is not None:
                stack.insert(0, replaced)
            clear_slots(pointer, version)
            pointer.version, pointer.previous = version, stack
            self._commit(changed, pointer, time, published)
            return model

    def roll_back_candidate(
        self,
        name: str,
        version: int,
        reason: str,
        *,
        actor: str | None = None,
        evidence: Comparison | None = None,
        rollout: str | None = None,
    ) -> ModelVersion:
        """Take the shadow or canary ``version`` of ``name`` off: it becomes ``rolled_back``, its
        slot is cleared, and production answers everything."""
        reason = check_reason(reason)
        with self._lock:
            model, pointer = self.get(name, version), self.pointers.of(name)
            if model.state not in ("shadow", "canary"):
                raise ValidationFailed(
                    f"model {name!r} version {version} is {model.state}: only a shadow or a "
                    "canary is rolled back as a candidate (roll production back with rollback)",
                    details={
                        "name": name,
                        "version": version,
                        "state": model.state,
                        "allowed_from": ["canary", "shadow"],
                    },
                )
            check_move(model, "rolled_back", False)
            time = now()
            model.transition(
                "rolled_back",
                "rolled_back",
                reason,
                time,
                actor=actor,
                evidence=evidence,
                rollout=rollout,
            )
            clear_slots(pointer, version)
            self._commit([model], pointer, time, [(model, "rolled_back", {})])
            return model

    def rollback(self, name: str, reason: str, *, actor: str | None = None) -> ModelVersion:
        """Serve the previous production version again; returns it (see :meth:`rollback_pair`)."""
        return self.rollback_pair(name, reason, actor=actor)[0]

    def rollback_pair(
        self, name: str, reason: str, *, actor: str | None = None
    ) -> tuple[ModelVersion, ModelVersion]:
        """Roll the production version back and restore the newest one on the rollback stack.

        Returns ``(restored, rolled back)``. The stack is popped, so rolling back twice
        goes two versions back; the rolled-back version is not pushed. A running
        rollout's canary and shadow stay where they are.
        """
        reason = check_reason(reason)
        with self._lock:
            pointer = self.pointers.of(name)
            current = self._serving(pointer)
            if current is None:
                raise NotFound(
                    f"model {name!r} has no production version: nothing to roll back",
                    details={"name": name},
                )
            if not pointer.previous:
                raise ValidationFailed(
                    f"model {name!r} version {current.version} is the only version served "
                    "so far: there is nothing to roll back to (promote another version instead)",
                    details={"name": name, "production": current.version, "previous": []},
                )
            target_version, *rest = pointer.previous
            target = self.get(name, target_version)
            check_move(current, "rolled_back", False)
            check_move(target, "restored", False)
            self._check_saved_model(name, target_version)
            time = now()
            current.transition("rolled_back", "rolled_back", reason, time, actor=actor)
            target.transition("restored", "production", reason, time, actor=actor)
            pointer.version, pointer.previous = target_version, rest
            published: list[Published] = [
                (current, "rolled_back", {}),
                (target, "restored", {"previous_version": current.version}),
            ]
            self._commit([current, target], pointer, time, published)
            return target, current

    # -- the order of every pointer change --------------------------------------------------------

    def _commit(
        self,
        changed: Sequence[ModelVersion],
        pointer: ServingPointer,
        time: str,
        published: Sequence[Published],
    ) -> None:
        pointer.revision += 1
        pointer.updated_at = time
        self.versions.save_with_pointer(list(changed), pointer)
        self.write_serving_config()
        for model, action, extra in published:
            self._emit_step(model, action, **extra)
