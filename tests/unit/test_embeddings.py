"""Static embeddings: the artifact, the lookup, and the transform's ``embeddings`` group."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import orjson
import pytest
from model2vec import StaticModel

from mlcycle.common.errors import Conflict, InvalidInput
from mlcycle.featurization import embeddings
from mlcycle.featurization.config import (
    CharConfig,
    EmbeddingsConfig,
    FeatureConfig,
    PreprocessConfig,
    WordConfig,
)
from mlcycle.featurization.embeddings import StaticEmbeddings, embedding_texts
from mlcycle.featurization.sparse import SparseBatch, append_dense
from mlcycle.featurization.store import TransformStore
from mlcycle.featurization.transform import Transform, fit
from mlcycle.inference.lineage.parts import describe_config
from tests.fixtures.embeddings import DIM, tiny_files, write_tiny

WITH = FeatureConfig(embeddings=EmbeddingsConfig(enabled=True))
ONLY = FeatureConfig(
    word=WordConfig(enabled=False),
    char=CharConfig(enabled=False),
    embeddings=EmbeddingsConfig(enabled=True),
)
TEXTS = [
    "You are a wonderful person!",
    "you are a stupid idiot",
    "I don't hate you",
    "zzz qqq",  # no known piece: a zero vector
    "",
]


# -- the artifact --------------------------------------------------------------------------


def test_an_artifact_is_stored_once_under_its_content_id(tmp_path: Path) -> None:
    ident = write_tiny(tmp_path)
    assert ident.startswith("m2v-") and embeddings.current_id(tmp_path) == ident
    folder = tmp_path / "embeddings" / ident
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert write_tiny(tmp_path) == ident
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    other = write_tiny(tmp_path, seed=1, make_current=False)
    assert other != ident and embeddings.current_id(tmp_path) == ident
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_the_lookup_is_model2vec_s_encode(tmp_path: Path) -> None:
    ident = write_tiny(tmp_path)
    ours = StaticEmbeddings.load(tmp_path, ident)
    theirs = StaticModel.from_pretrained(str(tmp_path / "embeddings" / ident))
    expected = theirs.encode(TEXTS).astype(np.float32)
    got = ours.encode(TEXTS)
    assert got.shape == (len(TEXTS), DIM) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-3)  # theirs averages in float16
    np.testing.assert_allclose(np.linalg.norm(got[:3], axis=1), 1.0, rtol=1e-5)
    assert not got[3:].any()
    # One text goes the single-request path: the same vector as in a batch.
    np.testing.assert_allclose(ours.encode(TEXTS[1:2])[0], got[1], rtol=1e-6)


def test_embedding_texts_keep_what_a_pretrained_vocabulary_reads() -> None:
    texts = ["I &amp; you DON'T know?! @someone http://example.com/x #Brexit", "plain"]
    assert embedding_texts(texts, PreprocessConfig()) == [
        "I & you DON'T know?! Brexit",
        "plain",
    ]
    assert embedding_texts(["x" * 50], PreprocessConfig(max_chars=10)) == ["x" * 10]


def test_append_dense_puts_the_block_after_every_row() -> None:
    rng = np.random.default_rng(4)
    for n in (1, 5):
        per_row = rng.integers(0, 4, n)
        per_row[0] = 0  # an empty row too
        indptr = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int64)
        indices = np.concatenate([np.sort(rng.choice(20, k, replace=False)) for k in per_row])
        sparse = SparseBatch(
            indptr,
            indices.astype(np.int32),
            rng.random(int(indptr[-1])).astype(np.float32),
            dim=23,
            truncated=np.zeros(n, bool),
        )
        dense = rng.random((n, 3)).astype(np.float32)
        joined = append_dense(sparse, 20, dense)
        expected = sparse.to_dense()
        expected[:, 20:] = dense
        np.testing.assert_array_equal(joined.to_dense(), expected)
        assert np.all(np.diff(joined.indptr) == per_row + 3)
        for i in range(n):
            assert np.all(np.diff(joined.row(i)[0]) > 0)


# -- the transform's group -----------------------------------------------------------------


def test_the_group_comes_last_and_the_ngram_groups_are_unchanged(tmp_path: Path) -> None:
    ident = write_tiny(tmp_path)
    plain = fit(TEXTS, None, FeatureConfig())
    transform = fit(TEXTS, None, WITH, artifacts=tmp_path)
    assert transform.dim == plain.dim + DIM and transform.embeddings_dim == DIM
    groups = transform.description().groups
    assert groups.embeddings is not None and plain.description().groups.embeddings is None
    assert (groups.embeddings.offset, groups.embeddings.dim) == (plain.dim, DIM)
    assert groups.embeddings.artifact == ident
    assert f"static embeddings {ident} ({DIM} dims)" in describe_config(transform)
    assert "static embeddings" not in describe_config(plain)
    batch = transform.apply(TEXTS).to_dense()
    np.testing.assert_array_equal(batch[:, : plain.dim], plain.apply(TEXTS).to_dense())
    lookup = StaticEmbeddings.load(tmp_path, ident)
    expected = lookup.encode(embedding_texts(TEXTS, WITH.preprocess))
    np.testing.assert_allclose(batch[:, plain.dim :], expected, rtol=1e-6)
    alone = fit(TEXTS, None, ONLY, artifacts=tmp_path)
    assert alone.dim == DIM
    np.testing.assert_allclose(alone.apply(TEXTS).to_dense(), expected, rtol=1e-6)


def test_without_embeddings_versions_stay_as_they_were(tmp_path: Path) -> None:
    plain = fit(TEXTS, None, FeatureConfig())
    assert "embeddings" not in plain.to_dict()
    assert "embeddings" not in plain.to_dict()["config"]
    assert "embeddings" not in plain.description().config


def test_the_version_covers_the_artifact(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write_tiny(first, seed=0)
    write_tiny(second, seed=1)
    a = fit(TEXTS, None, WITH, artifacts=first)
    b = fit(TEXTS, None, WITH, artifacts=second)
    again = fit(TEXTS, None, WITH, artifacts=first)
    assert a.version != b.version and a.version == again.version
    assert a.version != fit(TEXTS, None, FeatureConfig()).version


def test_save_and_load_round_trip_through_the_store(tmp_path: Path) -> None:
    write_tiny(tmp_path)
    transform = TransformStore(tmp_path).add(fit(TEXTS, None, WITH, artifacts=tmp_path))
    loaded = TransformStore(tmp_path).transform(transform.version)
    assert loaded == transform and loaded.version == transform.version
    np.testing.assert_array_equal(
        loaded.apply(TEXTS).to_dense(), transform.apply(TEXTS).to_dense()
    )


def test_fitting_without_the_artifact_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(Conflict, match="mlcycle embeddings distill") as caught:
        fit(TEXTS, None, WITH, artifacts=tmp_path)
    assert caught.value.http_status == 409
    with pytest.raises(InvalidInput, match="artifact store"):
        fit(TEXTS, None, WITH)


def test_loading_with_the_artifact_missing_is_a_clear_error(tmp_path: Path) -> None:
    ident = write_tiny(tmp_path)
    version = fit(TEXTS, None, WITH, artifacts=tmp_path).save(tmp_path).name.split(".")[0]
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        os.remove(tmp_path / "embeddings" / ident / name)
    with pytest.raises(Conflict, match=f"{ident}.*not in the artifact store.*distill"):
        Transform.load(tmp_path, version)


def test_loading_with_the_artifact_altered_is_a_clear_error(tmp_path: Path) -> None:
    ident = write_tiny(tmp_path)
    version = fit(TEXTS, None, WITH, artifacts=tmp_path).save(tmp_path).name.split(".")[0]
    # Same shapes, other numbers: a swap that would otherwise go unnoticed.
    (tmp_path / "embeddings" / ident / "model.safetensors").write_bytes(
        tiny_files(seed=7)["model.safetensors"]
    )
    with pytest.raises(InvalidInput, match=f"{ident} was altered"):
        Transform.load(tmp_path, version)


def test_a_transform_pointing_at_another_artifact_is_modified(tmp_path: Path) -> None:
    write_tiny(tmp_path)
    other = write_tiny(tmp_path, seed=1, make_current=False)
    path = fit(TEXTS, None, WITH, artifacts=tmp_path).save(tmp_path)
    data = orjson.loads(gzip.decompress(path.read_bytes()))
    data["embeddings"]["artifact"] = other
    with pytest.raises(InvalidInput, match="it was modified"):
        Transform.from_dict(data, tmp_path)
    with pytest.raises(InvalidInput, match="need the artifact store"):
        Transform.from_dict(data)
