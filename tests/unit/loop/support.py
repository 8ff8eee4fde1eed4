"""The run loop's test bench: a real ``ScoringLoop`` over ``consumer.kafka.memory``'s clients, driven round by
round by an observer that acts at a given round and stops the loop."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from consumer.core.engine import BatchOutcome, ScoringEngine
from consumer.kafka.loop import ScoringLoop
from consumer.kafka.memory import MemoryBroker, MemorySource, Record
from consumer.settings import Settings, load_settings
from consumer.telemetry.observer import NullObserver, Offsets
from producer_tools.world import generate
from schemas import ResultDecoder, SingleObjectEncoder, load_catalog

CATALOG = load_catalog()
ENCODE = SingleObjectEncoder(CATALOG.application_event_latest)
RESULTS = ResultDecoder(CATALOG)
EVENTS = [ENCODE(e) for e in generate(30, seed=23).events]
INPUT, OUTPUT, DLQ = "crm.applications", "crm.scores", "crm.applications.dlq"
TP = (INPUT, 0)
Action = Callable[[], None]


class Rounds(NullObserver):
    """Counts the loop's rounds, runs ``actions[round]`` and stops the loop once ``until()`` holds."""

    def __init__(
        self, actions: dict[int, Action], until: Callable[[], bool], limit: int = 50, stop_when_scored: bool = False
    ) -> None:
        self.loop: ScoringLoop | None = None
        self.stop_when_scored = stop_when_scored
        self.broker_states: list[bool] = []
        self.registry_states: list[bool] = []
        self.rounds = 0
        self.actions = actions
        self.until = until
        self.limit = limit
        self.assignments: list[int] = []
        self.commits: list[Offsets] = []
        self.published = 0

    def heartbeat(self) -> None:
        self.rounds += 1
        if self.rounds in self.actions:
            self.actions[self.rounds]()
        if (self.until() or self.rounds >= self.limit) and self.loop is not None:
            self.loop.request_stop()

    def assignment_changed(self, partitions: int) -> None:
        self.assignments.append(partitions)

    def offsets_committed(self, offsets: Offsets, high_watermarks: Offsets) -> None:
        self.commits.append(offsets)

    def batch_published(self, results: int, dead_letters: int, latencies_s: np.ndarray) -> None:
        self.published += results + dead_letters

    def batch_scored(self, outcome: BatchOutcome, consumed: int) -> None:
        if self.stop_when_scored and self.loop is not None:
            self.loop.request_stop()  # before any delivery report was served

    def broker_state(self, up: bool) -> None:
        self.broker_states.append(up)

    def registry_state(self, up: bool) -> None:
        self.registry_states.append(up)


def settings_for(guarantee: str, batch_size: int = 10) -> Settings:
    return load_settings(None, guarantee=guarantee, consumer={"batch_size": batch_size, "instance_id": "unit"})


def broker_with(events: list[bytes]) -> MemoryBroker:
    broker = MemoryBroker()
    for value in events:
        broker.append(INPUT, value)
    return broker


def run(
    broker: MemoryBroker,
    settings: Settings,
    engine: ScoringEngine,
    actions: dict[int, Action] | None = None,
    until: Callable[[], bool] = lambda: False,
    stop_when_scored: bool = False,
) -> Rounds:
    observer = Rounds(actions or {}, until, stop_when_scored=stop_when_scored)
    loop = ScoringLoop(settings, engine, observer, clients=broker.clients())
    observer.loop = loop
    loop.run()
    return observer


def event_ids(records: list[Record], results: ResultDecoder = RESULTS) -> list[str]:
    return [results.decode(r.value or b"")["event_id"] for r in records]


def source_of(broker: MemoryBroker) -> MemorySource:
    (source,) = broker.sources
    return source


def scored_all(broker: MemoryBroker, count: int = len(EVENTS), results: ResultDecoder = RESULTS) -> Callable[[], bool]:
    return lambda: len(set(event_ids(broker.records(OUTPUT), results))) >= count
