"""Request and response bodies of the inference API, and their parsing.

Bodies are read with a size limit and parsed with orjson, the instance count
is checked (413) before anything is validated, then pydantic validates. The
same models document the bodies in the OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, NotRequired, TypedDict, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from mlcycle.common.errors import InvalidInput, PayloadTooLarge, ValidationFailed
from mlcycle.common.http import describe_validation_errors
from mlcycle.contracts.comments import MAX_TEXT_CHARS
from mlcycle.contracts.explanations import Span
from mlcycle.contracts.ids import RecordId
from mlcycle.contracts.messages import flat_errors

Text = Annotated[StrictStr, Field(max_length=MAX_TEXT_CHARS)]
# A JSON object whose fields belong to someone else (a comment's free metadata, a
# trainer's figures and hyper-parameters): passed on as given, untyped here by design.
JsonObject = dict[str, Any]
M = TypeVar("M", bound=BaseModel)


class Instance(BaseModel):
    """One comment to score, with the metadata its model's transform was fitted on."""

    model_config = ConfigDict(extra="forbid")

    text: Text = Field(description="the comment")
    metadata: JsonObject | None = Field(
        default=None,
        description="free metadata (e.g. year, logged_in); fields the model's transform "
        "was not fitted on are refused with 400",
    )
    id: RecordId | None = Field(
        default=None,
        description="the comment's id: its score is kept so a moderator's decision on it "
        "(POST /v1/feedback) can be joined to it",
    )


class PredictRequest(BaseModel):
    """Comments to score with the serving model version."""

    model_config = ConfigDict(extra="forbid")

    instances: list[Instance] = Field(min_length=1, description="at least one instance")
    explain: StrictBool = Field(
        default=False,
        description="also answer, per prediction, the words of the text that drove its score "
        "(`spans`), from the same model version (409 for a version that cannot explain)",
    )
    live: StrictBool = Field(
        default=True,
        description="false for a look at a comment that is not served traffic (a reviewer's "
        "console): the live monitor and the shadow do not count it, and its score is not "
        "kept for moderators' decisions",
    )


class Prediction(BaseModel):
    """The model's answer for one instance."""

    score: float = Field(description="P(positive class) for binary models, else the top class's")
    label: str = Field(description="the predicted class name ('1'/'0' for binary models)")
    threshold: float | None = Field(
        description="score at or above which a binary model answers the positive class "
        "(null for multi-class models, whose label is the most probable class)"
    )
    model_version: int = Field(description="the model version that scored it")
    transform_version: str = Field(description="the featurizer transform of that version")
    probabilities: dict[str, float] | None = Field(
        default=None, description="per-class probabilities (multi-class models only)"
    )
    spans: list[Span] | None = Field(
        default=None,
        description="with `explain`: each word of the text as sent, with its character "
        "offsets and its share of the score (decision record 0018)",
    )


class SpanRow(TypedDict):
    """One word of an explanation as the service answers it: :class:`Span` as a plain dict."""

    begin: int
    end: int
    text: str
    score: float


class PredictionRow(TypedDict):
    """One prediction as the service builds and answers it: :class:`Prediction` as a plain dict.

    Built once per instance on the serving path, where a model's validation would cost
    more than the answer's serialization; ``probabilities`` is there for multi-class
    models only.
    """

    score: float
    label: str
    threshold: float | None
    model_version: int
    transform_version: str
    probabilities: NotRequired[dict[str, float]]
    spans: NotRequired[list[SpanRow]]


class PredictResponse(BaseModel):
    """One prediction per instance, in order."""

    predictions: list[Prediction]


def loads(body: bytes) -> Any:
    """The JSON in ``body``; InvalidInput naming the position when it is malformed."""
    if not body.strip():
        raise InvalidInput("the request body is empty: send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            details={"line": exc.lineno, "column": exc.colno},
        ) from None


def check_count(count: int, limit: int) -> None:
    """PayloadTooLarge when a request carries more than ``limit`` instances."""
    if count > limit:
        raise PayloadTooLarge(
            f"{count} instances in one request; the limit is {limit}",
            details={"instances": count, "max_instances": limit},
        )


def parse_predict(body: bytes, max_instances: int) -> PredictRequest:
    """A ``POST /v1/predict`` body; 400 malformed, 413 too many instances, 422 invalid fields."""
    data = loads(body)
    if isinstance(data, dict) and isinstance(data.get("instances"), list):
        check_count(len(data["instances"]), max_instances)
    try:
        return PredictRequest.model_validate(data)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        fields = ", ".join(".".join(map(str, e["loc"])) for e in errors[:5])
        raise ValidationFailed(
            f"invalid request: {fields}", details=describe_validation_errors(errors)
        ) from None


# -- TensorFlow Serving's REST shape ------------------------------------------------------------


class TfRowRequest(BaseModel):
    """TF Serving's row format: one instance per comment, a string or an object."""

    model_config = ConfigDict(extra="forbid")

    signature_name: str | None = Field(default=None, description="only serving_default")
    instances: list[Text | Instance] = Field(min_length=1)


class TfColumns(BaseModel):
    """The named inputs of the columnar format."""

    model_config = ConfigDict(extra="forbid")

    text: list[Text] = Field(min_length=1)
    metadata: list[JsonObject | None] | None = None


class TfColumnarRequest(BaseModel):
    """TF Serving's columnar format: named inputs (or the single unnamed one), one entry each."""

    model_config = ConfigDict(extra="forbid")

    signature_name: str | None = Field(default=None, description="only serving_default")
    inputs: TfColumns | list[Text]


TF_SIGNATURE = "serving_default"


def parse_tf_predict(
    body: bytes, max_instances: int
) -> tuple[list[str], list[JsonObject | None] | None, bool]:
    """(texts, metadata, columnar) of a TF Serving ``:predict`` body; errors name the problem."""
    texts, metadata, columnar, _ = parse_tf_predict_ids(body, max_instances)
    return texts, metadata, columnar


def parse_tf_predict_ids(
    body: bytes, max_instances: int
) -> tuple[list[str], list[JsonObject | None] | None, bool, list[str | None] | None]:
    """:func:`parse_tf_predict` and the row format's instance ids (None when none has one)."""
    data = loads(body)
    if not isinstance(data, dict):
        raise InvalidInput("the request body must be a JSON object")
    if "instances" in data and "inputs" in data:
        raise InvalidInput("the request has both 'instances' and 'inputs'; send one of them")
    if "instances" in data:
        row = _validated(TfRowRequest, data, max_instances, data.get("instances"))
        _check_signature(row.signature_name)
        texts, metadata = _rows(row.instances)
        ids = [None if isinstance(i, str) else i.id for i in row.instances]
        return texts, metadata, False, ids if any(ids) else None
    if "inputs" in data:
        inputs = data.get("inputs")
        column = inputs.get("text") if isinstance(inputs, dict) else inputs
        columnar = _validated(TfColumnarRequest, data, max_instances, column)
        _check_signature(columnar.signature_name)
        texts, metadata = _columns(columnar.inputs)
        return texts, metadata, True, None
    raise InvalidInput("missing 'inputs' or 'instances' key")


def _validated(model: type[M], data: Mapping[str, Any], limit: int, items: Any) -> M:
    if isinstance(items, list):
        check_count(len(items), limit)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(f"invalid request: {flat_errors(exc)}") from None


def _check_signature(name: str | None) -> None:
    if name is not None and name != TF_SIGNATURE:
        raise InvalidInput(f'Serving signature name: "{name}" not found in signature def')


def _rows(instances: list[str | Instance]) -> tuple[list[str], list[JsonObject | None] | None]:
    texts: list[str] = []
    metadata: list[JsonObject | None] = []
    for instance in instances:
        if isinstance(instance, str):
            texts.append(instance)
            metadata.append(None)
        else:
            texts.append(instance.text)
            metadata.append(instance.metadata)
    return texts, metadata if any(metadata) else None


def _columns(
    inputs: TfColumns | list[str],
) -> tuple[list[str], list[JsonObject | None] | None]:
    if isinstance(inputs, list):
        return inputs, None
    if inputs.metadata is not None and len(inputs.metadata) != len(inputs.text):
        raise InvalidInput(
            f"inputs.text has {len(inputs.text)} entries but inputs.metadata "
            f"{len(inputs.metadata)}: columnar inputs must have the same length"
        )
    return inputs.text, inputs.metadata
