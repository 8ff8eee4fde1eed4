"""The timer that evaluates the drift windows every ``metrics.drift_interval_s`` on a thread of the host."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from consumer.telemetry.drift import DriftMonitor

log = logging.getLogger(__name__)


@contextlib.contextmanager
def evaluating_drift(drift: DriftMonitor, interval_s: float) -> Iterator[None]:
    """Evaluate ``drift`` every ``interval_s`` until the block ends."""
    stop = threading.Event()
    thread = threading.Thread(target=_evaluate_every, args=(drift, interval_s, stop), name="drift", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def _evaluate_every(drift: DriftMonitor, interval_s: float, stop: threading.Event) -> None:
    while not stop.wait(interval_s):
        try:
            drift.evaluate()
        except Exception:  # a bad evaluation must not end the timer: the staleness alert would hide the cause
            log.exception("drift evaluation failed")
