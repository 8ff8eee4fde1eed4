"""``make stack``: the docker-compose topology as local processes, brought up, checked through Prometheus, and
taken down again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from producer_tools.demos.stack import TOPICS, Stack, StackPorts, prometheus_api
from tests.integration.conftest import require_registry
from tests.integration.faults.support import count_topic, wait_until


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    """Needs what the registry needs (Java 21+, mvn); the stack starts its own registry and broker."""
    require_registry()
    return Stack(tmp_path / "stack", ports=StackPorts(0, (0, 0), 0, 0), rate=300, bad_ratio=0.02)


def test_the_stack_comes_up_prometheus_scrapes_both_replicas_and_the_gateway_results_flow_and_the_rules_evaluate(
    stack: Stack,
) -> None:
    with stack:
        base = stack.prometheus_url
        assert base is not None

        def targets_up() -> bool:
            active = prometheus_api(base, "targets")["activeTargets"]
            jobs = sorted(t["labels"]["job"] for t in active)
            return jobs == ["crm-gateway", "crm-scorer", "crm-scorer"] and all(t["health"] == "up" for t in active)

        wait_until(targets_up, 60, "both scorer replicas and the gateway up in Prometheus")
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
        assert not stack.problems()
        processes = stack.processes()
        assert len(processes) == 4 and all(p.is_running() for p in processes), "two scorers, the gateway, Prometheus"
    time.sleep(0.5)
    assert not any(p.is_running() for p in processes) and not stack.kafka.is_running()
    assert not stack.registry.is_running()
