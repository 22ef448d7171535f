"""The starter labeling functions of the ``toxicity`` task (1 = toxic, 0 = not toxic).

Each LF votes only on a strong signal and abstains otherwise: precision over
recall, because the label model learns how far to trust an LF from its
agreements, and a noisy LF costs more than a silent one.

Speed comes from doing little per text. Every LF reads one shared view of the
text (lower-cased copy and token set, computed once per text through
:func:`~mlcycle.labeler.text_views.per_text_cache`); a pattern LF first asks
whether any of its trigger words is among the tokens (a set operation) and runs
its regular expression, compiled at import, only on the few texts that pass.
The detectors are in :mod:`~mlcycle.labeler.profanity` and
:mod:`~mlcycle.labeler.toxicity_patterns`; importing this module registers the
functions for the task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlcycle.labeler.lf_registry import labeling_function
from mlcycle.labeler.profanity import contains_profanity
from mlcycle.labeler.toxicity_patterns import (
    SHOUTING_MIN_LETTERS,
    SHOUTING_MIN_UPPER_SHARE,
    is_identity_attack,
    is_insult,
    is_threat,
    letter_case,
    reads_as_benign,
)
from mlcycle.labeler.votes import ABSTAIN

TASK = "toxicity"
TOXIC = 1
NOT_TOXIC = 0


@labeling_function(description="A profanity-lexicon word (better-profanity), also obfuscated.")
def profanity(text: str, metadata: Mapping[str, Any]) -> int:
    """Toxic when a profanity-lexicon word occurs as a token ('sh1t', 'f*ck' included)."""
    return TOXIC if contains_profanity(text) else ABSTAIN


@labeling_function(description="An insult aimed at the reader: 'you are an idiot', 'shut up'.")
def insult_second_person(text: str, metadata: Mapping[str, Any]) -> int:
    """Toxic when an insult is addressed to a second person."""
    return TOXIC if is_insult(text) else ABSTAIN


@labeling_function(description="Mostly capital letters over enough letters (not acronyms).")
def shouting(text: str, metadata: Mapping[str, Any]) -> int:
    """Toxic when most letters of a long enough text are capitals."""
    letters, upper = letter_case(text)
    if letters >= SHOUTING_MIN_LETTERS and upper >= SHOUTING_MIN_UPPER_SHARE * letters:
        return TOXIC
    return ABSTAIN


@labeling_function(description="A threat of violence: 'I will kill you', 'you should die'.")
def threat(text: str, metadata: Mapping[str, Any]) -> int:
    """Toxic when the text threatens or wishes violence on someone."""
    return TOXIC if is_threat(text) else ABSTAIN


@labeling_function(description="An identity term (religion, ethnicity, sexuality, gender, "
                   "disability) in a hostile pattern, or a slur.")  # fmt: skip
def identity_attack(text: str, metadata: Mapping[str, Any]) -> int:
    """Toxic when an identity group is attacked (a slur or hostility), not merely mentioned."""
    return TOXIC if is_identity_attack(text) else ABSTAIN


@labeling_function(description="Polite or editorial discussion (thanks, sources, 'I think') "
                   "without profanity, insults, threats or identity attacks.")  # fmt: skip
def benign_discussion(text: str, metadata: Mapping[str, Any]) -> int:
    """Not toxic when the text reads as polite or editorial discussion and nothing hostile."""
    return NOT_TOXIC if reads_as_benign(text) else ABSTAIN


# The names of the starter set, in registration order.
STARTER = (
    "profanity",
    "insult_second_person",
    "shouting",
    "threat",
    "identity_attack",
    "benign_discussion",
)
