"""``mlcycle predict`` and ``mlcycle explain``: ask the inference service, print the answer."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import orjson
from rich.console import Console
from rich.table import Table

from mlcycle.common.errors import InvalidInput, MlcycleError, Unavailable
from mlcycle.common.settings import Settings

TIMEOUT_S = 30.0
# Hosts a server listens on that a client cannot dial.
_WILDCARDS = ("", "0.0.0.0", "::")


def default_url(settings: Settings) -> str:
    """The inference service of ``settings``: its host and ``inference_port``."""
    host = "127.0.0.1" if settings.host in _WILDCARDS else settings.host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.inference_port}"


def call_service(
    method: str,
    url: str,
    path: str,
    api_key: str | None,
    *,
    body: Any = None,
    timeout_s: float = TIMEOUT_S,
) -> dict[str, Any]:
    """``{method} {url}{path}``'s JSON answer; a clear MlcycleError when it does not succeed."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    endpoint = f"{url.rstrip('/')}{path}"
    try:
        response = httpx.request(method, endpoint, json=body, headers=headers, timeout=timeout_s)
    except httpx.ConnectError as exc:
        raise Unavailable(
            f"cannot reach the inference service at {url} ({exc}); "
            "is `mlcycle up` (or `mlcycle inference api`) running?"
        ) from None
    except httpx.HTTPError as exc:
        raise Unavailable(f"the request to {endpoint} failed: {exc}") from None
    if response.status_code >= 400:
        raise answered_error(response)
    try:
        return dict(response.json())
    except ValueError:
        raise Unavailable(f"{endpoint} answered something that is not JSON") from None


def request_predictions(
    url: str, texts: list[str], api_key: str | None, timeout_s: float = TIMEOUT_S
) -> dict[str, Any]:
    """``POST {url}/v1/predict`` for ``texts``."""
    body = {"instances": [{"text": text} for text in texts]}
    return call_service("POST", url, "/v1/predict", api_key, body=body, timeout_s=timeout_s)


def request_lineage(url: str, comment_id: str, api_key: str | None) -> dict[str, Any]:
    """``GET {url}/v1/lineage/{comment_id}``."""
    return call_service("GET", url, f"/v1/lineage/{quote(comment_id, safe='')}", api_key)


def _api_key(settings: Settings, api_key: str | None) -> str | None:
    """The key given, else the first one configured, else none."""
    if api_key is not None:
        return api_key
    return settings.api_keys[0] if settings.api_keys else None


def answered_error(response: httpx.Response) -> MlcycleError:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        message = f"{error.get('code', 'error')}: {error.get('message', '')}"
    elif isinstance(error, str):
        message = error
    else:
        message = response.text.strip()[:500] or response.reason_phrase
    text = f"the inference service answered {response.status_code}: {message}"
    return InvalidInput(text) if response.status_code < 500 else Unavailable(text)


def run_predict_command(
    settings: Settings,
    texts: list[str],
    *,
    url: str | None,
    api_key: str | None,
    as_json: bool,
    console: Console,
) -> dict[str, Any]:
    """Score ``texts`` and print each one's score, label and model version (or the JSON)."""
    if not texts:
        raise InvalidInput("give at least one text to score")
    answer = request_predictions(url or default_url(settings), texts, _api_key(settings, api_key))
    if as_json:
        console.out(orjson.dumps(answer).decode(), highlight=False)
        return answer
    table = Table()
    table.add_column("text", overflow="fold", max_width=60)
    table.add_column("score", justify="right")
    table.add_column("label")
    table.add_column("model version", justify="right")
    for text, prediction in zip(texts, answer.get("predictions", []), strict=False):
        table.add_row(
            text,
            f"{prediction['score']:.4f}",
            str(prediction["label"]),
            str(prediction["model_version"]),
        )
    console.print(table)
    return answer


def run_explain_command(
    settings: Settings,
    comment_id: str,
    *,
    url: str | None,
    api_key: str | None,
    as_json: bool,
    console: Console,
) -> dict[str, Any]:
    """Print one comment's prediction lineage as a tree (or the JSON)."""
    from mlcycle.inference.lineage import render_lineage

    chain = request_lineage(url or default_url(settings), comment_id, _api_key(settings, api_key))
    if as_json:
        console.out(orjson.dumps(chain).decode(), highlight=False)
    else:
        console.print(render_lineage(chain))
    return chain
