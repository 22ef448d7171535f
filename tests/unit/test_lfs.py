"""Labeling functions: the registry, their application, and the starter toxicity set."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from mlcycle.common.errors import InvalidInput
from mlcycle.labeler import lf_registry
from mlcycle.labeler.lfs import (
    LabelingFunction,
    LfApplication,
    apply_lfs,
    labeling_function,
    lf_triplets,
    per_text_cache,
    register_task,
    registered,
    text_view,
    unregister,
)
from mlcycle.labeler.votes import ABSTAIN, VoteMatrix

STARTER = (
    "profanity",
    "insult_second_person",
    "shouting",
    "threat",
    "identity_attack",
    "benign_discussion",
)
CUSTOM_TASK = "test-lfs-custom"


def vote(name: str, text: str, metadata: Mapping[str, Any] | None = None) -> int:
    (lf,) = registered("toxicity", [name])
    return lf(text, metadata)


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Whatever a test registers is removed afterwards."""
    before = dict(lf_registry._REGISTRY)
    classes = dict(lf_registry.TASK_CLASSES)
    yield
    for key in set(lf_registry._REGISTRY) - set(before):
        unregister(key[1], key[0])
    lf_registry.TASK_CLASSES.clear()
    lf_registry.TASK_CLASSES.update(classes)


# --------------------------------------------------------------------------- registry


def test_starter_set_is_registered_in_order() -> None:
    lfs = registered()
    assert tuple(lf.name for lf in lfs) == STARTER
    assert all(lf.task == "toxicity" and lf.description for lf in lfs)
    picked = registered("toxicity", ["threat", "profanity"])
    assert [lf.name for lf in picked] == ["threat", "profanity"]


def test_unknown_names_are_named_with_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        registered("toxicity", ["profanity", "nope", "missing"])
    message = caught.value.message
    assert "nope" in message and "missing" in message
    for name in STARTER:
        assert name in message
    assert caught.value.details["unknown"] == ["nope", "missing"]
    assert caught.value.http_status == 400


def test_unknown_task_has_no_lfs() -> None:
    assert registered("no-such-task") == []
    with pytest.raises(InvalidInput, match=r"known: \(none\)"):
        registered("no-such-task", ["profanity"])


def test_duplicate_name_is_refused(clean_registry: None) -> None:
    with pytest.raises(InvalidInput, match="already registered"):

        @labeling_function("profanity")
        def again(text: str, metadata: Mapping[str, Any]) -> int:
            return ABSTAIN

    @labeling_function(task=CUSTOM_TASK)
    def mine(text: str, metadata: Mapping[str, Any]) -> int:
        return ABSTAIN

    with pytest.raises(InvalidInput, match="already registered"):
        labeling_function("mine", task=CUSTOM_TASK)(mine)


def test_invalid_name_is_refused(clean_registry: None) -> None:
    with pytest.raises(InvalidInput, match="invalid labeling function name"):
        labeling_function("has space", task=CUSTOM_TASK)(lambda text, metadata: ABSTAIN)


def test_user_lf_in_a_custom_task(clean_registry: None) -> None:
    @labeling_function(task=CUSTOM_TASK)
    def mentions_cats(text: str, metadata: Mapping[str, Any]) -> int:
        """Class 1 when a cat is mentioned."""
        return 1 if "cat" in text else ABSTAIN

    @labeling_function("by_source", task=CUSTOM_TASK, description="metadata-based")
    def source_lf(text: str, metadata: Mapping[str, Any]) -> int:
        return 0 if metadata.get("source") == "forum" else ABSTAIN

    lfs = registered(CUSTOM_TASK)
    assert [lf.name for lf in lfs] == ["mentions_cats", "by_source"]
    assert lfs[0].description == "Class 1 when a cat is mentioned."
    assert lfs[1].description == "metadata-based"
    assert mentions_cats("a cat", {}) == 1  # the decorator returns the function unchanged
    assert "mentions_cats" not in [lf.name for lf in registered()]

    app = apply_lfs(lfs, ["a cat", "a dog"], [{"source": "forum"}, {}])
    assert app.votes.tolist() == [[1, 0], [ABSTAIN, ABSTAIN]]
    assert app.names == ("mentions_cats", "by_source")
    assert app.errors == {}


def test_bare_decorator(clean_registry: None) -> None:
    @labeling_function
    def bare_lf(text: str, metadata: Mapping[str, Any]) -> int:
        return ABSTAIN

    assert [lf.name for lf in registered("toxicity", ["bare_lf"])] == ["bare_lf"]


def test_unprintable_error_is_still_recorded() -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    def raise_weird(text: str, metadata: Mapping[str, Any]) -> int:
        raise Weird

    app = apply_lfs([_lf("weird", raise_weird)], ["a"])
    assert app.errors["weird"].message == "Weird: <unprintable>"


def test_custom_task_with_more_classes(clean_registry: None) -> None:
    register_task(CUSTOM_TASK, 3)

    @labeling_function(task=CUSTOM_TASK)
    def three(text: str, metadata: Mapping[str, Any]) -> int:
        return len(text)

    app = apply_lfs(registered(CUSTOM_TASK), ["", "a", "ab", "abc"])
    assert app.votes[:, 0].tolist() == [0, 1, 2, ABSTAIN]
    assert app.errors["three"].count == 1
    with pytest.raises(InvalidInput):
        register_task(CUSTOM_TASK, 1000)


# --------------------------------------------------------------------------- apply_lfs


def _lf(name: str, fn: Any) -> LabelingFunction:
    return LabelingFunction(name=name, fn=fn, description="test", task="toxicity")


def test_raising_lf_abstains_and_is_reported() -> None:
    def fragile(text: str, metadata: Mapping[str, Any]) -> int:
        if "boom" in text:
            raise ValueError(f"cannot read {text!r}")
        return 1

    texts = ["fine", "boom 1", "ok", *[f"boom {i}" for i in range(2, 10)]]
    lfs = [_lf("fragile", fragile), *registered("toxicity", ["profanity"])]
    app = apply_lfs(lfs, texts + ["what the fuck"])
    assert app.votes[:, 0].tolist() == [1, ABSTAIN, 1] + [ABSTAIN] * 8 + [1]
    assert app.votes[-1, 1] == 1  # the other LF still ran on every item
    error = app.errors["fragile"]
    assert error.count == 9
    assert error.message == "ValueError: cannot read 'boom 1'"
    assert error.item_indices == (1, 3, 4, 5, 6)
    assert "profanity" not in app.errors


@pytest.mark.parametrize(
    "returned",
    [2, -2, 1.0, 0.5, True, "1", None, [1], np.float32(1.0)],
    ids=repr,
)
def test_invalid_return_value_is_an_error_not_a_crash(returned: Any) -> None:
    app = apply_lfs([_lf("odd", lambda text, metadata: returned)], ["a", "b"])
    assert app.votes.tolist() == [[ABSTAIN], [ABSTAIN]]
    assert app.errors["odd"].count == 2
    assert app.errors["odd"].item_indices == (0, 1)
    assert app.errors["odd"].message.split(":")[0] in {"TypeError", "ValueError"}


def test_numpy_integers_are_classes() -> None:
    app = apply_lfs(
        [_lf("np", lambda text, metadata: np.int64(1) if text else np.int8(-1))], ["x", ""]
    )
    assert app.votes.tolist() == [[1], [ABSTAIN]]
    assert app.votes.dtype == np.int8
    assert app.errors == {}


def test_metadata_reaches_the_lfs_and_must_match_the_texts() -> None:
    seen: list[Mapping[str, Any]] = []

    def look(text: str, metadata: Mapping[str, Any]) -> int:
        seen.append(metadata)
        return ABSTAIN

    apply_lfs([_lf("look", look)], ["a", "b"], [{"year": 2005}, None])  # type: ignore[list-item]
    assert seen[0] == {"year": 2005} and seen[1] == {}
    apply_lfs([_lf("look", look)], ["c"])
    assert seen[2] == {}
    with pytest.raises(InvalidInput, match="metadata"):
        apply_lfs([_lf("look", look)], ["a", "b"], [{}])


def test_the_same_lf_twice_is_refused() -> None:
    (lf,) = registered("toxicity", ["shouting"])
    with pytest.raises(InvalidInput, match="shouting"):
        apply_lfs([lf, lf], ["x"])


def test_empty_inputs() -> None:
    app = apply_lfs(registered(), [])
    assert app.votes.shape == (0, len(STARTER))
    assert app.coverage() == {name: 0.0 for name in STARTER}
    assert apply_lfs([], ["a"]).votes.shape == (1, 0)


def test_non_string_text_is_an_error_of_each_lf() -> None:
    app = apply_lfs(registered(), ["you are an idiot", None])  # type: ignore[list-item]
    assert app.votes[0, STARTER.index("insult_second_person")] == 1
    assert (app.votes[1] == ABSTAIN).all()
    assert set(app.errors) == set(STARTER)
    assert all(error.item_indices == (1,) for error in app.errors.values())


def test_coverage() -> None:
    app = LfApplication(
        votes=np.array([[1, -1], [0, -1], [-1, -1], [1, 1]], dtype=np.int8), names=("a", "b")
    )
    assert app.coverage() == {"a": 0.75, "b": 0.25}


# --------------------------------------------------------------------------- lf_triplets


def test_lf_triplets_feed_the_vote_matrix() -> None:
    app = LfApplication(
        votes=np.array([[1, -1], [-1, -1], [0, 1]], dtype=np.int8), names=("a", "b")
    )
    triplets = list(lf_triplets(app, ["i1", "i2", "i3"]))
    assert triplets == [("i1", "lf:a", 1), ("i3", "lf:a", 0), ("i3", "lf:b", 1)]
    assert all(type(label) is int for _, _, label in triplets)
    matrix = VoteMatrix.from_triplets(triplets, 2, item_ids=["i1", "i2", "i3"])
    assert matrix.n_votes == 3 and matrix.n_items == 3
    assert set(matrix.voter_ids) == {"lf:a", "lf:b"}
    with pytest.raises(InvalidInput, match="item ids"):
        list(lf_triplets(app, ["i1"]))


# --------------------------------------------------------------------------- shared views


def test_text_view_tokens_and_cache() -> None:
    text = "Don’t SHOUT, it's rude!! 😠 Ещё"
    view = text_view(text)
    assert view.lower.startswith("don't shout")
    assert {"don", "t", "shout", "it", "s", "rude", "ещё"} <= view.tokens
    assert text_view(text) is view  # computed once for the text being labeled
    ascii_view = text_view("It's  A_B-c d3")
    assert ascii_view.tokens == frozenset({"it", "s", "a", "b", "c", "d3"})


def test_per_text_cache_keeps_one_entry() -> None:
    calls: list[str] = []

    @per_text_cache
    def upper(text: str) -> str:
        calls.append(text)
        return text.upper()

    first, second = "alpha", "beta"
    assert upper(first) == "ALPHA" and upper(first) == "ALPHA"
    assert upper(second) == "BETA" and upper(first) == "ALPHA"
    assert calls == ["alpha", "beta", "alpha"]


# --------------------------------------------------------------------------- starter LFs


@pytest.mark.parametrize(
    "text",
    [
        "What the fuck is this",
        "this is bullshit",
        "you absolute motherfucking clown",
        "sh1t edit",
        "what the f*ck",
        "a$$hole",
        "b!tch please",
        "fuuuuuck off",
        "F U C K this article",
        "s.h.i.t.",
        "SHIT!!!",
        "what a dick",
        "go suck a blue waffle",
    ],
)
def test_profanity_positive(text: str) -> None:
    assert vote("profanity", text) == 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Thanks for the citation.",
        "The class assignment covers Scunthorpe and Essex.",
        "Analysis of the cocktail party problem; shiitake recipes.",
        "God, what the hell happened to this article?",  # mild words are left out
        "The battle killed 300 soldiers; the murder trial followed.",
        "Dick Cheney and Philip K. Dick are both linked.",
        "Breast cancer screening and the penis article were merged.",
        "I paid $5 for it!",
        "Route 455 opened in 1955; see c++ and foo@example.org.",
        "😀😀😀",
        "Это статья о реке.",
        "هذا مقال جيد",
    ],
)
def test_profanity_negative(text: str) -> None:
    assert vote("profanity", text) == ABSTAIN


@pytest.mark.parametrize(
    "text",
    [
        "You are an idiot.",
        "you're pathetic",
        "You’re such a complete moron",
        "Shut up, you moron!",
        "your stupid",
        "go away loser",
        "ur a loser 😂",
        "Are you stupid or what?",
        "you guys are idiots",
        "You are a waste of space",
        "just shut up",
        "STFU",
        "Get a life.",
    ],
)
def test_insult_second_person_positive(text: str) -> None:
    assert vote("insult_second_person", text) == 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        "You are right, I was an idiot to revert that.",
        "You are not an idiot, the policy is confusing.",
        "The idiot box is another name for television.",
        "Don't fool yourself: you fool nobody.",
        "He told them to shut up during the debate.",
        "Your edit was reverted; please discuss on the talk page.",
        "The article on stupidity cites three sources.",
        "Вы правы",
    ],
)
def test_insult_second_person_negative(text: str) -> None:
    assert vote("insult_second_person", text) == ABSTAIN


def test_shouting() -> None:
    assert vote("shouting", "STOP DELETING MY EDITS, YOU HAVE NO RIGHT TO DO THIS") == 1
    assert vote("shouting", "WHY ARE YOU DOING THIS?? 😡 STOP REVERTING ME") == 1
    # short acronyms, short all-caps, mixed case, no letters, non-Latin script
    assert vote("shouting", "NASA and the FBI confirmed it per the USGS and NOAA.") == ABSTAIN
    assert vote("shouting", "OK THANKS") == ABSTAIN
    assert vote("shouting", "This Is Title Case But Long Enough To Count Letters") == ABSTAIN
    assert vote("shouting", "") == ABSTAIN
    assert vote("shouting", "1234 5678 !!!! ????") == ABSTAIN
    assert vote("shouting", "ЭТО ОЧЕНЬ ДЛИННЫЙ ТЕКСТ ЗАГЛАВНЫМИ БУКВАМИ") == 1
    assert vote("shouting", "هذا نص طويل بما يكفي ليحتوي على أكثر من ثلاثين حرفا") == ABSTAIN


@pytest.mark.parametrize(
    "text",
    [
        "I will kill you",
        "i'm going to find and hurt you",
        "I'll find you.",
        "You should die.",
        "you deserve to be shot",
        "I hope you get hit by a bus",
        "hope u get run over",
        "go kill yourself",
        "I know where you live",
        "We're gonna beat the shit out of you",
    ],
)
def test_threat_positive(text: str) -> None:
    assert vote("threat", text) == 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I'll find you a better source tomorrow.",
        "This policy will kill the project.",
        "Don't kill yourself over a typo.",
        "The king was killed in 1066 and his sons were hanged.",
        "It won't kill you to cite a source.",
        "I hope you get the reference you need.",
        "The film's villain says he will kill them all.",
        "I will not kill you, relax.",
        "I would never hurt you.",
    ],
)
def test_threat_negative(text: str) -> None:
    assert vote("threat", text) == ABSTAIN


@pytest.mark.parametrize(
    "text",
    [
        "Muslims are all terrorists",
        "those filthy immigrants",
        "we should deport all the immigrants",
        "death to the jews",
        "gay people are disgusting",
        "I really hate women",
        "go back to your own country",
        "that's so gay",
        "shut up, faggot",
    ],
)
def test_identity_attack_positive(text: str) -> None:
    assert vote("identity_attack", text) == 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Muslims are the second largest religious group.",
        "The article on Jewish history needs more sources.",
        "Gay marriage was legalized in 2015; see the court ruling.",
        "Black people and white people both voted in the election.",
        "Women in science is a WikiProject worth joining.",
        "Police kill black people at higher rates, the study says.",
        "Dick Van Dyke starred in the film.",
        "Support for immigrants and refugees grew in 2016.",
    ],
)
def test_identity_attack_negative(text: str) -> None:
    assert vote("identity_attack", text) == ABSTAIN


@pytest.mark.parametrize(
    "text",
    [
        "Thanks for the edit, I think the source is reliable.",
        "Per WP:NPOV, please add a citation.",
        "I agree with the proposed merge.",
        "According to the references, the date is 1912.",
    ],
)
def test_benign_discussion_positive(text: str) -> None:
    assert vote("benign_discussion", text) == 0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The river is 40 km long.",  # nothing polite or editorial: no vote either way
        "Thanks for nothing, you idiot.",
        "Please fuck off",
        "please shut up",
        "I think immigrants should be deported.",
        "Please die, I will kill you",
        "thanks a lot, asshole",
    ],
)
def test_benign_discussion_abstains(text: str) -> None:
    assert vote("benign_discussion", text) == ABSTAIN


def test_starter_set_on_tricky_texts() -> None:
    long_text = "This section needs a citation and a better source. " * 2000  # ~100 kB
    texts = [
        "",
        "😀🔥💯",
        long_text,
        long_text + " You are an idiot.",
        "Это очень хорошая статья, спасибо",
        "这是一篇好文章",
        "ok",
    ]
    app = apply_lfs(registered(), texts)
    assert app.errors == {}
    assert app.votes.shape == (len(texts), len(STARTER))
    col = {name: j for j, name in enumerate(STARTER)}
    assert (app.votes[[0, 1, 4, 5, 6]] == ABSTAIN).all()
    assert app.votes[2, col["benign_discussion"]] == 0
    assert app.votes[3, col["insult_second_person"]] == 1
    assert app.votes[3, col["benign_discussion"]] == ABSTAIN


def test_every_starter_lf_votes_only_its_class() -> None:
    texts = [
        "YOU ARE AN IDIOT AND I WILL KILL YOU, FUCKING FAGGOT",
        "Thanks, I think the source is fine.",
    ]
    app = apply_lfs(registered(), texts)
    expected_class = dict.fromkeys(STARTER, 1) | {"benign_discussion": 0}
    for j, name in enumerate(STARTER):
        assert set(app.votes[:, j].tolist()) <= {ABSTAIN, expected_class[name]}
    assert (app.votes[0, :5] == 1).all()
    assert app.votes[1].tolist() == [ABSTAIN] * 5 + [0]
