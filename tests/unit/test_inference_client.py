"""The model-server client's retry policy against a scripted in-process gRPC server: each
Predict attempt has its own deadline, UNAVAILABLE and DEADLINE_EXCEEDED are retried
``retries`` times, NOT_FOUND means the version is gone, and every failed attempt is counted.
``explain`` follows the same policy, and a version without the signature is NotExplainable."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from mlcycle.common.errors import Unavailable
from mlcycle.contracts.explanations import EXPLAIN_SIGNATURE, NotExplainable
from mlcycle.inference.client import GrpcModelClient, VersionGone
from mlcycle.inference.metrics import MODEL_SERVER_ERRORS
from mlcycle.inference.tensors import to_tensor_proto

_AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
_LOADING = get_model_status_pb2.ModelVersionStatus.LOADING


class ScriptedServer(
    prediction_service_pb2_grpc.PredictionServiceServicer,
    model_service_pb2_grpc.ModelServiceServicer,
):
    """Answers each Predict with the next scripted outcome: a status code (``CODE`` or
    ``CODE:details``), "slow" or "ok". The ``explain`` signature's attributions come back two
    columns wider than asked, as a batching model server pads them."""

    def __init__(self) -> None:
        self.script: list[str] = []
        self.calls = 0
        self.versions: dict[int, int] = {1: _AVAILABLE}
        self._lock = threading.Lock()

    def Predict(  # noqa: N802 - the gRPC method's name
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        with self._lock:
            self.calls += 1
            outcome = self.script.pop(0) if self.script else "ok"
        if outcome == "slow":
            time.sleep(0.5)
        elif outcome != "ok":
            code, _, details = outcome.partition(":")
            context.abort(grpc.StatusCode[code], details or f"scripted {outcome}")
        rows = request.inputs["indices"].tensor_shape.dim[0].size
        if request.model_spec.signature_name == EXPLAIN_SIGNATURE:
            width = request.inputs["indices"].tensor_shape.dim[1].size
            attributions = np.zeros((rows, width + 2), np.float32)
            attributions[:, :width] = 0.1
            return predict_pb2.PredictResponse(
                outputs={
                    "scores": to_tensor_proto(np.full(rows, 0.75, np.float32)),
                    "attributions": to_tensor_proto(attributions),
                    "baseline_scores": to_tensor_proto(np.full(rows, 0.45, np.float32)),
                }
            )
        probabilities = np.tile(np.array([[0.25, 0.75]], np.float32), (rows, 1))
        return predict_pb2.PredictResponse(
            outputs={"probabilities": to_tensor_proto(probabilities)}
        )

    def GetModelStatus(  # noqa: N802 - the gRPC method's name
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        if request.model_spec.name != "toxicity":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such model")
        return get_model_status_pb2.GetModelStatusResponse(
            model_version_status=[
                get_model_status_pb2.ModelVersionStatus(version=version, state=state)
                for version, state in self.versions.items()
            ]
        )


@pytest.fixture
def server() -> Iterator[tuple[ScriptedServer, str]]:
    scripted = ScriptedServer()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(scripted, grpc_server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(scripted, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    yield scripted, f"127.0.0.1:{port}"
    grpc_server.stop(None)


@pytest.fixture
def client(server: tuple[ScriptedServer, str]) -> Iterator[GrpcModelClient]:
    client = GrpcModelClient(server[1], deadline_s=0.2, retries=2)
    yield client
    client.close()


def rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.ones((n, 3), np.int64), np.ones((n, 3), np.float32)


def errors(code: str) -> float:
    return MODEL_SERVER_ERRORS.labels(code)._value.get()


def test_unavailable_is_retried_and_each_failure_counted(
    server: tuple[ScriptedServer, str], client: GrpcModelClient
) -> None:
    scripted, _ = server
    scripted.script = ["UNAVAILABLE", "UNAVAILABLE"]
    before = errors("UNAVAILABLE")
    answer = client.predict("toxicity", 1, *rows(3))
    assert answer.shape == (3, 2) and np.allclose(answer[:, 1], 0.75)
    assert scripted.calls == 3
    assert errors("UNAVAILABLE") - before == 2


def test_retries_are_bounded_and_the_503_names_the_model_server(
    server: tuple[ScriptedServer, str], client: GrpcModelClient
) -> None:
    scripted, address = server
    scripted.script = ["UNAVAILABLE"] * 5
    with pytest.raises(Unavailable, match="model server") as raised:
        client.predict("toxicity", 1, *rows(1))
    assert raised.value.details["model_server"] == address
    assert scripted.calls == 3  # the call and two retries


def test_each_attempt_has_its_own_deadline(
    server: tuple[ScriptedServer, str], client: GrpcModelClient
) -> None:
    scripted, _ = server
    scripted.script = ["slow"]
    before = errors("DEADLINE_EXCEEDED")
    assert client.predict("toxicity", 1, *rows(2)).shape == (2, 2)
    assert scripted.calls == 2
    assert errors("DEADLINE_EXCEEDED") - before == 1


def test_a_version_gone_is_raised_at_once(
    server: tuple[ScriptedServer, str], client: GrpcModelClient
) -> None:
    scripted, _ = server
    scripted.script = ["NOT_FOUND"]
    with pytest.raises(VersionGone):
        client.predict("toxicity", 1, *rows(1))
    assert scripted.calls == 1


def test_other_errors_are_not_retried(
    server: tuple[ScriptedServer, str], client: GrpcModelClient
) -> None:
    scripted, _ = server
    scripted.script = ["INVALID_ARGUMENT"]
    with pytest.raises(Unavailable, match="refused the call"):
        client.predict("toxicity", 1, *rows(1))
    assert scripted.calls == 1


def test_the_event_loop_client_follows_the_same_policy(
    server: tuple[ScriptedServer, str], client: GrpcModelClient
) -> None:
    scripted, _ = server
    scripted.script = ["UNAVAILABLE", "NOT_FOUND"]

    async def scenario() -> None:
        aio = client.aio()
        try:
            with pytest.raises(VersionGone):
                await aio.predict("toxicity", 1, *rows(1))
            assert (await aio.predict("toxicity", 1, *rows(4))).shape == (4, 2)
            assert await aio.reachable()
        finally:
            await aio.close()

    asyncio.run(scenario())
    assert scripted.calls == 3


def test_versions_lists_the_available_ones_and_an_unknown_model_has_none(
    server: tuple[ScriptedServer, str], client: GrpcModelClient
) -> None:
    scripted, _ = server
    scripted.versions = {3: _AVAILABLE, 1: _AVAILABLE, 4: _LOADING}
    assert client.versions("toxicity") == [1, 3]
    assert client.versions("unknown") == []


def test_a_server_that_is_down_fails_fast() -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    client = GrpcModelClient(address, deadline_s=2.0, retries=2)
    try:
        started = time.perf_counter()
        with pytest.raises(Unavailable, match=address):
            client.versions("toxicity")
        with pytest.raises(Unavailable, match=address):
            client.predict("toxicity", 1, *rows(1))
        assert time.perf_counter() - started < 2.0
    finally:
        client.close()


def test_blocking_predictions_can_run_on_the_callers_own_loop(
    server: tuple[ScriptedServer, str], client: GrpcModelClient
) -> None:
    # The API runs them on its loop: a second loop bound to grpc.aio would slow the first.
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="api-loop", daemon=True)
    thread.start()
    try:
        client.run_predictions_on(loop)
        assert client.predict("toxicity", 1, *rows(2)).shape == (2, 2)
        names = {t.name for t in threading.enumerate()}
        assert "model-client" not in names  # no private loop was started
        asyncio.run_coroutine_threadsafe(client.stop_predictions_on_loop(), loop).result(5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    assert client.predict("toxicity", 1, *rows(1)).shape == (1, 2)  # now on a private loop
    assert "model-client" in {t.name for t in threading.enumerate()}


def test_predictions_already_on_a_private_loop_stay_there(
    server: tuple[ScriptedServer, str], client: GrpcModelClient
) -> None:
    assert client.predict("toxicity", 1, *rows(1)).shape == (1, 2)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        client.run_predictions_on(loop)  # too late: the private loop keeps them
        asyncio.run_coroutine_threadsafe(client.stop_predictions_on_loop(), loop).result(5)
        assert client.predict("toxicity", 1, *rows(2)).shape == (2, 2)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


# What TF Serving and mlcycle's model server answer a Predict on a signature the version lacks,
# and what TF Serving's REST-side lookup says.
NO_SIGNATURE = 'FAILED_PRECONDITION:Serving signature key "explain" not found.'
NO_SIGNATURE_REST = 'INVALID_ARGUMENT:Serving signature name: "explain" not found in signature def'


def test_explain_reads_the_three_outputs_and_drops_padded_columns(
    server: tuple[ScriptedServer, str], client: GrpcModelClient
) -> None:
    scripted, _ = server
    scripted.script = ["UNAVAILABLE"]
    explained = client.explain("toxicity", 1, *rows(2))
    assert scripted.calls == 2  # retried like a predict
    assert explained.attributions.shape == (2, 3) and np.allclose(explained.attributions, 0.1)
    assert np.allclose(explained.scores, 0.75) and np.allclose(explained.baseline_scores, 0.45)


@pytest.mark.parametrize("answer", [NO_SIGNATURE, NO_SIGNATURE_REST])
def test_a_version_without_the_signature_cannot_explain(
    server: tuple[ScriptedServer, str], client: GrpcModelClient, answer: str
) -> None:
    scripted, _ = server
    scripted.script = [answer]
    with pytest.raises(NotExplainable) as raised:
        client.explain("toxicity", 7, *rows(1))
    assert scripted.calls == 1
    assert raised.value.http_status == 409
    assert raised.value.details == {"model": "toxicity", "version": 7}
    assert "toxicity version 7" in raised.value.message
    scripted.script = [answer]  # the same answer to a predict is the model server's fault
    with pytest.raises(Unavailable, match="refused the call"):
        client.predict("toxicity", 7, *rows(1))


def test_the_event_loop_client_explains_with_the_same_policy(
    server: tuple[ScriptedServer, str], client: GrpcModelClient
) -> None:
    scripted, _ = server
    scripted.script = ["NOT_FOUND", NO_SIGNATURE]

    async def scenario() -> None:
        aio = client.aio()
        try:
            with pytest.raises(VersionGone):
                await aio.explain("toxicity", 1, *rows(1))
            with pytest.raises(NotExplainable):
                await aio.explain("toxicity", 1, *rows(1))
            assert (await aio.explain("toxicity", 1, *rows(4))).attributions.shape == (4, 3)
        finally:
            await aio.close()

    asyncio.run(scenario())
