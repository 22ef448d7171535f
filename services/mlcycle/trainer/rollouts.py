"""The rollout controller: the one place where rollouts are decided.

A rollout tries a candidate version on live traffic: first in shadow (it scores a
share of traffic off the answer's path), then as a canary answering growing shares
(``policy.canary_steps``), then in production. Every ``tick`` the controller reads
the evidence every inference replica pooled, the monitor's drift alarms, the
moderators' realized quality and whether the model server serves both versions,
builds a :class:`~mlcycle.contracts.rollouts.Comparison`, asks the policy
(:func:`mlcycle.rollouts.policy.decide`) and applies its answer through the
registry, which records the stage change with its evidence and publishes it.

Decisions are taken here only, never in an inference process, so replicas can never
disagree about a rollout. Changes go registry first (store, serving config, routing
table, event), then the rollout record: after a crash between the two, the next tick
sees the registry's stage and finishes the record the same way (:meth:`_reconcile`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from mlcycle.common.errors import Conflict, ValidationFailed
from mlcycle.common.store import Store
from mlcycle.contracts.repositories.rollouts import Rollouts
from mlcycle.contracts.rollouts import (
    Comparison,
    DecisionAction,
    HoldKind,
    Rollout,
    RolloutDecision,
    RolloutPolicy,
)
from mlcycle.rollouts.compare import compare
from mlcycle.rollouts.policy import Proposal, decide
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.registry_checks import check_reason
from mlcycle.trainer.rollout_signals import LiveSignals
from mlcycle.trainer.rollout_steps import (
    DEFAULT_SETTLE_S,
    RECOVERING,
    recovery_due,
    settle_due,
)

log = logging.getLogger(__name__)

Clock = Callable[[], float]
def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class RolloutController:
    """Starts rollouts, decides them every tick, and carries out an admin's orders."""

    def __init__(
        self,
        registry: ModelRegistry,
        store: Store,
        signals: LiveSignals,
        *,
        default_policy: RolloutPolicy | None = None,
        clock: Clock = time.time,
        settle_s: float = DEFAULT_SETTLE_S,
    ) -> None:
        self.registry = registry
        self.rollouts = Rollouts(store)
        self.signals = signals
        self.default_policy = default_policy or RolloutPolicy()
        self.clock = clock
        # How long after a step starts evidence of the step before may still arrive.
        self.settle_s = settle_s
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reading -------------------------------------------------------------------------------

    def get(self, rollout_id: str) -> Rollout:
        """A rollout, or NotFound."""
        return self.rollouts.require(rollout_id)

    def listing(self, name: str | None = None, *, active: bool = False) -> list[Rollout]:
        """Rollouts (of ``name``; only running or paused ones with ``active``), newest first."""
        return self.rollouts.active(name) if active else self.rollouts.listing(name)

    def comparison(self, rollout: Rollout) -> Comparison:
        """Production against the candidate, as the next decision would see it."""
        now = self.clock()
        name, baseline, candidate = rollout.name, rollout.baseline, rollout.candidate
        versions = [v for v in (baseline, candidate) if v is not None]
        evidence = self.signals.evidence(rollout.id)
        drift = {v: self.signals.drift_alarms(name, v) for v in versions}
        since = datetime.fromisoformat(rollout.started_at)
        quality = {v: self.signals.decisions(name, v, since) for v in versions}
        server_up = self.signals.model_server_up(name, versions)
        return compare(
            rollout,
            evidence,
            production_version=baseline if baseline is not None else candidate,
            drift=drift,
            quality=quality,
            model_server_up=server_up,
            now=now,
        )

    # -- starting ------------------------------------------------------------------------------

    def start(
        self,
        name: str,
        version: int,
        *,
        reason: str,
        actor: str | None,
        policy: RolloutPolicy | None = None,
        trigger: str = "manual",
        force: bool = False,
    ) -> Rollout:
        """Put ``version`` in shadow (or straight in canary) against the production version.

        Refused while another rollout of ``name`` runs, and without a production version
        to compare against (promote the first version directly).
        """
        reason = check_reason(reason)
        policy = policy or self.default_policy
        with self._lock:
            running = self.rollouts.active(name)
            if running:
                raise Conflict(
                    f"rollout {running[0].id} of model {name!r} is still {running[0].status}: "
                    "abort it or wait for it to finish",
                    details={"rollout": running[0].id},
                )
            production = self.registry.production(name)
            if production is None:
                raise ValidationFailed(
                    f"model {name!r} has no production version to compare a rollout against: "
                    "promote the first version directly",
                    details={"name": name},
                )
            if production.version == version:
                raise ValidationFailed(
                    f"model {name!r} version {version} is already in production",
                    details={"name": name, "version": version},
                )
            now = self.clock()
            rollout = Rollout(
                id=f"{name}-{version}-{int(now * 1000)}",
                name=name,
                candidate=version,
                baseline=production.version,
                policy=policy,
                phase="canary" if policy.skip_shadow else "shadow",
                step=0 if policy.skip_shadow else -1,
                trigger=trigger,
                started_at=_iso(now),
                updated_at=_iso(now),
            )
            who = actor or f"rollout:{rollout.id}"
            if policy.skip_shadow:
                share = policy.canary_steps[0] / 100.0
                self.registry.start_canary(
                    name, version, reason, share=share, rollout=rollout.id, actor=who, force=force
                )
                rollout.first_canary_at = rollout.started_at
            else:
                self.registry.start_shadow(
                    name,
                    version,
                    reason,
                    share=policy.shadow_share,
                    rollout=rollout.id,
                    actor=who,
                    force=force,
                )
            self._record(rollout, "start", reason, who, None, now)
            return rollout

    # -- deciding ------------------------------------------------------------------------------

    def tick(self) -> list[Rollout]:
        """Decide every running rollout once; returns those whose stage changed."""
        changed = []
        with self._lock:
            for rollout in self.rollouts.active():
                try:
                    if self._reconcile(rollout) or rollout.status != "running":
                        continue
                    comparison = self.comparison(rollout)
                    if self._recovering(rollout, comparison):
                        continue
                    if not self._settled(rollout, comparison):
                        continue
                    proposal = decide(rollout, comparison)
                    if self._apply(rollout, proposal, comparison, f"rollout:{rollout.id}"):
                        changed.append(rollout)
                except Exception:  # one rollout's trouble must not stop the others
                    log.exception("deciding rollout %s failed", rollout.id)
        return changed

    def _apply(
        self, rollout: Rollout, proposal: Proposal, comparison: Comparison | None, actor: str
    ) -> bool:
        """Carry out ``proposal``; returns whether the stage or share changed."""
        now = self.clock()
        action, reason = proposal.action, proposal.reason
        moves = {"rollout": rollout.id, "actor": actor, "evidence": comparison}
        name, version, steps = rollout.name, rollout.candidate, rollout.policy.canary_steps
        if action == "hold":
            if not self._repeats_hold(rollout, proposal.hold):
                self._record(rollout, "hold", reason, actor, comparison, now, proposal.hold)
            return False
        if action == "rollback":
            self.registry.roll_back_candidate(name, version, reason, **moves)
            self._finish(rollout, "rolled_back", now)
        elif action == "promote" or (action == "advance" and rollout.step == len(steps) - 1):
            self.registry.promote(name, version, reason, force=True, **moves)
            self._finish(rollout, "production", now)
            action = "promote"
        elif rollout.phase == "shadow":
            self.registry.start_canary(name, version, reason, share=steps[0] / 100.0, **moves)
            rollout.phase, rollout.step, rollout.first_canary_at = "canary", 0, _iso(now)
        else:
            rollout.step += 1
            share = steps[rollout.step] / 100.0
            self.registry.set_canary_share(name, share, reason=reason, **moves)
        self._record(rollout, action, reason, actor, comparison, now)
        return True

    def _recovering(self, rollout: Rollout, comparison: Comparison) -> bool:
        """True on the first tick with data again after a hold on missing data: it records
        ``recovering``, and the step settles and counts afresh from what follows."""
        if not recovery_due(rollout, comparison):
            return False
        why = f"{RECOVERING}: data is back; this step counts afresh once it settles"
        actor, now = f"rollout:{rollout.id}", self.clock()
        self._record(rollout, "hold", why, actor, comparison, now, "recovering")
        return True

    def _settled(self, rollout: Rollout, comparison: Comparison) -> bool:
        """False while the current step is younger than ``settle_s`` (no decision yet); when
        it first is older, records ``settle`` with the evidence the step counts from."""
        due = settle_due(rollout, self.clock(), self.settle_s)
        if due is None:
            return True
        if not due:
            return False
        why = f"the previous step's evidence has arrived: counting from {comparison.pairs} pairs"
        self._record(rollout, "settle", why, f"rollout:{rollout.id}", comparison, self.clock())
        return True

    def _repeats_hold(self, rollout: Rollout, hold: HoldKind | None) -> bool:
        """A hold of the same kind as the last decision is not recorded again."""
        if not rollout.decisions or rollout.decisions[-1].action != "hold":
            return False
        return rollout.decisions[-1].hold == hold

    def _reconcile(self, rollout: Rollout) -> bool:
        """Finish a rollout whose candidate was moved outside it (an admin's promote or
        rollback, or a crash between the registry's change and this record); True if so."""
        model = self.registry.get(rollout.name, rollout.candidate)
        production = self.registry.production(rollout.name)
        action: DecisionAction
        if model.state == "production":
            action, phase, why = "promote", "production", "the candidate is in production"
        elif model.state in ("rolled_back", "archived", "unblessed"):
            action, phase, why = "rollback", "rolled_back", f"the candidate is {model.state}"
        elif production is None or production.version != rollout.baseline:
            # Production changed under the rollout: its comparison no longer holds.
            action, phase = "abort", "aborted"
            why = "production changed during the rollout; the comparison no longer holds"
            self.registry.roll_back_candidate(
                rollout.name, rollout.candidate, why, rollout=rollout.id, actor="registry"
            )
        else:
            return False
        self._finish(rollout, phase, self.clock())
        self._record(rollout, action, why, "registry", None, self.clock())
        return True

    # -- an admin's orders ---------------------------------------------------------------------

    def pause(self, rollout_id: str, *, actor: str, reason: str) -> Rollout:
        """Stop deciding (traffic stays routed as it is) until resumed."""
        return self._order(rollout_id, "pause", actor, reason)

    def resume(self, rollout_id: str, *, actor: str, reason: str) -> Rollout:
        """Decide again; the current step counts its samples afresh."""
        return self._order(rollout_id, "resume", actor, reason)

    def force(self, rollout_id: str, *, actor: str, reason: str) -> Rollout:
        """Move one step on whatever the evidence says (to production from the last step)."""
        return self._order(rollout_id, "force", actor, reason)

    def abort(self, rollout_id: str, *, actor: str, reason: str) -> Rollout:
        """Take the candidate off now; it ends rolled back."""
        return self._order(rollout_id, "abort", actor, reason)

    def _order(self, rollout_id: str, order: DecisionAction, actor: str, reason: str) -> Rollout:
        reason = check_reason(reason)
        with self._lock:
            rollout = self.get(rollout_id)
            if not rollout.active:  # a state conflict, as a stop of a finished run is
                raise Conflict(
                    f"rollout {rollout_id} is finished ({rollout.phase}): nothing to {order}",
                    details={"rollout": rollout_id, "phase": rollout.phase},
                )
            now = self.clock()
            if order == "pause" or order == "resume":
                wanted = "paused" if order == "pause" else "running"
                if rollout.status == wanted:
                    return rollout
                rollout.status = wanted
                # Resuming starts the step's count afresh: from the pairs there are now.
                seen = self.comparison(rollout) if order == "resume" else None
                self._record(rollout, order, reason, actor, seen, now)
            elif order == "abort":
                self.registry.roll_back_candidate(
                    rollout.name, rollout.candidate, reason, rollout=rollout.id, actor=actor
                )
                self._finish(rollout, "aborted", now)
                self._record(rollout, "abort", reason, actor, None, now)
            else:
                comparison = self.comparison(rollout)
                self._apply(rollout, Proposal("advance", reason), comparison, actor)
                last = rollout.decisions[-1]
                rollout.decisions[-1] = last.model_copy(update={"action": "force"})
                self.rollouts.save(rollout)
            return rollout

    # -- records -------------------------------------------------------------------------------

    def _finish(self, rollout: Rollout, phase: str, now: float) -> None:
        rollout.phase = phase  # type: ignore[assignment]  # one of the final phases
        rollout.status = "finished"
        rollout.finished_at = _iso(now)

    def _record(
        self,
        rollout: Rollout,
        action: DecisionAction,
        reason: str,
        actor: str,
        comparison: Comparison | None,
        now: float,
        hold: HoldKind | None = None,
    ) -> None:
        rollout.decisions.append(
            RolloutDecision(
                time=_iso(now),
                action=action,
                phase=rollout.phase,
                canary_percent=rollout.canary_percent,
                reason=reason,
                actor=actor,
                evidence=comparison,
                hold=hold,
            )
        )
        rollout.updated_at = _iso(now)
        self.rollouts.save(rollout)
        log.info(
            "rollout decision",
            extra={"rollout": rollout.id, "action": action, "phase": rollout.phase,
                   "canary_percent": rollout.canary_percent, "reason": reason},
        )

    # -- the background tick -------------------------------------------------------------------

    def start_ticking(self, interval_s: float) -> RolloutController:
        """Tick every ``interval_s`` on a daemon thread."""
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True,
                                        name="rollouts")
        self._thread.start()
        return self

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.tick()

    def stop(self) -> None:
        """Stop ticking."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)

