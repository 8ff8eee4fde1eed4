"""Streaming drift: each batch counted into the reference profile's bins, PSI over a short and a long window.

Counting (``DriftCounter``) runs where the batch was scored: one vectorised bin count per monitored input and
per model's score, flattened into one integer vector, so a batch costs a few numpy calls and what travels
between processes is a few hundred integers. The windows (``DriftMonitor``) add those vectors up and are
evaluated on a timer, never per batch. A window publishes its gauges only once it holds ``MIN_EVENTS``.

Definitions, per input and window: PSI of the observed bin shares against the profile's expected shares;
missing ratio = share of events in the missing bin (absent, or present but scored as missing: an anomaly);
unseen ratio (categorical inputs only) = share of events whose category the vocabulary does not know
(counted by the feature pipeline as ``unknown_category``; such events also land in the missing bin). A known
category outside the profile's top categories falls in the ``other`` bin and counts towards PSI only.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from models.artifacts import read_manifest, verified_file
from models.features import FEATURE_INDEX, FeatureFrame, slug
from models.profile import ONE_HOT_INPUTS, BinProfile, input_column, psi
from schemas.errors import ArtifactError

log = logging.getLogger(__name__)

# PSI of a sample against its own distribution is ~ chi-square(bins - 1) / n: with 10-12 bins, 500 events give
# a noise PSI of ~0.02 on average and < 0.05 in 99 of 100 windows (tests/unit/test_drift.py measures it), well
# under the 0.1 warning threshold. Fewer events and noise alone would cross the threshold.
MIN_EVENTS = 500
WINDOWS = ("short", "long")
_CHUNKS_PER_WINDOW = 20  # a window is a ring of ~20 chunks: memory stays bounded however small the batches


@dataclass(frozen=True)
class ReferenceProfile:
    """The bins of every monitored input and of every model's score, as trained."""

    inputs: tuple[BinProfile, ...]
    predictions: tuple[BinProfile, ...]


def load_reference_profile(artifacts_dir: Path) -> ReferenceProfile:
    """The profile listed in the manifest, its sha256 verified before it is parsed.

    Raises:
        ArtifactError: no profile in the manifest, the file is missing, altered or not a profile.
    """
    manifest = read_manifest(artifacts_dir)
    entry = manifest.get("reference_profile")
    if not isinstance(entry, dict):
        raise ArtifactError(f"{artifacts_dir}/manifest.json lists no reference_profile: retrain with crm-train")
    path = verified_file(artifacts_dir, entry, "reference_profile")
    try:
        raw = json.loads(path.read_text())
        inputs = tuple(BinProfile.from_dict(p) for p in raw["inputs"])
        predictions = tuple(BinProfile.from_dict(p) for p in raw["predictions"].values())
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ArtifactError(f"{path} is not a reference profile: {exc!r}") from exc
    return ReferenceProfile(inputs, predictions)


class DriftCounter:
    """Turns one batch (its feature frame and predictions) into one flat vector of bin counts.

    Layout: the bins of every input, then of every model's score, then one unseen-category count per
    categorical input. Gives exactly ``BinProfile.counts(input_column(frame, name))`` per input (a unit test
    checks), but bins categories through a lookup table and one-hot groups through one matrix-vector product:
    three times cheaper than the general path, which matters because it runs on every batch.
    """

    def __init__(self, profile: ReferenceProfile) -> None:
        self.profile = profile
        self.categorical = tuple(p.name for p in profile.inputs if p.kind == "categorical")
        sizes = [p.bins for p in (*profile.inputs, *profile.predictions)] + [1] * len(self.categorical)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.intp)
        self.width = int(self.offsets[-1])
        self._binners = [_binner(p) for p in profile.inputs]

    def count(self, frame: FeatureFrame | None, predictions: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """The batch's counts; None when nothing was scored afresh (duplicates and dead letters only)."""
        if frame is None or len(frame.matrix) == 0:
            return None
        parts = [
            np.bincount(bin_of(frame), minlength=p.bins)
            for p, bin_of in zip(self.profile.inputs, self._binners, strict=True)
        ]
        for p in self.profile.predictions:
            scores = predictions.get(p.name)
            parts.append(p.counts(np.asarray(scores, np.float64)) if scores is not None else np.zeros(p.bins, int))
        parts.append(np.array([frame.anomalies.get((n, "unknown_category"), 0) for n in self.categorical]))
        return np.concatenate(parts).astype(np.int64)


def _binner(profile: BinProfile) -> Callable[[FeatureFrame], np.ndarray]:
    """A function from a frame to the bin index of every row for ``profile``'s input."""
    if profile.kind == "numeric":
        return lambda frame: profile.bin_index(input_column(frame, profile.name))
    kept = np.asarray(profile.edges, np.intp)
    top = int(kept.max(initial=0)) + 1  # codes from here on are all "other"
    table = np.full(top + 2, len(kept), np.intp)  # default: "other"
    table[kept] = np.arange(len(kept))
    table[top + 1] = profile.bins - 1  # missing
    if profile.name in ONE_HOT_INPUTS:
        first = FEATURE_INDEX[f"{profile.name}_{slug(ONE_HOT_INPUTS[profile.name][0])}"]
        size = len(ONE_HOT_INPUTS[profile.name])
        weights = np.arange(1, size + 1, dtype=np.float32)  # row . weights = code + 1, or 0 when none is hot

        def one_hot(frame: FeatureFrame) -> np.ndarray:
            code = (frame.matrix[:, first : first + size] @ weights).astype(np.intp) - 1
            return table[np.where(code < 0, top + 1, np.minimum(code, top))]

        return one_hot
    column = FEATURE_INDEX[profile.name]

    def coded(frame: FeatureFrame) -> np.ndarray:
        values = frame.matrix[:, column]
        codes = np.minimum(np.nan_to_num(values, nan=-1.0), top).astype(np.intp)
        return table[np.where(codes < 0, top + 1, codes)]

    return coded


class _Window:
    """The last ~``size`` events' counts: a ring of chunks; the newest chunk grows until it is full.

    The oldest chunk is dropped while that brings the window closer to ``size`` without leaving it under
    ``floor`` events, so a window of 1,000 fed batches of 1,000 holds the last batch, not the last two.
    """

    def __init__(self, size: int, floor: int, width: int) -> None:
        self.size, self.floor = size, floor
        self._chunk = max(1, size // _CHUNKS_PER_WINDOW)
        self._chunks: deque[list] = deque()  # [counts, events]
        self.total = np.zeros(width, np.int64)
        self.events = 0

    def add(self, counts: np.ndarray, events: int) -> None:
        if self._chunks and self._chunks[-1][1] < self._chunk:
            self._chunks[-1][0] += counts
            self._chunks[-1][1] += events
        else:
            self._chunks.append([counts.copy(), events])
        self.total += counts
        self.events += events
        while len(self._chunks) > 1 and self._worth_dropping(self._chunks[0][1]):
            old, old_events = self._chunks.popleft()
            self.total -= old
            self.events -= old_events

    def _worth_dropping(self, oldest: int) -> bool:
        rest = self.events - oldest
        return rest >= self.floor and abs(rest - self.size) <= abs(self.events - self.size)


@dataclass(frozen=True)
class DriftSnapshot:
    """One evaluation: gauges keyed by (feature or model, window); windows under MIN_EVENTS are left out."""

    evaluated_at: float
    window_events: dict[str, int]
    feature_psi: dict[tuple[str, str], float] = field(default_factory=dict)
    prediction_psi: dict[tuple[str, str], float] = field(default_factory=dict)
    missing_ratio: dict[tuple[str, str], float] = field(default_factory=dict)
    unseen_ratio: dict[tuple[str, str], float] = field(default_factory=dict)


class DriftMonitor(Collector):
    """The host's drift windows; ``add`` per batch, ``evaluate`` every few seconds, exported as gauges.

    Thread-safe: batches arrive on the loop (or report) thread, evaluation runs on a timer, scrapes on the
    HTTP server's threads.
    """

    def __init__(
        self,
        profile: ReferenceProfile,
        short_window: int,
        long_window: int,
        min_events: int = MIN_EVENTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counter = DriftCounter(profile)
        self.min_events = min_events
        sizes = {"short": short_window, "long": long_window}
        for name, size in sizes.items():
            if size < min_events:
                log.warning("drift %s window of %d events raised to %d: PSI on fewer is noise", name, size, min_events)
        self._sizes = {name: max(size, min_events) for name, size in sizes.items()}
        self._windows = {name: _Window(size, min_events, self.counter.width) for name, size in self._sizes.items()}
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: DriftSnapshot | None = None

    def rebase(self, profile: ReferenceProfile) -> None:
        """Measure against ``profile`` from now on (a newly activated model set's), with empty windows: events
        binned for the previous set's reference say nothing about drift from the new one's."""
        counter = DriftCounter(profile)
        windows = {name: _Window(size, self.min_events, counter.width) for name, size in self._sizes.items()}
        with self._lock:
            self.counter, self._windows = counter, windows

    def add(self, counts: np.ndarray) -> None:
        """Add one batch's counts (from ``DriftCounter.count``); counts binned for another profile (a worker
        that has not swapped sets yet) are left out."""
        with self._lock:
            if len(counts) != self.counter.width:
                return
            events = int(counts[: self.counter.offsets[1]].sum())  # every input counts every scored event once
            for window in self._windows.values():
                window.add(counts, events)

    def evaluate(self) -> DriftSnapshot:
        """Compute every gauge from the windows as they are now and keep it for the next scrape."""
        with self._lock:
            counter = self.counter  # the windows' profile, even if a rebase follows
            totals = {name: (w.total.copy(), w.events) for name, w in self._windows.items()}
        snapshot = DriftSnapshot(self._clock(), {name: events for name, (_, events) in totals.items()})
        for name, (total, events) in totals.items():
            if events >= self.min_events:
                self._fill(snapshot, counter, name, total, events)
        self._snapshot = snapshot
        return snapshot

    @property
    def snapshot(self) -> DriftSnapshot | None:
        return self._snapshot

    def _fill(self, snap: DriftSnapshot, counter: DriftCounter, window: str, total: np.ndarray, events: int) -> None:
        profile, offsets = counter.profile, counter.offsets
        for i, p in enumerate(profile.inputs):
            counts = total[offsets[i] : offsets[i + 1]]
            snap.feature_psi[p.name, window] = psi(np.asarray(p.expected), counts)
            snap.missing_ratio[p.name, window] = float(counts[-1] / events)
        for j, p in enumerate(profile.predictions, start=len(profile.inputs)):
            counts = total[offsets[j] : offsets[j + 1]]
            if counts.sum() >= self.min_events:  # a model added later has scored fewer events than the window
                snap.prediction_psi[p.name, window] = psi(np.asarray(p.expected), counts)
        first_unseen = len(profile.inputs) + len(profile.predictions)
        for k, name in enumerate(counter.categorical, start=first_unseen):
            snap.unseen_ratio[name, window] = float(total[offsets[k]] / events)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(_families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self._snapshot
        if snapshot is None:
            return iter(())
        return iter(_families(snapshot))


def _families(snap: DriftSnapshot | None = None) -> list[GaugeMetricFamily]:
    def gauge(name: str, doc: str, labels: list[str], values: dict[tuple[str, str], float]) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=labels)
        for key, value in sorted(values.items()):
            family.add_metric(list(key), value)
        return family

    s = snap or DriftSnapshot(0.0, {})
    fw, mw = ["feature", "window"], ["model", "window"]
    families = [
        gauge("crm_scorer_feature_psi", "PSI of an input against its reference profile", fw, s.feature_psi),
        gauge("crm_scorer_prediction_psi", "PSI of a model's scores against its reference", mw, s.prediction_psi),
        gauge("crm_scorer_feature_missing_ratio", "Share of events scored with the input missing", fw, s.missing_ratio),
        gauge("crm_scorer_feature_unseen_ratio", "Share of events with an unknown category", fw, s.unseen_ratio),
    ]
    events = GaugeMetricFamily("crm_scorer_drift_window_events", "Scored events in a drift window", labels=["window"])
    for window, count in sorted(s.window_events.items()):
        events.add_metric([window], count)
    stamp = GaugeMetricFamily("crm_scorer_drift_evaluated_timestamp_seconds", "When drift was last evaluated")
    if snap is not None:
        stamp.add_metric([], snap.evaluated_at)
    return [*families, events, stamp]
