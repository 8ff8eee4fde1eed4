"""``make stack``: the docker-compose topology as local processes, brought up, checked through Prometheus (the
scorers', the gateway's and the monitor's figures, the alert rules, the dashboard's outcomes panel), and taken
down again."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from producer_tools.demos.stack import OUTCOMES, TOPICS, Stack, StackPorts, prometheus_api
from tests.integration.conftest import require_registry
from tests.integration.faults.support import count_topic, wait_until
from tests.integration.test_observability import dashboard_queries

OUTCOMES_PANEL = "Outcomes joined and concept drift"


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    """Needs what the registry needs (Java 21+, mvn); the stack starts its own registry and broker."""
    require_registry()
    return Stack(tmp_path / "stack", ports=StackPorts(0, (0, 0), 0, 0, 0), rate=300, bad_ratio=0.02)


def test_the_stack_comes_up_prometheus_scrapes_replicas_gateway_and_monitor_results_and_outcomes_flow_rules_evaluate(
    stack: Stack,
) -> None:
    with stack:
        base = stack.prometheus_url
        assert base is not None

        def targets_up() -> bool:
            active = prometheus_api(base, "targets")["activeTargets"]
            jobs = sorted(t["labels"]["job"] for t in active)
            expected = ["crm-gateway", "crm-monitor", "crm-scorer", "crm-scorer"]
            return jobs == expected and all(t["health"] == "up" for t in active)

        wait_until(targets_up, 60, "both scorer replicas, the gateway and the monitor up in Prometheus")
        bootstrap = stack.kafka.bootstrap_servers
        wait_until(lambda: count_topic(bootstrap, TOPICS["output"]) > 500, 90, "500 results")
        wait_until(lambda: count_topic(bootstrap, TOPICS["dlq"]) > 0, 60, "the malformed traffic dead-lettered")
        scraped = prometheus_api(base, "query?query=sum(crm_scorer_assigned_partitions)")["result"]
        assert float(scraped[0]["value"][1]) == 6, "the two replicas hold the six input partitions between them"

        def rules_evaluated() -> bool:
            groups = prometheus_api(base, "rules")["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            return bool(rules) and all(
                r["health"] == "ok" and not r["lastEvaluation"].startswith("0001") for r in rules
            )

        wait_until(rules_evaluated, 60, "every alert rule loaded and evaluated")
        assert_the_outcomes_panel_and_a_monitor_alert_are_answered(base, stack.kafka.bootstrap_servers)
        assert not stack.problems()
        processes = stack.processes()
        assert len(processes) == 5 and all(p.is_running() for p in processes), "scorers, gateway, monitor, Prometheus"
    time.sleep(0.5)
    assert not any(p.is_running() for p in processes) and not stack.kafka.is_running()
    assert not stack.registry.is_running()


def assert_the_outcomes_panel_and_a_monitor_alert_are_answered(base: str, bootstrap: str) -> None:
    """The world's outcomes reach the monitor, the dashboard's outcomes panel has a series per model from the real
    Prometheus, and a monitor alert was evaluated on the monitor's own figures (data present, not firing)."""
    wait_until(lambda: count_topic(bootstrap, OUTCOMES) > 0, 60, "outcomes on crm.outcomes")
    queries = [expr for title, expr in dashboard_queries() if title == OUTCOMES_PANEL]
    assert len(queries) == 2, "the panel's two queries: outcomes joined per model and concept drift"

    def panel_answered() -> bool:
        joined = prometheus_api(base, f"query?query={quote(queries[0])}")["result"]
        return any(float(series["value"][1]) > 0 for series in joined)

    wait_until(panel_answered, 90, f"the {OUTCOMES_PANEL!r} panel answered with joined outcomes")
    drift = prometheus_api(base, f"query?query={quote(queries[1])}")["result"]
    assert drift, "the concept-drift signal of the models with outcomes"
    assert {float(series["value"][1]) for series in drift} <= {0.0, 1.0}
    expr = "time() - max(crm_monitor_last_outcome_timestamp_seconds)"  # OutcomesStoppedArriving, before its "> 3600"
    (last,) = prometheus_api(base, f"query?query={quote(expr)}")["result"]
    assert float(last["value"][1]) < 3600

    def stopped_arriving_evaluated() -> dict[str, Any] | None:
        groups = prometheus_api(base, "rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"] if rule["name"] == "OutcomesStoppedArriving"]
        done = [rule for rule in rules if rule["health"] == "ok" and not rule["lastEvaluation"].startswith("0001")]
        return done[0] if done else None

    wait_until(lambda: stopped_arriving_evaluated() is not None, 30, "OutcomesStoppedArriving evaluated")
    rule = stopped_arriving_evaluated()
    assert rule is not None and rule["state"] == "inactive" and rule["alerts"] == [], rule
