"""The model server's config files, version layout and policies, and where models come from."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from mlcycle.common.errors import InvalidInput
from mlcycle.common.settings import load_settings
from mlcycle.modelserver.config import (
    BatchOptions,
    model_settings,
    parse_batching_parameters,
    parse_model_server_config,
    read_batching_parameters,
    read_model_server_config,
    read_monitoring_config,
    single_model_config,
)
from mlcycle.modelserver.flags import ModelServerOptions
from mlcycle.modelserver.server import model_source
from mlcycle.modelserver.versions import VersionPolicy, fingerprint, list_versions
from mlcycle.modelserver.watcher import ConfigFile

THREE_MODELS = """
# One of each version policy, as TF Serving's model server config documents them.
model_config_list {
  config {
    name: "latest2"
    base_path: "/models/a"
    model_platform: "tensorflow"
    model_version_policy { latest { num_versions: 2 } }
  }
  config {
    name: "everything"
    base_path: "/models/b"
    model_version_policy { all {} }
  }
  config {
    name: "pinned"
    base_path: "/models/c"
    model_version_policy { specific { versions: 1 versions: 3 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 3 }
  }
}
"""


def test_a_model_server_config_with_every_policy_and_labels() -> None:
    models = model_settings(parse_model_server_config(THREE_MODELS, "models.config"), "m")
    assert [m.name for m in models] == ["latest2", "everything", "pinned"]
    latest, everything, pinned = models
    assert latest.base_path == Path("/models/a")
    assert latest.policy == VersionPolicy("latest", num_versions=2)
    assert everything.policy == VersionPolicy("all")
    assert pinned.policy == VersionPolicy("specific", versions=frozenset({1, 3}))
    assert pinned.labels == {"stable": 1, "canary": 3}
    assert latest.labels == {}


def test_no_policy_means_the_latest_version() -> None:
    (model,) = model_settings(single_model_config("toxicity", "/models/toxicity"), "flags")
    assert model.policy == VersionPolicy("latest", num_versions=1)
    assert model.base_path == Path("/models/toxicity")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "model_config_list { config { name: 'a' base_path: '/x' } ",
            "not a valid ModelServerConfig",
        ),
        ("model_config_list { config { nme: 'a' } }", "not a valid ModelServerConfig"),
        ("model_config_list { config { base_path: '/x' } }", "config #1 has no name"),
        ("model_config_list { config { name: 'a' } }", r"config #1 \(a\) has no base_path"),
        (
            "model_config_list { config { name: 'a' base_path: '/x' } "
            "config { name: 'a' base_path: '/y' } }",
            "model name 'a' appears twice",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/x' model_platform: 'pytorch' } }",
            "model_platform 'pytorch' is not supported",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/x' "
            "model_version_policy { specific { } } } }",
            "lists no versions",
        ),
    ],
)
def test_config_errors_name_the_file_and_the_problem(text: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=f"^models.config: .*{problem}"):
        parse_model_server_config(text, "models.config")


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="missing.config: the model config file does not exist"):
        read_model_server_config(tmp_path / "missing.config")


# -- versions on disk and policies ------------------------------------------------------------


def test_only_numeric_folders_are_versions(tmp_path: Path) -> None:
    for name in ("1", "2", "10", ".candidate-3", "tmp", "4a", "007", "7"):
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_text("a file, not a folder")
    found = list_versions(tmp_path)
    assert sorted(found) == [1, 2, 7, 10]
    assert found[7] == tmp_path / "7"  # the canonical spelling wins over 007
    assert list_versions(tmp_path / "missing") == {}


@pytest.mark.parametrize(
    ("policy", "aspired"),
    [
        (VersionPolicy(), {5}),
        (VersionPolicy("latest", num_versions=2), {3, 5}),
        (VersionPolicy("latest", num_versions=9), {1, 2, 3, 5}),
        (VersionPolicy("all"), {1, 2, 3, 5}),
        (VersionPolicy("specific", versions=frozenset({2, 4})), {2}),
    ],
)
def test_version_policies(policy: VersionPolicy, aspired: set[int]) -> None:
    assert policy.aspired([1, 2, 3, 5]) == aspired
    assert policy.aspired([]) == set()


def test_a_fingerprint_changes_when_the_saved_model_is_rewritten(tmp_path: Path) -> None:
    (tmp_path / "saved_model.pb").write_bytes(b"first")
    before = fingerprint(tmp_path)
    assert fingerprint(tmp_path) == before
    (tmp_path / "saved_model.pb").write_bytes(b"second, longer")
    os.utime(tmp_path / "saved_model.pb", ns=(1, 1))
    assert fingerprint(tmp_path) != before


# -- batching and monitoring ------------------------------------------------------------------


def test_batching_defaults_are_tf_servings() -> None:
    options = read_batching_parameters(None)
    assert options == BatchOptions()
    assert (options.max_batch_size, options.batch_timeout_s, options.max_enqueued_batches) == (
        1000,
        0.0,
        10,
    )
    assert options.num_batch_threads == (os.cpu_count() or 1)
    assert not options.pad_variable_length_inputs and options.allowed_batch_sizes == ()


def test_a_full_batching_parameters_file(tmp_path: Path) -> None:
    path = tmp_path / "batching.config"
    path.write_text(
        "max_batch_size { value: 128 }\n"
        "batch_timeout_micros { value: 2000 }\n"
        "max_enqueued_batches { value: 100 }\n"
        "num_batch_threads { value: 4 }\n"
        'thread_pool_name { value: "batch_threads" }\n'
        "allowed_batch_sizes: 32\nallowed_batch_sizes: 64\nallowed_batch_sizes: 128\n"
        "pad_variable_length_inputs: true\n"
    )
    assert read_batching_parameters(path) == BatchOptions(
        max_batch_size=128,
        batch_timeout_s=0.002,
        max_enqueued_batches=100,
        num_batch_threads=4,
        allowed_batch_sizes=(32, 64, 128),
        pad_variable_length_inputs=True,
    )


def test_newer_batching_fields_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    text = "max_batch_size { value: 8 }\nenable_large_batch_splitting { value: true }\n"
    with caplog.at_level(logging.WARNING):
        options = parse_batching_parameters(text, "b.config")
    assert options.max_batch_size == 8
    assert [r.getMessage() for r in caplog.records] == [
        "b.config: batching parameter enable_large_batch_splitting is not supported; it is ignored"
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("max_batch_size { value: 0 }", "max_batch_size must be at least 1"),
        (
            "max_batch_size { value: 64 } allowed_batch_sizes: 16 allowed_batch_sizes: 8",
            "increasing",
        ),
        ("max_batch_size { value: 64 } allowed_batch_sizes: 32", "must equal max_batch_size"),
        ("batch_timeout_micros { value: -5 }", "must not be negative"),
        ("max_batch_size: 64", "not valid BatchingParameters"),
    ],
)
def test_bad_batching_parameters_are_refused(text: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=f"^b.config: .*{problem}"):
        parse_batching_parameters(text, "b.config")


def test_the_monitoring_config_says_where_prometheus_metrics_go(tmp_path: Path) -> None:
    path = tmp_path / "monitoring.config"
    path.write_text('prometheus_config { enable: true path: "/custom/metrics" }')
    assert read_monitoring_config(path) == "/custom/metrics"
    path.write_text("prometheus_config { enable: true }")
    assert read_monitoring_config(path) == "/monitoring/prometheus/metrics"
    path.write_text("prometheus_config { enable: false }")
    assert read_monitoring_config(path) is None
    assert read_monitoring_config(None) is None


# -- where the models come from ---------------------------------------------------------------


def test_model_sources_in_order(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, model_name="toxicity", model_server_poll_s=2.0)
    models_dir, poll_s = settings.trainer.models_dir, settings.modelserver.poll_s

    def options(**overrides: object) -> ModelServerOptions:
        named = {"host": settings.host, "model_name": settings.trainer.model_name, **overrides}
        return ModelServerOptions.from_settings(settings.modelserver, **named)  # type: ignore[arg-type]

    defaults = options()
    # Nothing given and no registry config: the model name under models_path.
    models, config_file, _ = model_source(defaults, models_dir=models_dir, poll_s=poll_s)
    assert config_file is None
    assert [(m.name, m.base_path) for m in models] == [
        ("toxicity", settings.trainer.models_dir / "toxicity")
    ]
    # The trainer's registry wrote models.config: it is served and re-read.
    registry = settings.trainer.models_dir / "models.config"
    registry.parent.mkdir(parents=True)
    registry.write_text("model_config_list { config { name: 'toxicity' base_path: '/m/t' } }")
    models, config_file, poll = model_source(defaults, models_dir=models_dir, poll_s=poll_s)
    assert config_file is not None and config_file.path == registry and poll == 2.0
    # --model_base_path wins over the registry.
    explicit = options(model_name="x", model_base_path="/b/x")
    models, config_file, _ = model_source(explicit, models_dir=models_dir, poll_s=poll_s)
    assert config_file is None and [(m.name, str(m.base_path)) for m in models] == [("x", "/b/x")]
    # --model_config_file wins over everything; its poll period defaults to never.
    other = tmp_path / "other.config"
    other.write_text(THREE_MODELS)
    chosen = options(model_config_file=str(other))
    models, config_file, poll = model_source(chosen, models_dir=models_dir, poll_s=poll_s)
    assert [m.name for m in models] == ["latest2", "everything", "pinned"] and poll == 0.0


def test_a_watched_config_file_reports_changes_once_and_keeps_a_broken_one_out(
    tmp_path: Path,
) -> None:
    path = tmp_path / "models.config"
    path.write_text("model_config_list { config { name: 'a' base_path: '/a' } }")
    watched = ConfigFile(path)
    watched.read()
    assert watched.changed() is None
    path.write_text("model_config_list { config { name: 'b' base_path: '/b' } }")
    changed = watched.changed()
    assert changed is not None and [m.name for m in changed] == ["b"]
    assert watched.changed() is None
    path.write_text("model_config_list { config { name: ")
    assert watched.changed() is None  # invalid: the running config stays
