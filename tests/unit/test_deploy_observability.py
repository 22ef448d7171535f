"""The alert rules and the Grafana dashboard, checked offline against the code's metrics.

``promtool check rules`` runs when it is on PATH; the schema check always does (see
tests/fixtures/deploy/observability.py). The rendered prod overlay carrying both is
checked in tests/integration/test_deploy_k8s.py.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.deploy.observability import (
    DASHBOARD,
    PROMETHEUS_RULE,
    dashboard_errors,
    exported_metrics,
    grouping_labels,
    metrics_of,
    promtool_errors,
    rule_errors,
)


def rule() -> dict[str, Any]:
    return yaml.safe_load(PROMETHEUS_RULE.read_text())


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def alerts(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in doc["spec"]["groups"] for r in g["rules"] if "alert" in r}


def test_exported_metrics_are_read_from_the_code() -> None:
    exported = exported_metrics()
    assert {
        "mlcycle_inference_requests_total",
        "mlcycle_inference_request_seconds_bucket",
        "mlcycle_inference_serving_version",
        "mlcycle_http_requests_total",
    } <= exported
    # A counter is exported with _total, never bare; a histogram by its buckets.
    assert "mlcycle_inference_requests" not in exported
    assert "mlcycle_inference_request_seconds" not in exported


def test_the_alert_rules_pass_the_schema_check() -> None:
    assert rule_errors(rule()) == []


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not on PATH")
def test_the_alert_rules_pass_promtool(tmp_path: Path) -> None:
    assert promtool_errors(rule(), tmp_path) is None


def test_the_rules_alert_on_alarms_quality_skipped_records_and_serving_health() -> None:
    rules = alerts(rule())
    by_metric: dict[str, list[str]] = {}
    for name, r in rules.items():
        for metric in metrics_of(r["expr"]):
            by_metric.setdefault(metric, []).append(name)
    (alarm,) = by_metric["mlcycle_monitor_alarm"]
    # One alert per version and signal, the max over replicas (they export the same state).
    assert grouping_labels(rules[alarm]["expr"]) == {"model_version", "signal"}
    assert "max by" in rules[alarm]["expr"] and rules[alarm]["expr"].endswith("== 1")
    realized = by_metric["mlcycle_quality_realized"]
    assert len(realized) == 2  # below a stated floor, and well below the estimate
    assert any("mlcycle_quality_estimated" in rules[n]["expr"] for n in realized)
    assert all('figure="f1"' in rules[n]["expr"] for n in realized)
    assert by_metric["mlcycle_monitor_skipped_records_total"]
    assert by_metric["mlcycle_http_requests_total"]
    assert by_metric["mlcycle_inference_request_seconds_bucket"]
    assert by_metric["mlcycle_inference_serving_version"]
    assert all(r.get("for") for r in rules.values()), "an alert fires on one scrape"


def _broken(mutate) -> list[str]:
    doc = copy.deepcopy(rule())
    mutate(doc)
    return rule_errors(doc)


def _first_alert(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["groups"][0]["rules"][0]


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        (lambda d: _first_alert(d).update(expr="max by (signal) (mlcycle_monitor_alarm"), "PromQL"),
        (
            lambda d: _first_alert(d).update(expr="mlcycle_monitor_alarms == 1"),
            "no metric mlcycle_monitor_alarms",
        ),
        (lambda d: _first_alert(d).update(expr='{__name__="x"} == 1'), "names no metric"),
        (lambda d: _first_alert(d).update({"for": "5 minutes"}), "not a duration"),
        (lambda d: _first_alert(d)["labels"].update(severity="page"), "severity"),
        (lambda d: _first_alert(d).pop("annotations"), "summary"),
        (lambda d: _first_alert(d).update(record="x"), "exactly one"),
        (lambda d: _first_alert(d).update(expres="x"), "unknown fields"),
        (lambda d: d["spec"]["groups"][1]["rules"].append(_first_alert(d)), "unique"),
        (lambda d: d["spec"]["groups"].append(d["spec"]["groups"][0]), "repeated"),
        (lambda d: d["spec"].update(group=[]), "not only groups"),
        (lambda d: d.update(kind="ConfigMap"), "PrometheusRule"),
        (
            lambda d: _first_alert(d)["annotations"].update(summary="{{ $labels.signl }}"),
            "$labels.signl",
        ),
    ],
)
def test_the_schema_check_catches_a_broken_rule(mutate, says: str) -> None:
    errors = _broken(mutate)
    assert any(says in e for e in errors), errors


def test_the_dashboard_passes_the_schema_check() -> None:
    assert dashboard_errors(dashboard()) == []


def test_the_dashboard_shows_traffic_latency_cache_drift_and_quality_per_version() -> None:
    board = dashboard()
    panels = [p for p in board["panels"] if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    used = set().union(*(metrics_of(e.replace("$__rate_interval", "5m")) for e in exprs))
    assert {
        "mlcycle_inference_requests_total",
        "mlcycle_inference_request_seconds_bucket",
        "mlcycle_inference_cache_hits_total",
        "mlcycle_inference_cache_misses_total",
        "mlcycle_monitor_statistic",
        "mlcycle_monitor_threshold",
        "mlcycle_monitor_alarm",
        "mlcycle_quality_realized",
        "mlcycle_quality_estimated",
    } <= used
    # Every metric with a model_version label is shown per version, for the chosen ones.
    unversioned = ("mlcycle_http_", "_serving_version", "_model_server_errors_")
    per_version = [e for e in exprs if not any(u in e for u in unversioned)]
    assert len(per_version) >= 12
    for expr in per_version:
        assert 'model_version=~"$version"' in expr, expr
        assert "model_version" in grouping_labels(expr.replace("$__rate_interval", "5m")), expr
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["Traffic and latency", "Cache", "Drift", "Quality"]


def _board_broken(mutate) -> list[str]:
    board = copy.deepcopy(dashboard())
    mutate(board)
    return dashboard_errors(board)


def _panel(board: dict[str, Any], index: int = 1) -> dict[str, Any]:
    return board["panels"][index]


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        (lambda b: _panel(b, 2).update(id=_panel(b)["id"]), "unique"),
        (lambda b: _panel(b).update(targets=[]), "no targets"),
        (lambda b: _panel(b)["targets"][0].update(expr="rate(x[5m]"), "PromQL"),
        (
            lambda b: _panel(b)["targets"][0].update(expr="rate(mlcycle_nope_total[5m])"),
            "no metric mlcycle_nope_total",
        ),
        (lambda b: _panel(b)["targets"][0].update(expr='up{job="$nope"}'), "$nope"),
        (lambda b: _panel(b)["targets"].append(_panel(b)["targets"][0]), "refIds"),
        (lambda b: _panel(b).update(datasource={"type": "loki", "uid": "x"}), "Prometheus"),
        (lambda b: _panel(b).update(datasource={"type": "prometheus", "uid": "${ds}"}), "ds"),
        (lambda b: _panel(b).update(type="graph-old"), "known type"),
        (lambda b: _panel(b)["gridPos"].update(x=20), "24 columns"),
        (lambda b: _panel(b, 2)["gridPos"].update(x=0), "overlaps"),
        (lambda b: b.pop("uid"), "uid"),
        (
            lambda b: b["templating"]["list"][1]["query"].update(query="label_values(x_y, v)"),
            "variable version",
        ),
    ],
)
def test_the_dashboard_check_catches_a_broken_dashboard(mutate, says: str) -> None:
    errors = _board_broken(mutate)
    assert any(says in e for e in errors), errors
