"""The run loop while the Schema Registry cannot serve a writer schema: the registry gate holds only the
partitions that wait for it, scores the others, and loses nothing (``consumer.kafka.registry_gate``)."""

from __future__ import annotations

from confluent_kafka import KafkaError, TopicPartition

from consumer.core.engine import ScoringEngine
from consumer.kafka.memory import MemoryBroker
from consumer.service import build_engine
from consumer.settings import Settings
from consumer.telemetry.logs import Throttle
from producer_tools.world import generate
from schemas import ConfluentEncoder, ResultDecoder
from schemas.errors import RegistryUnavailableError, UnknownSchemaError
from tests.unit.loop.support import (
    CATALOG,
    DLQ,
    EVENTS,
    INPUT,
    OUTPUT,
    TP,
    broker_with,
    event_ids,
    run,
    scored_all,
    settings_for,
    source_of,
)


def test_the_throttle_lets_a_key_through_once_per_interval() -> None:
    now = [100.0]
    throttle = Throttle(10.0, clock=lambda: now[0])
    assert throttle.ready("a") and not throttle.ready("a") and throttle.ready("b")
    now[0] += 10.0
    assert throttle.ready("a") and not throttle.ready("a", seconds=20.0)


class FlakyRegistry:
    """A Schema Registry holding the v1 and v2 event schemas under ids 1 and 2; ``down`` makes it unreachable."""

    def __init__(self) -> None:
        self.down = False
        self.requests: list[int] = []
        self.schemas = {
            1: CATALOG.get("application_event.v1"),
            2: CATALOG.get("application_event.v2"),
            3: CATALOG.score_result,
        }

    def get_schema_str(self, schema_id: int) -> str:
        self.requests.append(schema_id)
        if self.down:
            raise RegistryUnavailableError(f"registry id {schema_id}: schema registry unreachable: refused")
        if schema_id not in self.schemas:
            raise UnknownSchemaError(f"registry id {schema_id}: not found")
        return self.schemas[schema_id].schema_str

    def register_schema(self, subject: str, schema_str: str) -> int:
        return 3


def confluent(schema_id: int, events: list[dict[str, object]]) -> list[bytes]:
    schema = FlakyRegistry().schemas[schema_id]
    encode = ConfluentEncoder(schema_id, schema)
    return [encode(e) for e in events]


def test_an_id_the_registry_cannot_serve_holds_only_its_partition_and_nothing_is_lost_or_dead_lettered(
    settings: Settings,
) -> None:
    # Partition 0: ids 2 (cached before the outage), then an event in v1 (id 1, not yet seen); partition 1: id 2 only.
    world = generate(40, seed=29).events
    registry = FlakyRegistry()
    engine = build_engine(settings, registry)
    broker = MemoryBroker(partitions=2)
    for value in confluent(2, world[:10]) + confluent(1, world[10:20]):
        broker.append(INPUT, value, partition=0)
    for value in confluent(2, world[20:40]):
        broker.append(INPUT, value, partition=1)
    engine.decoder.resolve(2)  # seen before the outage
    registry.down = True
    held_at: list[tuple[set[tuple[str, int]], int]] = []

    def heal() -> None:
        source = source_of(broker)
        held_at.append((set(source.paused), source.position((INPUT, 0))))
        registry.down = False

    results = ResultDecoder(CATALOG, FlakyRegistry())  # the test's own reader, never down
    observer = run(broker, settings_for("at_least_once"), engine, {6: heal}, until=scored_all(broker, 40, results))
    ids = event_ids(broker.records(OUTPUT), results)
    assert len(ids) == len(set(ids)) == 40 and not broker.records(DLQ), "every event scored once, none dead-lettered"
    assert held_at == [({(INPUT, 0)}, 10)], "only partition 0 waited (paused), rewound to its first v1 event"
    assert observer.registry_states == [False, True]
    assert broker.committed[(INPUT, 0)] == 20 and broker.committed[(INPUT, 1)] == 20


def test_while_the_registry_is_down_cached_ids_keep_scoring_and_the_held_partition_commits_nothing_past_it(
    settings: Settings,
) -> None:
    world = generate(30, seed=31).events
    registry = FlakyRegistry()
    engine = build_engine(settings, registry)
    broker = MemoryBroker(partitions=1)
    for value in confluent(2, world[:10]) + confluent(1, world[10:20]) + confluent(2, world[20:30]):
        broker.append(INPUT, value)
    engine.decoder.resolve(2)
    registry.down = True
    observer = run(broker, settings_for("exactly_once"), engine, until=lambda: False)  # the registry never returns
    assert len(broker.records(OUTPUT)) == 10 and not broker.records(DLQ)
    assert broker.committed[TP] == 10, "nothing past the first event that waits is committed"
    assert observer.registry_states == [False, True], "not ready while held, until the revoke at shutdown"
    assert registry.requests.count(1) >= 2, "the registry was asked again while the partition waited"


def test_an_id_the_registry_does_not_know_is_dead_lettered_and_asked_once_per_interval(settings: Settings) -> None:
    registry = FlakyRegistry()
    engine = build_engine(settings, registry)
    broker = broker_with(confluent(2, generate(10, seed=37).events) + [b"\x00\x00\x00\x00\x09" + b"\x02"] * 20)
    run(broker, settings_for("at_least_once"), engine, until=lambda: len(broker.records(DLQ)) >= 20)
    assert len(broker.records(OUTPUT)) == 10 and len(broker.records(DLQ)) == 20
    assert registry.requests.count(9) == 1, "a missing id is remembered, not asked per message"


def test_a_held_partition_resumed_by_someone_else_is_paused_and_rewound_again_and_nothing_is_lost(
    settings: Settings,
) -> None:
    # The at-least-once guarantee pauses and resumes every partition while an ACL is missing; a partition the
    # registry gate still holds must not slip past its waiting message meanwhile.
    world = generate(30, seed=41).events
    registry = FlakyRegistry()
    engine = build_engine(settings, registry)
    broker = MemoryBroker(partitions=1)
    for value in confluent(2, world[:10]) + confluent(1, world[10:30]):
        broker.append(INPUT, value)
    engine.decoder.resolve(2)
    registry.down = True
    positions: list[int] = []

    def someone_resumes() -> None:
        source_of(broker).resume([TopicPartition(INPUT, 0)])

    def heal() -> None:
        positions.append(source_of(broker).position((INPUT, 0)))
        registry.down = False

    results = ResultDecoder(CATALOG, FlakyRegistry())
    run(
        broker,
        settings_for("at_least_once"),
        engine,
        {4: someone_resumes, 8: heal},
        until=scored_all(broker, 30, results),
    )
    ids = event_ids(broker.records(OUTPUT), results)
    assert len(ids) == len(set(ids)) == 30 and not broker.records(DLQ)
    assert positions == [10], "paused and rewound to the first waiting event again"


def test_a_stop_while_transactions_cannot_be_initialised_ends_the_wait(engine: ScoringEngine) -> None:
    # A broker down (or an ACL missing) at start: SIGTERM must not wait for it.
    broker = broker_with(EVENTS)
    for _ in range(50):
        broker.fail_next("init_transactions", KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True))
    run(broker, settings_for("exactly_once"), engine, until=lambda: True)  # asks to stop at the first heartbeat
    assert len(broker._fail_next["init_transactions"]) >= 45, "the stop ended the retries"
    assert not broker.records(OUTPUT, committed_only=False) and source_of(broker).closed
