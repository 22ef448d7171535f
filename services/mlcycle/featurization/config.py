"""What a transform does, as frozen, validated settings: pre-processing, word, char, metadata
and static embeddings.

A :class:`FeatureConfig` is part of every fitted transform and of its
content-hash version, so two transforms with different settings never share
a version. The defaults follow the original talk (a word vocabulary joined
with character n-grams over pre-processed text) with what has become standard
since: log counts and an L2 norm per group, so that a 5-word and a 500-word
comment give inputs of the same scale.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_FROZEN = ConfigDict(extra="forbid", frozen=True)
# Word and char groups each stay below 2**29 columns so that the joint index fits
# the int32 indices of the output, with room to spare for metadata.
MAX_GROUP_DIM = 2**29
# Metadata the importers fill with a label, the crowd's answer or the split
# assignment (Davidson ``class``, LeWiDi ``hard_label``/``soft_label``/
# ``n_annotations``, the synthetic data's ``true_toxicity``): as features they
# would hand the model its answer, so inference leaves them out by default.
# So are the fields that only say which corpus a comment came from (LeWiDi's
# ``dataset``, ``annotation_task`` and ``lang``, HateXplain's ``official_split``):
# in a mix of corpora they would teach each corpus's share of toxic comments,
# which live traffic never carries.
LABEL_LIKE_FIELDS = (
    "class",
    "hard_label",
    "soft_label",
    "n_annotations",
    "split",
    "true_toxicity",
    "dataset",
    "annotation_task",
    "lang",
    "official_split",
)


class PreprocessConfig(BaseModel):
    """Text clean-up applied, in this order, before any n-gram is taken.

    Truncation comes first so that a 1 MB comment costs no more than
    ``max_chars`` of work in the steps after it.
    """

    model_config = _FROZEN

    max_chars: int = Field(5_000, ge=1, description="raw characters kept per text")
    html_unescape: bool = Field(True, description="&amp; &lt; &#39; ... become characters")
    normalize: Literal["NFKC", "none"] = Field(
        "NFKC", description="Unicode compatibility normalization (full-width, ligatures)"
    )
    strip_invisible: bool = Field(
        True, description="drop zero-width/format characters, control characters become spaces"
    )
    transliterate: bool = Field(
        True, description="non-Latin letters to ASCII (anyascii); turn off for e.g. Arabic corpora"
    )
    urls: Literal["token", "remove", "keep"] = Field(
        "token", description="a URL becomes the __URL__ token, nothing, or stays as text"
    )
    mentions: Literal["remove", "keep"] = Field("remove", description="@user mentions")
    hashtags: Literal["word", "remove", "keep"] = Field(
        "word", description="#tag becomes the word tag, nothing, or stays"
    )
    lowercase: bool = True
    alnum_only: bool = Field(
        True, description="keep letters and digits only, everything else becomes one space"
    )


class WordConfig(BaseModel):
    """Word uni- (and bi-) grams: a fitted vocabulary or hashed buckets."""

    model_config = _FROZEN

    enabled: bool = True
    ngram_max: Literal[1, 2] = 1
    mode: Literal["vocab", "hashed"] = "vocab"
    min_count: int = Field(2, ge=1, description="vocab mode: drop terms seen fewer times")
    max_size: int = Field(
        50_000, ge=1, le=MAX_GROUP_DIM, description="vocab mode: keep the most frequent terms"
    )
    hash_buckets: int = Field(2**18, ge=1, le=MAX_GROUP_DIM, description="hashed mode: dimension")


class CharConfig(BaseModel):
    """Hashed character n-grams over the pre-processed text, word boundaries included."""

    model_config = _FROZEN

    enabled: bool = True
    ngram_min: int = Field(2, ge=2, le=5)
    ngram_max: int = Field(4, ge=2, le=5)
    buckets: int = Field(2**18, ge=1, le=MAX_GROUP_DIM)

    @model_validator(mode="after")
    def _ordered(self) -> CharConfig:
        if self.ngram_min > self.ngram_max:
            raise ValueError("ngram_min must not exceed ngram_max")
        return self


class MetadataConfig(BaseModel):
    """Which metadata fields become features, and how many categories each may keep.

    ``None`` for a field list means: infer at fit time from the values' types
    (numbers are numeric; strings and booleans categorical; other values are
    ignored), leaving out ``exclude``. An empty list means none of that kind.
    """

    model_config = _FROZEN

    enabled: bool = True
    numeric: tuple[str, ...] | None = None
    categorical: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = Field(
        LABEL_LIKE_FIELDS, description="fields never used when inferring (ids, labels, ...)"
    )
    max_categories: int = Field(
        20, ge=1, le=10_000, description="most frequent categories kept per field"
    )
    clip: float = Field(5.0, gt=0, description="standardized numeric values are clipped to ±clip")

    @model_validator(mode="after")
    def _disjoint(self) -> MetadataConfig:
        both = set(self.numeric or ()) & set(self.categorical or ())
        if both:
            raise ValueError(f"fields both numeric and categorical: {sorted(both)}")
        return self


class EmbeddingsConfig(BaseModel):
    """Static embeddings distilled from the pre-trained MiniLM: one dense vector per text.

    Off by default: it needs the distilled artifact in the artifact store
    (``mlcycle embeddings distill``), which a transform then records by id.
    """

    model_config = _FROZEN

    enabled: bool = False


class FeatureConfig(BaseModel):
    """Everything a transform needs to know before it sees data."""

    model_config = _FROZEN

    preprocess: PreprocessConfig = PreprocessConfig()
    word: WordConfig = WordConfig()
    char: CharConfig = CharConfig()
    metadata: MetadataConfig = MetadataConfig()
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    weighting: Literal["binary", "log_count"] = Field(
        "log_count", description="a present n-gram counts 1, or 1 + log(count)"
    )
    normalize: Literal["l2", "none"] = Field(
        "l2", description="L2 norm per text group (word, char); metadata keeps its own scale"
    )
