"""The service clients: auth header, typed answers, errors as MlcycleError, and poll_until."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from mlcycle.clients import (
    DeadlinePassed,
    ServiceUnreachable,
    clients_for,
    default_api_key,
    poll_until,
    service_url,
)
from mlcycle.clients.base import ServiceClient, dialable_host
from mlcycle.clients.collector import CollectorClient
from mlcycle.clients.inference import InferenceClient
from mlcycle.clients.labeler import LabelerClient
from mlcycle.clients.modelserver import ModelServerClient
from mlcycle.clients.trainer import TrainerClient
from mlcycle.common.errors import (
    Forbidden,
    InvalidInput,
    MlcycleError,
    NotFound,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
    ValidationFailed,
)
from mlcycle.common.settings import load_settings
from mlcycle.contracts.label_runs import RunParams

BASE = "http://service.test:8000"


def answering(status: int, body: object = None, *, text: str | None = None, seen=None):
    """A transport that answers every request with ``status`` and ``body`` (JSON) or ``text``."""

    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if text is not None:
            return httpx.Response(status, text=text)
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handle)


def error_body(code: str, message: str, details: object = None) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "details": details}}


def test_the_api_key_goes_in_a_bearer_header_and_nothing_without_one() -> None:
    seen: list[httpx.Request] = []
    with CollectorClient(
        BASE, api_key="s3cret", transport=answering(200, {"counts": {}}, seen=seen)
    ) as keyed:
        keyed.stats()
    with CollectorClient(BASE, transport=answering(200, {"counts": {}}, seen=seen)) as open_:
        open_.stats()
    assert seen[0].headers["authorization"] == "Bearer s3cret"
    assert "authorization" not in seen[1].headers
    assert str(seen[0].url) == f"{BASE}/v1/stats"


def test_records_come_back_typed() -> None:
    body = {
        "predictions": [
            {"score": 0.9, "label": "1", "threshold": 0.5, "model_version": 3, "extra": True}
        ]
    }
    client = InferenceClient(BASE, transport=answering(200, body))
    (prediction,) = client.predict(["you idiot"])
    assert prediction.score == 0.9 and prediction.label == "1" and prediction.model_version == 3
    trainer = TrainerClient(BASE, transport=answering(200, {"models": [], "production": {"t": 2}}))
    assert trainer.production_version("t") == 2
    assert trainer.production_version("other") is None


def test_a_label_run_is_asked_for_with_only_the_parameters_given() -> None:
    seen: list[httpx.Request] = []
    started = {"id": "lr-1", "status": "queued", "previous_run": None}
    client = LabelerClient(BASE, transport=answering(202, started, seen=seen))
    run = client.start_run(RunParams(strategy="mean_threshold", labeling_functions=[]))
    assert run.id == "lr-1"
    assert json.loads(seen[0].content) == {"strategy": "mean_threshold", "labeling_functions": []}
    listed = {"items": [{"id": "lr-1", "task": "toxicity", "status": "running",
                         "progress": {"phase": "writing", "chunks_done": 3, "chunks_total": 9},
                         "created_at": "2026-01-02T03:04:05+00:00"}]}  # fmt: skip
    (brief,) = LabelerClient(BASE, transport=answering(200, listed)).runs()
    assert brief.progress.chunks_done == 3 and not brief.finished and brief.stats is None


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "invalid_input", InvalidInput),
        (401, "unauthenticated", Unauthenticated),
        (404, "not_found", NotFound),
        (422, "validation_failed", ValidationFailed),
        (429, "too_many_requests", TooManyRequests),
        (503, "unavailable", Unavailable),
        (409, "conflict", InvalidInput),
        (502, "bad_gateway", Unavailable),
    ],
)
def test_an_error_answer_is_the_error_class_of_its_status(
    status: int, code: str, expected: type[MlcycleError]
) -> None:
    client = InferenceClient(BASE, transport=answering(status, error_body(code, "no", {"x": 1})))
    with pytest.raises(expected) as raised:
        client.lineage("c1")
    assert raised.value.message == f"the inference service answered {status}: {code}: no"
    assert raised.value.details == {"x": 1}


def test_a_server_error_is_the_root_error_not_a_client_one() -> None:
    client = InferenceClient(BASE, transport=answering(500, error_body("internal", "oops")))
    with pytest.raises(MlcycleError) as raised:
        client.lineage("c1")
    assert type(raised.value) is MlcycleError
    assert "answered 500: internal: oops" in raised.value.message


def test_tf_serving_errors_and_bodies_that_are_not_json_are_named_too() -> None:
    tf = ModelServerClient(BASE, model_name="m", transport=answering(404, {"error": "no model"}))
    with pytest.raises(NotFound, match="the model server answered 404: no model"):
        tf.status()
    plain = InferenceClient(BASE, transport=answering(418, text="I'm a teapot"))
    with pytest.raises(InvalidInput, match="answered 418: I'm a teapot"):
        plain.lineage("c1")
    not_json = InferenceClient(BASE, transport=answering(200, text="<html>"))
    with pytest.raises(Unavailable, match="answered something that is not JSON"):
        not_json.lineage("c1")


def test_an_answer_of_the_wrong_shape_is_an_error_naming_the_record() -> None:
    client = TrainerClient(BASE, transport=answering(200, {"jobs": "none"}))
    with pytest.raises(MlcycleError, match="not a JobList"):
        client.jobs()


def test_a_refused_connection_is_unavailable_and_says_what_to_start() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = InferenceClient(service_url("127.0.0.1", port))
    with pytest.raises(ServiceUnreachable) as raised:
        client.predict(["hi"])
    message = raised.value.message
    assert message.startswith(f"cannot reach the inference service at http://127.0.0.1:{port}")
    assert "`mlcycle inference api`" in message
    assert client.ready() is False and client.alive() is False


def test_health_probes_answer_true_only_for_a_200() -> None:
    assert ServiceClient(BASE, transport=answering(200, {"status": "ok"})).ready()
    refusing = answering(503, error_body("unavailable", "not ready: redis", {"checks": {}}))
    assert not ServiceClient(BASE, transport=refusing).ready()
    degraded = answering(200, {"status": "degraded", "checks": {"model": True, "redis": False}})
    readiness = ServiceClient(BASE, transport=degraded).readiness()
    assert readiness.status == "degraded" and readiness.checks == {"model": True, "redis": False}
    with pytest.raises(Unavailable) as raised:
        ServiceClient(BASE, transport=refusing).readiness()
    assert not isinstance(raised.value, ServiceUnreachable)  # it answered: it is running


def test_urls_from_settings_dial_loopback_for_a_wildcard_host() -> None:
    settings = load_settings(host="0.0.0.0", inference_port=8123, api_keys="k1,k2")
    clients = clients_for(settings)
    assert clients.inference.base_url == "http://127.0.0.1:8123"
    assert clients.inference.headers == {"Authorization": "Bearer k1"}
    assert clients.modelserver.model_name == settings.trainer.model_name
    assert clients_for(settings, api_key="k2").trainer.api_key == "k2"
    assert service_url("::1", 80) == "http://[::1]:80"
    assert dialable_host("::") == "127.0.0.1" and dialable_host("10.0.0.5") == "10.0.0.5"


def test_poll_until_returns_the_first_truthy_answer() -> None:
    answers = iter([None, 0, "", "done"])
    assert poll_until(lambda: next(answers), timeout=5, interval=0.001, what="x") == "done"


def test_poll_until_gives_up_at_the_deadline_saying_what_did_not_happen() -> None:
    calls: list[float] = []
    started = time.monotonic()
    with pytest.raises(DeadlinePassed, match="^the thing did not happen within 0 s$"):
        poll_until(
            lambda: calls.append(time.monotonic()), timeout=0.2, interval=0.05,
            what="the thing did not happen",
        )  # fmt: skip
    assert 0.2 <= time.monotonic() - started < 1.0
    assert calls[-1] - started >= 0.2  # one last look at the deadline


def test_poll_until_treats_ignored_errors_as_not_yet_and_raises_the_others() -> None:
    answers = iter([Unavailable("starting"), Unavailable("starting"), True])

    def check() -> bool:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert poll_until(check, timeout=5, interval=0.001, what="x", ignore=(Unavailable,))
    with pytest.raises(KeyError):
        poll_until(lambda: {}["k"], timeout=5, interval=0.001, what="x", ignore=(Unavailable,))


def test_tools_send_the_service_key_else_the_first_key_given_in_plain() -> None:
    digest = "sha256:" + "ab" * 32
    scoped = load_settings(api_keys=f"viewer:read:{digest},ops:admin:ops-secret,bare")
    assert default_api_key(scoped.edge) == "ops-secret"  # a digest cannot be sent
    assert clients_for(scoped).trainer.headers == {"Authorization": "Bearer ops-secret"}
    chosen = load_settings(api_keys="ops:admin:ops-secret", service_key="trainer-secret")
    assert default_api_key(chosen.edge) == "trainer-secret"
    assert default_api_key(load_settings(api_keys=f"viewer:read:{digest}").edge) is None
    assert default_api_key(load_settings().edge) is None


def test_a_403_is_forbidden_naming_the_scope() -> None:
    body = error_body("forbidden", "API key 'viewer' lacks the 'admin' scope this call needs")
    client = TrainerClient(BASE, transport=answering(403, body))
    with pytest.raises(Forbidden, match="'admin' scope"):
        client.models()
