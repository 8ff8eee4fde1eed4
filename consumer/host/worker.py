"""One worker: load the models, wait for the result schema's registration, consume until told to stop.

A worker runs in the scorer's own process (``--workers 1``) or as a child of the supervisor
(``consumer.host.supervisor``); a child stops by itself when its parent dies.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import threading
import time
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
_REGISTRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


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
                log.warning(
                    "cannot register the result schema yet, retrying (%s; waiting %.0f s)",
                    exc,
                    time.monotonic() - started,
                )
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
