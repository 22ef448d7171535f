"""Trigger-gated regular expressions: the matching machinery of the toxicity detectors.

A :class:`Rule` is a regular expression searched only in texts that contain one
of its trigger words, so a text without any costs one set operation against
its token set (see :mod:`mlcycle.labeler.text_views`). A :class:`RuleSet` is
the rules that make one detector.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mlcycle.labeler.text_views import text_view


def alternation(words: Iterable[str]) -> str:
    """A regex alternation of literal words, longest first so that prefixes do not win."""
    return "|".join(
        re.escape(w).replace(r"\ ", r"\s+") for w in sorted(words, key=len, reverse=True)
    )


def phrases(text: str) -> tuple[str, ...]:
    """Phrases written one after the other, separated by '|'."""
    return tuple(phrase.strip() for phrase in text.split("|") if phrase.strip())


def word_forms(words: Iterable[str]) -> frozenset[str]:
    """The words with their plural forms, as tokens (for trigger sets)."""
    return frozenset(f for w in words for f in (w, w + "s", w + "es"))


@dataclass(frozen=True)
class Rule:
    """A regular expression searched only in texts that have one of its trigger words.

    Every match of ``pattern`` contains a trigger word, so a text without any is
    skipped at the cost of one set operation. ``direct`` rules ignore matches
    that are reported or negated ("told him to shut up", "don't kill yourself").
    """

    triggers: frozenset[str]
    pattern: re.Pattern[str]
    direct: bool = False


# A match preceded by these is reported or negated speech, not said to the reader.
_REPORTED = re.compile(r"(?:\bto|\bnot|n't|\bt|\bnever|\bwould|\bdon't|\bdont)\s+$")


def rule(triggers: Iterable[str], pattern: str, *, direct: bool = False) -> Rule:
    return Rule(frozenset(triggers), re.compile(pattern), direct)


class RuleSet:
    """Rules that make one detector; a text with none of their trigger words costs one test."""

    def __init__(self, *rules: Rule) -> None:
        self.rules = rules
        self.triggers = frozenset().union(*(rule.triggers for rule in rules))

    def matches(self, text: str) -> bool:
        """Whether one of the rules matches ``text``."""
        view = text_view(text)
        tokens = view.tokens
        if self.triggers.isdisjoint(tokens):
            return False
        for rule in self.rules:
            if rule.triggers.isdisjoint(tokens):
                continue
            if not rule.direct:
                if rule.pattern.search(view.lower) is not None:
                    return True
                continue
            for match in rule.pattern.finditer(view.lower):
                start = match.start()
                if _REPORTED.search(view.lower, max(0, start - 8), start) is None:
                    return True
        return False
