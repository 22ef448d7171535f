"""``mlcycle predict --explain``'s colouring of the words by their share of the score."""

from __future__ import annotations

from mlcycle.cli.serving import FULL_COLOUR_SHARE, coloured_words
from mlcycle.contracts.explanations import Span

TEXT = "you are an idiot, thanks"


def span(begin: int, end: int, score: float) -> Span:
    return Span(begin=begin, end=end, text=TEXT[begin:end], score=score)


def test_words_are_red_when_they_raise_the_score_green_when_they_lower_it() -> None:
    shown = coloured_words(
        TEXT,
        [
            span(0, 3, 0.001),  # hardly counts: stays plain
            span(11, 16, FULL_COLOUR_SHARE * 2),  # idiot: full red, bold
            span(18, 24, -FULL_COLOUR_SHARE / 4),  # thanks: a dim green
        ],
    )
    assert shown.plain == TEXT
    styles = {(s.start, s.end): str(s.style) for s in shown.spans}
    assert styles == {(11, 16): "bold rgb(255,0,0)", (18, 24): "rgb(0,135,0)"}
