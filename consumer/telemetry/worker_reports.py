"""Several workers on one host: their reports cross the process boundary on one queue the parent drains.

Why not prometheus_client's multiprocess mode: the drift windows must add up the host's events (per-worker
windows would fill N times slower and export N series per feature), health needs every worker's loop state
anyway, and one registry in one process has no mmap files to clean and no per-pid gauge series left by restarted
workers. The queue carries a few hundred integers per batch, not events.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from consumer.settings import Settings
from consumer.telemetry.drift import DriftCounter, load_reference_profile
from consumer.telemetry.metrics import Report, Sink, WorkerStateReport
from consumer.telemetry.observer import LoopObserver
from consumer.telemetry.worker_observer import WorkerObserver
from models.artifacts import models_dir

log = logging.getLogger(__name__)
QUEUE_SIZE = 10_000  # reports; a full queue drops reports (counted) rather than slow the scoring loop


class QueueSink:
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
        counter = DriftCounter(load_reference_profile(models_dir(settings.models))) if settings.metrics.drift else None
        return WorkerObserver(QueueSink(self.reports, worker), worker, counter)


@contextlib.contextmanager
def draining_worker_reports(apply: Sink) -> Iterator[QueueObserverFactory]:
    """A queue for the workers' reports and a thread that hands each to ``apply`` until the block ends."""
    reports = mp.get_context("spawn").Queue(QUEUE_SIZE)
    pump = threading.Thread(target=_pump, args=(reports, apply), name="worker-reports", daemon=True)
    pump.start()
    try:
        yield QueueObserverFactory(reports)
    finally:
        reports.put(None)
        pump.join(5.0)


def _pump(reports: Any, apply: Sink) -> None:
    while (report := reports.get()) is not None:
        try:
            apply(report)
        except Exception:  # one bad report must not end the metrics of the host
            log.exception("cannot apply a worker report")
