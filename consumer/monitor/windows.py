"""The quality windows (read back from the store) and the concept-drift detectors (kept in it).

Both windows are defined on the joined rows ordered by the time of the prediction (``scored_at``), never by
arrival: the count window is a model's outcomes of its last N matured scores, the time window those of the
scores within T of the latest matured one. So
the figures depend only on which outcomes were joined, not on how the two topics interleaved on the way in:
a member that replays the topics after a crash computes the same figures as one that never stopped.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from river.drift import ADWIN

from consumer.monitor.join import JoinedRow
from consumer.monitor.quality import Quality, quality
from consumer.monitor.store import partition_prefix

WINDOWS = ("count", "time")
GLOBAL = b"g/"


class Reader(Protocol):
    def scan_back(self, start: bytes, stop: bytes) -> Iterable[tuple[bytes, bytes]]: ...
    def get(self, key: bytes) -> bytes | None: ...


@dataclass(frozen=True)
class WindowRows:
    """One model's rows of a window, as arrays."""

    probability: np.ndarray
    decided: np.ndarray
    positive: np.ndarray
    delay_s: np.ndarray


def window_rows(
    store: Reader, partitions: Iterable[int], model: str, count: int, span_ms: float, horizon_ms: float = 0.0
) -> dict[str, Any]:
    """``{"count": WindowRows, "time": WindowRows}`` of ``model`` over ``partitions``.

    Rows are taken by ``scored_at``, and only those scored at least ``horizon_ms`` before the partition's
    event time: until its horizon closes a lead that has not converted yet is no negative yet, so a window
    of younger scores would hold their conversions without their non-conversions.
    """
    rows: list[dict[str, Any]] = []
    for partition in partitions:
        prefix = partition_prefix(partition) + f"row/{model}/".encode()
        watermark = int(store.get(partition_prefix(partition) + b"wm") or 0)
        stop = prefix + f"{int(watermark - horizon_ms) + 1:013d}".encode()
        newest = None
        for taken, (_, value) in enumerate(store.scan_back(prefix, stop)):
            row = json.loads(value)
            newest = row["scored_at"] if newest is None else newest
            # Enough of each partition for both windows: its last ``count``, and all within the span.
            if taken >= count and row["scored_at"] < newest - span_ms:
                break
            rows.append(row)
    rows.sort(key=lambda r: (r["scored_at"], r["outcome_id"]))
    latest = rows[-1]["scored_at"] if rows else 0
    return {
        "count": _arrays(rows[-count:]),
        "time": _arrays([r for r in rows if r["scored_at"] >= latest - span_ms]),
    }


def window_quality(rows: WindowRows, bins: int) -> Quality:
    return quality(rows.probability, rows.positive, rows.decided, bins)


def _arrays(rows: list[dict[str, Any]]) -> WindowRows:
    return WindowRows(
        np.array([r["probability"] for r in rows], dtype=np.float64),
        np.array([r["decided"] for r in rows], dtype=bool),
        np.array([r["positive"] for r in rows], dtype=np.float64),
        np.array([(r["decided_at"] - r["scored_at"]) / 1000.0 for r in rows], dtype=np.float64),
    )


def detector_recent(fed: int, fired_at: int, firings: int, count_window: int) -> bool:
    """Whether a model's detector fired (``firings`` > 0, the last when ``fired_at`` outcomes had been fed)
    within its last ``count_window`` of the ``fed`` outcomes."""
    return firings > 0 and fed - fired_at < count_window


class Detectors:
    """An ADWIN detector (river) per model over its squared errors, in join order, kept in the store.

    A firing counts only when the error went up (ADWIN also notices a model getting better). ``update``
    records it as a counter in the same transaction as the rows, so a restarted member neither loses nor
    repeats a firing.
    """

    def __init__(self, min_instances: int, delta: float) -> None:
        self._min_instances, self._delta = min_instances, delta
        self._live: dict[str, ADWIN] = {}

    def update(self, changes: Any, rows: Iterable[JoinedRow]) -> list[str]:
        """Feed ``rows``; the models whose detector fired (once per firing)."""
        fired, touched = [], set()
        for row in rows:
            detector = self._detector(changes, row.model)
            before = float(detector.estimation)
            detector.update(row.error)
            touched.add(row.model)
            changes.add(GLOBAL + f"stat/fed/{row.model}".encode())
            if detector.drift_detected and float(detector.estimation) > before:
                fired.append(row.model)
                changes.add(GLOBAL + f"stat/drift/{row.model}".encode())
                fed = changes.get(GLOBAL + f"stat/fed/{row.model}".encode())
                changes.put(GLOBAL + f"drift_at/{row.model}".encode(), fed or b"0")
        for model in touched:
            changes.put(GLOBAL + f"det/{model}".encode(), pickle.dumps(self._live[model]))
        return fired

    def _detector(self, changes: Any, model: str) -> ADWIN:
        detector = self._live.get(model)
        if detector is None:
            saved = changes.get(GLOBAL + f"det/{model}".encode())
            # Our own pickle, written by this class into the member's own store: never data from outside.
            detector = pickle.loads(saved) if saved else ADWIN(delta=self._delta, grace_period=self._min_instances)
            self._live[model] = detector
        return detector

    def forget(self) -> None:
        """Drop the live detectors (the store was rewound): they are read back on next use."""
        self._live.clear()
