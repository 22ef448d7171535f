"""The offset-preserving clean-up: same text as the batched path, spans that lead back to it."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcycle.featurization.config import PreprocessConfig
from mlcycle.featurization.offsets import Aligned, WordSpan, clean_with_offsets, word_spans
from mlcycle.featurization.preprocess import clean_batch, preprocess

pytestmark = pytest.mark.unit

DEFAULT = PreprocessConfig()
NO_TRANSLIT = PreprocessConfig(transliterate=False)
CONFIGS = [
    DEFAULT,
    NO_TRANSLIT,
    PreprocessConfig(max_chars=12),
    PreprocessConfig(urls="remove", hashtags="remove"),
    PreprocessConfig(urls="keep", mentions="keep", hashtags="keep"),
    PreprocessConfig(alnum_only=False, lowercase=False),
    PreprocessConfig(alnum_only=False, strip_invisible=False, transliterate=False),
    PreprocessConfig(html_unescape=False, normalize="none"),
]

CASES = [
    ("html entities", "Caf&eacute; &amp; &lt;b&gt; it&#39;s &#x1F600; &amplified &notit; &bogus;"),
    ("html double escaped", "&amp;lt;tag&amp;gt; &amp;amp;"),
    ("nfkc full-width", "ＦＵＬＬ ｗｉｄｔｈ １２３"),
    ("nfkc ligatures", "ﬁne ﬂow ǅemal Ǆ ㍱ x²"),
    ("nfkc compositions", "e\u0301te\u0301 \u1100\u1161\u11a8 ｶﾞ \u0b47\u0b3e"),
    ("nfkc expansions", "a℀c ½ ⑴ ¨"),
    ("zero-width", "i\u200bdiot s\u00adoft \ufeffbom \u202ertl\u202c"),
    ("accents", "naïve façade Ærøskøbing crème brûlée"),
    ("cyrillic", "Привет, мир! ИДИОТ"),
    ("greek sigma", "ΟΔΟΣ. ΣΟΦΟΣ σ"),
    ("emoji", "so 😀 happy 👍🏽 🇫🇷 ❤️"),
    ("cjk", "中文 テスト 한국어"),
    ("urls", "see http://a.com/x?y=1 https://t.co/AbC ftp://f.org/p www.site.xyz/p foo.com/bar"),
    ("bare domains", "go to bar.co.uk/x or example.org, not file.txt"),
    ("e-mails", "write a.b+c@mail.com or x@y.io"),
    ("mentions", "@bob hi @Alice_1, mail@host no"),
    ("hashtags", "#Tag #multi_word c#sharp ##double"),
    ("newlines and tabs", "line one\nline\ttwo\r\nthree\x0bfour"),
    ("control mark", "a\x01b __URL__ c\x01"),
    ("empty", ""),
    ("spaces only", "   \n\t  "),
    ("truncation", "x" * 4_990 + " Caf&eacute; beyond the limit"),
    ("lone surrogate", "a\ud800b"),
    ("turkish i", "İstanbul ISTANBUL"),
]


def check_aligned(aligned: Aligned, config: PreprocessConfig) -> None:
    """Same text as the batched path; one non-empty, in-bounds, ordered span per character."""
    expected, truncated = preprocess(aligned.original, config)
    assert aligned.cleaned == expected
    assert aligned.truncated == truncated
    n = len(aligned.cleaned)
    assert len(aligned.begins) == len(aligned.ends) == n
    limit = min(len(aligned.original), config.max_chars)
    for begin, end in zip(aligned.begins, aligned.ends, strict=True):
        assert 0 <= begin < end <= limit
    assert list(aligned.begins) == sorted(aligned.begins)
    assert list(aligned.ends) == sorted(aligned.ends)


def check_words(aligned: Aligned, config: PreprocessConfig) -> list[WordSpan]:
    """Words as the featurizer splits them; each one's original slice cleans back to it."""
    spans = word_spans(aligned)
    assert [s.word for s in spans] == (aligned.cleaned.split(" ") if aligned.cleaned else [])
    assert [s.index for s in spans] == list(range(len(spans)))
    for span in spans:
        assert span.text == aligned.original[span.begin : span.end]
        assert aligned.cleaned[span.start : span.stop] == span.word
        assert 0 <= span.begin < span.end <= min(len(aligned.original), config.max_chars)
        shared = [o for o in spans if o is not span and _overlap(o.begin, o.end, span)]
        shared += [r for r in aligned.removed if r[0] <= span.end and span.begin <= r[1]]
        assert span.exact <= (not shared)
        if span.exact:
            assert preprocess(span.text, config)[0] == span.word
    starts = _word_starts(aligned.cleaned)
    for first, second in pairwise(spans):
        assert (first.begin, first.end) <= (second.begin, second.end)
        if second.begin < first.end:
            # Allowed only when one source run produced characters of both words.
            last_of_first = starts[first.index] + len(first.word) - 1
            first_of_second = starts[second.index]
            assert aligned.begins[first_of_second] < aligned.ends[last_of_first]
    return spans


def _overlap(begin: int, end: int, span: WordSpan) -> bool:
    return begin < span.end and span.begin < end


def _word_starts(cleaned: str) -> list[int]:
    return [i for i, c in enumerate(cleaned) if c != " " and (i == 0 or cleaned[i - 1] == " ")]


@pytest.mark.parametrize("config", CONFIGS, ids=range(len(CONFIGS)))
@pytest.mark.parametrize(("name", "text"), CASES, ids=[c[0] for c in CASES])
def test_cases_match_the_batched_path(name: str, text: str, config: PreprocessConfig) -> None:
    aligned = clean_with_offsets(text, config)
    check_aligned(aligned, config)
    check_words(aligned, config)


@pytest.mark.parametrize("config", CONFIGS, ids=range(len(CONFIGS)))
def test_a_batch_gives_each_text_the_same_row(config: PreprocessConfig) -> None:
    texts = [text for _, text in CASES]
    rows = clean_batch(texts, config).texts()
    assert rows == [clean_with_offsets(text, config).cleaned for text in texts]


def _words(text: str, config: PreprocessConfig = DEFAULT) -> list[tuple[str, str]]:
    return [(w.word, w.text) for w in word_spans(clean_with_offsets(text, config))]


def test_expansions_map_to_their_whole_source() -> None:
    assert _words("Caf&eacute; &amp;&amp; ＦＵＬＬ ﬁne i\u200bdiot") == [
        ("cafe", "Caf&eacute;"),
        ("full", "ＦＵＬＬ"),
        ("fine", "ﬁne"),
        ("idiot", "i\u200bdiot"),
    ]
    assert _words("so 😀 Привет") == [("so", "so"), ("grinning", "😀"), ("privet", "Привет")]
    aligned = clean_with_offsets("a 😀")
    assert aligned.cleaned == "a grinning"
    assert set(zip(aligned.begins[2:], aligned.ends[2:], strict=True)) == {(2, 3)}


def test_urls_mentions_and_hashtags() -> None:
    text = "@bob see https://t.co/AbC?x=1 or mail a.b@c.org #Great"
    assert _words(text) == [
        ("see", "see"),
        ("__URL__", "https://t.co/AbC?x=1"),
        ("or", "or"),
        ("mail", "mail"),
        ("__URL__", "a.b@c.org"),
        ("great", "Great"),
    ]
    assert clean_with_offsets(text).removed == ((0, 4),)
    removed = PreprocessConfig(urls="remove", mentions="keep", hashtags="remove")
    assert _words(text, removed) == [("bob", "bob"), ("see", "see"), ("or", "or"), ("mail", "mail")]
    assert clean_with_offsets(text, removed).removed == ((9, 29), (38, 47), (48, 54))


def test_a_word_next_to_a_removed_mention_is_not_exact() -> None:
    # "@ab" is removed, and the "b" before it is why "@Cafe" was not a mention.
    text = "@a\ud800b@Caf&eacute; x"
    spans = word_spans(clean_with_offsets(text, PreprocessConfig(alnum_only=False)))
    assert [(w.word, w.text, w.exact) for w in spans] == [
        ("@cafe", "@Caf&eacute;", False),
        ("x", "x", True),
    ]
    assert preprocess("@Caf&eacute;")[0] == ""


def test_offsets_index_the_text_as_sent_not_the_truncated_or_cleaned_one() -> None:
    config = PreprocessConfig(max_chars=16)
    aligned = clean_with_offsets("&amp; &eacute;t&eacute; and more", config)
    assert aligned.truncated
    assert aligned.cleaned == "et"  # "&eacute;t&" is cut at 16 characters, mid-entity
    assert [(w.word, w.begin, w.end) for w in word_spans(aligned)] == [("et", 6, 15)]


def test_one_character_making_two_words_is_the_only_overlap() -> None:
    spans = word_spans(clean_with_offsets("1½ a℀c"))
    assert [w.exact for w in spans] == [False] * 4
    assert [(w.word, w.text) for w in spans] == [
        ("11", "1½"),
        ("2", "½"),
        ("aa", "a℀"),
        ("cc", "℀c"),
    ]


def test_transliteration_off_keeps_scripts_and_marks() -> None:
    assert _words("Привет ΟΔΟΣ", NO_TRANSLIT) == [("привет", "Привет"), ("οδος", "ΟΔΟΣ")]
    assert clean_with_offsets("ΟΔΟΣ", NO_TRANSLIT).cleaned == "οδος"


def test_a_sigma_made_final_by_its_neighbours_is_not_exact() -> None:
    config = PreprocessConfig(transliterate=False, strip_invisible=False)
    spans = word_spans(clean_with_offsets("A\u200bΣ ΟΣ", config))
    assert [(w.word, w.text, w.exact) for w in spans] == [
        ("a", "A", True),
        ("ς", "Σ", False),
        ("ος", "ΟΣ", True),
    ]


def test_span_rejects_an_empty_range() -> None:
    aligned = clean_with_offsets("abc")
    assert aligned.span(0, 3) == (0, 3)
    with pytest.raises(ValueError, match="non-empty"):
        aligned.span(2, 2)


FRAGMENTS = [text for _, text in CASES if len(text) < 100] + [
    "a", "Z", " ", "é", "e\u0301", "ﬁ", "½", "℀", "\u200b", "\n", "σ", "Σ", "ς", "İ", "ß",
    "😀", "ｶ", "ﾞ", "\u1100", "\u1161", "\u11a8", "\u0b47", "\u0b3e", "\u0f73", "\u0301",
    "&", "&amp", "&amp;", "&#", "&#39;", "&#x", "&eacute", ";", "#", "@", ".", "/", "://",
    "www.", ".com", "http", "_", "\x01", "\ud800", "__URL__", "x",
]  # fmt: skip
pieces = st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=3))
texts = st.lists(pieces, max_size=12).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, config=st.sampled_from(CONFIGS))
def test_generated_texts_match_and_trace_back(text: str, config: PreprocessConfig) -> None:
    aligned = clean_with_offsets(text, config)
    check_aligned(aligned, config)
    check_words(aligned, config)
