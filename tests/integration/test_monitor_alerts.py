"""The monitor's alert rules on a real Prometheus, scraping a monitor's metrics after a bank changed its policy.

The monitor's figures come from its core over the world's outcomes (no broker: what is under test here is
what Prometheus makes of the exported series and of configs/alerts.yml).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from consumer.monitor.metrics import MonitorMetrics
from producer_tools.world.outcomes import PolicyChange
from tests.integration.faults.support import wait_until
from tests.integration.test_observability import Prometheus, prometheus_bin, start_prometheus
from tests.unit.test_monitor import _core, _messages, _run

__all__ = ["prometheus_bin", "start_prometheus"]  # the fixtures this module uses


@pytest.fixture
def monitor_port(tmp_path: Path) -> Iterator[int]:
    core = _core(tmp_path / "store")
    _run(core, _messages(PolicyChange("bank_c", 2000), count=6000))
    metrics = MonitorMetrics(CollectorRegistry())
    metrics.state.publish(core.state())
    metrics.last_outcome.set_to_current_time()
    core._store.close()
    server, _ = start_http_server(0, "127.0.0.1", registry=metrics.registry)
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_prometheus_fires_concept_drift_and_the_retraining_trigger_for_the_changed_bank_only(
    monitor_port: int, start_prometheus: Callable[[int], Prometheus]
) -> None:
    prometheus = start_prometheus(monitor_port)

    def active() -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = prometheus.api("alerts")["data"]["alerts"]
        return alerts

    def named(name: str) -> set[tuple[str, str]]:
        return {(a["labels"].get("model", ""), a["state"]) for a in active() if a["labels"]["alertname"] == name}

    wait_until(lambda: ("bank_c", "firing") in named("ConceptDriftDetected"), 30, "ConceptDriftDetected on bank_c")
    wait_until(lambda: ("bank_c", "pending") in named("CalibrationOff"), 15, "CalibrationOff pending on bank_c")
    wait_until(lambda: ("bank_c", "firing") in named("RetrainRecommended"), 15, "RetrainRecommended on bank_c")
    assert named("ConceptDriftDetected") == {("bank_c", "firing")}
    assert named("RetrainRecommended") == {("bank_c", "firing")}
    (retrain,) = [a for a in active() if a["labels"]["alertname"] == "RetrainRecommended"]
    assert "crm-train --from-capture CAPTURE_DIR --bank bank_c" in retrain["annotations"]["description"]
    assert {model for model, _ in named("CalibrationOff")} == {"bank_c"}
    assert named("OutcomesStoppedArriving") == set() and named("JoinCoverageLow") == set()
    rules = [r for g in prometheus.api("rules")["data"]["groups"] for r in g["rules"]]
    assert all(r["health"] != "err" for r in rules), [r.get("lastError") for r in rules]


def test_prometheus_fires_promoted_model_rolled_back_once_the_rule_rolls_back(
    start_prometheus: Callable[[int], Prometheus],
) -> None:
    metrics = MonitorMetrics(CollectorRegistry())
    metrics.rollbacks.labels("bank_c")  # at zero: increase() needs a sample before the rollback
    server, _ = start_http_server(0, "127.0.0.1", registry=metrics.registry)
    try:
        prometheus = start_prometheus(int(server.server_address[1]))

        def rolled_back() -> list[dict[str, Any]]:
            alerts: list[dict[str, Any]] = prometheus.api("alerts")["data"]["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == "PromotedModelRolledBack"]

        wait_until(lambda: bool(prometheus.query("crm_monitor_rollbacks_total")["data"]["result"]), 30, "a scrape")
        assert rolled_back() == []
        metrics.rollbacks.labels("bank_c").inc()
        wait_until(lambda: [a["state"] for a in rolled_back()] == ["firing"], 30, "PromotedModelRolledBack")
        (alert,) = rolled_back()
        assert alert["labels"]["model"] == "bank_c"
        assert alert["annotations"]["runbook_url"] == "docs/runbook.md#promotedmodelrolledback"
    finally:
        server.shutdown()
        server.server_close()
