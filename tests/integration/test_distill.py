"""The real distillation: the shipped MiniLM through keras-hub into static embeddings.

Marked integration rather than unit: the session fixture runs the 6-layer encoder
over the whole vocabulary, about half a minute on two idle cores, minutes when they
are busy (the e2e demo tests share its artifact).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from model2vec import StaticModel

from mlcycle.featurization.config import EmbeddingsConfig, FeatureConfig
from mlcycle.featurization.embeddings import EMBEDDINGS_DIR, StaticEmbeddings, current_id
from mlcycle.featurization.transform import fit
from mlcycle.trainer.distill import PCA_DIMS, ensure

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_distilled_embeddings_carry_the_encoder_s_knowledge(distilled_embeddings: Path) -> None:
    root = distilled_embeddings
    ident = current_id(root)
    assert ident is not None
    lookup = StaticEmbeddings.load(root, ident)
    assert lookup.dim == PCA_DIMS
    wonderful, great, idiot, stupid = lookup.encode(["wonderful", "great", "idiot", "stupid"])
    assert wonderful @ great > wonderful @ idiot + 0.2
    assert idiot @ stupid > idiot @ great + 0.2
    # A standard Model2Vec directory: its own loader reads it and agrees with the lookup.
    model = StaticModel.from_pretrained(str(root / EMBEDDINGS_DIR / ident))
    text = "You are a pathetic idiot and everyone knows it"
    np.testing.assert_allclose(model.encode([text])[0], lookup.encode([text])[0], atol=2e-3)
    again = ensure(root)
    assert again.cached and again.ident == ident
    transform = fit(
        ["you are great", "you idiot"],
        None,
        FeatureConfig(embeddings=EmbeddingsConfig(enabled=True)),
        artifacts=root,
    )
    assert transform.embeddings_dim == PCA_DIMS
