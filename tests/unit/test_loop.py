"""The run loop against the in-memory Kafka: assignment, revoke, lost partitions, abort, fencing and drain.

Each test runs a real ``ScoringLoop`` (the committed models, both guarantees) in this thread with
``consumer.kafka.memory``'s clients; an observer counts the loop's rounds, acts at a given round and stops it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from confluent_kafka import KafkaError, TopicPartition

from consumer.core.engine import BatchOutcome, ScoringEngine
from consumer.kafka import delivery, guarantees, registry_gate
from consumer.kafka.delivery import PublishError
from consumer.kafka.loop import ScoringLoop
from consumer.kafka.memory import MemoryBroker, MemorySource, Record
from consumer.service import build_engine
from consumer.settings import Settings, load_settings
from consumer.telemetry.logs import Throttle
from consumer.telemetry.observer import NullObserver, Offsets
from producer_tools.world import generate
from schemas import ConfluentEncoder, ResultDecoder, SingleObjectEncoder, load_catalog
from schemas.errors import RegistryUnavailableError, UnknownSchemaError

CATALOG = load_catalog()
ENCODE = SingleObjectEncoder(CATALOG.application_event_latest)
RESULTS = ResultDecoder(CATALOG)
EVENTS = [ENCODE(e) for e in generate(30, seed=23).events]
INPUT, OUTPUT, DLQ = "crm.applications", "crm.scores", "crm.applications.dlq"
TP = (INPUT, 0)
Action = Callable[[], None]


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "_RETRY_PAUSE_S", 0.0)
    monkeypatch.setattr(guarantees, "_BACKOFF_S", (0.0,))
    monkeypatch.setattr(registry_gate, "_BACKOFF_S", (0.0,))


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


def test_assigned_partitions_are_scored_and_their_offsets_committed_on_shutdown(engine: ScoringEngine) -> None:
    broker = broker_with(EVENTS)
    observer = run(broker, settings_for("at_least_once"), engine, until=scored_all(broker))
    assert len(event_ids(broker.records(OUTPUT))) == len(EVENTS)
    assert broker.committed[TP] == len(EVENTS)
    assert observer.assignments[0] == 1 and observer.published == len(EVENTS)
    assert any(c.get(TP) == len(EVENTS) for c in observer.commits)
    assert source_of(broker).closed


def test_a_revoke_commits_what_was_acknowledged_and_the_member_goes_on_without_duplicates(
    engine: ScoringEngine,
) -> None:
    broker = broker_with(EVENTS)
    revoke = {3: lambda: broker.revoke(source_of(broker))}
    observer = run(broker, settings_for("at_least_once"), engine, revoke, until=scored_all(broker))
    ids = event_ids(broker.records(OUTPUT))
    assert len(ids) == len(set(ids)) == len(EVENTS)
    assert observer.assignments == [1, 0, 1, 0], "assigned, revoked, assigned again, revoked on leaving"
    assert broker.committed[TP] == len(EVENTS)


def test_lost_partitions_forget_their_batches_in_flight_and_nothing_is_lost(engine: ScoringEngine) -> None:
    broker = broker_with(EVENTS)
    broker.fail_deliveries(lambda topic, record: KafkaError(KafkaError._MSG_TIMED_OUT))

    def lose() -> None:
        broker.lose(source_of(broker))

    def heal() -> None:
        assert TP not in broker.committed, "nothing acknowledged, nothing committed"
        broker.heal()

    observer = run(broker, settings_for("at_least_once"), engine, {2: lose, 4: heal}, until=scored_all(broker))
    ids = event_ids(broker.records(OUTPUT))
    assert len(set(ids)) == len(EVENTS) and len(ids) > len(EVENTS), "at least once: the lost batch twice"
    assert broker.committed[TP] == len(EVENTS)
    assert 0 in observer.assignments


def test_exactly_once_commits_results_and_offsets_in_one_transaction_per_batch(engine: ScoringEngine) -> None:
    broker = broker_with(EVENTS)
    observer = run(broker, settings_for("exactly_once"), engine, until=scored_all(broker))
    assert len(event_ids(broker.records(OUTPUT))) == len(EVENTS)
    assert broker.committed[TP] == len(EVENTS)
    assert len(broker.committed_transactions) == 3 and not broker.aborted_transactions
    assert observer.commits[-1] == {TP: len(EVENTS)}
    (sink,) = broker.sinks
    assert sink.transactional_id == "crm-scorer-crm.applications-unit-0"
    assert source_of(broker).conf["enable.auto.commit"] is False


def test_an_aborted_transaction_is_rewound_and_scored_again_exactly_once(engine: ScoringEngine) -> None:
    broker = broker_with(EVENTS)
    broker.fail_next("commit_transaction", KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True))
    run(broker, settings_for("exactly_once"), engine, until=scored_all(broker))
    ids = event_ids(broker.records(OUTPUT))
    assert len(ids) == len(set(ids)) == len(EVENTS)
    assert len(broker.aborted_transactions) == 1
    assert len(event_ids(broker.records(OUTPUT, committed_only=False))) == len(EVENTS) + 10


def test_a_retriable_commit_failure_is_retried_not_aborted(engine: ScoringEngine) -> None:
    broker = broker_with(EVENTS)
    broker.fail_next("commit_transaction", KafkaError(KafkaError._TIMED_OUT, retriable=True))
    observer = run(broker, settings_for("exactly_once"), engine, until=scored_all(broker))
    assert not broker.aborted_transactions and len(event_ids(broker.records(OUTPUT))) == len(EVENTS)
    assert observer.broker_states == [False, True], "not ready while the commit was retried, ready again after"


def test_a_fenced_producer_is_replaced_and_the_batch_rewound_to_the_committed_offsets(engine: ScoringEngine) -> None:
    broker = broker_with(EVENTS)

    def zombie_takes_over() -> None:
        broker.sink(broker.sinks[0].conf).init_transactions()  # a second instance with this worker's id

    run(broker, settings_for("exactly_once"), engine, {2: zombie_takes_over}, until=scored_all(broker))
    ids = event_ids(broker.records(OUTPUT))
    assert len(ids) == len(set(ids)) == len(EVENTS)
    assert len(broker.sinks) == 3, "the worker's first producer, the zombie, the replacement"
    assert broker.committed[TP] == len(EVENTS)


def test_a_producer_fenced_while_aborting_is_replaced_too(engine: ScoringEngine) -> None:
    # Seen on Apache Kafka: EndTxn fails (abortable) because a newer instance took the id, then the abort is fenced.
    broker = broker_with(EVENTS)
    broker.fail_next("commit_transaction", KafkaError(KafkaError.UNKNOWN, "EndTxn failed", txn_requires_abort=True))
    broker.fail_next("abort_transaction", KafkaError(KafkaError._FENCED, "fenced", fatal=True))
    run(broker, settings_for("exactly_once"), engine, until=scored_all(broker))
    ids = event_ids(broker.records(OUTPUT))
    assert len(ids) == len(set(ids)) == len(EVENTS)
    assert len(broker.sinks) == 2 and broker.committed[TP] == len(EVENTS)


class Clock:
    """Stands in for ``guarantees.time``: each look at the clock is ten seconds later, and sleeps take none."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 10.0
        return self.now

    def sleep(self, seconds: float) -> None:
        return None


def test_an_abort_still_unconfirmed_past_twice_the_transaction_timeout_replaces_the_producer(
    engine: ScoringEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen on Apache Kafka after a 25 s pause: the abort's request stayed queued on the coordinator connection and
    # every retry timed out for minutes. A new producer's init_transactions settles the open transaction.
    monkeypatch.setattr(guarantees, "time", Clock())
    broker = broker_with(EVENTS)
    broker.fail_next("commit_transaction", KafkaError(KafkaError._TIMED_OUT, "timed out", txn_requires_abort=True))
    for _ in range(200):  # far more retries than the bound allows (default settings: 2 x 130 s)
        broker.fail_next("abort_transaction", KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True))
    observer = run(broker, settings_for("exactly_once"), engine, until=scored_all(broker))
    broker.heal()
    ids = event_ids(broker.records(OUTPUT))
    assert len(ids) == len(set(ids)) == len(EVENTS)
    assert len(broker.sinks) == 2, "the wedged producer and its replacement"
    assert len(broker.aborted_transactions) == 1, "the replacement's init aborted the wedged transaction"
    assert broker.committed[TP] == len(EVENTS)
    assert observer.broker_states[-1] is True, "ready again once the replacement took over"


def test_fenced_three_times_within_a_minute_stops_the_worker_naming_the_instance_id(engine: ScoringEngine) -> None:
    broker = broker_with(EVENTS)

    def fence() -> None:
        broker.sink(broker.sinks[0].conf).init_transactions()

    with pytest.raises(PublishError, match=r"consumer\.instance_id"):
        run(broker, settings_for("exactly_once"), engine, {2: fence, 3: fence, 4: fence}, until=scored_all(broker))
    assert source_of(broker).closed


def test_a_stop_drains_the_batch_in_flight_then_commits_and_leaves(engine: ScoringEngine) -> None:
    broker = broker_with(EVENTS)
    observer = run(broker, settings_for("at_least_once"), engine, stop_when_scored=True)
    assert broker.committed[TP] == 10, "the first batch, acknowledged while draining"
    assert len(broker.records(OUTPUT)) == 10
    assert source_of(broker).closed and observer.rounds == 1


def test_a_missing_output_topic_stops_the_worker_with_nothing_committed(engine: ScoringEngine) -> None:
    broker = broker_with(EVENTS)
    broker.fail_deliveries(lambda topic, record: KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    with pytest.raises(PublishError, match=r"topic 'crm\.scores'"):
        run(broker, settings_for("at_least_once"), engine)
    assert TP not in broker.committed
    assert source_of(broker).closed


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
