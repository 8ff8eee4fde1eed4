"""The challenger's comparison metrics (``crm_scorer_shadow_*``, labels: model only).

Per batch a worker reports, for each challenged model, how many rows both scored, how many decisions agreed,
the flips each way and the challenger's predict time (``ShadowReport``: a few integers), plus a strided sample
of at most ``SAMPLE`` (champion, challenger) probability pairs. The host keeps the last ``WINDOW`` pairs per model
and computes the rank correlation (Spearman) and the PSI between the two score distributions when Prometheus
scrapes: off the per-event path, like the drift windows. A new challenger version empties its model's window.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from consumer.core.challenger import ShadowScores, psi, spearman

SAMPLE = 256  # pairs per batch and model, at most
WINDOW = 5000  # pairs per model the rank correlation and the PSI are computed over


@dataclass(frozen=True, slots=True)
class ShadowReport:
    """One batch's comparison, per challenged model: (challenger version, scored, agreed, flips to approve,
    flips to decline, challenger seconds) and the sampled (champion, challenger) pairs."""

    worker: int
    tallies: dict[str, tuple[str, int, int, int, int, float]]
    pairs: dict[str, tuple[np.ndarray, np.ndarray]]


def shadow_report(shadow: dict[str, ShadowScores], worker: int) -> ShadowReport:
    tallies, pairs = {}, {}
    for name, scores in shadow.items():
        t = scores.tally()
        tallies[name] = (scores.version, t.scored, t.agreed, t.to_approve, t.to_decline, scores.seconds)
        step = max(1, math.ceil(t.scored / SAMPLE))
        pairs[name] = (scores.champion[::step].astype(np.float32), scores.challenger[::step].astype(np.float32))
    return ShadowReport(worker, tallies, pairs)


class ShadowMetrics(Collector):
    """The counters (incremented per report) and the window gauges (computed at scrape)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, ["model"], registry=registry)

        self.scored = counter("crm_scorer_shadow_scored_total", "Rows the champion and its challenger both scored")
        self.agreed = counter(
            "crm_scorer_shadow_agreed_total", "Rows where the challenger's approve/decline equals the champion's"
        )
        self.to_approve = counter(
            "crm_scorer_shadow_flips_to_approve_total", "Rows the champion declines and the challenger would approve"
        )
        self.to_decline = counter(
            "crm_scorer_shadow_flips_to_decline_total", "Rows the champion approves and the challenger would decline"
        )
        self.seconds = counter(
            "crm_scorer_shadow_seconds_total", "The challenger's predict time (over scored_total: its cost per event)"
        )
        self._windows: dict[str, tuple[str, deque[tuple[float, float]]]] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def record(self, report: ShadowReport) -> None:
        for name, (version, scored, agreed, up, down, seconds) in report.tallies.items():
            self.scored.labels(name).inc(scored)
            self.agreed.labels(name).inc(agreed)
            self.to_approve.labels(name).inc(up)
            self.to_decline.labels(name).inc(down)
            self.seconds.labels(name).inc(seconds)
            champion, challenger = report.pairs[name]
            with self._lock:
                held = self._windows.get(name)
                if held is None or held[0] != version:
                    held = self._windows[name] = (version, deque(maxlen=WINDOW))
                held[1].extend(zip(champion.tolist(), challenger.tolist(), strict=True))

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(_families({}))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            windows = {name: np.array(pairs, dtype=np.float64) for name, (_, pairs) in self._windows.items()}
        return iter(_families(windows))


def _families(windows: dict[str, np.ndarray]) -> list[GaugeMetricFamily]:
    rank = GaugeMetricFamily(
        "crm_scorer_shadow_rank_correlation",
        "Spearman correlation of champion and challenger probabilities over the last window of sampled rows",
        labels=["model"],
    )
    stability = GaugeMetricFamily(
        "crm_scorer_shadow_psi",
        "PSI of the challenger's probabilities against the champion's over the same window (10 bins of [0, 1])",
        labels=["model"],
    )
    size = GaugeMetricFamily("crm_scorer_shadow_window_rows", "Sampled rows in the comparison window", labels=["model"])
    for name, pairs in sorted(windows.items()):
        size.add_metric([name], float(len(pairs)))
        if len(pairs) < 2:
            continue
        rho, shift = spearman(pairs[:, 0], pairs[:, 1]), psi(pairs[:, 0], pairs[:, 1])
        if not math.isnan(rho):
            rank.add_metric([name], rho)
        if not math.isnan(shift):
            stability.add_metric([name], shift)
    return [rank, stability, size]
