"""Running the loop: in this process for one worker, or N worker processes in one consumer group.

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
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from consumer.kafka.loop import ScoringLoop
from consumer.service import build_engine, registry_source, result_header
from consumer.settings import Settings
from consumer.telemetry.logs import configure_logging
from consumer.telemetry.observer import LoopObserver, NullObserver, ObserverFactory
from models.artifacts import load_models
from schemas.errors import RegistryUnavailableError
from schemas.framing import SchemaSource

log = logging.getLogger(__name__)
_RESTARTS_ALLOWED = 5  # worker replacements within _RESTART_WINDOW_S before the host counts it a crash loop
_RESTART_WINDOW_S = 600.0
_REGISTRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
Clock = Callable[[], float]

# worker index -> observer for that worker (the metrics module provides one; None = no metrics)


def run_worker(settings: Settings, worker: int = 0, observer_factory: ObserverFactory | None = None) -> None:
    """Load the models, then consume until SIGTERM/SIGINT. Raises ArtifactError before joining the group."""
    configure_logging(settings.log.level, settings.log.json_format)
    if worker == 0:  # once per host: a service started elsewhere must not run on the defaults unnoticed
        log.info("settings from %s", settings.source or "defaults, the environment and flags (no config file)")
    observer = (observer_factory(settings, worker) if observer_factory else None) or NullObserver()
    stopping = threading.Event()
    loop: ScoringLoop | None = None

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("worker %d got %s: finishing the batch", worker, signal.Signals(signum).name)
        stopping.set()
        if loop is not None:
            loop.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    models = load_models(settings.models)  # a bad artifact is refused at once, whatever the registry does
    registry = registry_source(settings)
    header = _result_header_when_registered(settings, registry, observer, stopping)
    if header is None:
        return
    loop = ScoringLoop(settings, build_engine(settings, registry, header, models), observer, worker)
    _stop_when_orphaned(loop, worker)
    if stopping.is_set():
        return
    loop.run()


def _result_header_when_registered(
    settings: Settings, registry: SchemaSource | None, observer: LoopObserver, stopping: threading.Event
) -> bytes | None:
    """The results' framing header; with a Schema Registry, once the result schema is registered: a registry
    that does not answer yet is asked again with backoff, the worker alive and not ready meanwhile (None: a stop
    came first). A registry that refuses the schema (ConfigError) is not waited for."""
    started, attempt = time.monotonic(), 0
    while not stopping.is_set():
        try:
            header = result_header(settings, registry)
        except RegistryUnavailableError as exc:
            if attempt == 0:
                observer.registry_state(False)
            if attempt % 10 == 0:
                log.warning("cannot register the result schema yet, retrying (%s; waiting %.0f s)", exc,
                            time.monotonic() - started)  # fmt: skip
            observer.heartbeat()
            stopping.wait(_REGISTRY_BACKOFF_S[min(attempt, len(_REGISTRY_BACKOFF_S) - 1)])
            attempt += 1
            continue
        if attempt:
            observer.registry_state(True)
            log.info("result schema registered after %.1f s", time.monotonic() - started)
        return header
    return None


def _stop_when_orphaned(loop: ScoringLoop, worker: int) -> None:
    """A worker whose parent died (kill -9) stops like on SIGTERM: an orphan would hold its partitions, score
    unseen by metrics and health, and double the group when the host is started again."""
    parent = mp.parent_process()
    if parent is None:  # one worker runs in the scorer's own process
        return

    def watch() -> None:
        parent.join()  # returns once the parent is gone
        log.warning("worker %d: the parent process is gone; finishing the batch and leaving", worker)
        loop.request_stop()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


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
        process = self._context.Process(target=run_worker, args=(self._settings, worker, self._observer_factory),
                                        name=f"worker-{worker}", daemon=False)  # fmt: skip
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
            if not self._budget.take():
                log.error("worker %d %s; %d restarts within %.0f s already: stopping the host", worker,
                          _exit_reason(code), self._budget.allowed, self._budget.window_s)  # fmt: skip
                self._forward(signal.SIGTERM, None)
                return True
            log.error("worker %d %s; starting a replacement", worker, _exit_reason(code))
            self._start(worker)
        return False

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True
        for process in self._processes.values():
            if process.is_alive() and process.pid:
                process.terminate() if signum == signal.SIGTERM else os.kill(process.pid, signal.SIGINT)


def _exit_reason(code: int) -> str:
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use crm-scorer run")
