"""The featurizer's core, shared by its REST API, its gRPC API, the batch consumer and the CLI.

Stored transforms and the current one are the
:class:`~mlcycle.featurization.store.TransformStore`'s, and fitting and
building feature sets are :mod:`mlcycle.featurization.feature_sets`'s (the
trainer builds its variants' sets the same way); the core adds the
featurizer's defaults (the task's latest run, the current transform, its
shard size) and its request limits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlcycle.common.errors import InvalidInput, PayloadTooLarge
from mlcycle.common.settings import FeaturizerSettings, Settings
from mlcycle.common.store import Store
from mlcycle.contracts.features import FeatureSetManifest, TransformDescription
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.evaluation.behaviour import held_out_of
from mlcycle.featurization.config import FeatureConfig
from mlcycle.featurization.feature_sets import Progress, build_feature_set, fit_on_label_run
from mlcycle.featurization.held_out import HeldOutTexts
from mlcycle.featurization.store import TransformStore
from mlcycle.featurization.transform import SparseBatch, Transform


@dataclass(frozen=True)
class Featurized:
    """Vectors for a request, with the transform version that made them."""

    version: str
    batch: SparseBatch


class FeaturizerCore:
    """Fit, load and apply transforms; the one place the featurizer's rules live.

    The labels it featurizes are the labeler's: ``default_task`` is the task
    fitted on when none is named, and ``classes_of`` gives a task's number of
    classes.
    """

    def __init__(
        self,
        settings: FeaturizerSettings,
        store: Store | None = None,
        *,
        default_task: str,
        classes_of: Callable[[str], int],
    ) -> None:
        self.settings = settings
        self.store = store
        self.default_task = default_task
        self.classes_of = classes_of
        self.transforms = TransformStore(settings.artifacts_dir)
        self.root = self.transforms.root
        self._held_out: HeldOutTexts | None = None

    @property
    def held_out(self) -> HeldOutTexts:
        """The behavioural suite's texts, read on first use: never fitted on nor featurized."""
        if self._held_out is None:
            self._held_out = held_out_of(self.settings.behaviour_suite)
        return self._held_out

    # -- versions (the transform store's) ------------------------------------------------------

    def versions(self) -> list[str]:
        """Every stored transform version."""
        return self.transforms.versions()

    def current_version(self) -> str | None:
        """The version used when none is named, or None before the first fit."""
        return self.transforms.current_version()

    def set_current(self, version: str) -> None:
        """Make ``version`` (which must exist) the current transform."""
        self.transforms.set_current(version)

    def transform(self, version: str | None = None) -> Transform:
        """The transform ``version`` (default: current); NotFound says what exists."""
        return self.transforms.transform(version)

    # -- fit -----------------------------------------------------------------------------------

    def fit(
        self,
        label_run: str | None = None,
        config: FeatureConfig | None = None,
        *,
        task: str | None = None,
        make_current: bool = True,
    ) -> tuple[Transform, str]:
        """Fit on the train split of ``label_run`` (default: the task's latest run).

        Returns the transform and the label run it was fitted on.
        """
        store = self._require_store()
        run = LabelRuns(store).resolve(label_run, task or self.default_task)
        transform = fit_on_label_run(
            store, self.transforms, run.id, config or FeatureConfig(), held_out=self.held_out
        )
        if make_current:
            self.set_current(transform.version)
        return transform, run.id

    def build_feature_set(
        self,
        label_run: str,
        version: str | None = None,
        *,
        on_progress: Progress | None = None,
    ) -> FeatureSetManifest:
        """The feature set of ``label_run`` with ``version`` (default current), built if new."""
        return build_feature_set(
            self._require_store(),
            self.transforms,
            label_run,
            version,
            shard_rows=self.settings.shard_rows,
            classes_of=self.classes_of,
            on_progress=on_progress,
            held_out=self.held_out,
        )

    def _require_store(self) -> Store:
        if self.store is None:
            raise InvalidInput("this featurizer has no store: fitting and feature sets need one")
        return self.store

    # -- apply ---------------------------------------------------------------------------------

    def featurize(
        self,
        texts: Sequence[str],
        metadata: Sequence[Mapping[str, Any]] | None = None,
        version: str | None = None,
    ) -> Featurized:
        """Vectors for request texts; unknown metadata fields are an error here."""
        if not texts:
            raise InvalidInput("no instances: send at least one text")
        limit = self.settings.max_instances
        if len(texts) > limit:
            raise PayloadTooLarge(
                f"{len(texts)} instances in one request; the limit is {limit}",
                details={"limit": limit},
            )
        if metadata is not None and len(metadata) != len(texts):
            raise InvalidInput(f"{len(texts)} texts but {len(metadata)} metadata objects")
        transform = self.transform(version)
        batch = transform.apply(texts, metadata, unknown_fields="error")
        return Featurized(version=transform.version, batch=batch)

    def describe(self, version: str | None = None) -> TransformDescription:
        """A transform's metadata and statistics, and whether it is current."""
        transform = self.transform(version)
        current = transform.version == self.current_version()
        return transform.description().model_copy(update={"current": current})


def core_for(settings: Settings, store: Store | None = None) -> FeaturizerCore:
    """The core a featurizer process runs: its own section, the labeler's task and classes."""
    return FeaturizerCore(
        settings.featurizer,
        store,
        default_task=settings.labeler.task,
        classes_of=settings.labeler.classes_of,
    )
