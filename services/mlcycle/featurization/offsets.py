"""The featurizer's text clean-up, one text at a time, with every character traced to its source.

An explanation names words of the text *as the caller sent it*, while the
model only ever saw the cleaned text of :mod:`mlcycle.featurization.preprocess`.
:func:`clean_with_offsets` re-runs that clean-up's steps 1-10 in the same order,
with the same expressions and tables, carrying for each character of the text
so far the ``[begin, end)`` span of the original it came from:

- a character kept (or only changed: lower case, a space for punctuation)
  keeps its span;
- an expansion maps every produced character to its whole source: ``&amp;`` ->
  ``&``, ``é`` -> ``e``, an emoji -> ``:grinning:``, a URL -> ``__URL__``;
- an NFKC composition maps to the run it composed (the text is cut into the
  shortest runs that normalize independently; if that cut ever disagreed with
  normalizing the whole text, the whole text would be one run: coarser, never
  wrong);
- a character dropped (a format character, the ``#`` of a hashtag, a
  collapsed space, a removed mention or URL) maps nowhere; a removed
  mention, URL or hashtag is listed in ``Aligned.removed``.

Invariants of an :class:`Aligned`:

- ``cleaned`` equals what the batched path gives the same text
  (``preprocess(original, config)[0]``, or its row of ``clean_batch``);
- one span per cleaned character, each non-empty and inside the original's
  first ``max_chars`` characters (the clean-up never reads past them);
- begins and ends both never decrease along ``cleaned``.

:func:`word_spans` splits ``cleaned`` where the n-gram hashing does
(:func:`mlcycle.featurization.hashing.words`), and gives each word the union of
its characters' spans: word spans never decrease, in begin or in end. A word
is *exact* when its span overlaps no other word's span and neither overlaps
nor touches one of ``Aligned.removed`` (the URLs, mentions and hashtags the
clean-up removed, whose expressions read the character before them):
then cleaning ``original[begin:end]`` on its own gives back exactly the word
(a URL's span gives ``__URL__``). A word is not exact only when one source
character or run produced characters of it and of something else (``½`` ->
``1/2`` makes two words of one character, ``#½`` with hashtags removed keeps
the ``2`` of a removed ``#1``), or when lower case made a capital sigma final
from beyond the word (``A\u200bΣ``, without transliteration); its span still
covers all of its source. :attr:`WordSpan.exact` says which.

Why a separate path: the batched clean-up forgets where characters came from, which
makes it fast; this one walks one text, slower, only when an explanation is asked for.
Tests hold the two to the same output.
"""

from __future__ import annotations

import html
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from html.entities import html5
from itertools import accumulate, pairwise

import numpy as np
from anyascii import anyascii

from mlcycle.featurization.config import PreprocessConfig
from mlcycle.featurization.hashing import words
from mlcycle.featurization.preprocess import (
    FORMAT_RE,
    HASHTAG_RE,
    HASHTAG_REMOVE_RE,
    KIND_BLANK,
    KIND_LETTER,
    MENTION_RE,
    SEP,
    SPACE,
    URL_HINT_RE,
    URL_MARK,
    URL_RE,
    URL_TOKEN,
    Cleaned,
    ascii_table,
    code_point_kinds,
)

# html.unescape's own expression (CPython's html._charref, copied rather than read from a
# private name): a "&" and what may follow it. Tests hold the edits to html.unescape.
_CHARREF_RE = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
_SPACES_RE = re.compile(" +")


@dataclass(frozen=True)
class Aligned:
    """A cleaned text and, per cleaned character, the span of ``original`` it came from."""

    original: str  # the text as the caller sent it
    cleaned: str  # equal to the batched path's output for ``original``
    begins: tuple[int, ...]  # begins[i]: first original character behind cleaned[i]
    ends: tuple[int, ...]  # ends[i]: one past the last; original[begins[i]:ends[i]]
    removed: tuple[tuple[int, int], ...]  # original spans of URLs, mentions, hashtags removed
    truncated: bool  # the original was longer than max_chars
    config: PreprocessConfig  # the clean-up it went through

    def span(self, start: int, stop: int) -> tuple[int, int]:
        """The original span behind ``cleaned[start:stop]`` (non-empty)."""
        if not 0 <= start < stop <= len(self.cleaned):
            raise ValueError(f"not a non-empty range of the cleaned text: [{start}, {stop})")
        return self.begins[start], self.ends[stop - 1]


@dataclass(frozen=True)
class WordSpan:
    """One word the n-gram features are built from, and where it is in the original text."""

    index: int  # position among the text's words (the featurizer's order)
    word: str  # the cleaned word, as hashed
    begin: int  # into the original text
    end: int  # exclusive
    text: str  # original[begin:end]
    exact: bool  # its span is its own: cleaning ``text`` alone gives back ``word``
    start: int  # into Aligned.cleaned: cleaned[start:stop] == word
    stop: int  # exclusive


@dataclass(frozen=True)
class _Text:
    """The text between two steps: its characters and their original spans (same length)."""

    text: str
    begins: list[int]
    ends: list[int]


Edit = tuple[int, int, str]  # replace text[start:stop] with the string


def _apply(cur: _Text, edits: Iterable[Edit]) -> _Text:
    """Apply ordered, non-overlapping edits; replaced characters take the run's whole span."""
    parts: list[str] = []
    begins: list[int] = []
    ends: list[int] = []
    pos = 0
    for start, stop, replacement in edits:
        parts.append(cur.text[pos:start])
        begins += cur.begins[pos:start]
        ends += cur.ends[pos:start]
        if replacement:
            parts.append(replacement)
            begins += [cur.begins[start]] * len(replacement)
            ends += [cur.ends[stop - 1]] * len(replacement)
        pos = stop
    if pos == 0:
        return cur
    parts.append(cur.text[pos:])
    begins += cur.begins[pos:]
    ends += cur.ends[pos:]
    return _Text("".join(parts), begins, ends)


def clean_with_offsets(text: str, config: PreprocessConfig | None = None) -> Aligned:
    """Clean ``text`` exactly as the featurizer does, tracing each character to its source."""
    config = config or PreprocessConfig()
    truncated = len(text) > config.max_chars
    kept = text[: config.max_chars]
    cur = _Text(kept, list(range(len(kept))), list(range(1, len(kept) + 1)))
    # Steps 2-5, per text (preprocess._clean_one).
    if config.html_unescape and "&" in cur.text:
        cur = _apply(cur, _unescape_edits(cur.text))
    if not cur.text.isascii():
        if config.normalize == "NFKC":
            cur = _apply(cur, _nfkc_edits(cur.text))
        if config.strip_invisible:
            cur = _apply(cur, ((m.start(), m.end(), "") for m in FORMAT_RE.finditer(cur.text)))
        if config.transliterate:
            cur = _apply(cur, _transliterate_edits(cur.text))
    # Steps 6-10, as clean_batch runs them on a batch holding only this text.
    cur = _apply(cur, _char_edits(cur.text, {"\n": " ", URL_MARK: " "}))
    removed: list[tuple[int, int]] = []
    if config.urls != "keep" and (URL_HINT_RE.search(cur.text) or "://" in cur.text):
        if config.urls == "token":
            found = URL_RE.finditer(cur.text)
            cur = _apply(cur, ((m.start(), m.end(), f" {URL_MARK} ") for m in found))
        else:
            cur = _remove(cur, URL_RE.finditer(cur.text), removed)
    if config.mentions == "remove" and "@" in cur.text:
        cur = _remove(cur, MENTION_RE.finditer(cur.text), removed)
    if config.hashtags == "word" and "#" in cur.text:
        cur = _apply(cur, ((m.start(), m.start() + 1, "") for m in HASHTAG_RE.finditer(cur.text)))
    elif config.hashtags == "remove" and "#" in cur.text:
        cur = _remove(cur, HASHTAG_REMOVE_RE.finditer(cur.text), removed)
    if config.lowercase and not cur.text.isascii():
        cur = _apply(cur, _lower_edits(cur.text))
    cur = _apply(cur, _filter_edits(cur.text, config))
    cur = _apply(cur, _collapse_edits(cur.text))
    return Aligned(
        original=text,
        cleaned=cur.text,
        begins=tuple(cur.begins),
        ends=tuple(cur.ends),
        removed=tuple(sorted(removed)),
        truncated=truncated,
        config=config,
    )


def _remove(cur: _Text, matches: Iterable[re.Match[str]], removed: list[tuple[int, int]]) -> _Text:
    """Replace each match by a space, noting the original span it removed."""
    edits = [(m.start(), m.end(), " ") for m in matches]
    removed += ((cur.begins[start], cur.ends[stop - 1]) for start, stop, _ in edits)
    return _apply(cur, edits)


def word_spans(aligned: Aligned) -> list[WordSpan]:
    """The words of ``aligned.cleaned``, split as the n-gram hashing splits them, with spans.

    Linear in the words and the removed spans: an explanation of a long comment
    full of mentions must not cost their product.
    """
    cleaned = aligned.cleaned
    codes = np.frombuffer(f"\n{cleaned}\n".encode("utf-32-le"), np.uint32)
    batch = Cleaned(codes, np.flatnonzero(codes == SEP), np.zeros(1, bool))
    found = words(batch)
    # Positions count the leading separator: cleaned index = code index - 1.
    starts = (found.starts - 1).tolist()
    stops = (found.ends - 1).tolist()
    begins = [aligned.begins[start] for start in starts]
    ends = [aligned.ends[stop - 1] for stop in stops]
    # The removed spans are sorted by begin; with the running maximum of their ends,
    # whether any of those beginning by a word's end reaches back to its begin is a
    # bisection.
    removed_begins = [b for b, _ in aligned.removed]
    reach = list(accumulate((e for _, e in aligned.removed), max))
    last = len(starts) - 1
    spans = []
    for index, (start, stop, begin, end) in enumerate(
        zip(starts, stops, begins, ends, strict=True)
    ):
        # Spans never decrease, so a word overlapping any other overlaps a neighbour.
        shared = (index > 0 and begin < ends[index - 1] and begins[index - 1] < end) or (
            index < last and begins[index + 1] < end and begin < ends[index + 1]
        )
        if not shared and reach:
            # A removed mention next to the word counts too: the expressions that find
            # mentions, hashtags and URLs look at the character before them.
            before = bisect_right(removed_begins, end)
            shared = before > 0 and reach[before - 1] >= begin
        word = cleaned[start:stop]
        text = aligned.original[begin:end]
        if not shared and "ς" in word:
            # Lower case reads a capital sigma's neighbours, across what becomes a space.
            shared = clean_with_offsets(text, aligned.config).cleaned != word
        spans.append(
            WordSpan(
                index=index,
                word=word,
                begin=begin,
                end=end,
                text=text,
                exact=not shared,
                start=start,
                stop=stop,
            )
        )
    return spans


def _unescape_edits(text: str) -> list[Edit]:
    """html.unescape as edits: each character reference, replaced by what it stands for.

    A name without ``;`` that is not an entity stands for its longest entity
    prefix followed by the rest (``&amplified`` -> ``&lified``): only the prefix
    is replaced, so the rest keeps its own spans.
    """
    edits = []
    for match in _CHARREF_RE.finditer(text):
        name = match.group(1)
        if name[0] == "#" or name in html5:
            edits.append((match.start(), match.end(), html.unescape(match.group(0))))
            continue
        for x in range(len(name) - 1, 1, -1):
            if name[:x] in html5:
                edits.append((match.start(), match.start() + 1 + x, html5[name[:x]]))
                break
    return edits


def _nfkc_edits(text: str) -> list[Edit]:
    """NFKC as edits over the shortest runs that normalize on their own.

    A run may end before a character that is a starter, whose normalized form
    begins with a starter, and that does not compose with the run before it:
    nothing after such a character can reorder or compose across it.
    """
    if unicodedata.is_normalized("NFKC", text):  # most text: nothing to do, found in C
        return []
    normalize = unicodedata.normalize
    cuts = [0]
    start = 0
    for j in range(1, len(text)):
        char = text[j]
        if char.isascii() and text[j - 1].isascii():
            cuts.append(j)
            start = j
            continue
        if unicodedata.combining(char):
            continue
        alone = normalize("NFKC", char)
        if unicodedata.combining(alone[0]):
            continue
        if normalize("NFKC", text[start : j + 1]) != normalize("NFKC", text[start:j]) + alone:
            continue
        cuts.append(j)
        start = j
    cuts.append(len(text))
    edits = []
    pieces = []
    for a, b in pairwise(cuts):
        run = text[a:b]
        normal = normalize("NFKC", run)
        pieces.append(normal)
        if normal != run:
            edits.append((a, b, normal))
    whole = normalize("NFKC", text)
    if "".join(pieces) != whole:
        return [(0, len(text), whole)] if text else []
    return edits


def _transliterate_edits(text: str) -> list[Edit]:
    """anyascii as edits: it transliterates one code point at a time."""
    return [(i, i + 1, anyascii(c)) for i, c in enumerate(text) if not c.isascii()]


def _char_edits(text: str, replacements: dict[str, str]) -> list[Edit]:
    """Single characters replaced by single characters."""
    return [(i, i + 1, replacements[c]) for i, c in enumerate(text) if c in replacements]


def _lower_edits(text: str) -> list[Edit]:
    """``str.lower`` as edits, character by character.

    The whole text's lower case is the reference (the final sigma depends on
    its neighbours); each character takes as many characters of it as its own
    lower case has, which is the same count in or out of context.
    """
    lowered = text.lower()
    edits = []
    at = 0
    for i, char in enumerate(text):
        size = len(char.lower())
        piece = lowered[at : at + size]
        if piece != char:
            edits.append((i, i + 1, piece))
        at += size
    if at != len(lowered):
        return [(0, len(text), lowered)] if text else []
    return edits


def _filter_edits(text: str, config: PreprocessConfig) -> list[Edit]:
    """Step 9 (preprocess._filter): the ASCII table, the code-point kinds, the URL token."""
    table = ascii_table(config)
    if text.isascii():  # most comments: one table lookup over the whole text
        codes = np.frombuffer(text.encode("ascii"), np.uint8)
        out = np.frombuffer(table, np.uint8)[codes]
        marks = codes == ord(URL_MARK) if config.urls == "token" else np.zeros_like(codes, bool)
        edited = np.flatnonzero((out != codes) | marks)
        found = zip(edited.tolist(), out[edited].tolist(), marks[edited].tolist(), strict=True)
        return [(i, i + 1, URL_TOKEN if mark else chr(code)) for i, code, mark in found]
    kinds = None if text.isascii() else code_point_kinds()
    mark = ord(URL_MARK)
    edits = []
    for i, char in enumerate(text):
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:  # a lone surrogate: utf-32 "replace" makes it "?"
            code = ord("?")
        if code < 128:
            out = table[code]
            if out == mark and config.urls == "token":
                edits.append((i, i + 1, URL_TOKEN))
                continue
        else:
            assert kinds is not None
            kind = kinds[code]
            blank = kind != KIND_LETTER if config.alnum_only else kind == KIND_BLANK
            out = SPACE if blank else code
        if out != ord(char):
            edits.append((i, i + 1, chr(out)))
    return edits


def _collapse_edits(text: str) -> list[Edit]:
    """Step 10 (preprocess._collapse_spaces): one space between words, none at either end."""
    edits = []
    for run in _SPACES_RE.finditer(text):
        i, j = run.span()
        if i == 0 or j == len(text):
            edits.append((i, j, ""))
        elif j > i + 1:
            edits.append((i + 1, j, ""))
    return edits
