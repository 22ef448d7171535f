"""Feature sets of one label run per n-gram variant: fitted and built on first use, then reused.

The trainer reads feature shards from the shared artifact store, as the
featurizer writes them. A search over n-gram settings needs a transform per
variant; this fits it with the featurizer's own library on the label run's
train split (a transform's version is the hash of its content, so fitting the
same variant again gives the same version and the same shards) and builds the
shards once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from mlcycle.common.store import Store
from mlcycle.featurizer.service import FeaturizerCore
from mlcycle.featurizer.shards import build_feature_set
from mlcycle.trainer.config import variant_config
from mlcycle.trainer.data import TrainingData, read_training_data

Announce = Callable[[str], None]


class VariantFeatures:
    """``data(variant)`` for one label run, cached in memory for the life of a job."""

    def __init__(
        self,
        core: FeaturizerCore,
        store: Store,
        label_run: str,
        known: dict[str, str] | None = None,
        announce: Announce | None = None,
    ) -> None:
        self.core = core
        self.store = store
        self.label_run = label_run
        self.transforms: dict[str, str] = dict(known or {})  # variant -> transform version
        self._data: dict[str, TrainingData] = {}
        self._lock = threading.Lock()
        self._announce = announce or (lambda _: None)

    def transform_for(self, variant: str) -> str:
        """The transform version of ``variant``, fitting it when the store lacks it."""
        known = self.transforms.get(variant)
        if known is not None and known in self.core.versions():
            return known
        base_version = self.core.current_version()
        base = self.core.transform(base_version).config if base_version else None
        config = variant_config(variant, base)
        if config is None:
            if base_version is None:
                self._announce("fitting the featurizer's default transform")
                transform, _ = self.core.fit(self.label_run, make_current=True)
                version = transform.version
            else:
                version = base_version
        else:
            self._announce(f"fitting the {variant!r} transform")
            transform, _ = self.core.fit(self.label_run, config, make_current=False)
            version = transform.version
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
            manifest = build_feature_set(self.core, self.store, self.label_run, version)
            data = read_training_data(self.core.root, manifest)
            data.variant = variant
            data.check()
            self._data[variant] = data
            return data
