"""The monitor's /healthz and /readyz: a silent loop is not live, a member without partitions is not ready."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry

from consumer.endpoints import serve_endpoints
from consumer.monitor.health import MonitorHealth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_loop_silent_past_the_bound_is_not_live_and_a_beat_revives_it() -> None:
    clock = Clock()
    health = MonitorHealth(stale_after_s=30, clock=clock)
    assert health.liveness().ok
    clock.now += 31
    silent = health.liveness()
    assert not silent.ok and "silent for 31 s" in silent.checks["loop"]["detail"]
    health.beat()
    assert health.liveness().ok


def test_ready_once_the_store_is_open_and_a_partition_is_assigned() -> None:
    health = MonitorHealth()
    assert not health.readiness().ok
    health.store_opened()
    waiting = health.readiness()
    assert not waiting.ok and not waiting.checks["partitions_assigned"]["ok"] and waiting.checks["store_open"]["ok"]
    health.assigned(3)
    assert health.readiness().ok
    health.assigned(0)  # every partition revoked: another member has them
    assert not health.readiness().ok


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_the_endpoints_answer_the_monitors_health_beside_its_metrics() -> None:
    health = MonitorHealth()
    with serve_endpoints(CollectorRegistry(), health, "127.0.0.1", 0, "monitor metrics") as port:
        assert _get(port, "/healthz")[0] == 200
        status, body = _get(port, "/readyz")
        assert status == 503 and body["status"] == "fail"
        health.store_opened()
        health.assigned(1)
        assert _get(port, "/readyz") == (200, {"status": "ok", "checks": health.readiness().checks})
