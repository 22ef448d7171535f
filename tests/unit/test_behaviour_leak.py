"""No behavioural case reaches a feature set: the suite is never trained on.

Comments that include the suite's own texts (some with other capitals and
spacing) are labeled and featurized the way the featurizer does it; the set
must hold none of them, count them in its manifest, and the transform must not
be fitted on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from mlcycle.common.settings import CHECKOUT_SUITE, load_settings
from mlcycle.common.store import COMMENTS, LABELS
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.contracts.comments import Comment
from mlcycle.contracts.features import FeatureSetManifest
from mlcycle.contracts.label_runs import LabelRun, RunParams, RunProgress
from mlcycle.contracts.labels import Label, Provenance, label_id
from mlcycle.contracts.repositories.comments import Comments
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.contracts.splits import SPLITS
from mlcycle.evaluation.behaviour import BehaviourSuite, load_suite
from mlcycle.featurization.config import FeatureConfig
from mlcycle.featurization.feature_sets import build_feature_set, fit_on_label_run
from mlcycle.featurization.held_out import normalise_text
from mlcycle.featurization.shards import read_split
from mlcycle.featurization.store import TransformStore
from mlcycle.featurizer.service import FeaturizerCore, core_for

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, tzinfo=UTC)
RUN = "lr-behaviour"
ORDINARY = "please cite a source for the second paragraph of this page number {i}"


@pytest.fixture(scope="module")
def suite() -> BehaviourSuite:
    return load_suite(CHECKOUT_SUITE)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "store.db")
    yield store
    store.close()


def import_comments(store: SqliteStore, texts: list[str]) -> None:
    """``texts`` as comments, each labeled in a succeeded label run over the three splits."""
    comments, labels = [], []
    for i, text in enumerate(texts):
        item = f"c{i:04d}"
        comments.append(Comment(id=item, text=text).to_document())
        value = i % 2
        labels.append(
            Label(
                id=label_id(RUN, item),
                run=RUN,
                item_id=item,
                task="toxicity",
                label=value,
                probability=0.9,
                probabilities=[0.1, 0.9] if value else [0.9, 0.1],
                method="majority",
                n_votes=3,
                provenance=Provenance(crowd=["w1", "w2", "w3"]),
                split=SPLITS[i % 3],
                created_at=NOW,
            ).to_document()
        )
    store.upsert(COMMENTS, comments)
    store.upsert(LABELS, labels)
    LabelRuns(store).save(
        LabelRun(
            id=RUN,
            task="toxicity",
            status="succeeded",
            params=RunParams(task="toxicity"),
            previous_run=None,
            progress=RunProgress(phase="done", chunks_done=1, chunks_total=1),
            created_at=NOW,
            updated_at=NOW,
        )
    )


def data_with_cases(suite: BehaviourSuite) -> tuple[list[str], int]:
    """Ordinary comments with every 6th suite case mixed in, some re-cased and re-spaced."""
    cases = suite.texts()[::6]
    texts = [ORDINARY.format(i=i) for i in range(120)]
    for i, case in enumerate(cases):
        if i % 3 == 1:
            case = case.upper()
        elif i % 3 == 2:
            case = "  " + case.replace(" ", "   ")
        texts.insert(i * 2, case)
    return texts, len(cases)


def texts_in(store: SqliteStore, root: Path, manifest: FeatureSetManifest) -> list[str]:
    """The text of every item a feature set holds, over its three splits."""
    ids = [
        str(item)
        for split in SPLITS
        for shard in read_split(root, manifest, split)
        for item in shard.item_ids
    ]
    return [c.text for c in Comments(store).in_order(ids)]


def suite_cases_in(texts: list[str], suite: BehaviourSuite) -> list[str]:
    """The texts that are a behavioural case, verbatim or up to capitals and spacing."""
    cases = {normalise_text(t) for t in suite.texts()}
    return [t for t in texts if normalise_text(t) in cases]


def test_the_featurizer_leaves_every_behaviour_case_out_and_counts_them(
    store: SqliteStore, tmp_path: Path, suite: BehaviourSuite
) -> None:
    texts, injected = data_with_cases(suite)
    import_comments(store, texts)
    settings = load_settings(data_dir=tmp_path, shard_rows=16)
    assert settings.featurizer.behaviour_suite == CHECKOUT_SUITE
    core: FeaturizerCore = core_for(settings, store)
    transform, _ = core.fit(RUN)
    manifest = core.build_feature_set(RUN)

    held = texts_in(store, core.root, manifest)
    assert suite_cases_in(held, suite) == []
    assert manifest.held_out_rows == injected > 0
    assert manifest.rows == len(texts) - injected == len(held)
    # Nor was the transform fitted on them: it counts only ordinary train texts.
    train_cases = sum(1 for i, t in enumerate(texts) if i % 3 == 0 and suite_cases_in([t], suite))
    assert train_cases > 0
    assert transform.fitted_on["texts"] == len(range(0, len(texts), 3)) - train_cases


def test_without_the_guard_the_check_finds_the_cases(
    store: SqliteStore, tmp_path: Path, suite: BehaviourSuite
) -> None:
    """The detector above is not vacuous: a set built with nothing held out shows the cases."""
    texts, injected = data_with_cases(suite)
    import_comments(store, texts)
    transforms = TransformStore(tmp_path / "artifacts")
    transform = fit_on_label_run(store, transforms, RUN, FeatureConfig())
    manifest = build_feature_set(
        store, transforms, RUN, transform.version, shard_rows=16, classes_of=lambda _: 2
    )
    assert manifest.held_out_rows == 0
    assert len(suite_cases_in(texts_in(store, transforms.root, manifest), suite)) == injected


def test_no_behaviour_case_is_in_the_data_a_demo_imports(suite: BehaviourSuite) -> None:
    """The project's own generated data shares no text with the suite, so the suite stays
    unseen even where a feature set was built before the guard existed."""
    from mlcycle.importers.synthetic import synthetic_records

    records = synthetic_records(2000, votes_per_comment=1, seed=0)
    texts = [r.text for r in records if isinstance(r, Comment)]
    assert suite_cases_in(texts, suite) == []
    assert np.unique([normalise_text(t) for t in suite.texts()]).size == len(suite)
