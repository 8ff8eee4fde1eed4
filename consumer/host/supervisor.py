"""Supervising the workers: one in this process, or N worker processes in one consumer group.

Scale-out is the consumer group itself: each worker is an ordinary member, Kafka spreads the partitions. The
parent only starts the workers, forwards SIGTERM/SIGINT to them, replaces one that dies, and waits; a worker
stops by itself when the parent dies.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from consumer.host.worker import run_worker
from consumer.kafka.watchdog import CALL_OF_EXIT_CODE
from consumer.settings import Settings
from consumer.telemetry.logs import configure_logging
from consumer.telemetry.observer import ObserverFactory
from models.artifacts import load_models

log = logging.getLogger(__name__)
_RESTARTS_ALLOWED = 5  # worker replacements within _RESTART_WINDOW_S before the host counts it a crash loop
_RESTART_WINDOW_S = 600.0
Clock = Callable[[], float]


def run_workers(settings: Settings, observer_factory: ObserverFactory | None = None) -> int:
    """Run ``settings.workers`` members of the group; returns a process exit code.

    Raises ArtifactError (several workers: checked once here, before any worker starts).
    """
    if settings.workers == 1:
        run_worker(settings, 0, observer_factory)
        return 0
    configure_logging(settings.log.level, settings.log.json_format)
    # Refused here with one clear message, rather than by every worker in a traceback of its own.
    load_models(settings.models)
    return WorkerPool(settings, observer_factory).run()


class RestartBudget:
    """How many crashed workers may be replaced: ``allowed`` within any ``window_s``; more is a crash loop."""

    def __init__(
        self, allowed: int = _RESTARTS_ALLOWED, window_s: float = _RESTART_WINDOW_S, clock: Clock = time.monotonic
    ) -> None:
        self.allowed = allowed
        self.window_s = window_s
        self._clock = clock
        self._restarts: deque[float] = deque()

    def take(self) -> bool:
        """True (and counted) when one more restart fits in the window."""
        now = self._clock()
        while self._restarts and now - self._restarts[0] > self.window_s:
            self._restarts.popleft()
        if len(self._restarts) >= self.allowed:
            return False
        self._restarts.append(now)
        return True


class WorkerPool:
    """N worker processes: forwards SIGTERM/SIGINT to them, replaces one that dies unasked (a crash, kill -9).

    A dead member's partitions would otherwise move to the survivors after ``session.timeout.ms`` and the host
    would run on with less capacity and nothing to show for it. A crash loop (more than the restart budget)
    stops every worker and exits non-zero, so the orchestrator sees it.
    """

    def __init__(
        self, settings: Settings, observer_factory: ObserverFactory | None, budget: RestartBudget | None = None
    ) -> None:
        self._settings = settings
        self._observer_factory = observer_factory
        self._budget = budget or RestartBudget()
        self._context = mp.get_context("spawn")  # a fresh interpreter per worker: no inherited Kafka or XGBoost state
        self._processes: dict[int, BaseProcess] = {}
        self._stopping = False
        self.watchdog_firings: dict[str, int] = {}  # per call: workers ended by their watchdog and replaced

    def run(self) -> int:
        for worker in range(self._settings.workers):
            self._start(worker)
        signal.signal(signal.SIGTERM, self._forward)
        signal.signal(signal.SIGINT, self._forward)
        gave_up = False
        while alive := [p for p in self._processes.values() if p.exitcode is None]:
            wait([p.sentinel for p in alive], timeout=1.0)
            if not self._stopping:
                gave_up = self._replace_crashed() or gave_up
        codes = {worker: p.exitcode for worker, p in sorted(self._processes.items())}
        log.info("workers exited with %s", codes)
        return 1 if gave_up or any(codes.values()) else 0

    def _start(self, worker: int) -> None:
        process = self._context.Process(
            target=run_worker,
            args=(self._settings, worker, self._observer_factory),
            name=f"worker-{worker}",
            daemon=False,
        )
        self._processes[worker] = process
        process.start()
        if self._stopping:  # the stop signal came while this one was starting
            process.terminate()

    def _replace_crashed(self) -> bool:
        """Start a replacement for each worker that died unasked; True when the budget ran out."""
        for worker, process in list(self._processes.items()):
            code = process.exitcode
            if not code:  # running, or left cleanly
                continue
            if (call := CALL_OF_EXIT_CODE.get(code)) is not None:
                self._watchdog_fired(worker, call)
            if not self._budget.take():
                log.error(
                    "worker %d %s; %d restarts within %.0f s already: stopping the host",
                    worker,
                    _exit_reason(code),
                    self._budget.allowed,
                    self._budget.window_s,
                )
                self._forward(signal.SIGTERM, None)
                return True
            log.error("worker %d %s; starting a replacement", worker, _exit_reason(code))
            self._start(worker)
        return False

    def _watchdog_fired(self, worker: int, call: str) -> None:
        """Count a worker its watchdog ended: here and, with metrics on, in crm_scorer_watchdog_firings_total
        (the worker could not report it: it ended at once)."""
        self.watchdog_firings[call] = self.watchdog_firings.get(call, 0) + 1
        if self._observer_factory is not None:
            observer = self._observer_factory(self._settings, worker)
            if observer is not None:
                observer.watchdog_fired(call)

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True
        for process in self._processes.values():
            if process.is_alive() and process.pid:
                process.terminate() if signum == signal.SIGTERM else os.kill(process.pid, signal.SIGINT)


def _exit_reason(code: int) -> str:
    if (call := CALL_OF_EXIT_CODE.get(code)) is not None:
        return f"was ended by its watchdog ({call} blocked past its bound, exit status {code})"
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use crm-scorer run")
