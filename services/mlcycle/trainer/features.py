"""Feature sets of one label run per n-gram variant: fitted and built on first use, then reused.

The trainer reads feature shards from the shared artifact store, as the
featurizer writes them. A search over n-gram settings needs a transform per
variant; this fits it with the featurization library on the label run's
train split (a transform's version is the hash of its content, so fitting the
same variant again gives the same version and the same shards) and builds the
shards once, the same way the featurizer builds them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping

import numpy as np

from mlcycle.common.store import Store
from mlcycle.featurization.config import FeatureConfig
from mlcycle.featurization.feature_sets import build_feature_set, fit_on_label_run
from mlcycle.featurization.held_out import NOTHING_HELD_OUT, HeldOutTexts
from mlcycle.featurization.store import TransformStore
from mlcycle.featurization.transform import Transform
from mlcycle.trainer.config import variant_config
from mlcycle.trainer.data import SplitData, TrainingData, read_training_data
from mlcycle.trainer.distill import ensure as ensure_embeddings

Announce = Callable[[str], None]


class VariantFeatures:
    """``data(variant)`` for one label run, cached in memory for the life of a job."""

    def __init__(
        self,
        transforms: TransformStore,
        store: Store,
        label_run: str,
        *,
        shard_rows: int,
        classes_of: Callable[[str], int],
        known: dict[str, str] | None = None,
        announce: Announce | None = None,
        held_out: HeldOutTexts = NOTHING_HELD_OUT,
        source_weights: Mapping[str, float] | None = None,
        shuffle_train_labels: bool = False,
    ) -> None:
        self.transform_store = transforms
        self.store = store
        self.shard_rows = shard_rows
        self.classes_of = classes_of
        self.label_run = label_run
        self.transforms: dict[str, str] = dict(known or {})  # variant -> transform version
        self._data: dict[str, TrainingData] = {}
        self._lock = threading.Lock()
        self._announce = announce or (lambda _: None)
        # The behavioural suite's texts: never fitted on, never in a feature set.
        self.held_out = held_out
        # Checked against each variant's data: they must leave two classes to train on.
        self.source_weights = dict(source_weights or {})
        # The rollout drill (JobConfig.shuffle_train_labels): train rows keep their features
        # and get another row's label; dev and test are left alone.
        self.shuffle_train_labels = shuffle_train_labels

    def transform_for(self, variant: str) -> str:
        """The transform version of ``variant``, fitting it when the store lacks it."""
        store = self.transform_store
        known = self.transforms.get(variant)
        if known is not None and known in store.versions():
            return known
        base_version = store.current_version()
        base = store.transform(base_version).config if base_version else None
        config = variant_config(variant, base)
        if config is None:
            if base_version is None:
                self._announce("fitting the featurizer's default transform")
                version = self._fit(FeatureConfig()).version
                store.set_current(version)
            else:
                version = base_version
        else:
            if config.embeddings.enabled:
                # The featurizer applies static embeddings but cannot make them (no
                # TensorFlow); the trainer can, once per artifact store.
                done = ensure_embeddings(store.root, self._announce)
                if not done.cached:
                    self._announce(f"distilled embeddings {done.ident} in {done.seconds:.0f} s")
            self._announce(f"fitting the {variant!r} transform")
            version = self._fit(config).version
        self.transforms[variant] = version
        return version

    def data(self, variant: str) -> TrainingData:
        """Train, dev and test splits featurized with ``variant``'s transform, checked."""
        with self._lock:
            cached = self._data.get(variant)
            if cached is not None:
                return cached
            version = self.transform_for(variant)
            self._announce(f"building the feature set of {variant!r} ({version})")
            manifest = build_feature_set(
                self.store,
                self.transform_store,
                self.label_run,
                version,
                shard_rows=self.shard_rows,
                classes_of=self.classes_of,
                held_out=self.held_out,
            )
            data = read_training_data(self.transform_store.root, manifest)
            if self.shuffle_train_labels:
                data.train = shuffled_labels(data.train, seed=DRILL_SEED)
            data.variant = variant
            data.check(self.source_weights)
            self._data[variant] = data
            return data

    def _fit(self, config: FeatureConfig) -> Transform:
        return fit_on_label_run(
            self.store, self.transform_store, self.label_run, config, held_out=self.held_out
        )


# The drill's permutation is fixed, so a resumed drill trains on the same labels.
DRILL_SEED = 20171


def shuffled_labels(split: SplitData, *, seed: int) -> SplitData:
    """``split`` with its labels (hard and soft) permuted across rows: features kept."""
    order = np.random.default_rng(seed).permutation(len(split))
    return dataclasses.replace(
        split, labels=split.labels[order], probabilities=split.probabilities[order]
    )
