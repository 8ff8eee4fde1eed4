"""Running the loop: in this process for one worker, or N worker processes in one consumer group.

Scale-out is the consumer group itself: each worker is an ordinary member, Kafka spreads the partitions. The
parent only starts the workers, forwards SIGTERM/SIGINT to them, and waits.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import sys
from collections.abc import Callable
from types import FrameType

from consumer.logs import configure_logging
from consumer.loop import ScoringLoop
from consumer.observer import LoopObserver
from consumer.service import build_engine
from consumer.settings import Settings

log = logging.getLogger(__name__)
_JOIN_TIMEOUT_S = 15.0

# worker index -> observer for that worker (the metrics module provides one; None = no metrics)
ObserverFactory = Callable[[Settings, int], LoopObserver | None]


def run_worker(settings: Settings, worker: int = 0, observer_factory: ObserverFactory | None = None) -> None:
    """Load the models, then consume until SIGTERM/SIGINT. Raises ArtifactError before joining the group."""
    configure_logging(settings.log.level, settings.log.json_format)
    engine = build_engine(settings)
    observer = observer_factory(settings, worker) if observer_factory else None
    loop = ScoringLoop(settings, engine, observer, worker)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("worker %d got %s: finishing the batch", worker, signal.Signals(signum).name)
        loop.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    loop.run()


def run_workers(settings: Settings, observer_factory: ObserverFactory | None = None) -> int:
    """Run ``settings.workers`` members of the group; returns a process exit code."""
    if settings.workers == 1:
        run_worker(settings, 0, observer_factory)
        return 0
    configure_logging(settings.log.level, settings.log.json_format)
    context = mp.get_context("spawn")  # a fresh interpreter per worker: no inherited Kafka or XGBoost state
    processes = [
        context.Process(target=run_worker, args=(settings, i, observer_factory), name=f"worker-{i}", daemon=False)
        for i in range(settings.workers)
    ]
    for process in processes:
        process.start()

    def forward(signum: int, _frame: FrameType | None) -> None:
        for process in processes:
            if process.is_alive() and process.pid:
                process.terminate() if signum == signal.SIGTERM else _interrupt(process.pid)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for process in processes:
        process.join()
    codes = [p.exitcode or 0 for p in processes]
    log.info("workers exited with %s", codes)
    return max(codes, default=0)


def _interrupt(pid: int) -> None:
    import os

    os.kill(pid, signal.SIGINT)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use crm-scorer run")
