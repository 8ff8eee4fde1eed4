"""The host's health: every worker's loop state, judged for ``/healthz`` and ``/readyz`` and exported as gauges.

``/healthz`` is 200 while every worker's loop went round in the last ``stale_after_s``; ``/readyz`` is 200 once
every worker loaded its models, the group gave this host at least one partition, a broker is reachable and no
worker waits on the Schema Registry. Both answer JSON naming each check; 503 when one fails (served by
``consumer.endpoints``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from consumer.endpoints import Verdict
from consumer.telemetry.metrics import WorkerStateReport

STALE_AFTER_S = 30.0
# Not up: no broker answers, the handshake fails (credentials, certificate), or the broker refuses a delivery or the
# transactional id for a missing ACL; the worker's log names which, once per interval.
_BROKER_NOT_UP = "no broker answered yet, or it refuses this scorer (credentials, certificate or an ACL: see the log)"


@dataclass
class _Worker:
    beat: float
    partitions: int = 0
    broker_up: bool | None = None
    registry_up: bool = True  # until a worker finds the Schema Registry not answering
    models: bool = False


class HealthState(Collector):
    """Every worker's loop state; the health endpoints and the ``crm_scorer_*`` health gauges read it."""

    def __init__(self, workers: int, stale_after_s: float = STALE_AFTER_S, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._stale_after_s = stale_after_s
        started = clock()  # a worker still loading its models gets the same grace as a silent one
        self._workers = {i: _Worker(started) for i in range(workers)}
        self._lock = threading.Lock()

    def apply(self, r: WorkerStateReport) -> None:
        with self._lock:
            w = self._workers.setdefault(r.worker, _Worker(self._clock()))
            if r.heartbeat:
                w.beat = self._clock()
            if r.models is not None:
                w.models = True
            if r.partitions is not None:
                w.partitions = r.partitions
                if r.partitions:
                    w.broker_up = True  # the group coordinator just answered
            if r.broker_up is not None:
                w.broker_up = r.broker_up
            if r.registry_up is not None:
                w.registry_up = r.registry_up

    def liveness(self) -> Verdict:
        now = self._clock()
        with self._lock:
            ages = {i: now - w.beat for i, w in self._workers.items()}
        stale = {i: age for i, age in ages.items() if age >= self._stale_after_s}
        detail = (
            "; ".join(f"worker {i}: loop silent for {age:.0f} s" for i, age in sorted(stale.items()))
            or f"{len(ages)} worker loop(s) went round in the last {self._stale_after_s:.0f} s"
        )
        return Verdict(not stale, {"loop": {"ok": not stale, "detail": detail}})

    def readiness(self) -> Verdict:
        with self._lock:
            workers = list(self._workers.values())
        loaded = sum(w.models for w in workers)
        partitions = sum(w.partitions for w in workers)
        up = any(w.broker_up for w in workers)
        checks: dict[str, dict[str, Any]] = {
            "models_loaded": {"ok": loaded == len(workers), "detail": f"{loaded}/{len(workers)} workers"},
            "partitions_assigned": {
                "ok": partitions > 0,
                "detail": f"{partitions} partition(s)"
                if partitions
                else "none yet (joining, or more members in the group than partitions)",
            },
            "broker_reachable": {"ok": up, "detail": "a broker is up" if up else _BROKER_NOT_UP},
            "schema_registry": {
                "ok": all(w.registry_up for w in workers),
                "detail": "answering (or not needed)"
                if all(w.registry_up for w in workers)
                else f"not answering: {sum(not w.registry_up for w in workers)} worker(s) wait for writer schemas",
            },
        }
        return Verdict(all(c["ok"] for c in checks.values()), checks)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        live, ready = self.liveness(), self.readiness()
        with self._lock:
            workers = list(self._workers.values())
        now = self._clock()
        values = [
            float(live.ok),
            float(ready.ok),
            float(len(workers)),
            float(sum(w.partitions for w in workers)),
            float(any(w.broker_up for w in workers)),
            max((now - w.beat for w in workers), default=0.0),
        ]
        families = self._families()
        for family, value in zip(families, values, strict=True):
            family.add_metric([], value)
        return iter(families)

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("crm_scorer_healthy", "1 while every worker's loop is alive (as /healthz)"),
            GaugeMetricFamily("crm_scorer_ready", "1 while the scorer is ready (as /readyz)"),
            GaugeMetricFamily("crm_scorer_workers", "Worker processes on this host"),
            GaugeMetricFamily("crm_scorer_assigned_partitions", "Input partitions assigned to this host"),
            GaugeMetricFamily("crm_scorer_broker_up", "1 while a Kafka broker is reachable"),
            GaugeMetricFamily("crm_scorer_loop_heartbeat_age_seconds", "Longest time since a worker's loop went round"),
        ]
