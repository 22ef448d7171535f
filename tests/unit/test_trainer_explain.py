"""The ``explain`` signature of an exported model: integrated gradients of the served score.

One binary export covers every kind of trained model at once (a prior-corrected blend of a
wide network and a linear model); a linear model checks the attributions against their
closed form; a three-class network checks that the predicted class is the one explained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlcycle.contracts.explanations import EXPLAIN_SIGNATURE, Explained, NotExplainable
from mlcycle.contracts.training import TrialParams
from mlcycle.trainer import export as exporting
from mlcycle.trainer.data import SplitData, TrainingData
from mlcycle.trainer.fit import fit, predict_probabilities
from mlcycle.trainer.models import BlendedModel, PriorCorrected, build_model, keras, tf
from tests.unit.test_trainer_core import DIM, SMALL, make_data
from tests.unit.test_trainer_linear import three_class_data

# The largest |sum(attributions) - (score - baseline)| allowed. Measured on these models at
# the exported 64 steps: 7.7e-4 (binary blend) and 9.6e-4 (three classes); at 4 steps, 1.3e-2
# and 1.5e-2.
COMPLETENESS = 3e-3


def _export(model: keras.Model, path: Path, dev: SplitData) -> exporting.ServingModel:
    predict_probabilities(model, dev)  # builds a wrapper's weights before the export
    exporting.export_saved_model(model, path)
    return exporting.ServingModel(path)


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> tuple[exporting.ServingModel, TrainingData]:
    """A prior-corrected blend of a trained wide network and a linear model."""
    data = make_data()
    network = fit(SMALL.model_copy(update={"wide": True}), data).model
    rng = np.random.default_rng(0)
    kernel = rng.normal(0.0, 0.3, (DIM, 2)).astype(np.float32)
    kernel[:5, 1] += 1.0  # the linear part agrees that columns 0-4 mean positive
    blend = BlendedModel(network, kernel, np.zeros(2, np.float32), network_weight=0.7)
    model = PriorCorrected(blend, 1.4, -0.3)
    served = _export(model, tmp_path_factory.mktemp("explain") / "binary", data.dev)
    return served, data


def rows(data: TrainingData, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    return data.dev.flat_rows(np.arange(n)).padded()


def completeness_gap(explained: Explained) -> np.ndarray:
    difference = explained.scores - explained.baseline_scores
    return np.abs(explained.attributions.sum(axis=1) - difference)


def test_scores_are_serving_defaults_and_attributions_complete_them(binary) -> None:
    served, data = binary
    indices, values = rows(data)
    explained = served.explain(indices, values)

    probabilities = served.probabilities(indices, values)
    np.testing.assert_array_equal(explained.scores, probabilities[:, 1])
    empty = served.probabilities(indices, np.zeros_like(values))[:, 1]
    np.testing.assert_allclose(explained.baseline_scores, empty, atol=1e-7)
    assert completeness_gap(explained).max() < COMPLETENESS
    assert explained.attributions.dtype == np.float32
    assert explained.attributions.shape == indices.shape


def test_padding_gets_nothing_and_changes_nothing(binary) -> None:
    served, data = binary
    indices, values = rows(data, 8)
    explained = served.explain(indices, values)
    assert np.all(explained.attributions[values == 0] == 0)

    wider_indices = np.pad(indices, ((0, 0), (0, 5)))
    wider_indices[:, -1] = -1  # a negative column is padding too, whatever its value
    wider_values = np.pad(values, ((0, 0), (0, 5)))
    wider_values[:, -1] = 3.0
    wider = served.explain(wider_indices, wider_values)
    assert np.all(wider.attributions[:, -5:] == 0)
    np.testing.assert_allclose(wider.attributions[:, :-5], explained.attributions, atol=1e-6)
    np.testing.assert_allclose(wider.scores, explained.scores, atol=1e-6)


def test_the_columns_that_make_a_row_positive_are_credited(binary) -> None:
    served, data = binary
    indices, values = rows(data, 120)
    explained = served.explain(indices, values)
    marked = (indices < 5) & (values != 0)
    assert marked.any() and (~marked & (values != 0)).any()
    assert explained.attributions[marked].mean() > 0.05
    assert explained.attributions[marked].mean() > 5 * abs(
        explained.attributions[~marked & (values != 0)].mean()
    )


def test_a_linear_model_gets_its_closed_form(tmp_path: Path) -> None:
    """For ``sigmoid(s * x @ m + c)`` integrated gradients are ``x_j * m_j`` times one factor
    per row: their signs are those of the margins, their ratios those of ``x_j * m_j``."""
    network = build_model(TrialParams(hidden_units=8, epochs=1), DIM, 2)
    margins = np.linspace(-1.0, 1.0, DIM).astype(np.float32)
    kernel = np.stack([np.zeros(DIM, np.float32), margins], axis=1)
    linear = BlendedModel(network, kernel, np.array([0.0, -0.2], np.float32), network_weight=0.0)
    served = _export(PriorCorrected(linear, 2.0, 0.1), tmp_path / "linear", make_data().dev)
    indices = np.array([[3, 100, 250, 400, 499, 0], [499, 498, 2, 0, 0, 0]], np.int64)
    values = np.array([[1.0, 0.5, 2.0, 1.0, 0.25, 0.0], [1.0, 1.0, 1.0, 0, 0, 0]], np.float32)

    explained = served.explain(indices, values)
    expected = values * margins[indices]
    factor = explained.attributions.sum(axis=1) / expected.sum(axis=1)
    assert np.all(factor > 0)
    np.testing.assert_allclose(explained.attributions, expected * factor[:, None], atol=2e-6)
    assert explained.attributions[0, 0] < 0 < explained.attributions[0, 3]
    # The score grows with a column of positive margin: the attribution's sign is the truth.
    louder = values.copy()
    louder[0, 3] = 3.0
    assert served.explain(indices, louder).scores[0] > explained.scores[0]


def test_a_multi_class_model_explains_its_predicted_class(tmp_path: Path) -> None:
    data = three_class_data()
    params = SMALL.model_copy(update={"epochs": 6})
    served = _export(fit(params, data, metric="macro_f1").model, tmp_path / "three", data.dev)
    indices, values = data.dev.flat_rows(np.arange(60)).padded()

    explained = served.explain(indices, values)
    probabilities = served.probabilities(indices, values)
    predicted = probabilities.argmax(axis=1)
    np.testing.assert_array_equal(explained.scores, probabilities.max(axis=1))
    empty = served.probabilities(indices, np.zeros_like(values))
    np.testing.assert_allclose(
        explained.baseline_scores, empty[np.arange(60), predicted], atol=1e-7
    )
    assert completeness_gap(explained).max() < COMPLETENESS
    # Rows of class k hold column k: where k is predicted, that column pushed it there.
    own = (indices == predicted[:, None]) & (values != 0)
    assert own.any(axis=1).mean() > 0.5
    assert np.all(explained.attributions[own] > 0)


def test_warm_up_asks_both_signatures_and_an_older_export_cannot_explain(
    binary, tmp_path: Path
) -> None:
    from tensorflow_serving.apis import prediction_log_pb2

    served, data = binary
    indices, values = rows(data, 6)
    target = exporting.write_warmup_requests(served.path, "toxicity", indices, values)
    logs = [
        prediction_log_pb2.PredictionLog.FromString(raw)
        for raw in tf.data.TFRecordDataset(str(target)).as_numpy_iterator()
    ]
    asked = [
        (
            log.predict_log.request.model_spec.signature_name,
            log.predict_log.request.inputs["indices"].tensor_shape.dim[0].size,
        )
        for log in logs
    ]
    assert asked == [("serving_default", 1), ("serving_default", 6), ("explain", 1), ("explain", 6)]

    class Older(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="values")])
        def serve(self, values: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"probabilities": tf.nn.softmax(tf.stack([values[:, 0], -values[:, 0]], 1))}

    older = Older()
    tf.saved_model.save(older, str(tmp_path / "older"), signatures={"serving_default": older.serve})
    with pytest.raises(NotExplainable) as raised:
        exporting.ServingModel(tmp_path / "older").explain(indices, values)
    assert raised.value.http_status == 409 and EXPLAIN_SIGNATURE in raised.value.message
