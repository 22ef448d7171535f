"""One request routed during a rollout: instances grouped per answering version, merged back.

Each instance is routed by :func:`mlcycle.rollouts.routing.route` on its key (its
id, else a hash of its text) and the :class:`~mlcycle.inference.routing.Serving`
snapshot, so every replica and the stream scorer route it alike. The instances
answered by one version form a :class:`Group`, scored with that version's
transform and cache keys; the answers are put back in request order, each naming
the version that gave it. A canary group that fails (an error, or its version
gone from the model server) never fails the request: its instances are answered
by the stable version in a fallback group and counted as the candidate's errors.
Instances the route also sends off the answer's path (to the shadow, or to
production beside a canary answer) are handed to the
:class:`~mlcycle.inference.offpath.OffPathScorer` once answered; a fallback
instance is not (production answered it: there is nothing to compare).

The scoring itself is the caller's (the stream's thread or the API's event loop):
this module only plans, records and merges.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import Counter

from mlcycle.contracts.rollouts import Role
from mlcycle.inference.answers import Source, format_predictions, observe_request
from mlcycle.inference.client import VersionGone
from mlcycle.inference.metrics import CANARY_FALLBACKS, ROUTED
from mlcycle.inference.offpath import OffPathWork
from mlcycle.inference.routing import Serving
from mlcycle.inference.schemas import PredictionRow
from mlcycle.inference.versions import ModelVersion
from mlcycle.rollouts.routing import route, routing_key

if TYPE_CHECKING:
    from mlcycle.inference.evidence import EvidenceBook
    from mlcycle.inference.monitor import LiveMonitor
    from mlcycle.inference.offpath import OffPathScorer

Metadata = Sequence[Mapping[str, Any] | None]


@dataclass(eq=False)
class Group:
    """The instances of one request that one version answers."""

    model: ModelVersion
    role: Role
    positions: list[int]
    texts: list[str]
    metadata: list[Mapping[str, Any] | None] | None
    ids: list[str | None] | None

    @property
    def candidate(self) -> bool:
        """Answered by the canary: a failure falls back to the stable version."""
        return self.role == "candidate"


@functools.lru_cache(maxsize=64)
def _routed(version: int, role: Role) -> Counter:
    return ROUTED.labels(str(version), role)


def _pick(values: Sequence[Any] | None, positions: list[int]) -> list[Any] | None:
    return None if values is None else [values[i] for i in positions]


class RoutedRequest:
    """One request's routing: the groups to score, then the merged answer and its evidence."""

    def __init__(
        self,
        serving: Serving,
        texts: Sequence[str],
        metadata: Metadata | None,
        ids: Sequence[str | None] | None,
    ) -> None:
        self.serving = serving
        self.texts = texts
        self.metadata = metadata
        self.ids = ids
        # Evidence only while a canary or shadow is loaded here (else nothing is compared).
        self.rollout = serving.rollout if serving.routed else None
        answer: dict[int, list[int]] = {}
        offpath: dict[int, list[int]] = {}
        roles: dict[int, Role] = {serving.stable.version: "production"}
        state = serving.state
        if state is None or not serving.routed:
            answer[serving.stable.version] = list(range(len(texts)))
        else:
            for i, text in enumerate(texts):
                chosen = route(state, routing_key(None if ids is None else ids[i], text))
                answer.setdefault(chosen.answer, []).append(i)
                roles[chosen.answer] = chosen.answer_role
                if chosen.offpath is not None and chosen.offpath_role is not None:
                    offpath.setdefault(chosen.offpath, []).append(i)
                    roles[chosen.offpath] = chosen.offpath_role
        self.roles = roles
        self.offpath = offpath
        self.groups = [self._group(version, positions) for version, positions in answer.items()]
        # Filled as groups are answered: each instance's row and the version that answered it.
        self.rows: list[PredictionRow | None] = [None] * len(texts)
        self.answered_by: list[ModelVersion | None] = [None] * len(texts)
        self.done: list[tuple[Group, list[PredictionRow]]] = []
        self.fallback: Group | None = None

    def _group(self, version: int, positions: list[int], role: Role | None = None) -> Group:
        return Group(
            self.serving.version(version),
            role or self.roles[version],
            positions,
            [self.texts[i] for i in positions],
            _pick(self.metadata, positions),
            _pick(self.ids, positions),
        )

    # -- as groups are scored -----------------------------------------------------------------

    def answered(
        self, group: Group, probabilities: np.ndarray, latency_s: float, book: EvidenceBook | None
    ) -> None:
        """Record ``group``'s answer (and the call in the rollout's evidence)."""
        rows = format_predictions(group.model, probabilities)
        for position, row in zip(group.positions, rows, strict=True):
            self.rows[position] = row
            self.answered_by[position] = group.model
        self.done.append((group, rows))
        _routed(group.model.version, group.role).inc(len(rows))
        if book is not None and self.rollout is not None:
            book.call(self.rollout, group.role, len(rows), latency_s, True)

    def failed(self, group: Group, latency_s: float, book: EvidenceBook | None) -> Group:
        """``group`` (the canary's) failed: the fallback group, answered by the stable version.

        Its instances count as the candidate's errors.
        """
        CANARY_FALLBACKS.labels(str(group.model.version)).inc(len(group.positions))
        if book is not None and self.rollout is not None:
            book.call(self.rollout, group.role, len(group.positions), latency_s, False)
        self.fallback = self._group(self.serving.stable.version, group.positions, "production")
        return self.fallback

    def stable_failed(
        self, group: Group, error: Exception, latency_s: float, book: EvidenceBook | None
    ) -> None:
        """Production's group failed (the request fails with it): counted as production's
        errors, so that an outage both versions suffer is never held against the candidate.
        A version gone is not counted: the caller answers again with the new one."""
        if book is not None and self.rollout is not None and not isinstance(error, VersionGone):
            book.call(self.rollout, group.role, len(group.positions), latency_s, False)

    # -- the answer -------------------------------------------------------------------------------

    def finish(
        self,
        *,
        source: Source,
        seconds: float,
        monitor: LiveMonitor | None,
        offpath: OffPathScorer | None,
    ) -> list[PredictionRow]:
        """The predictions in request order; the metrics, the monitor and the off-path work."""
        for group, rows in self.done:
            observe_request(group.model, rows, source, seconds)
            if monitor is not None:
                monitor.observe(group.model, group.texts, group.metadata, rows, group.ids)
        if offpath is not None and self.rollout is not None:
            for work in self.offpath_work():
                offpath.offer(work)
        predictions = self.rows
        assert all(row is not None for row in predictions), "an instance was left unanswered"
        return predictions  # type: ignore[return-value]

    def offpath_work(self) -> list[OffPathWork]:
        """Per off-path version (and the version that answered): the instances to score."""
        assert self.rollout is not None
        work: list[OffPathWork] = []
        for version, positions in self.offpath.items():
            model = self.serving.version(version)
            by_answer: dict[int, list[int]] = {}
            for i in positions:
                answered = self.answered_by[i]
                if answered is None or answered.version == version:
                    continue  # a canary failure production answered: nothing to compare
                by_answer.setdefault(answered.version, []).append(i)
            for answered_version, picked in by_answer.items():
                scores = np.fromiter(
                    (self.rows[i]["score"] for i in picked),  # type: ignore[index]
                    np.float64,
                    len(picked),
                )
                work.append(
                    OffPathWork(
                        rollout=self.rollout,
                        model=model,
                        role=self.roles[version],
                        answered=self.serving.version(answered_version),
                        texts=[self.texts[i] for i in picked],
                        metadata=_pick(self.metadata, picked),
                        ids=_pick(self.ids, picked),
                        answered_scores=scores,
                    )
                )
        return work


# -- scoring the groups: the caller's function, on its thread or its event loop -----------------


def answer_groups(
    request: RoutedRequest,
    score: Callable[[Group], np.ndarray],
    book: EvidenceBook | None,
    on_candidate_failure: Callable[[], None],
) -> None:
    """Score every group in turn, then the canary's failures by the stable version.

    A stable group's error propagates (VersionGone: the caller refreshes and retries).
    """
    for group in request.groups:
        _answer(request, group, score, book, on_candidate_failure)
    if request.fallback is not None:
        _answer(request, request.fallback, score, book, on_candidate_failure)


def _answer(
    request: RoutedRequest,
    group: Group,
    score: Callable[[Group], np.ndarray],
    book: EvidenceBook | None,
    on_candidate_failure: Callable[[], None],
) -> None:
    called = time.perf_counter()
    try:
        probabilities = score(group)
    except Exception as exc:
        if not group.candidate:
            request.stable_failed(group, exc, time.perf_counter() - called, book)
            raise
        request.failed(group, time.perf_counter() - called, book)
        on_candidate_failure()
        return
    request.answered(group, probabilities, time.perf_counter() - called, book)


async def answer_groups_async(
    request: RoutedRequest,
    score: Callable[[Group], Awaitable[np.ndarray]],
    book: EvidenceBook | None,
    on_candidate_failure: Callable[[], None],
) -> None:
    """:func:`answer_groups` on an event loop: the groups are scored at once."""
    if len(request.groups) == 1:
        await _answer_async(request, request.groups[0], score, book, on_candidate_failure)
    else:
        outcomes = await asyncio.gather(
            *(_answer_async(request, g, score, book, on_candidate_failure) for g in request.groups),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
    if request.fallback is not None:
        await _answer_async(request, request.fallback, score, book, on_candidate_failure)


async def _answer_async(
    request: RoutedRequest,
    group: Group,
    score: Callable[[Group], Awaitable[np.ndarray]],
    book: EvidenceBook | None,
    on_candidate_failure: Callable[[], None],
) -> None:
    called = time.perf_counter()
    try:
        probabilities = await score(group)
    except Exception as exc:
        if not group.candidate:
            request.stable_failed(group, exc, time.perf_counter() - called, book)
            raise
        request.failed(group, time.perf_counter() - called, book)
        on_candidate_failure()
        return
    request.answered(group, probabilities, time.perf_counter() - called, book)
