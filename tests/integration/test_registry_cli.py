"""``mlcycle models``, ``mlcycle promote`` and ``mlcycle rollback`` against the registry's API
over real HTTP (one trainer registry API on SQLite for the module)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest
from typer.testing import CliRunner

from mlcycle.cli import app
from mlcycle.common.settings import load_settings
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.registry_api import models_router
from tests.fixtures.registry import NAME, register, serve_routers

pytestmark = pytest.mark.integration

ADMIN, READER = "ops-secret", "reader-secret"
KEYS = (f"ops:admin:{ADMIN}", f"reader:read+train+predict:{READER}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ModelRegistry]]:
    """The registry API with versions 1-3 blessed (1 and 2 promoted), 3 the canary, 4 unblessed."""
    data = tmp_path_factory.mktemp("registry-cli")
    settings = load_settings(data_dir=data, api_keys=KEYS)
    store = SqliteStore(data / "store.sqlite3")
    registry = ModelRegistry(settings.trainer, store)
    for version in (1, 2, 3, 4):
        register(registry, version, metrics={"dev": {"roc_auc": 0.8 + version / 100}})
        if version < 4:
            registry.bless(NAME, version, f"beats version {version - 1}")
        else:
            registry.unbless(NAME, version, "worse than version 3")
    registry.promote(NAME, 1, "first")
    registry.promote(NAME, 2, "second")
    registry.start_canary(NAME, 3, "blessed", share=0.25, rollout="r-1")
    try:
        with serve_routers(settings, partial(models_router, settings.trainer, registry)) as url:
            yield url, registry
    finally:
        store.close()


def run(url: str, *args: str, key: str = ADMIN) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--url", url, "--api-key", key], terminal_width=200)
    return result.exit_code, result.output


def flat(text: str) -> str:
    """Messages wrap at the console's width: the words, one space apart."""
    return " ".join(text.split())


def table_rows(out: str) -> dict[str, str]:
    """Version -> its row's cells joined, the lines of a wrapped row put back together."""
    rows: dict[str, list[list[str]]] = {}
    version = ""
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) < 6:
            continue
        version = cells[0] or version
        rows.setdefault(version, []).append(cells)
    return {
        v: " | ".join(
            " ".join(part for part in column if part) for column in zip(*lines, strict=True)
        )
        for v, lines in rows.items()
    }


def test_models_lists_stages_metrics_and_labels(served: tuple[str, ModelRegistry]) -> None:
    url, _ = served
    code, out = run(url, "models", key=READER)
    assert code == 0, out
    rows = table_rows(out)
    assert "canary" in rows["3"] and "canary 25%" in rows["3"] and "0.8300" in rows["3"]
    assert "production" in rows["2"] and "stable" in rows["2"]
    assert "archived" in rows["1"] and "beats version 0" in rows["1"]
    assert "unblessed" in rows["4"] and "worse than version 3" in rows["4"]

    code, out = run(url, "models", "--state", "canary", key=READER)
    assert code == 0 and "canary 25%" in out and "archived" not in out
    code, out = run(url, "models", "--state", "shipped", key=READER)
    assert code == 2 and "unknown model state 'shipped'" in flat(out)


def test_promote_and_rollback_are_admin_actions_with_clear_errors(
    served: tuple[str, ModelRegistry],
) -> None:
    url, registry = served
    code, out = run(url, "promote", "3", "--reason", "try", key=READER)
    assert code == 2 and "admin" in flat(out)
    code, out = run(url, "promote", "4", "--reason", "try")
    assert code == 2 and "force" in flat(out) and "unblessed" in flat(out)
    code, out = run(url, "promote", "9", "--reason", "try")
    assert code == 2 and "no model 'toxicity' version 9" in flat(out)
    code, out = run(url, "promote", "3")
    assert code != 0 and "--reason" in flat(out)

    code, out = run(url, "promote", "3", "--reason", "canary looks good", "--name", NAME)
    assert code == 0, out
    assert "model toxicity version 3 is production (was canary)" in flat(out)
    assert registry.get(NAME, 3).history[-1].actor == "ops"

    code, out = run(url, "rollback", "--reason", "misfires on emoji")
    assert code == 0, out
    assert "version 2 serves again; version 3 is rolled_back" in flat(out)
    assert registry.pointer(NAME).version == 2

    code, out = run(url, "rollback", "--reason", "again")
    assert code == 0 and "version 1 serves again" in flat(out)
    code, out = run(url, "rollback", "--reason", "once more")
    assert code == 2 and "nothing to roll back to" in flat(out)
