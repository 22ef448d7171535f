"""The model server as the inference service sees it: TF Serving's gRPC API, nothing else.

Only the official ``tensorflow-serving-api`` stubs are used (``PredictionService.Predict``
and ``ModelService.GetModelStatus``), so the real ``tensorflow/serving`` can take
the model server's place. Every call has a deadline; ``Predict`` is retried a
bounded number of times with a short backoff when the server is unreachable or
slow. A server that is down fails fast (the channel reports the refused
connection at once) and the channel reconnects within a second once it is back.

Each call is written once. ``Predict`` is written for asyncio, in
:class:`AioModelClient` (``grpc.aio``), which the API's event loop calls with
several calls in flight and no thread each. :class:`GrpcModelClient` is the
blocking client: its ``predict`` runs an :class:`AioModelClient` on an event loop
of another thread (the API's own in the API process, where a second loop bound to
``grpc.aio`` would slow every call of the first; a private one elsewhere), and it
asks GetModelStatus, which only blocking callers (the version tracker,
readiness) need, over a classic channel.

``explain`` asks a version's ``explain`` signature the same way
(:class:`~mlcycle.contracts.explanations.Explained`); a version without one
(an encoder, an export older than explanations) raises
:class:`~mlcycle.contracts.explanations.NotExplainable`, a 409 naming it
(:mod:`mlcycle.inference.call_errors`).

The retry policy lives in :meth:`AioModelClient.predict` alone. It is not gRPC's
service-config ``retryPolicy``: that one bounds all attempts by one deadline and
never retries DEADLINE_EXCEEDED, where each attempt here has its own
``predict_deadline_s``, and it would hide the failed attempts from
``mlcycle_inference_model_server_errors_total``. A version that is gone
(NOT_FOUND) is not retried here but raised as :class:`VersionGone`, for the caller
to re-read the serving version and score again with its transform.

Every call presents the service's own key (``MLCYCLE_SERVICE_KEY``) as
``authorization: Bearer`` metadata when one is set; TF Serving ignores it, and
mlcycle's model server with keys configured needs it (``predict`` scope).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol, TypeVar

import grpc
import numpy as np
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from mlcycle.common.grpc import (
    CLIENT_KEEPALIVE_MS,
    CLIENT_KEEPALIVE_TIMEOUT_MS,
    DEFAULT_MAX_MESSAGE_BYTES,
    channel,
)
from mlcycle.common.grpc_auth import bearer_metadata
from mlcycle.common.settings import InferenceSettings
from mlcycle.contracts.explanations import Explained
from mlcycle.inference.call_errors import VersionGone as VersionGone  # callers catch it here
from mlcycle.inference.call_errors import raise_unless_retryable, unavailable
from mlcycle.inference.loop import LoopRunner, LoopThread
from mlcycle.inference.metrics import MODEL_SERVER_ERRORS
from mlcycle.inference.tensors import (
    explain_request,
    inputs_request,
    predict_request,
    read_explained,
    read_probabilities,
)

T = TypeVar("T")

BACKOFF_FIRST_S = 0.025
# gRPC's default reconnect backoff grows to two minutes; a restarted model server
# should be found again within a second.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)
# The same limits and keepalive as the classic channel (mlcycle.common.grpc.channel).
AIO_CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", CLIENT_KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", CLIENT_KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 0),
    *CHANNEL_OPTIONS,
)
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


class ModelClient(Protocol):
    """What the predictor needs from a model server."""

    address: str

    def versions(self, name: str) -> list[int]:
        """The AVAILABLE versions of ``name``, ascending ([] when the model is unknown)."""
        ...

    def predict(
        self, name: str, version: int, indices: np.ndarray, values: np.ndarray
    ) -> np.ndarray:
        """Class probabilities ``[batch, classes]`` of version ``version`` of ``name``."""
        ...

    def predict_inputs(
        self, name: str, version: int, inputs: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        """:meth:`predict` for a signature of other inputs (by name): the encoder's tokens."""
        ...

    def explain(
        self, name: str, version: int, indices: np.ndarray, values: np.ndarray
    ) -> Explained:
        """The ``explain`` signature's answer; NotExplainable for a version without one."""
        ...

    def aio(self) -> AsyncModelClient:
        """A client of the same server for the calling event loop (created on that loop)."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class AsyncModelClient(Protocol):
    """What the API's event loop needs from a model server."""

    address: str

    async def predict(
        self, name: str, version: int, indices: np.ndarray, values: np.ndarray
    ) -> np.ndarray:
        """Class probabilities ``[batch, classes]`` of version ``version`` of ``name``."""
        ...

    async def predict_inputs(
        self, name: str, version: int, inputs: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        """:meth:`predict` for a signature of other inputs (by name): the encoder's tokens."""
        ...

    async def explain(
        self, name: str, version: int, indices: np.ndarray, values: np.ndarray
    ) -> Explained:
        """The ``explain`` signature's answer; NotExplainable for a version without one."""
        ...

    async def reachable(self) -> bool:
        """False while calls fail at once (the connection is lost, a reconnect is pending)."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


class AioModelClient:
    """An :class:`AsyncModelClient` over TF Serving's gRPC API (``grpc.aio``, one event loop).

    Made on the event loop that calls it: a ``grpc.aio`` channel belongs to its loop.
    """

    def __init__(
        self, address: str, *, deadline_s: float, retries: int, service_key: str = ""
    ) -> None:
        self.address = address
        self.deadline_s = deadline_s
        self.retries = retries
        self._metadata = bearer_metadata(service_key)
        self._channel = grpc.aio.insecure_channel(address, options=AIO_CHANNEL_OPTIONS)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel).Predict

    async def predict(
        self, name: str, version: int, indices: np.ndarray, values: np.ndarray
    ) -> np.ndarray:
        """``Predict`` on version ``version``; VersionGone on NOT_FOUND, else Unavailable.

        Each attempt has ``deadline_s``; UNAVAILABLE and DEADLINE_EXCEEDED are retried
        ``retries`` times, after 25 ms, 50 ms, ... Every failed attempt is counted.
        """
        request = predict_request(name, version, indices, values)
        return await self._call(request, name, version, indices.shape[0])

    async def predict_inputs(
        self, name: str, version: int, inputs: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        """:meth:`predict` with named inputs (the encoder's ``token_ids`` and ``padding_mask``)."""
        rows = next(iter(inputs.values())).shape[0]
        return await self._call(inputs_request(name, version, inputs), name, version, rows)

    async def explain(
        self, name: str, version: int, indices: np.ndarray, values: np.ndarray
    ) -> Explained:
        """The ``explain`` signature on version ``version``, with :meth:`predict`'s policy;
        NotExplainable when the version has no such signature (an encoder, an older export)."""
        request = explain_request(name, version, indices, values)
        response = await self._send(request, name, version, explaining=True)
        return read_explained(response, name, version, *indices.shape)

    async def _call(
        self, request: predict_pb2.PredictRequest, name: str, version: int, rows: int
    ) -> np.ndarray:
        """Send ``request`` with the retry policy above; the ``[rows, classes]`` answer."""
        response = await self._send(request, name, version)
        return read_probabilities(response, name, version, rows)

    async def _send(
        self,
        request: predict_pb2.PredictRequest,
        name: str,
        version: int,
        *,
        explaining: bool = False,
    ) -> predict_pb2.PredictResponse:
        """``Predict`` with the retry policy of :meth:`predict`."""
        attempt = 0
        while True:
            try:
                return await self._predict(
                    request, timeout=self.deadline_s, metadata=self._metadata
                )
            except grpc.RpcError as exc:
                last = attempt >= self.retries
                raise_unless_retryable(
                    exc, self.address, name, version, last=last, explaining=explaining
                )
            await asyncio.sleep(BACKOFF_FIRST_S * 2**attempt)
            attempt += 1

    async def reachable(self) -> bool:
        """False while the channel waits out a reconnect backoff (its calls fail at once)."""
        state = self._channel.get_state(try_to_connect=True)
        return state != grpc.ChannelConnectivity.TRANSIENT_FAILURE

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()


class GrpcModelClient:
    """The blocking :class:`ModelClient`: GetModelStatus over a classic channel, and
    :class:`AioModelClient`'s ``predict`` run on an event loop of another thread."""

    def __init__(
        self, address: str, *, deadline_s: float, retries: int, service_key: str = ""
    ) -> None:
        self.address = address
        self.deadline_s = deadline_s
        self.retries = retries
        self._service_key = service_key
        self._metadata = bearer_metadata(service_key)
        self._channel = channel(address, options=CHANNEL_OPTIONS)
        self._status = model_service_pb2_grpc.ModelServiceStub(self._channel).GetModelStatus
        self._runner: LoopRunner | None = None
        self._borrowed: asyncio.AbstractEventLoop | None = None  # a loop someone else runs
        self._runner_lock = threading.Lock()
        self._core: AioModelClient | None = None  # made and used on the runner's loop only

    @classmethod
    def for_target(
        cls, target: str, config: InferenceSettings, *, service_key: str = ""
    ) -> GrpcModelClient:
        """A client of the model server at ``target`` with the service's deadline and retries,
        presenting ``service_key`` (none when empty)."""
        return cls(
            target,
            deadline_s=config.predict_deadline_s,
            retries=config.predict_retries,
            service_key=service_key,
        )

    def versions(self, name: str) -> list[int]:
        """The AVAILABLE versions of ``name`` (GetModelStatus), ascending.

        The answer is about the server now: predictions go over other channels, and
        readiness must not lag behind them while this channel waits out a reconnect
        backoff after the server was away.
        """
        request = get_model_status_pb2.GetModelStatusRequest(
            model_spec=model_pb2.ModelSpec(name=name)
        )
        try:
            try:
                response = self._status(request, timeout=self.deadline_s, metadata=self._metadata)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                response = self._status_now(request)
        except grpc.RpcError as exc:
            MODEL_SERVER_ERRORS.labels(exc.code().name).inc()
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return []
            raise unavailable(exc, self.address) from None
        return sorted(
            status.version for status in response.model_version_status if status.state == _AVAILABLE
        )

    def _status_now(
        self, request: get_model_status_pb2.GetModelStatusRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatus over a new connection, which dials at once (no backoff to wait out)."""
        # Channels share connections (and their backoff) unless given a pool of their own.
        options = (*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1))
        with channel(self.address, options=options) as fresh:
            status = model_service_pb2_grpc.ModelServiceStub(fresh).GetModelStatus
            return status(request, timeout=self.deadline_s, metadata=self._metadata)

    def predict(
        self, name: str, version: int, indices: np.ndarray, values: np.ndarray
    ) -> np.ndarray:
        """``Predict`` on version ``version``; VersionGone on NOT_FOUND, else Unavailable."""
        return self._run(self._on_core(lambda core: core.predict(name, version, indices, values)))

    def predict_inputs(
        self, name: str, version: int, inputs: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        """:meth:`predict` with named inputs (the encoder's ``token_ids`` and ``padding_mask``)."""
        return self._run(self._on_core(lambda core: core.predict_inputs(name, version, inputs)))

    def explain(
        self, name: str, version: int, indices: np.ndarray, values: np.ndarray
    ) -> Explained:
        """The ``explain`` signature on version ``version`` (see :meth:`AioModelClient.explain`)."""
        return self._run(self._on_core(lambda core: core.explain(name, version, indices, values)))

    async def _on_core(self, call: Callable[[AioModelClient], Awaitable[T]]) -> T:
        """``call`` on the runner's loop with the client made there (on first use)."""
        if self._core is None:
            self._core = self.aio()
        return await call(self._core)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        with self._runner_lock:
            if self._runner is None:
                self._runner = LoopThread("model-client")
            runner = self._runner
        return runner.run(coroutine)

    def run_predictions_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run blocking ``predict`` calls on ``loop`` (a running loop, called from others).

        For a process that already runs a loop with ``grpc.aio`` (the API); undone by
        :meth:`stop_predictions_on_loop`. Blocking calls made before (which started a
        private loop) keep their loop.
        """
        with self._runner_lock:
            if self._runner is None:
                self._runner = LoopRunner(loop)
                self._borrowed = loop

    async def stop_predictions_on_loop(self) -> None:
        """On the loop given to :meth:`run_predictions_on`: close what ran there."""
        with self._runner_lock:
            if self._runner is None or self._borrowed is not asyncio.get_running_loop():
                return
            runner, self._runner, self._borrowed = self._runner, None, None
        core, self._core = self._core, None
        if core is not None:
            await core.close()
        runner.close()

    def aio(self) -> AioModelClient:
        """A ``grpc.aio`` client of the same server, deadline and retries (for the calling loop)."""
        return AioModelClient(
            self.address,
            deadline_s=self.deadline_s,
            retries=self.retries,
            service_key=self._service_key,
        )

    def close(self) -> None:
        """Close the channels (and the private loop, if one was started)."""
        self._channel.close()
        with self._runner_lock:
            runner, borrowed = self._runner, self._borrowed
            self._runner = self._borrowed = None
        if runner is None:
            return
        core, self._core = self._core, None
        if core is not None and borrowed is None:  # a borrowed loop's owner stops it first
            runner.run(core.close())
        runner.close()
