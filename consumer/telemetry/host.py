"""The host's telemetry: one registry with every metric, the drift windows and the health state.

One process per host holds every metric. With one worker that is the worker itself (its loop applies its
reports directly). With ``--workers N`` it is the parent: each worker puts its per-batch ``Report`` on a
multiprocessing queue, a thread of the parent applies them (``consumer.telemetry.worker_reports`` says why).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry

from consumer.endpoints import serve_endpoints
from consumer.settings import Settings
from consumer.telemetry.drift import DriftMonitor, load_reference_profile
from consumer.telemetry.drift_timer import evaluating_drift
from consumer.telemetry.health import HealthState
from consumer.telemetry.logs import configure_logging
from consumer.telemetry.metrics import (
    BatchReport,
    PublishedReport,
    Report,
    SchemaContractReport,
    ScorerMetrics,
)
from consumer.telemetry.observer import ObserverFactory
from consumer.telemetry.shadow import ShadowMetrics, ShadowReport
from consumer.telemetry.worker_observer import WorkerObserver
from consumer.telemetry.worker_reports import draining_worker_reports
from models.artifacts import models_dir
from schemas.errors import ArtifactError

log = logging.getLogger(__name__)


class Telemetry:
    """The host's registry, metrics, drift windows and health; ``apply`` takes every worker's reports."""

    def __init__(
        self, settings: Settings, registry: CollectorRegistry | None = None, drift: DriftMonitor | None = None
    ):
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ScorerMetrics(self.registry)
        self.shadow = ShadowMetrics(self.registry)
        self.health = HealthState(settings.workers)
        self.registry.register(self.health)
        self.drift = drift
        self._profile_sha: str | None = None  # the drift windows' reference profile, once a worker reported it
        if drift is not None:
            self.registry.register(drift)
        self.metrics.config_info.labels(settings.config_hash()).set(1)

    @classmethod
    def from_settings(cls, settings: Settings, registry: CollectorRegistry | None = None) -> Telemetry:
        """Raises ArtifactError when drift is on and the reference profile cannot be verified."""
        m = settings.metrics
        drift = None
        if m.drift:
            served = models_dir(settings.models)  # the store's active set when a store is configured
            drift = DriftMonitor(load_reference_profile(served), m.drift_short_window, m.drift_long_window)
        return cls(settings, registry, drift)

    def _follow_profile(self, profile: tuple[str, str]) -> None:
        """A worker serves a set: the first one reported is the profile the windows started with; another one
        (an activation) starts the windows again against it."""
        sha, directory = profile
        if self.drift is None or sha == self._profile_sha:
            return
        if self._profile_sha is not None:
            try:
                self.drift.rebase(load_reference_profile(Path(directory)))
            except ArtifactError as exc:
                log.error("drift keeps the previous set's reference profile: %s", exc)
                return
            log.info("drift is measured against model set %s's reference profile from now on", Path(directory).name)
        self._profile_sha = sha

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
        elif isinstance(report, ShadowReport):
            self.shadow.record(report)
        elif isinstance(report, SchemaContractReport):
            if self.metrics.record_contract(report):  # one line per writer schema, however many workers met it
                broken = sorted(
                    {f"{model}.{feature} ({problem} {field})" for model, feature, field, problem in report.failures}
                )
                log.error(
                    "writer schema %s breaks the model contract (%d features; scoring goes on as before): %s",
                    report.writer,
                    len(broken),
                    ", ".join(broken),
                )
        else:
            self.health.apply(report)
            if report.models is not None:
                self.metrics.record_models(report.models, report.banks, report.worker)
            if report.refused is not None:
                self.metrics.model_set_refused.labels(report.refused).inc()
            if report.watchdog is not None:
                self.metrics.watchdog_firings.labels(report.watchdog).inc()
            if report.profile is not None:
                self._follow_profile(report.profile)
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
        with contextlib.ExitStack() as stack:
            bound = stack.enter_context(serve_endpoints(self.registry, self.health, host, port))
            if self.drift is not None:
                stack.enter_context(evaluating_drift(self.drift, drift_interval_s))
            yield bound


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
        with draining_worker_reports(telemetry.apply) as factory:
            yield factory
