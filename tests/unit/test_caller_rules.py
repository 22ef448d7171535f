"""What a caller's key decides beyond its route's scope: who a human label is from, and
whether a fitted transform becomes the current one."""

from __future__ import annotations

import pytest

from mlcycle.common.errors import Forbidden, ValidationFailed
from mlcycle.common.keys import OPEN_CALLER, Caller, Scope
from mlcycle.contracts.comments import HumanLabel
from mlcycle.featurizer.api import FitRequest, makes_current
from mlcycle.labeler.human_labels import reviewer_of

ANN = Caller("ann", frozenset({Scope.LABEL}))
LEGACY = Caller("legacy-0123abcd", frozenset(Scope), legacy=True)
TRAINER = Caller("ci", frozenset({Scope.TRAIN}))
ADMIN = Caller("ops", frozenset({Scope.ADMIN}))


def label(reviewer: str | None = None) -> HumanLabel:
    return HumanLabel(item_id="c1", label=1, reviewer=reviewer)


def test_a_named_key_is_the_reviewer_and_cannot_label_as_someone_else() -> None:
    assert reviewer_of(label(), ANN, keys_required=True) == "ann"
    assert reviewer_of(label("ann"), ANN, keys_required=True) == "ann"
    with pytest.raises(Forbidden, match="not as 'bob'"):
        reviewer_of(label("bob"), ANN, keys_required=True)
    assert label().to_vote("ann").annotator_id == "human:ann"


def test_without_keys_or_with_a_legacy_key_the_body_names_the_reviewer() -> None:
    assert reviewer_of(label("bob"), OPEN_CALLER, keys_required=False) == "bob"
    assert reviewer_of(label("bob"), LEGACY, keys_required=True) == "bob"
    for caller, keys_required in ((OPEN_CALLER, False), (LEGACY, True)):
        with pytest.raises(ValidationFailed, match="reviewer is required"):
            reviewer_of(label(), caller, keys_required=keys_required)


def test_a_fit_is_made_current_only_for_a_caller_who_may_set_it() -> None:
    assert makes_current(FitRequest(), ADMIN) is True
    assert makes_current(FitRequest(), OPEN_CALLER) is True  # no keys: as before
    assert makes_current(FitRequest(), TRAINER) is False
    assert makes_current(FitRequest(make_current=False), ADMIN) is False
    with pytest.raises(Forbidden, match="'admin' scope"):
        makes_current(FitRequest(make_current=True), TRAINER)
