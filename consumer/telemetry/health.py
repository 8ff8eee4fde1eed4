"""The host's telemetry endpoint: ``/metrics``, ``/healthz`` and ``/readyz`` on ``metrics.host:metrics.port``.

One process per host holds every metric. With one worker that is the worker itself (its loop applies its
reports directly). With ``--workers N`` it is the parent: each worker puts its per-batch ``Report`` on a
multiprocessing queue, a thread of the parent applies them. Why not prometheus_client's multiprocess mode:
the drift windows must add up the host's events (per-worker windows would fill N times slower and export
N series per feature), health needs every worker's loop state anyway, and one registry in one process has no
mmap files to clean and no per-pid gauge series left by restarted workers. The queue carries a few hundred
integers per batch, not events.

Health: ``/healthz`` is 200 while every worker's loop went round in the last ``stale_after_s``; ``/readyz``
is 200 once every worker loaded its models, the group gave this host at least one partition and a broker is
reachable. Both answer JSON naming each check; 503 when one fails.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from consumer.settings import Settings
from consumer.telemetry.drift import DriftCounter, DriftMonitor, load_reference_profile
from consumer.telemetry.logs import configure_logging
from consumer.telemetry.metrics import (
    BatchReport,
    PublishedReport,
    Report,
    ScorerMetrics,
    WorkerObserver,
    WorkerStateReport,
)
from consumer.telemetry.observer import LoopObserver, ObserverFactory
from schemas.errors import ConfigError

log = logging.getLogger(__name__)
STALE_AFTER_S = 30.0
_QUEUE_SIZE = 10_000  # reports; a full queue drops reports (counted) rather than slow the scoring loop


@dataclass
class _Worker:
    beat: float
    partitions: int = 0
    broker_up: bool | None = None
    models: bool = False


@dataclass(frozen=True)
class Verdict:
    """The answer of a health endpoint: ``ok`` and, per check, whether it passed and why."""

    ok: bool
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def body(self) -> bytes:
        return json.dumps({"status": "ok" if self.ok else "fail", "checks": self.checks}).encode()


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
            "broker_reachable": {"ok": up, "detail": "a broker is up" if up else "no broker answered yet"},
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


class Telemetry:
    """The host's registry, metrics, drift windows and health; ``apply`` takes every worker's reports."""

    def __init__(
        self, settings: Settings, registry: CollectorRegistry | None = None, drift: DriftMonitor | None = None
    ):
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ScorerMetrics(self.registry)
        self.health = HealthState(settings.workers)
        self.registry.register(self.health)
        self.drift = drift
        if drift is not None:
            self.registry.register(drift)
        self.metrics.config_info.labels(settings.config_hash()).set(1)

    @classmethod
    def from_settings(cls, settings: Settings, registry: CollectorRegistry | None = None) -> Telemetry:
        """Raises ArtifactError when drift is on and the reference profile cannot be verified."""
        m = settings.metrics
        drift = None
        if m.drift:
            profile = load_reference_profile(settings.models.artifacts_dir)
            drift = DriftMonitor(profile, m.drift_short_window, m.drift_long_window)
        return cls(settings, registry, drift)

    def observer(self, worker: int = 0) -> WorkerObserver:
        """An observer for a worker running in this process."""
        return WorkerObserver(self.apply, worker, self.drift.counter if self.drift is not None else None)

    def apply(self, report: Report) -> None:
        if isinstance(report, BatchReport):
            self.metrics.record_batch(report)
            if self.drift is not None and report.drift is not None:
                self.drift.add(report.drift)
        elif isinstance(report, PublishedReport):
            self.metrics.record_published(report)
        else:
            self.health.apply(report)
            if report.models is not None:
                self.metrics.record_models(report.models, report.banks)
            if report.lags is not None:
                self.metrics.lag.update(report.worker, report.lags)
            if report.partitions == 0:  # revoked or lost: its partitions' lag is another member's to report
                self.metrics.lag.forget(report.worker)
            if report.dropped:
                self.metrics.dropped.inc(report.dropped)

    @contextlib.contextmanager
    def serving(self, host: str, port: int, drift_interval_s: float) -> Iterator[int]:
        """Serve the endpoints and evaluate drift every ``drift_interval_s`` until the block ends; yields the port.

        Raises:
            ConfigError: the address cannot be bound (in use, or not an address of this host).
        """
        try:
            server = ThreadingHTTPServer((host, port), _handler(self))
        except OSError as exc:
            raise ConfigError(f"metrics.host/metrics.port: cannot listen on {host}:{port}: {exc.strerror}") from exc
        server.daemon_threads = True
        stop = threading.Event()
        threads = [threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)]
        if self.drift is not None:
            threads.append(threading.Thread(target=_evaluate_every, args=(self.drift, drift_interval_s, stop),
                                            name="drift", daemon=True))  # fmt: skip
        for thread in threads:
            thread.start()
        bound = int(server.server_address[1])
        log.info("metrics on http://%s:%d/metrics (health: /healthz, /readyz)", host, bound)
        try:
            yield bound
        finally:
            stop.set()
            server.shutdown()
            server.server_close()


def _evaluate_every(drift: DriftMonitor, interval_s: float, stop: threading.Event) -> None:
    while not stop.wait(interval_s):
        try:
            drift.evaluate()
        except Exception:  # a bad evaluation must not end the timer: the staleness alert would hide the cause
            log.exception("drift evaluation failed")


def _handler(telemetry: Telemetry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, content_type, encoder(telemetry.registry))
            elif path in ("/healthz", "/readyz"):
                health = telemetry.health
                verdict = health.liveness() if path == "/healthz" else health.readiness()
                self._send(200 if verdict.ok else 503, "application/json", verdict.body())
            else:
                self._send(404, "text/plain", b"try /metrics, /healthz or /readyz\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


# --- several workers: reports cross a process boundary on a queue ----------------------------------------------


class _QueueSink:
    """Puts reports on the parent's queue without ever blocking the loop; counts what a full queue drops."""

    def __init__(self, reports: Any, worker: int) -> None:
        self._reports = reports
        self._worker = worker
        self._dropped = 0

    def __call__(self, report: Report) -> None:
        try:
            if self._dropped:
                self._reports.put_nowait(WorkerStateReport(self._worker, dropped=self._dropped))
                self._dropped = 0
            self._reports.put_nowait(report)
        except queue.Full:
            self._dropped += 1


@dataclass(frozen=True)
class QueueObserverFactory:
    """Builds each worker's observer inside the worker process (picklable: it travels with the spawn)."""

    reports: Any  # a multiprocessing queue of the spawn context

    def __call__(self, settings: Settings, worker: int) -> LoopObserver:
        # Losing the last reports of an exiting worker beats hanging its exit on a parent that stopped reading.
        self.reports.cancel_join_thread()
        counter = (
            DriftCounter(load_reference_profile(settings.models.artifacts_dir)) if settings.metrics.drift else None
        )
        return WorkerObserver(_QueueSink(self.reports, worker), worker, counter)


def _pump(reports: Any, telemetry: Telemetry) -> None:
    while (report := reports.get()) is not None:
        try:
            telemetry.apply(report)
        except Exception:  # one bad report must not end the metrics of the host
            log.exception("cannot apply a worker report")


@contextlib.contextmanager
def serve_telemetry(settings: Settings) -> Iterator[ObserverFactory | None]:
    """While the block runs, serve the host's metrics and health; yields the workers' observer factory.

    Yields None when ``metrics.enabled`` is false. Raises ConfigError (the port) or ArtifactError (the profile).
    """
    if not settings.metrics.enabled:
        yield None
        return
    configure_logging(settings.log.level, settings.log.json_format)
    telemetry = Telemetry.from_settings(settings)
    m = settings.metrics
    with telemetry.serving(m.host, m.port, m.drift_interval_s):
        if settings.workers == 1:
            yield lambda _settings, worker: telemetry.observer(worker)
            return
        reports = mp.get_context("spawn").Queue(_QUEUE_SIZE)
        pump = threading.Thread(target=_pump, args=(reports, telemetry), name="worker-reports", daemon=True)
        pump.start()
        try:
            yield QueueObserverFactory(reports)
        finally:
            reports.put(None)
            pump.join(5.0)
