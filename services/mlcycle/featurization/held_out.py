"""Texts that must never reach a feature set: the behavioural suite's cases.

The suite measures how a model behaves on cases nobody trained or tuned it
on; a case that slipped into a label run would be learned and the suite would
flatter the model. Feature sets are built here and nowhere else, so the guard
is here: an item whose normalised text equals a held-out text is left out
(and counted in the set's manifest), and so is it from the texts a transform
is fitted on.

Normalising is case folding and whitespace collapsing: a copy that differs
only in capitals or spacing is the same case to a reader, and to a model that
lowercases. Spelling variants ("1d10t") are distinct cases on purpose.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def normalise_text(text: str) -> str:
    """``text`` case-folded, with runs of whitespace made one space and the ends stripped."""
    return " ".join(text.casefold().split())


class HeldOutTexts:
    """A set of normalised texts; ``text in held_out`` normalises ``text`` first."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self._texts = frozenset(normalise_text(t) for t in texts)

    def __contains__(self, text: object) -> bool:
        # Nothing held out costs nothing: no text is normalised.
        return bool(self._texts) and isinstance(text, str) and normalise_text(text) in self._texts

    def __len__(self) -> int:
        return len(self._texts)

    def __bool__(self) -> bool:
        return bool(self._texts)

    @property
    def digest(self) -> str:
        """sha256 of the sorted normalised texts: which texts were held out."""
        h = hashlib.sha256()
        for text in sorted(self._texts):
            h.update(text.encode("utf-8"))
            h.update(b"\n")
        return h.hexdigest()


NOTHING_HELD_OUT = HeldOutTexts()
