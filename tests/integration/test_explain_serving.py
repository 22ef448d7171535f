"""The ``explain`` signature served by mlcycle's model server over gRPC, through the inference
service's model clients (blocking and asyncio).

Version 1 is exported by the trainer's own code with its warm-up file (which asks both
signatures, so it is served only if the model server can answer ``explain``); version 2 is a
SavedModel with ``serving_default`` alone, as versions exported before explanations are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlcycle.contracts.explanations import NotExplainable
from mlcycle.contracts.training import TrialParams
from mlcycle.inference.client import GrpcModelClient
from mlcycle.modelserver import ModelServer, ModelServerOptions
from mlcycle.trainer import export as exporting
from mlcycle.trainer.models import PriorCorrected, build_model, tf
from tests.integration.modelserver_models import copy_version, export_sparse_scorer

pytestmark = pytest.mark.integration

NAME, DIM = "toxicity", 300
EXPLAINABLE, OLDER = 1, 2


def padded_rows(n: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of 1 to ``width`` distinct columns, zero-padded to ``width``."""
    rng = np.random.default_rng(seed)
    indices = np.zeros((n, width), np.int64)
    values = np.zeros((n, width), np.float32)
    for row in range(n):
        length = int(rng.integers(1, width + 1))
        indices[row, :length] = np.sort(rng.choice(DIM, length, replace=False))
        values[row, :length] = rng.uniform(0.2, 2.0, length)
    return indices, values


def export_explainable(path: Path) -> Path:
    """A prior-corrected wide network of two layers (untrained: the weights do not matter)."""
    params = TrialParams(hidden_units=16, hidden_layers=2, wide=True, epochs=1)
    model = PriorCorrected(build_model(params, DIM, 2), 1.5, -0.2)
    empty = {"ids": tf.zeros([0], tf.int32), "weights": tf.zeros([0], tf.float32)}
    model({**empty, "rows": tf.zeros([0], tf.int32), "n_rows": tf.constant(1, tf.int32)})
    exporting.export_saved_model(model, path)
    exporting.write_warmup_requests(path, NAME, *padded_rows(4, 6, seed=9))
    return path


class Served:
    """The two versions on a model server, a blocking client of it, and version 1 in process."""

    def __init__(self, root: Path) -> None:
        base = root / "models" / NAME
        copy_version(export_explainable(root / "exports" / "explainable"), base, EXPLAINABLE)
        copy_version(export_sparse_scorer(root / "exports" / "older"), base, OLDER)
        config = root / "models.config"
        config.write_text(
            f'model_config_list {{ config {{ name: "{NAME}" base_path: "{base}" '
            'model_platform: "tensorflow" model_version_policy { all {} } } }\n'
        )
        options = ModelServerOptions(port=0, rest_api_port=None, model_config_file=str(config))
        self.server = ModelServer(options).start()
        self.client = GrpcModelClient(
            f"127.0.0.1:{self.server.grpc_port}", deadline_s=10.0, retries=1
        )
        self.in_process = exporting.ServingModel(base / str(EXPLAINABLE))

    def close(self) -> None:
        self.client.close()
        self.server.stop(grace_s=0)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = Served(tmp_path_factory.mktemp("explain-serving"))
    yield served
    served.close()


def test_the_model_server_explains_as_the_saved_model_does(served: Served) -> None:
    assert served.client.versions(NAME) == [EXPLAINABLE, OLDER]
    indices, values = padded_rows(5, 12)
    explained = served.client.explain(NAME, EXPLAINABLE, indices, values)

    expected = served.in_process.explain(indices, values)
    np.testing.assert_allclose(explained.scores, expected.scores, atol=1e-6)
    np.testing.assert_allclose(explained.attributions, expected.attributions, atol=1e-6)
    np.testing.assert_allclose(explained.baseline_scores, expected.baseline_scores, atol=1e-6)
    probabilities = served.client.predict(NAME, EXPLAINABLE, indices, values)
    np.testing.assert_allclose(explained.scores, probabilities[:, 1], atol=1e-6)
    assert np.all(explained.attributions[values == 0] == 0)
    assert np.abs(explained.attributions).sum() > 0


def test_the_event_loop_client_gets_the_same_explanation(served: Served) -> None:
    indices, values = padded_rows(3, 7, seed=1)
    expected = served.in_process.explain(indices, values)

    async def explain() -> np.ndarray:
        aio = served.client.aio()
        try:
            return (await aio.explain(NAME, EXPLAINABLE, indices, values)).attributions
        finally:
            await aio.close()

    np.testing.assert_allclose(asyncio.run(explain()), expected.attributions, atol=1e-6)


def test_a_version_exported_before_explanations_is_a_409_naming_it(served: Served) -> None:
    indices, values = padded_rows(2, 4)
    for explain in (
        lambda: served.client.explain(NAME, OLDER, indices, values),
        lambda: asyncio.run(_explain_once(served.client, indices, values)),
    ):
        with pytest.raises(NotExplainable) as raised:
            explain()
        assert raised.value.http_status == 409
        assert raised.value.details == {"model": NAME, "version": OLDER}
        assert f"{NAME} version {OLDER}" in raised.value.message
    assert served.client.predict(NAME, OLDER, indices, values).shape == (2, 2)


async def _explain_once(client: GrpcModelClient, indices: np.ndarray, values: np.ndarray) -> None:
    aio = client.aio()
    try:
        await aio.explain(NAME, OLDER, indices, values)
    finally:
        await aio.close()
