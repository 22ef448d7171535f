"""A comment's text cut into pieces, the words that drove the model's score marked.

Spans come from the inference service (``begin``/``end`` in characters of the text as
sent). Pieces are escaped by the template, never here; overlapping or out-of-range spans
(a text changed since it was scored) are dropped rather than trusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mlcycle.contracts.explanations import Span

# Words whose share of the score is below this are not worth a highlight.
MIN_SHARE = 0.02


@dataclass(frozen=True)
class TextPiece:
    """A run of text; ``score`` is set for a highlighted word (positive: towards the class)."""

    text: str
    score: float | None = None

    @property
    def towards(self) -> bool:
        return self.score is not None and self.score > 0


def highlighted(text: str, spans: Sequence[Span], min_share: float = MIN_SHARE) -> list[TextPiece]:
    """``text`` as plain and highlighted pieces, in order, that join back into ``text``."""
    pieces: list[TextPiece] = []
    at = 0
    for span in sorted(spans, key=lambda s: s.begin):
        if abs(span.score) < min_share or span.begin < at or span.end > len(text):
            continue
        if span.end <= span.begin or text[span.begin : span.end] != span.text:
            continue
        if span.begin > at:
            pieces.append(TextPiece(text[at : span.begin]))
        pieces.append(TextPiece(text[span.begin : span.end], round(span.score, 3)))
        at = span.end
    if at < len(text) or not pieces:
        pieces.append(TextPiece(text[at:]))
    return pieces
