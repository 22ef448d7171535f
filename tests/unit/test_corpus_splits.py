"""Splits stay a function of the item: the same in every run, whatever else a run holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcycle.common.settings import load_settings
from mlcycle.contracts.comments import Comment, StoredComment, Vote
from mlcycle.contracts.label_runs import RunParams
from mlcycle.contracts.repositories.votes import CastVote
from mlcycle.contracts.splits import hash_split
from mlcycle.importers import get_importer
from mlcycle.labeler.labeling import Corpus, compute
from tests.unit.test_corpora_import import corpus_folder

pytestmark = pytest.mark.unit

LABELER = load_settings().labeler
NO_LFS = RunParams(strategy="majority", labeling_functions=[])


def imported(fmt: str, paths: list[Path]) -> tuple[list[Comment], list[Vote]]:
    records = list(get_importer(fmt).read(paths))
    return (
        [r for r in records if isinstance(r, Comment)],
        [r for r in records if isinstance(r, Vote) and r.task == "toxicity"],
    )


def splits_of(comments: list[Comment], votes: list[Vote]) -> dict[str, str]:
    """Item id -> split, as a label run assigns them."""
    corpus = Corpus.from_comments(StoredComment(**c.to_document()) for c in comments)
    cast = [CastVote(v.item_id, v.annotator_id, v.label) for v in votes]
    labeling = compute(corpus, cast, NO_LFS, LABELER)
    return dict(zip(corpus.item_ids, labeling.splits, strict=True))


def test_an_item_lands_in_the_same_split_in_every_run_and_mix(tmp_path: Path) -> None:
    root = corpus_folder(tmp_path / "data")
    comments, votes = imported("corpora", [root])
    everything = splits_of(comments, votes)
    assert set(everything) == {c.id for c in comments}

    # Again, in the reverse order: nothing depends on the order items arrive in.
    assert splits_of(comments[::-1], votes[::-1]) == everything
    # A run over some of the corpora, each read by its own importer: the same splits.
    for fmt, folder in (("davidson", "davidson_hate_offensive"), ("lewidi", "md_agreement"),
                        ("hatexplain", "hatexplain_valtest")):  # fmt: skip
        alone = splits_of(*imported(fmt, [root / folder]))
        assert alone == {item: everything[item] for item in alone}

    by_id = {c.id: c for c in comments}
    for item, split in everything.items():
        official = by_id[item].metadata.get("split")
        if official is not None:  # LeWiDi: the release's own split
            assert split == official
        else:  # Davidson and HateXplain: a hash of the id
            assert split == hash_split(item)
    assert {everything["md-agreement-train-1"], everything["md-agreement-dev-1"]} == {
        "train",
        "dev",
    }
