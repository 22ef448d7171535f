"""Views of a text that several labeling functions share, computed once per text.

:func:`~mlcycle.labeler.lfs.apply_lfs` runs every LF on one text before moving
to the next, so a view memoized for the most recent text (:func:`per_text_cache`)
is computed once per text while each LF stays an ordinary function of
``(text, metadata)``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


def per_text_cache(compute: Callable[[str], T]) -> Callable[[str], T]:
    """Memoize ``compute(text)`` for the most recent text (compared by identity).

    :func:`apply_lfs` runs all LFs on one text before the next, so a view
    several LFs need (a lower-cased copy, a token set) is computed once per
    text. The cache holds one entry, replaced atomically, so it is safe to
    share between threads and never grows.
    """
    last: list[tuple[str, T] | None] = [None]

    @functools.wraps(compute)
    def cached(text: str) -> T:
        entry = last[0]
        if entry is not None and entry[0] is text:
            return entry[1]
        value = compute(text)
        last[0] = (text, value)
        return value

    return cached


_TOKEN = re.compile(r"[^\W_]+")
# ASCII texts (nearly all) are tokenized with two C loops instead of a regex: one
# bytes.translate lower-cases letters and blanks everything but letters and digits, then
# split. About twice as fast as findall, and the same tokens.
_ASCII_FOLD = bytes(
    b + 32 if 65 <= b <= 90 else b if (48 <= b <= 57 or 97 <= b <= 122) else 32 for b in range(256)
)


@dataclass(frozen=True, slots=True)
class TextView:
    """Views of one text most LFs need: lower-cased, and its set of lower-case word tokens.

    Tokens are maximal runs of letters and digits (so "don't" gives "don" and
    "t"); curly apostrophes are straightened in ``lower`` so that one pattern
    serves both spellings.
    """

    text: str
    lower: str
    tokens: frozenset[str]


@per_text_cache
def text_view(text: str) -> TextView:
    """The :class:`TextView` of ``text``, computed once for all LFs applied to it."""
    if text.isascii():
        folded = text.encode("ascii").translate(_ASCII_FOLD).decode("ascii")
        return TextView(text, text.lower(), frozenset(folded.split()))
    lower = text.lower().replace("\u2019", "'")
    return TextView(text, lower, frozenset(_TOKEN.findall(lower)))
