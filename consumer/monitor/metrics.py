"""Prometheus metrics of the monitor (``crm_monitor_*``), in the style of the scorer's.

The counters are not incremented in this process: they are the counters the state store holds, exported as
they are after each batch (``MonitorCollector.publish``), so they count each outcome once across restarts and
replays, and a member that takes over a partition exports what that partition's state says. Quality figures
are gauges per ``(model, window)``; labels are model names and window names only, never ids.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from consumer.monitor.lifecycle_metrics import lifecycle_families
from consumer.monitor.paired import Paired
from consumer.monitor.quality import Quality
from consumer.monitor.rollback import RuleFigures
from consumer.monitor.trigger import Decision

# Label delay: a bank decides in minutes to hours, a lead converts (or its horizon closes) in days.
DELAY_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0, 172800.0, 345600.0, 604800.0)
FIGURES = {
    "auc": "Realised ROC AUC of the model's probability against the outcomes",
    "brier": "Realised Brier score (mean squared error of the probability)",
    "log_loss": "Realised log-loss",
    "ece": "Expected calibration error over equal-width probability bins",
    "observed_rate": "Share of positive outcomes (approved, converted)",
    "predicted_rate": "Mean predicted probability over the same outcomes",
    "precision": "Precision of the model's decision (approved / p >= 0.5 for the lead)",
    "recall": "Recall of the model's decision",
    "expected_auc": "AUC the predictions expect of themselves if calibrated (CBPE-style, no labels needed)",
    "expected_brier": "Brier score the predictions expect of themselves if calibrated",
    "window_outcomes": "Joined outcomes in the window",
}


@dataclass
class MonitorState:
    """What the monitor exports: the stored counters (summed over the member's partitions) and the figures."""

    counters: dict[str, int] = field(default_factory=dict)
    figures: dict[tuple[str, str], Quality] = field(default_factory=dict)
    drift_detected: dict[str, bool] = field(default_factory=dict)
    decisions: dict[str, Decision] = field(default_factory=dict)  # the retraining trigger's, per model
    retrain_since: dict[str, int] = field(default_factory=dict)  # outcomes since the trigger fired, per model
    paired: dict[str, Paired] = field(default_factory=dict)  # champion vs challenger on the same outcomes
    rollback: dict[str, RuleFigures] = field(default_factory=dict)  # the rollback rule's, per promoted model


class MonitorCollector(Collector):
    """Exposes a ``MonitorState``; ``publish`` swaps in a new one (thread-safe against a scrape)."""

    def __init__(self) -> None:
        self._state = MonitorState()
        self._lock = threading.Lock()

    def publish(self, state: MonitorState) -> None:
        with self._lock:
            self._state = state

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            state = self._state
        yield from _counters(state.counters)
        for name, doc in FIGURES.items():
            gauge = GaugeMetricFamily(f"crm_monitor_{name}", doc, labels=["model", "window"])
            for (model, window), figures in sorted(state.figures.items()):
                value = float(figures.outcomes if name == "window_outcomes" else asdict(figures)[name])
                if not math.isnan(value):
                    gauge.add_metric([model, window], value)
            yield gauge
        drift = GaugeMetricFamily(
            "crm_monitor_concept_drift_detected",
            "1 while the model's detector fired within its last count window of outcomes",
            labels=["model"],
        )
        for model, detected in sorted(state.drift_detected.items()):
            drift.add_metric([model], 1.0 if detected else 0.0)
        yield drift
        yield from _trigger(state)
        yield from lifecycle_families(state.paired, state.rollback)


def _trigger(state: MonitorState) -> Iterator[Metric]:
    """The retraining trigger's decision and signals; a model below ``quality.min_outcomes`` has no series."""
    recommended = GaugeMetricFamily(
        "crm_monitor_retrain_recommended",
        "1 while the retraining trigger recommends retraining the model (docs/retraining-trigger.md)",
        labels=["model"],
    )
    signals = GaugeMetricFamily(
        "crm_monitor_trigger_signal",
        "The trigger's signals over its window: cusum, auc_gap, ece_excess, detector",
        labels=["model", "signal"],
    )
    began = GaugeMetricFamily(
        "crm_monitor_outcomes_since_change_began",
        "Outcomes since the CUSUM's estimate of where the change began (0: no change seen)",
        labels=["model"],
    )
    since = GaugeMetricFamily(
        "crm_monitor_outcomes_since_change_detected",
        "Outcomes joined since the trigger fired, while it recommends retraining",
        labels=["model"],
    )
    for model, decision in sorted(state.decisions.items()):
        if not decision.signals:
            continue
        recommended.add_metric([model], 1.0 if decision.retrain else 0.0)
        began.add_metric([model], float(decision.since_change))
        for name, value in decision.signals.items():
            signals.add_metric([model, name], value)
    for model, outcomes in sorted(state.retrain_since.items()):
        since.add_metric([model], float(outcomes))
    yield from (recommended, signals, began, since)


def _counters(counters: Mapping[str, int]) -> Iterator[Metric]:
    joined = CounterMetricFamily("crm_monitor_outcomes_joined", "Outcomes joined with their score", labels=["model"])
    fired = CounterMetricFamily("crm_monitor_concept_drift", "Concept-drift detector firings", labels=["model"])
    outcomes = CounterMetricFamily(
        "crm_monitor_outcomes", "Outcomes read, by what became of them (besides joined)", labels=["result"]
    )
    scores = CounterMetricFamily("crm_monitor_scores", "Score results read, by what became of them", labels=["result"])
    for key, value in sorted(counters.items()):
        kind, _, model = key.partition("/")
        if kind == "joined":
            joined.add_metric([model], value)
        elif kind == "drift":
            fired.add_metric([model], value)
    for result in ("duplicate", "unmatched", "unknown_model"):
        outcomes.add_metric([result], counters.get(f"outcomes_{result}", 0))
    scores.add_metric(["stored"], counters.get("scores", 0))
    scores.add_metric(["duplicate"], counters.get("scores_duplicate", 0))
    scores.add_metric(["expired_unanswered"], counters.get("scores_expired_unanswered", 0))
    coverage = GaugeMetricFamily(
        "crm_monitor_join_coverage_ratio", "Joined outcomes over joined plus those that found no score in the TTL"
    )
    total_joined = sum(v for k, v in counters.items() if k.startswith("joined/"))
    settled = total_joined + counters.get("outcomes_unmatched", 0)
    if settled:
        coverage.add_metric([], total_joined / settled)
    yield from (joined, fired, outcomes, scores, coverage)


class MonitorMetrics:
    """The monitor's registry: the stored state's collector plus this process's own live series."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.state = MonitorCollector()
        self.registry.register(self.state)
        self.label_delay = Histogram(
            "crm_monitor_label_delay_seconds",
            "From the score to its outcome (decided_at - scored_at), per model, as joined by this process",
            ["model"],
            buckets=DELAY_BUCKETS,
            registry=self.registry,
        )
        self.messages = Counter(
            "crm_monitor_messages", "Messages this process consumed, per topic", ["topic"], registry=self.registry
        )
        self.undecodable = Counter(
            "crm_monitor_undecodable_messages",
            "Messages that did not decode, per topic",
            ["topic"],
            registry=self.registry,
        )
        self.last_outcome = Gauge(
            "crm_monitor_last_outcome_timestamp_seconds",
            "Wall-clock time this process last read an outcome (outcomes stopped arriving: alert)",
            registry=self.registry,
        )
        self.rollbacks = Counter(
            "crm_monitor_rollbacks",
            "Promoted model sets the rollback rule rolled back, per model that did worse (docs/model-lifecycle.md)",
            ["model"],
            registry=self.registry,
        )
        self.partitions = Gauge(
            "crm_monitor_partitions_assigned", "Input partitions this member owns", registry=self.registry
        )
        self.standby = Gauge(
            "crm_monitor_standby",
            "1 while this monitor waits for the group's writer to leave (monitor.single_writer)",
            registry=self.registry,
        )
