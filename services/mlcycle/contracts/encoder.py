"""The encoder variant: how a job trains it, and what its training cost and decided."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

_STRICT = ConfigDict(extra="forbid", frozen=True)


class EncoderOptions(BaseModel):
    """How the encoder variant (the shipped MiniLM with a trained head) is trained.

    The encoder is frozen by default: each text is encoded once and only the head
    learns. ``fine_tune_layers`` > 0 also trains that many of its top transformer
    layers on the tokens, which costs a forward and backward pass per comment
    per epoch (opt-in).
    """

    model_config = _STRICT

    max_length: int = Field(128, ge=8, le=512, description="tokens per text, longer ones cut")
    hidden_units: int = Field(128, ge=0, le=4096, description="the head's hidden layer; 0: linear")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    batch_size: int = Field(64, ge=1, le=8192)
    epochs: int = Field(40, ge=1, le=500, description="head epochs (early stopping on dev)")
    fine_tune_layers: int = Field(0, ge=0, le=6)
    fine_tune_epochs: int = Field(1, ge=1, le=20)
    fine_tune_learning_rate: float = Field(2e-5, gt=0.0, le=1.0)


class EncoderSummary(TypedDict, total=False):
    """The encoder variant's cost: encoding, head and fine-tuning time, latency, and the choice."""

    model: str
    max_length: int
    fine_tune_layers: int
    train_texts: int
    encode_s: float
    encode_train_s: float
    head_s: float
    fine_tune_s: float
    # Training time (encoding the train split, the head, fine-tuning) per 10k train comments.
    train_s_per_10k: float
    # The exported model's single-comment predict p50 on this machine (tokenizing included).
    predict_p50_ms: float
    latency_budget_ms: float
    dev_metric: float
    # Search with consider_encoder: whether the encoder was picked, and why.
    chosen: bool
    reason: str
