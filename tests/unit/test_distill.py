"""The distillation around the encoder: vocabulary, PCA, SIF weights, the Model2Vec files.

The MiniLM forward pass itself is replaced by random hidden states here (it takes
half a minute and more); tests/integration/test_distill.py runs the real one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from model2vec import StaticModel
from safetensors.numpy import load
from tokenizers import Tokenizer

from mlcycle.common.errors import InvalidInput
from mlcycle.featurization import embeddings
from mlcycle.featurization.minilm import EXTRACTED, extract_minilm
from mlcycle.trainer import distill
from tests.fixtures.embeddings import tiny_files


@pytest.fixture
def fake_encoder(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    seen: list[np.ndarray] = []

    def encode(source: Path, ids: np.ndarray, cls_id: int, sep_id: int, say: object) -> np.ndarray:
        seen.append(ids)
        rng = np.random.default_rng(0)
        return rng.normal(size=(len(ids), 384)).astype(np.float32)

    monkeypatch.setattr(distill, "_encode", encode)
    return seen


def test_the_files_are_a_model2vec_model_over_the_cleaned_vocabulary(
    tmp_path: Path, fake_encoder: list[np.ndarray]
) -> None:
    source = extract_minilm(tmp_path)
    files = distill.distill(source)
    original = orjson.loads((source / "tokenizer.json").read_bytes())["model"]["vocab"]
    (ids,) = fake_encoder
    chosen = set(ids.tolist())
    kept = [t for t, i in sorted(original.items(), key=lambda x: x[1]) if i in chosen]
    assert len(kept) == len(original) - 994 - 3  # [unused*], [CLS], [SEP], [MASK]
    assert not any(t.startswith("[unused") for t in kept) and "[UNK]" in kept
    assert list(ids) == sorted(ids)  # id order: the rank the Zipf weights assume

    vectors = load(files["model.safetensors"])["embeddings"]
    assert vectors.shape == (len(kept), distill.PCA_DIMS) and vectors.dtype == np.float16
    tokenizer = Tokenizer.from_str(files["tokenizer.json"].decode())
    assert tokenizer.get_vocab_size() == len(kept)
    # Lower-cased by its normalizer; "[CLS]" in a text is plain characters, not a marker.
    assert tokenizer.encode("Wonderful [CLS]").tokens == ["wonderful", "[", "cl", "##s", "]"]
    assert tokenizer.encode("hello").ids == [kept.index("hello")]  # no [CLS]/[SEP] added

    folder = tmp_path / "m2v"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    model = StaticModel.from_pretrained(str(folder))
    assert model.dim == distill.PCA_DIMS
    assert np.isclose(np.linalg.norm(model.encode(["you are great"])[0]), 1.0, atol=1e-3)


def test_sif_weights_follow_zipf_ranks() -> None:
    weights = distill._sif_weights(1000)
    assert np.all(np.diff(weights) > 0)  # frequent (early) pieces weigh less
    proba = (1 / 2) / (1 / np.arange(2, 1002)).sum()
    assert weights[0] == pytest.approx(1e-4 / (1e-4 + proba))


def test_ensure_distills_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []

    def fake_distill(source: Path, progress: object = None) -> dict[str, bytes]:
        calls.append(source)
        return tiny_files()

    monkeypatch.setattr(distill, "distill", fake_distill)
    first = distill.ensure(tmp_path)
    assert not first.cached and embeddings.current_id(tmp_path) == first.ident
    assert calls == [tmp_path / distill.PRETRAINED_DIR / EXTRACTED]
    second = distill.ensure(tmp_path)
    assert second.cached and second.ident == first.ident and len(calls) == 1
    (tmp_path / "embeddings" / first.ident / "config.json").write_bytes(b"{}")
    with pytest.raises(InvalidInput, match="was altered"):
        distill.ensure(tmp_path)
