"""A transform's column groups, as the public contract describes them."""

from __future__ import annotations

from mlcycle.contracts.features import (
    CategoricalField,
    CharGroup,
    EmbeddingsGroup,
    MetadataGroup,
    NumericField,
    TransformGroups,
    WordGroup,
)
from mlcycle.featurization.config import FeatureConfig
from mlcycle.featurization.metadata import MetadataEncoder


def groups(
    config: FeatureConfig,
    meta: MetadataEncoder,
    *,
    word_dim: int,
    char_dim: int,
    vocabulary_size: int,
    embeddings: str | None,
    embeddings_dim: int,
) -> TransformGroups:
    """Offsets and widths of [word | char | metadata | embeddings], with their statistics."""
    word, char = config.word, config.char
    return TransformGroups(
        word=WordGroup(
            offset=0,
            dim=word_dim,
            mode=word.mode if word.enabled else None,
            ngram_max=word.ngram_max,
            vocabulary_size=vocabulary_size,
        ),
        char=CharGroup(
            offset=word_dim,
            dim=char_dim,
            ngram_range=[char.ngram_min, char.ngram_max],
        ),
        metadata=MetadataGroup(
            offset=word_dim + char_dim,
            dim=meta.dim,
            numeric=[
                NumericField(name=f.name, mean=f.mean, std=f.std, count=f.count)
                for f in meta.numeric
            ],
            categorical=[
                CategoricalField(name=c.name, categories=len(c.categories), count=c.count)
                for c in meta.categorical
            ],
        ),
        embeddings=None
        if embeddings is None
        else EmbeddingsGroup(
            offset=word_dim + char_dim + meta.dim, dim=embeddings_dim, artifact=embeddings
        ),
    )
