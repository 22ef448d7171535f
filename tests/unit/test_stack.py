"""What the local stack tells its services about Redis: `mlcycle up --no-redis` means none."""

from __future__ import annotations

from pathlib import Path

from mlcycle.common.settings import Settings
from mlcycle.inference.cache import NoCache, ScoreCache
from mlcycle.inference.runtime import open_cache
from mlcycle.local.stack import LocalStack


def open_resolved_cache(resolved: Settings) -> tuple[ScoreCache | NoCache, object]:
    """The inference service's cache as its runtime opens it from these settings."""
    return open_cache(
        resolved.cache,
        ttl_s=resolved.inference.cache_ttl_s,
        redis_dir=resolved.data_dir / "redis-inference",
        start_embedded=resolved.cache.embedded_redis,
    )


def settings_in(tmp_path: Path, **values: object) -> Settings:
    # A Kafka of its own, so the stack starts no broker: only Redis is in question here.
    return Settings(data_dir=tmp_path, kafka_bootstrap="127.0.0.1:1", **values)


def test_without_redis_no_service_starts_one_of_its_own(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    stack = LocalStack(settings, services=(), with_redis=False)
    resolved = stack._start_infrastructure(settings)
    try:
        assert resolved.cache.redis_url == ""
        assert resolved.cache.embedded_redis is False
        cache, embedded = open_resolved_cache(resolved)
        assert isinstance(cache, NoCache)
        assert embedded is None
    finally:
        stack.stop()


def test_a_configured_redis_is_used_as_it_is(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, redis_url="redis://127.0.0.1:1/0")
    stack = LocalStack(settings, services=(), with_redis=True)
    resolved = stack._start_infrastructure(settings)
    try:
        assert resolved.cache.redis_url == "redis://127.0.0.1:1/0"
        assert resolved.cache.embedded_redis is True
        cache, embedded = open_resolved_cache(resolved)
        assert isinstance(cache, ScoreCache)
        assert embedded is None
        cache.close()
    finally:
        stack.stop()


def test_the_serving_config_written_first_serves_nothing_and_is_never_overwritten(
    tmp_path: Path,
) -> None:
    from mlcycle.contracts.serving import ensure_serving_config, serving_config_path
    from mlcycle.modelserver.config import model_settings, parse_model_server_config
    from mlcycle.trainer.serving_config import render_serving_config

    models = tmp_path / "models"
    path = ensure_serving_config(models)
    assert path == serving_config_path(models) == models / "models.config"
    text = path.read_text(encoding="utf-8")
    # What the trainer writes when nothing is in production, and the model server reads it.
    assert text == render_serving_config({}, "")
    assert model_settings(parse_model_server_config(text, str(path)), str(path)) == []
    pinned = render_serving_config({"toxicity": 3}, str(models))
    path.write_text(pinned, encoding="utf-8")
    ensure_serving_config(models)
    assert path.read_text(encoding="utf-8") == pinned
    stack = LocalStack(Settings(data_dir=tmp_path, models_dir=models), services=())
    assert f"--model_config_file={path}" in stack.spec("modelserver").argv
