"""Prometheus metrics of the scorer, fed once per batch.

A worker's ``WorkerObserver`` (``consumer.telemetry.worker_observer``; the run loop's ``LoopObserver``) turns each
batch into a small ``Report`` (counts, histogram bucket counts, drift bin counts: numpy, never a Python call per
event) and hands it to a sink. ``Telemetry`` (``consumer.telemetry.host``) owns the registry, the drift windows and
the health state, and applies reports. With one worker the sink is ``Telemetry.apply`` itself; with ``--workers N``
it is a queue the parent drains, so one process holds every metric of the host
(``consumer.telemetry.worker_reports`` says why).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from consumer.core.engine import STAGES as ENGINE_STAGES
from consumer.telemetry.shadow import ShadowReport
from models.store import REFUSAL_REASONS
from schemas.dead_letter import RESULT_REJECTED
from schemas.errors import InvalidEventError

STAGES = (*ENGINE_STAGES, "publish")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Per-event cost of a stage: from a microsecond (encode) to the ~0.3 ms fixed cost of a predict call on a tiny batch.
STAGE_BUCKETS = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 1e-2)
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# Every dlq.reason the scorer writes: the error tree's defaults, the two codes passed in beside them
# (FramingError: empty_value, EventValidationError: missing_id) and the broker's refusal of a result.
# tests/unit/test_metric_series.py holds this to the AsyncAPI contract's enum.
DEAD_LETTER_REASONS = tuple(
    sorted({cls.reason for cls in InvalidEventError.__subclasses__()} | {"empty_value", "missing_id", RESULT_REJECTED})
)


class BulkHistogram(Collector):
    """A histogram fed with bucket counts of whole arrays (prometheus_client observes one value per call).

    ``bucket_counts`` is pure (it runs in the worker); ``add`` applies its result (where the registry is).
    Exposes exactly what ``prometheus_client.Histogram`` would after observing the same values one by one.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float], labelnames: Sequence[str] = ()):
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self.bounds = np.array([*buckets, math.inf], dtype=np.float64)
        self._le = [floatToGoString(b) for b in self.bounds]
        self._series: dict[tuple[str, ...], tuple[np.ndarray, list[float]]] = {}
        self._lock = threading.Lock()

    def bucket_counts(self, values: np.ndarray) -> tuple[np.ndarray, float]:
        """Observations per bucket (a value goes to the first bound >= it, as ``Histogram.observe``) and their sum.

        NaN is not an observation and is skipped.
        """
        values = np.asarray(values, dtype=np.float64)
        values = values[~np.isnan(values)]
        index = np.searchsorted(self.bounds, values, side="left")
        return np.bincount(index, minlength=len(self.bounds)), float(values.sum())

    def add(self, counts: np.ndarray, total: float, labels: Sequence[str] = ()) -> None:
        key = tuple(labels)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = (np.zeros(len(self.bounds), np.int64), [0.0])
            series[0][:] += counts
            series[1][0] += total

    def touch(self, labels: Sequence[str] = ()) -> None:
        """Export the series at zero before its first observation, so its first increase is not lost to rate()."""
        self.add(np.zeros(len(self.bounds), np.int64), 0.0, labels)

    def observe_many(self, values: np.ndarray, labels: Sequence[str] = ()) -> None:
        self.add(*self.bucket_counts(values), labels)

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            series = [(key, np.cumsum(counts).tolist(), total[0]) for key, (counts, total) in self._series.items()]
        for key, cumulative, total in sorted(series):
            family.add_metric(list(key), list(zip(self._le, cumulative, strict=True)), total)
        yield family


# --- what a worker reports (small, picklable: it may cross a process boundary) ---------------------------------


@dataclass(frozen=True, slots=True)
class BatchReport:
    """One scored batch. ``scores``: per model, (bucket counts, sum). ``drift``: flat bin counts or None."""

    worker: int
    consumed: int
    duplicates: int
    dead_letters: dict[str, int]
    anomalies: dict[tuple[str, str], int]
    stage_seconds: dict[str, float]
    fresh: int
    approvals: dict[str, int]
    scores: dict[str, tuple[np.ndarray, float]]
    drift: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class PublishedReport:
    worker: int
    results: int
    latency_counts: np.ndarray
    latency_sum: float


@dataclass(frozen=True, slots=True)
class WorkerStateReport:
    """A change of a worker's state; None = unchanged. ``lags``: (topic, partition) -> messages behind;
    ``dropped``: reports the worker could not queue since its last one."""

    worker: int
    heartbeat: bool = False
    partitions: int | None = None
    broker_up: bool | None = None
    registry_up: bool | None = None
    models: dict[str, str] | None = None
    banks: tuple[str, ...] = ()
    lags: dict[tuple[str, int], int] | None = None
    dropped: int = 0
    refused: str | None = None  # an activated model set refused, by reason
    profile: tuple[str, str] | None = None  # with models: the set's reference profile (sha256, the set's directory)
    watchdog: str | None = None  # the worker was ended by its watchdog, in this call (the host reports it)


@dataclass(frozen=True, slots=True)
class SchemaContractReport:
    """A writer schema a worker resolved for the first time, checked against its models: the failure rows
    (model, feature, field, problem) and how many warnings. ``fingerprint`` keeps workers from counting one
    schema twice; it never becomes a label."""

    worker: int
    writer: str
    fingerprint: bytes
    failures: tuple[tuple[str, str, str, str], ...]
    warnings: int


Report = BatchReport | PublishedReport | WorkerStateReport | SchemaContractReport | ShadowReport
Sink = Callable[[Report], None]


class ScorerMetrics:
    """Every per-batch metric, registered in ``registry`` (tests pass a fresh ``CollectorRegistry``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> BulkHistogram:
            hist = BulkHistogram(name, doc, buckets, labels)
            registry.register(hist)
            return hist

        self.consumed = counter("crm_scorer_events_consumed_total", "Messages consumed from the input topic")
        self.published = counter("crm_scorer_results_published_total", "Score results acknowledged by the broker")
        self.dead_letters = counter(
            "crm_scorer_dead_letters_total", "Messages sent to the dead-letter topic", ["reason"]
        )
        self.duplicates = counter("crm_scorer_duplicates_total", "Events answered from recent identical applications")
        self.anomalies = counter(
            "crm_scorer_feature_anomalies_total", "Soft anomalies scored as missing", ["feature", "kind"]
        )
        self.bank_scored = counter(
            "crm_scorer_bank_scored_total", "Applications scored afresh by a bank's model", ["bank"]
        )
        self.approvals = counter("crm_scorer_approvals_total", "Applications a bank's model approved", ["bank"])
        self.latency = histogram(
            "crm_scorer_end_to_end_latency_seconds", "Event time to result acknowledged", LATENCY_BUCKETS
        )
        self.stage = histogram(
            "crm_scorer_stage_seconds", "Per-event cost of a stage (its batch's mean)", STAGE_BUCKETS, ["stage"]
        )
        self.batch_size = histogram("crm_scorer_batch_size", "Messages per consumed batch", BATCH_BUCKETS)
        self.score = histogram("crm_scorer_prediction_score", "Probabilities a model gave", SCORE_BUCKETS, ["model"])
        self.model_info = Gauge(
            "crm_scorer_model_info", "Model versions served (value 1)", ["model", "version"], registry=registry
        )
        self.config_info = Gauge(
            "crm_scorer_config_info", "Hash of the scoring config (value 1)", ["config_hash"], registry=registry
        )
        self.dropped = counter("crm_scorer_telemetry_dropped_total", "Worker reports lost (the queue was full)")
        self.model_set_refused = counter(
            "crm_scorer_model_set_refused_total",
            "Activated model sets a worker refused (failed verification or loading); the running set kept scoring",
            ["reason"],
        )
        self.watchdog_firings = counter(
            "crm_scorer_watchdog_firings_total",
            "Workers ended by their watchdog: a librdkafka call blocked past its bound (the host replaced them)",
            ["call"],
        )
        self._served: dict[int, dict[str, str]] = {}  # per worker: model -> version, for model_info
        self.contract_violations = Gauge(
            "crm_scorer_schema_contract_violations",
            "Features of a model that a writer schema seen since start breaks (docs/schema-contract.md)",
            ["model", "problem"],
            registry=registry,
        )
        self._violations: set[tuple[bytes, str, str, str]] = set()  # (writer fingerprint, model, feature, problem)
        self.lag = ConsumerLag()
        registry.register(self.lag)
        # Every series whose labels are known is exported at zero from the start (client_python's advice):
        # rate() and increase() need a sample before the first increment, or the first one is never counted.
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        for reason in REFUSAL_REASONS:
            self.model_set_refused.labels(reason)
        for hist in (self.latency, self.batch_size):
            hist.touch()
        for stage in STAGES:
            self.stage.touch((stage,))

    def record_batch(self, r: BatchReport) -> None:
        self.consumed.inc(r.consumed)
        if r.duplicates:
            self.duplicates.inc(r.duplicates)
        for reason, count in r.dead_letters.items():
            self.dead_letters.labels(reason).inc(count)
        for (feature, kind), count in r.anomalies.items():
            self.anomalies.labels(feature, kind).inc(count)
        for bank, approved in r.approvals.items():
            self.bank_scored.labels(bank).inc(r.fresh)
            self.approvals.labels(bank).inc(approved)
        for model, (counts, total) in r.scores.items():
            self.score.add(counts, total, (model,))
        self.batch_size.observe_many(np.array([r.consumed]))
        for stage, seconds in r.stage_seconds.items() if r.consumed else ():
            # every event of the batch is counted at the batch's mean cost: _sum is the stage's true time,
            # _count the events, so rate(_sum) / rate(_count) is the exact mean cost per event
            counts, _ = self.stage.bucket_counts(np.array([seconds / r.consumed]))
            self.stage.add(counts * r.consumed, seconds, (stage,))

    def record_published(self, r: PublishedReport) -> None:
        self.published.inc(r.results)
        self.latency.add(r.latency_counts, r.latency_sum)

    def record_contract(self, r: SchemaContractReport) -> bool:
        """Count ``r``'s failures once per writer schema, whichever workers report it; True when they are new."""
        new = {(r.fingerprint, model, feature, problem) for model, feature, _, problem in r.failures}
        new -= self._violations
        self._violations |= new
        for model, problem in {(model, problem) for _, model, _, problem in new}:
            count = sum(1 for _, m, _, p in self._violations if (m, p) == (model, problem))
            self.contract_violations.labels(model, problem).set(count)
        return bool(new)

    def record_models(self, versions: dict[str, str], banks: Sequence[str], worker: int = 0) -> None:
        """``worker`` now scores with ``versions``: ``model_info`` holds the versions some worker of the host
        scores with (during a swap, briefly both sets'), and no longer those none does."""
        before = {(m, v) for served in self._served.values() for m, v in served.items()}
        self._served[worker] = dict(versions)
        now = {(m, v) for served in self._served.values() for m, v in served.items()}
        for model, version in before - now:
            self.model_info.remove(model, version)
        for model, version in versions.items():
            self.model_info.labels(model, version).set(1)
            self.score.touch((model,))
        for bank in banks:  # at zero from the start: rate() then sees the first batch's increase
            self.bank_scored.labels(bank)
            self.approvals.labels(bank)


class ConsumerLag(Collector):
    """``crm_scorer_consumer_lag{topic,partition}``: each worker's latest report replaces its partitions, so a
    partition that moved to another member (or host) stops being exported here."""

    def __init__(self) -> None:
        self._by_worker: dict[int, dict[tuple[str, int], int]] = {}

    def update(self, worker: int, lags: dict[tuple[str, int], int]) -> None:
        self._by_worker[worker] = dict(lags)  # one assignment: atomic for the scraping thread

    def forget(self, worker: int) -> None:
        self._by_worker.pop(worker, None)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        merged: dict[tuple[str, int], int] = {}
        for lags in list(self._by_worker.values()):
            merged.update(lags)
        for (topic, partition), lag in sorted(merged.items()):
            family.add_metric([topic, str(partition)], lag)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "crm_scorer_consumer_lag",
            "Log-end (last stable) offset minus the group's committed offset",
            labels=["topic", "partition"],
        )
