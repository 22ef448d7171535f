"""A rollout across two inference replicas: real HTTP, one real model server serving three
SavedModel versions, one real Redis, and the routing table the registry would write.

Both replicas route an id alike; the canary answers about its share and every answer
names stable or canary; a shadow never changes an answer and both replicas' pairs
pool in Redis; a canary whose version leaves the model server fails no request and
its failures are counted as the candidate's errors; moderators' decisions join both
production's and the shadow's scores, each in its own version's quality window.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis

from mlcycle.common.errors import NotFound
from mlcycle.common.http import BackgroundServer
from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.common.settings import Settings
from mlcycle.contracts.monitoring import Decision
from mlcycle.contracts.rollouts import RoutingState, RoutingTable
from mlcycle.contracts.serving import write_routing_table
from mlcycle.inference.api import create_app
from mlcycle.inference.runtime import InferenceRuntime
from mlcycle.modelserver import ModelServer, ModelServerOptions
from mlcycle.monitoring.feedback_redis import RedisFeedbackStore
from mlcycle.rollouts.evidence import RedisEvidenceStore, RolloutEvidence
from mlcycle.trainer.rollout_signals import SharedSignals
from tests.fixtures.broker import wait_for
from tests.fixtures.inference import NAME, World, built_models, corpus

pytestmark = pytest.mark.integration

PREDICT_KEY = "rollout-caller:predict:rollout-predict-secret"
PREDICT = {"Authorization": "Bearer rollout-predict-secret"}


def serving_config(models: Path, versions: list[int]) -> str:
    """TF Serving's ModelServerConfig serving exactly ``versions`` of the model."""
    listed = " ".join(f"versions: {v}" for v in versions)
    return (
        "model_config_list {\n  config {\n"
        f'    name: "{NAME}"\n    base_path: "{models / NAME}"\n'
        '    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ specific {{ {listed} }} }}\n  }}\n}}\n"
    )


class Stack:
    """Three versions on one model server, and two inference replicas over one Redis."""

    def __init__(self, root: Path, data_dir: Path, redis_url: str) -> None:
        self.world = World(root, data_dir, versions=(1, 2))
        # Version 3: version 1's SavedModel again, deployed as a third version.
        staging = self.world.models / NAME / ".candidate-3"
        shutil.copytree(root / "versions" / "1", staging)
        staging.rename(self.world.models / NAME / "3")
        self.config = self.world.models / "models.config"
        self.config.write_text(serving_config(self.world.models, [1, 2, 3]))
        options = ModelServerOptions(
            port=0,
            rest_api_port=None,
            model_config_file=str(self.config),
            model_config_file_poll_wait_seconds=0.2,
            file_system_poll_wait_seconds=0.2,
        )
        self.server = ModelServer(options).start(wait_for_models=False)
        self.world.port = self.server.grpc_port
        self.wait_available({1, 2, 3})
        self.redis_url = redis_url
        # Versions are re-read only when the routing changes or a routed call fails, so the
        # canary's failures below are seen by requests, not pre-empted by a periodic refresh.
        self.settings = self.world.settings(
            redis_url=redis_url,
            api_keys=(PREDICT_KEY,),
            monitor_enabled=False,
            version_refresh_s=30.0,
            rollout_routing_refresh_s=0.1,
            rollout_evidence_flush_s=0.2,
        )
        self.replicas = [Replica(self.settings), Replica(self.settings)]

    def available(self) -> set[int]:
        try:
            states = self.server.manager.status(NAME)
        except NotFound:
            return set()
        return {s.version for s in states if s.state == "AVAILABLE"}

    def wait_available(self, versions: set[int]) -> None:
        wait_for(lambda: self.available() == versions, timeout_s=60)

    def publish(self, **state: object) -> str:
        """Write the routing table of a new rollout; wait until both replicas serve it."""
        rollout = f"ro-{uuid.uuid4().hex[:8]}"
        routing = RoutingState(name=NAME, rollout=rollout, **state)  # type: ignore[arg-type]
        write_routing_table(self.world.models, RoutingTable(models={NAME: routing}))
        for replica in self.replicas:
            wait_for(lambda r=replica: r.serves(rollout, routing), timeout_s=30)
        return rollout

    def evidence(self, rollout: str) -> RolloutEvidence:
        client = redis.Redis.from_url(self.redis_url)
        try:
            return RedisEvidenceStore(client).read(rollout)
        finally:
            client.close()

    def close(self) -> None:
        for replica in self.replicas:
            replica.close()
        self.server.stop(grace_s=0.5)


class Replica:
    """One inference API process's parts, on a free port."""

    def __init__(self, settings: Settings) -> None:
        self.runtime = InferenceRuntime.open(settings)
        self.http = BackgroundServer(create_app(settings, self.runtime), "127.0.0.1", 0).start()
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.http.port}", timeout=30)

    def serves(self, rollout: str, routing: RoutingState) -> bool:
        serving = self.runtime.tracker.serving()
        wanted = (routing.canary, routing.shadow)
        return (
            serving.rollout == rollout
            and (
                (serving.canary.version if serving.canary else None),
                (serving.shadow.version if serving.shadow else None),
            )
            == wanted
        )

    def predict(self, texts: list[str], ids: list[str]) -> tuple[list[dict], int]:
        """Every answer, in order, and how many requests failed."""
        answers: list[dict] = []
        failed = 0
        for start in range(0, len(texts), 20):
            chunk = zip(texts[start : start + 20], ids[start : start + 20], strict=True)
            instances = [{"text": text, "id": cid} for text, cid in chunk]
            answer = self.client.post("/v1/predict", json={"instances": instances}, headers=PREDICT)
            if answer.status_code != 200:
                failed += 1
                continue
            answers.extend(answer.json()["predictions"])
        return answers, failed

    def close(self) -> None:
        self.client.close()
        self.http.stop()
        self.runtime.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis) -> Iterator[Stack]:
    root = built_models(tmp_path_factory.mktemp("rollout-models"))
    made = Stack(root, tmp_path_factory.mktemp("rollout"), redis_server.url)
    yield made
    made.close()


def fresh(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Unseen texts (no cache hit) and their ids."""
    texts, _, _ = corpus(n=n, seed=seed)
    tag = uuid.uuid4().hex[:6]
    return [f"{t} {tag}{i}" for i, t in enumerate(texts)], [f"{tag}-{i}" for i in range(n)]


def versions(answers: list[dict]) -> list[int]:
    return [a["model_version"] for a in answers]


def test_both_replicas_route_an_id_alike_and_the_canary_takes_its_share(stack: Stack) -> None:
    rollout = stack.publish(stable=1, canary=2, canary_share=0.25)
    texts, ids = fresh(400, seed=31)
    first, failed_first = stack.replicas[0].predict(texts, ids)
    second, failed_second = stack.replicas[1].predict(texts, ids)
    assert failed_first == failed_second == 0
    assert versions(first) == versions(second)  # the same id, the same version, anywhere
    assert set(versions(first)) == {1, 2}
    assert 0.18 < versions(first).count(2) / 400 < 0.32
    # Production scored each canary answer off the path, in both replicas: pooled pairs.
    wait_for(lambda: stack.evidence(rollout).pairs == 2 * versions(first).count(2), 30)
    evidence = stack.evidence(rollout)
    assert evidence.requests("candidate") == 2 * versions(first).count(2)
    assert evidence.errors("candidate") == 0


def test_a_shadow_never_changes_answers_and_its_pairs_pool_across_replicas(
    stack: Stack,
) -> None:
    stack.publish(stable=1)
    texts, ids = fresh(200, seed=32)
    before, _ = stack.replicas[0].predict(texts, ids)
    rollout = stack.publish(stable=1, shadow=2, shadow_share=1.0)
    half = len(texts) // 2
    during = stack.replicas[0].predict(texts[:half], ids[:half])[0]
    during += stack.replicas[1].predict(texts[half:], ids[half:])[0]
    assert during == before
    assert set(versions(during)) == {1}
    wait_for(lambda: stack.evidence(rollout).pairs == len(texts), 30)
    evidence = stack.evidence(rollout)
    assert evidence.requests("candidate") == len(texts)
    assert evidence.requests("production") == len(texts)
    assert evidence.agreement is not None and evidence.score_delta().mean is not None
    for replica in stack.replicas:
        metrics = replica.client.get("/metrics").text
        assert 'mlcycle_inference_offpath_instances_total{outcome="scored",role="candidate"}' in (
            metrics
        )


def test_decisions_join_production_and_the_shadow_each_in_its_own_window(
    stack: Stack,
) -> None:
    """The controller's realized quality has both sides in the shadow phase: the answers'
    scores and the shadow's, recorded by both replicas, each join the decisions."""
    since = datetime.now(UTC)
    signals = SharedSignals(stack.settings, stack.redis_url)
    before = {v: signals.decisions(NAME, v, since) for v in (1, 2)}
    stack.publish(stable=1, shadow=2, shadow_share=1.0)
    texts, ids = fresh(60, seed=35)
    answers = stack.replicas[0].predict(texts[:30], ids[:30])[0]
    answers += stack.replicas[1].predict(texts[30:], ids[30:])[0]
    labels = [i % 2 for i in range(len(ids))]
    # Decisions as the feedback consumer adds them; any still waiting join as scores arrive.
    config = stack.settings.monitoring
    store = RedisFeedbackStore.from_url(
        stack.redis_url,
        retention_s=config.feedback_retention_s,
        window_decisions=config.quality_window_decisions,
    )
    decisions = [Decision(comment_id=c, label=y) for c, y in zip(ids, labels, strict=True)]
    store.add_decisions(decisions, "ann")
    store.close()

    def joined(version: int) -> tuple[int, int]:
        decisions, correct = signals.decisions(NAME, version, since)
        return decisions - before[version][0], correct - before[version][1]

    wait_for(lambda: joined(1)[0] == 60 and joined(2)[0] == 60, 30)
    # Production's window holds production's answers, not the shadow's scores.
    flagged = [a["score"] >= a["threshold"] for a in answers]
    right = sum(f == bool(y) for f, y in zip(flagged, labels, strict=True))
    assert joined(1) == (60, right)
    signals.close()


def test_a_canary_leaving_the_model_server_fails_no_request(stack: Stack) -> None:
    rollout = stack.publish(stable=1, canary=3, canary_share=0.5)
    stack.config.write_text(serving_config(stack.world.models, [1, 2]))
    stack.wait_available({1, 2})
    texts, ids = fresh(200, seed=33)
    answers, failed = stack.replicas[0].predict(texts, ids)
    more, failed_more = stack.replicas[1].predict(texts, ids)
    assert failed == failed_more == 0
    assert set(versions(answers + more)) <= {1, 3}
    wait_for(lambda: stack.evidence(rollout).errors("candidate") > 0, 30)
    # Once the failure made the replicas look again, the canary is routed around.
    for replica in stack.replicas:
        wait_for(lambda r=replica: r.runtime.tracker.serving().canary is None, 10)
    after, _ = stack.replicas[0].predict(*fresh(40, seed=34))
    assert set(versions(after)) == {1}
    stack.config.write_text(serving_config(stack.world.models, [1, 2, 3]))
    stack.wait_available({1, 2, 3})
