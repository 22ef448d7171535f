"""Text clean-up before n-grams: the original talk's steps plus what real comments need.

Steps, each switchable in :class:`~mlcycle.featurization.config.PreprocessConfig`,
in this order:

1. truncate to ``max_chars`` (first, so a huge comment costs no more than that);
2. HTML entities unescaped (``&amp;`` -> ``&``; tweets are published escaped);
3. Unicode NFKC (full-width letters, ligatures, super-scripts to plain forms);
4. zero-width and other format characters (bidi marks, soft hyphen, BOM)
   dropped, so ``i\\u200bdiot`` is ``idiot``;
5. transliteration with anyascii (``é`` -> ``e``, ``Привет`` -> ``Privet``,
   emoji -> ``:grinning:``); off for corpora whose script carries the meaning;
6. URLs (``http(s)://``, ``ftp://``, ``www.``, e-mail addresses, bare
   ``domain.tld/...`` for common TLDs) -> ``__URL__``;
7. ``@mentions`` removed, ``#hashtag`` -> ``hashtag``;
8. lower case (the ``__URL__`` token keeps its case);
9. letters and digits only, any other run -> one space. Without
   transliteration, combining marks (Arabic harakat, Devanagari vowel signs)
   are kept inside words rather than splitting them;
10. spaces collapsed and trimmed. Control characters (newlines, tabs) always
    end up as spaces (with ``strip_invisible`` or ``alnum_only``; a newline always).

Steps 1-5 run per text, and only where needed (``str.isascii`` is O(1), and
most comments are ASCII). Steps 6-10 run on the whole batch at once: the texts
joined by newlines, one regular expression pass for each of mentions and
hashtags, the URL expression only on texts that contain a hint of one, and the
character filter as a table lookup (``bytes.translate`` for ASCII, a numpy
table over all code points otherwise). The result is one code-point array,
``\\n`` + text 0 + ``\\n`` + text 1 + ... + ``\\n``, which the hashing reads directly.

Besides the clean-up itself, the module's public names are the pieces it is
made of, for :mod:`mlcycle.featurization.offsets`, which re-runs the same steps
on one text while tracing each character to its source and must not drift from
them: the expressions (:data:`FORMAT_RE`, :data:`URL_RE`, :data:`URL_HINT_RE`,
:data:`MENTION_RE`, :data:`HASHTAG_RE`, :data:`HASHTAG_REMOVE_RE`), the mark
that stands for the URL token (:data:`URL_MARK`), and the character filter's
tables (:func:`ascii_table`, :func:`code_point_kinds` with its ``KIND_*`` values).
"""

from __future__ import annotations

import html
import re
import sys
import unicodedata
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from itertools import accumulate

import numpy as np
from anyascii import anyascii
from numba import njit

from mlcycle.featurization.config import PreprocessConfig

URL_TOKEN = "__URL__"
SEP = 10  # "\n": between texts, and around the first and last
SPACE = 32
# Stands for the URL token until the character filter has run (which would split
# "__URL__" and lower-case it). Any occurrence in the input becomes a space first.
URL_MARK = "\x01"

# Format characters (Unicode category Cf). Fixed here rather than derived from
# unicodedata so the output does not move with the Python build; a unit test
# checks the list still covers every Cf character.
_FORMAT_CHARS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f"
)
FORMAT_RE = re.compile(f"[{_FORMAT_CHARS}]+")

_TLDS = "com|org|net|edu|gov|io|co|uk|de|fr|ru|info|biz|ly|me|tv|us|ca|au|jp|in|es|it|nl|gl"
URL_RE = re.compile(
    r"\b(?:https?|ftp)://[^\s<>\"]+"
    r"|\bwww\.[^\s<>\"]+"
    rf"|(?:[\w.+-]+@)?\b(?:[a-z0-9-]+\.)+(?:{_TLDS})\b(?:/[^\s<>\"]*)?",
    re.IGNORECASE,
)
# Every URL the expression above matches contains "://" or one of these; cheap to
# scan for (the pattern starts with a literal), so the full expression only runs
# on the few texts that have a hint.
URL_HINT_RE = re.compile(r"\.(?:[a-zA-Z]{2,4}\b|(?<=[wW]{3}\.))")
# Start with the literal so the scan skips to each "@"/"#"; the look-behind then
# rejects e-mail-like "name@host" and "c#sharp".
MENTION_RE = re.compile(r"@(?<!\w@)\w+")
HASHTAG_RE = re.compile(r"#(?<!\w#)(\w+)")
HASHTAG_REMOVE_RE = re.compile(r"#(?<!\w#)\w+")


@dataclass(frozen=True)
class Cleaned:
    """A pre-processed batch: ``codes`` is ``\\n`` + text 0 + ``\\n`` + ... + ``\\n``."""

    codes: np.ndarray  # uint8 when every text is ASCII, else uint32 code points
    seps: np.ndarray  # int64 positions of the n + 1 separators
    truncated: np.ndarray  # bool (n,)

    def texts(self) -> list[str]:
        """The pre-processed texts as strings."""
        if self.codes.dtype == np.uint8:
            joined = self.codes.tobytes().decode("ascii")
        else:
            joined = self.codes.astype(np.uint32).tobytes().decode("utf-32-le")
        return joined[1:-1].split("\n") if len(self.seps) > 1 else []


def _clean_one(text: str, config: PreprocessConfig) -> str:
    """Steps 2-5, which depend on the text's own characters."""
    if config.html_unescape and "&" in text:
        text = html.unescape(text)
    if text.isascii():
        return text
    if config.normalize == "NFKC":
        text = unicodedata.normalize("NFKC", text)
    if config.strip_invisible:
        text = FORMAT_RE.sub("", text)
    if config.transliterate:
        text = anyascii(text)
    return text


def clean_batch(texts: Sequence[str], config: PreprocessConfig) -> Cleaned:
    """Pre-process ``texts`` into one code array (see :class:`Cleaned`)."""
    limit = config.max_chars
    truncated = np.fromiter((len(t) > limit for t in texts), dtype=bool, count=len(texts))
    if len(texts) == 0:
        return Cleaned(np.full(1, SEP, np.uint8), np.zeros(1, np.int64), truncated)
    cleaned = [_clean_one(t if len(t) <= limit else t[:limit], config) for t in texts]
    joined = "\n".join(cleaned)
    if joined.count("\n") != len(cleaned) - 1:
        # A text's own newlines would read as text boundaries.
        joined = "\n".join(t.replace("\n", " ") for t in cleaned)
    if URL_MARK in joined:
        joined = joined.replace(URL_MARK, " ")
    if config.urls != "keep":
        joined = _replace_urls(joined, cleaned, f" {URL_MARK} " if config.urls == "token" else " ")
    if config.mentions == "remove" and "@" in joined:
        joined = MENTION_RE.sub(" ", joined)
    if config.hashtags != "keep" and "#" in joined:
        if config.hashtags == "word":
            joined = HASHTAG_RE.sub(r"\1", joined)
        else:
            joined = HASHTAG_REMOVE_RE.sub(" ", joined)
    codes = _filter("\n" + joined + "\n", config)
    codes = _collapse_spaces(codes)
    seps = np.flatnonzero(codes == SEP)
    return Cleaned(codes=codes, seps=seps, truncated=truncated)


def _replace_urls(joined: str, texts: list[str], replacement: str) -> str:
    """Run the URL expression on the texts of ``joined`` that hint at a URL."""
    hints = [m.start() for m in URL_HINT_RE.finditer(joined)]
    at = joined.find("://")
    while at >= 0:
        hints.append(at)
        at = joined.find("://", at + 3)
    if not hints:
        return joined
    # Text i spans [starts[i], starts[i + 1] - 1) in joined.
    starts = [0, *accumulate(len(t) + 1 for t in texts)]
    rows = joined.split("\n")
    for row in sorted({bisect_right(starts, h) - 1 for h in hints}):
        rows[row] = URL_RE.sub(replacement, rows[row])
    return "\n".join(rows)


def _filter(joined: str, config: PreprocessConfig) -> np.ndarray:
    """Lower-case, keep letters and digits (or squash whitespace), restore the URL token."""
    if joined.isascii():
        data = joined.encode("ascii").translate(ascii_table(config))
        if config.urls == "token":
            data = data.replace(URL_MARK.encode(), URL_TOKEN.encode())
        return np.frombuffer(data, np.uint8)
    if config.lowercase:
        joined = joined.lower()
    # "replace": a lone surrogate (possible in a Python str) becomes "?", then a space.
    codes = np.frombuffer(joined.encode("utf-32-le", "replace"), np.uint32)
    small = codes < 128
    table = np.frombuffer(ascii_table(config), np.uint8)
    out = np.where(small, table[np.minimum(codes, 127)], codes).astype(np.uint32)
    kinds = code_point_kinds()[codes]
    if config.alnum_only:
        out[~small & (kinds != KIND_LETTER)] = SPACE
    else:
        out[~small & (kinds == KIND_BLANK)] = SPACE
    if config.urls == "token" and np.any(out == ord(URL_MARK)):
        text = out.tobytes().decode("utf-32-le").replace(URL_MARK, URL_TOKEN)
        out = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    return out


@cache
def ascii_table(config: PreprocessConfig) -> bytes:
    """The character filter's ``bytes.translate`` table for ASCII text under ``config``.

    Separators and :data:`URL_MARK` map to themselves; what the filter drops maps to a space.
    """
    table = bytearray(range(256))
    for code in range(256):
        char = chr(code)
        if config.lowercase and "A" <= char <= "Z":
            table[code] = code + 32
        if config.alnum_only and not (char.isascii() and char.isalnum()):
            table[code] = SPACE
        elif (config.strip_invisible or config.alnum_only) and (code < 32 or code == 127):
            table[code] = SPACE
        elif char.isspace():
            table[code] = SPACE
    table[SEP] = SEP
    table[ord(URL_MARK)] = ord(URL_MARK)
    return bytes(table)


# What code_point_kinds says of a code point: the filter keeps a letter, blanks a
# blank, and blanks an other only with alnum_only.
KIND_OTHER, KIND_LETTER, KIND_BLANK = 0, 1, 2


@cache
def code_point_kinds() -> np.ndarray:
    """Per code point: ``KIND_LETTER`` (letter, digit or combining mark), ``KIND_BLANK``
    (whitespace, control or format character) or ``KIND_OTHER``; the filter's table for
    non-ASCII text. Built once (~0.3 s), read-only.
    """
    kinds = np.zeros(sys.maxunicode + 1, np.uint8)
    for code in range(128, sys.maxunicode + 1):
        char = chr(code)
        if char.isalnum() or unicodedata.category(char)[0] == "M":
            kinds[code] = KIND_LETTER
        elif char.isspace() or unicodedata.category(char) in ("Cc", "Cf"):
            kinds[code] = KIND_BLANK
    kinds.flags.writeable = False
    return kinds


def _collapse_spaces(codes: np.ndarray) -> np.ndarray:
    """Drop the spaces next to a separator or another space: one space between words."""
    out = np.empty_like(codes)
    return out[: _collapse_into(codes, out)]


@njit(cache=True, nogil=True)
def _collapse_into(codes: np.ndarray, out: np.ndarray) -> int:
    """Write ``codes`` without the spaces to drop into ``out``; returns how many were written.

    One pass: a space after a space or a separator is skipped (runs shrink to
    one, heads are trimmed), and a separator overwrites a space just written
    before it (tails are trimmed). A loop, not numpy: this runs on every served
    request, where a handful of array operations cost more than the whole walk.
    """
    written = 0
    previous = -1
    for i in range(len(codes)):
        code = codes[i]
        if code == SPACE and (previous == SPACE or previous == SEP):
            previous = code
            continue
        if code == SEP and written and out[written - 1] == SPACE:
            written -= 1
        out[written] = code
        written += 1
        previous = code
    return written


def preprocess_batch(
    texts: Sequence[str], config: PreprocessConfig
) -> tuple[list[str], np.ndarray]:
    """Pre-process ``texts``; return the cleaned strings and which ones were truncated."""
    cleaned = clean_batch(texts, config)
    return cleaned.texts(), cleaned.truncated


def preprocess(text: str, config: PreprocessConfig | None = None) -> tuple[str, bool]:
    """Pre-process one text; return it cleaned and whether it was truncated."""
    cleaned = clean_batch([text], config or PreprocessConfig())
    return cleaned.texts()[0], bool(cleaned.truncated[0])
