"""``mlcycle modelserver`` takes tensorflow_model_server's command line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mlcycle.common.settings import Settings, load_settings
from mlcycle.modelserver.cli import run
from mlcycle.modelserver.flags import IGNORED_FLAGS, ModelServerOptions, parse_flags


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, model_name="toxicity", model_server_poll_s=1.0)


@pytest.fixture
def defaults(settings: Settings) -> ModelServerOptions:
    """What ``mlcycle modelserver`` starts from: the settings' ports, model name and poll."""
    return ModelServerOptions.from_settings(
        settings.modelserver, host=settings.host, model_name=settings.trainer.model_name
    )


def test_defaults_come_from_settings(defaults: ModelServerOptions) -> None:
    options = parse_flags([], defaults)
    assert options == defaults
    assert (options.port, options.rest_api_port) == (8500, 8501)
    assert options.model_name == "toxicity"
    assert options.file_system_poll_wait_seconds == 1.0
    assert options.model_config_file_poll_wait_seconds is None
    assert options.enable_model_warmup and not options.enable_batching
    assert options.rest_api_timeout_in_ms == 30_000
    assert options.saved_model_tags == ("serve",)


def test_a_typical_docker_command_line(
    defaults: ModelServerOptions, caplog: pytest.LogCaptureFixture
) -> None:
    argv = [
        "--port=8500",
        "--rest_api_port=8501",
        "--model_name=x",
        "--model_base_path=/models/x",
        "--file_system_poll_wait_seconds=1",
        "--tensorflow_session_parallelism=0",
    ]
    with caplog.at_level(logging.WARNING):
        options = parse_flags(argv, defaults)
    assert (options.model_name, options.model_base_path) == ("x", "/models/x")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "--tensorflow_session_parallelism is not implemented by this model server; it is ignored"
    ]


def test_equals_and_space_separated_values_are_the_same(defaults: ModelServerOptions) -> None:
    joined = parse_flags(["--port=9000", "--model_config_file=/m/models.config"], defaults)
    spaced = parse_flags(["--port", "9000", "--model_config_file", "/m/models.config"], defaults)
    assert joined == spaced
    assert joined.port == 9000
    assert joined.model_config_file == "/m/models.config"


@pytest.mark.parametrize(
    ("argv", "batching"),
    [
        ([], False),
        (["--enable_batching"], True),
        (["--enable_batching=true"], True),
        (["--enable_batching=false"], False),
        (["--enable_batching", "true"], True),
        (["--enable_batching=1"], True),
        (["--enable_batching=FALSE"], False),
    ],
)
def test_boolean_flags(defaults: ModelServerOptions, argv: list[str], batching: bool) -> None:
    assert parse_flags(argv, defaults).enable_batching is batching


def test_rest_api_port_zero_turns_rest_off_and_port_zero_picks_a_free_one(
    defaults: ModelServerOptions,
) -> None:
    options = parse_flags(["--port=0", "--rest_api_port=0"], defaults)
    assert options.port == 0
    assert options.rest_api_port is None


def test_every_option_we_implement(defaults: ModelServerOptions) -> None:
    options = parse_flags(
        [
            "--host=0.0.0.0",
            "--model_config_file_poll_wait_seconds=5",
            "--file_system_poll_wait_seconds=0",
            "--batching_parameters_file=/etc/batching.config",
            "--rest_api_timeout_in_ms=1500",
            "--monitoring_config_file=/etc/monitoring.config",
            "--enable_model_warmup=false",
            "--saved_model_tags=serve,gpu",
        ],
        defaults,
    )
    assert options.host == "0.0.0.0"
    assert options.model_config_file_poll_wait_seconds == 5.0
    assert options.file_system_poll_wait_seconds == 0.0
    assert options.batching_parameters_file == "/etc/batching.config"
    assert options.rest_api_timeout_in_ms == 1500
    assert options.monitoring_config_file == "/etc/monitoring.config"
    assert options.enable_model_warmup is False
    assert options.saved_model_tags == ("serve", "gpu")


def test_thread_flags_are_implemented_not_ignored(
    defaults: ModelServerOptions, caplog: pytest.LogCaptureFixture
) -> None:
    unset = parse_flags([], defaults)
    assert unset.grpc_max_threads == 0  # the server's choice
    assert unset.tensorflow_intra_op_parallelism == 0  # TensorFlow's choice
    assert unset.tensorflow_inter_op_parallelism == 0
    argv = [
        "--grpc_max_threads=6",
        "--tensorflow_intra_op_parallelism=1",
        "--tensorflow_inter_op_parallelism",
        "2",
    ]
    with caplog.at_level(logging.WARNING):
        options = parse_flags(argv, defaults)
    assert not caplog.records
    assert options.grpc_max_threads == 6
    assert options.tensorflow_intra_op_parallelism == 1
    assert options.tensorflow_inter_op_parallelism == 2


def test_every_unimplemented_tf_serving_flag_is_accepted_with_one_warning_each(
    defaults: ModelServerOptions, caplog: pytest.LogCaptureFixture
) -> None:
    argv = [f"--{name}=1" for name in IGNORED_FLAGS]
    argv += ["--grpc_channel_arguments=grpc.max_connection_age_ms=2000,grpc.x=1"]
    argv += ["--rest_api_enable_cors_support"]  # a bare boolean
    with caplog.at_level(logging.WARNING):
        parse_flags(argv, defaults)
    warned = [r.getMessage().split()[0] for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(warned) == sorted(f"--{name}" for name in IGNORED_FLAGS)


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--model_nam=x"], "unrecognized arguments: --model_nam=x"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--port=http"], "argument --port: invalid _port value: 'http'"),
        (["--port=70000"], "not a TCP port: 70000"),
        (["--enable_batching=maybe"], "expected true or false, not 'maybe'"),
        (["--file_system_poll_wait_seconds=-1"], "must not be negative"),
        (["--tensorflow_intra_op_parallelism=-1"], "must not be negative"),
        (["--grpc_max_threads=many"], "argument --grpc_max_threads: invalid _threads value"),
        (["extra"], "unrecognized arguments: extra"),
    ],
)
def test_a_bad_command_line_exits_2_saying_why(
    defaults: ModelServerOptions,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    complaint: str,
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_flags(argv, defaults)
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


def test_an_unknown_flag_is_named_as_not_a_tf_serving_flag(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--model_name=x", "--no_such_flag=1"], settings) == 2
    err = capsys.readouterr().err
    assert "--no_such_flag=1" in err
    assert "not a tensorflow_model_server flag" in err


def test_help_lists_the_flags_and_exits_0(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--help"], settings) == 0
    out = capsys.readouterr().out
    for flag in ("--port", "--rest_api_port", "--model_config_file", "--enable_batching"):
        assert flag in out
    assert "--tensorflow_session_parallelism" not in out  # accepted, but not advertised
