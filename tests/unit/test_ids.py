"""Ids bounded in UTF-8 bytes, composite ids that always fit, and who may vote from outside."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mlcycle.contracts.comments import Comment, CrowdVote, HumanLabel, Vote, vote_id
from mlcycle.contracts.ids import MAX_ID_BYTES, joined_id
from mlcycle.contracts.labels import label_id

pytestmark = pytest.mark.unit


def test_ids_are_counted_in_utf8_bytes_not_characters() -> None:
    assert Comment(id="é" * 256, text="x").id  # 512 bytes
    with pytest.raises(ValidationError, match="at most 512 bytes in UTF-8, this one is 514"):
        Comment(id="é" * 257, text="x")
    with pytest.raises(ValidationError, match="this one is 600"):
        Vote(item_id="🙂" * 150, annotator_id="w", label=1)


def test_joined_ids_stay_readable_while_they_fit() -> None:
    assert vote_id("toxicity", "c1", "w7") == "toxicity:c1:w7"
    assert label_id("live-toxicity", "c1") == "live-toxicity:c1"
    fits = "i" * (MAX_ID_BYTES - len("toxicity:") - len(":w"))
    assert vote_id("toxicity", fits, "w") == f"toxicity:{fits}:w"


def test_joined_ids_too_long_become_a_stable_hash_without_colons() -> None:
    item, annotator = "i" * 400, "é" * 200
    hashed = vote_id("toxicity", item, annotator)
    assert hashed == vote_id("toxicity", item, annotator)  # a redelivery overwrites itself
    assert hashed.startswith("vote-") and len(hashed) == 69 and ":" not in hashed
    assert hashed != vote_id("toxicity", item, "é" * 199 + "e")
    assert Vote(item_id=item, annotator_id=annotator, label=1).id == hashed
    assert label_id("lr-1", "é" * 256).startswith("label-")
    assert joined_id("x", "a" * 600) != joined_id("y", "a" * 600)


def test_crowd_votes_cannot_claim_a_reviewer_or_a_labeling_function() -> None:
    for reserved in ("human:ann", "lf:caps"):
        with pytest.raises(ValidationError) as info:
            CrowdVote(item_id="c1", annotator_id=reserved, label=1)
        (error,) = info.value.errors()
        assert error["loc"] == ("annotator_id",)
        assert "reserved for the labeler's reviewers and labeling functions" in error["msg"]
    assert CrowdVote(item_id="c1", annotator_id="humane:ann", label=1).annotator_id
    schema = CrowdVote.model_json_schema()["properties"]["annotator_id"]
    assert schema["pattern"].startswith("^(?!human:|lf:)")


def test_the_labelers_own_votes_keep_their_reviewer() -> None:
    vote = HumanLabel(item_id="c1", label=0, reviewer="ann").to_vote()
    assert vote.annotator_id == "human:ann" and vote.id == "toxicity:c1:human:ann"
