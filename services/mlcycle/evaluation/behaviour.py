"""The behavioural suite: short cases with an expected label, grouped by capability.

In the spirit of CheckList, a capability is one thing a toxicity model should
get right (a neutral mention of a group is not an attack; a threat is toxic
however it is spelled). Held-out metrics on one corpus cannot show these; the
suite's per-capability pass rates can, and they gate a candidate against
production (:func:`regressions`).

A suite is a folder of JSON documents, one per capability::

    {"capability": "threats", "description": "...",
     "cases": [{"text": "...", "expected": "toxic"}, ...]}

JSON rather than YAML so that the trainer and the CLI read it with the
standard library. Texts are unique across the whole suite after
normalisation (:func:`~mlcycle.featurization.held_out.normalise_text`), so a
case is counted once and the feature-set guard knows exactly what to hold out.

Scoring takes any scorer: a callable from texts to toxic-or-not, so the same
code runs against an in-process candidate (with the threshold it will serve
with) and against a served model over REST.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.behaviour import BehaviourSummary, CapabilityRate
from mlcycle.featurization.held_out import HeldOutTexts, normalise_text

Expected = Literal["toxic", "not_toxic"]
# Decides a batch of texts: True where the model calls the text toxic.
Scorer = Callable[[Sequence[str]], Sequence[bool]]

SUITE_SUFFIX = ".json"
DEFAULT_BATCH = 128


class SuiteError(InvalidInput):
    """A suite folder or one of its files cannot be used; the message names the file."""


class BehaviourCase(BaseModel):
    """One short text and the label a human moderator would give it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(min_length=1, max_length=2000)
    expected: Expected

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("a case's text may not be blank")
        return text

    @property
    def toxic(self) -> bool:
        """Whether the case is expected to be called toxic."""
        return self.expected == "toxic"


class Capability(BaseModel):
    """A named capability, what it tests, and its cases."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    capability: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = Field(min_length=1)
    cases: list[BehaviourCase] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_texts(self) -> Capability:
        _refuse_duplicates((c.text for c in self.cases), where=f"capability {self.capability!r}")
        return self


class BehaviourSuite(BaseModel):
    """Capabilities with distinct names; every case's text unique across the suite."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    capabilities: list[Capability] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> BehaviourSuite:
        names = [c.capability for c in self.capabilities]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"capabilities named more than once: {', '.join(twice)}")
        _refuse_duplicates(self.texts(), where="the suite")
        return self

    def texts(self) -> list[str]:
        """Every case's text, capability by capability."""
        return [case.text for c in self.capabilities for case in c.cases]

    def __len__(self) -> int:
        return sum(len(c.cases) for c in self.capabilities)

    def held_out(self) -> HeldOutTexts:
        """The texts feature sets must leave out."""
        return HeldOutTexts(self.texts())

    @property
    def digest(self) -> str:
        """sha256 of the suite's content (names, cases, labels; not descriptions or file order).

        Pass rates recorded with one digest are comparable with rates measured on
        a suite of the same digest only.
        """
        content = sorted(
            (c.capability, sorted((case.text, case.expected) for case in c.cases))
            for c in self.capabilities
        )
        return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()


def _refuse_duplicates(texts: Iterable[str], *, where: str) -> None:
    seen: set[str] = set()
    twice: list[str] = []
    for text in texts:
        key = normalise_text(text)
        if key in seen:
            twice.append(text)
        seen.add(key)
    if twice:
        shown = "; ".join(repr(t) for t in twice[:3])
        raise ValueError(f"{len(twice)} duplicate case text(s) in {where}: {shown}")


# -- loading --------------------------------------------------------------------------------------


def load_capability(path: Path) -> Capability:
    """One capability file; :class:`SuiteError` names the file and what is wrong with it."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SuiteError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path}: not UTF-8 text: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise SuiteError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    try:
        capability = Capability.model_validate(raw)
    except ValidationError as exc:
        raise SuiteError(f"{path}: {_describe(exc)}") from exc
    if capability.capability != path.stem:
        raise SuiteError(
            f"{path}: names capability {capability.capability!r}; "
            f"the file must be called {capability.capability}{SUITE_SUFFIX}"
        )
    return capability


def load_suite(directory: Path) -> BehaviourSuite:
    """Every ``*.json`` capability in ``directory``, in file-name order, checked as a suite."""
    if not directory.is_dir():
        raise SuiteError(f"{directory}: no such suite folder")
    files = sorted(directory.glob(f"*{SUITE_SUFFIX}"))
    if not files:
        raise SuiteError(f"{directory}: no capability files (*{SUITE_SUFFIX}) in the suite folder")
    capabilities = [load_capability(path) for path in files]
    try:
        return BehaviourSuite(capabilities=capabilities)
    except ValidationError as exc:
        raise SuiteError(f"{directory}: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


# -- scoring --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    """One case as the model decided it."""

    text: str
    expected: Expected
    toxic: bool

    @property
    def passed(self) -> bool:
        return self.toxic == (self.expected == "toxic")


@dataclass(frozen=True)
class CapabilityResult:
    """A capability's cases as decided, and its pass rate."""

    name: str
    description: str
    cases: list[CaseResult]

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.cases)

    @property
    def rate(self) -> float:
        return self.passed / len(self.cases)

    def failures(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.passed]


@dataclass(frozen=True)
class SuiteResult:
    """Per-capability pass rates of one model on one suite (``digest``)."""

    digest: str
    capabilities: list[CapabilityResult] = field(default_factory=list)

    @property
    def cases(self) -> int:
        return sum(len(c.cases) for c in self.capabilities)

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.capabilities)

    @property
    def pass_rate(self) -> float:
        """Passed cases over all cases (each case counts once)."""
        return self.passed / self.cases if self.cases else 0.0

    def rates(self) -> dict[str, float]:
        """Pass rate per capability."""
        return {c.name: c.rate for c in self.capabilities}

    @property
    def worst(self) -> CapabilityResult:
        """The capability with the lowest pass rate (the first in suite order on a tie)."""
        return min(self.capabilities, key=lambda c: c.rate)

    def summary(self) -> BehaviourSummary:
        """What a job's result, the report and ``metadata.json`` keep: figures, no texts."""
        worst = self.worst
        return BehaviourSummary(
            suite_digest=self.digest,
            cases=self.cases,
            pass_rate=round(self.pass_rate, 4),
            worst_capability=worst.name,
            worst_rate=round(worst.rate, 4),
            capabilities={
                c.name: CapabilityRate(cases=len(c.cases), passed=c.passed, rate=round(c.rate, 4))
                for c in self.capabilities
            },
        )


def run_suite(suite: BehaviourSuite, scorer: Scorer, *, batch: int = DEFAULT_BATCH) -> SuiteResult:
    """Decide every case with ``scorer``, ``batch`` texts per call, and tally per capability."""
    texts = suite.texts()
    decided: list[bool] = []
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        answer = [bool(x) for x in scorer(chunk)]
        if len(answer) != len(chunk):
            raise ValueError(f"the scorer answered {len(answer)} labels for {len(chunk)} texts")
        decided.extend(answer)
    results, at = [], 0
    for capability in suite.capabilities:
        cases = [
            CaseResult(case.text, case.expected, decided[at + i])
            for i, case in enumerate(capability.cases)
        ]
        at += len(cases)
        results.append(CapabilityResult(capability.capability, capability.description, cases))
    return SuiteResult(suite.digest, results)


def threshold_scorer(
    scores: Callable[[Sequence[str]], Sequence[float]], threshold: float
) -> Scorer:
    """A scorer that calls a text toxic when its score reaches ``threshold``, as serving does."""

    def decide(texts: Sequence[str]) -> list[bool]:
        return [float(s) >= threshold for s in scores(texts)]

    return decide


# -- comparing with production --------------------------------------------------------------------


@dataclass(frozen=True)
class Regression:
    """A capability the candidate passes less often than production by more than the margin."""

    capability: str
    production: float
    candidate: float

    @property
    def drop(self) -> float:
        return self.production - self.candidate

    def describe(self) -> str:
        return f"{self.capability} {self.production:.2f} -> {self.candidate:.2f}"


def regressions(
    candidate: Mapping[str, float], production: Mapping[str, float], margin: float
) -> list[Regression]:
    """Capabilities both were measured on where the candidate lost more than ``margin``.

    Strictly more: a drop of exactly the margin is allowed. Worst drop first.
    """
    # A hair of tolerance so that rates written rounded to 4 places compare as measured.
    tolerance = 1e-6
    found = [
        Regression(name, production[name], rate)
        for name, rate in candidate.items()
        if name in production and production[name] - rate > margin + tolerance
    ]
    return sorted(found, key=lambda r: (-r.drop, r.capability))


def recorded_summary(recorded: object, digest: str) -> BehaviourSummary | None:
    """A summary as ``metadata.json`` recorded it (:meth:`SuiteResult.summary`), if it was
    measured on the suite of ``digest``; None when there is none, it is of another suite, or
    it does not read as a summary."""
    try:
        summary = BehaviourSummary.model_validate(recorded)
    except ValidationError:
        return None
    return summary if summary.suite_digest == digest else None


def rates_of(summary: BehaviourSummary) -> dict[str, float]:
    """Pass rate per capability of a recorded summary."""
    return {name: c.rate for name, c in summary.capabilities.items()}


def held_out_of(directory: Path | None) -> HeldOutTexts:
    """The texts feature sets must leave out: the suite in ``directory``'s, none without one."""
    return HeldOutTexts() if directory is None else load_suite(directory).held_out()
