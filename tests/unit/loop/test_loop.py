"""The run loop against the in-memory Kafka: assignment, revoke, lost partitions, abort, fencing and drain.

Each test runs a real ``ScoringLoop`` (the committed models, both guarantees) in this thread with
``consumer.kafka.memory``'s clients; an observer counts the loop's rounds, acts at a given round and stops it.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from consumer.core.engine import ScoringEngine
from consumer.kafka import guarantees
from consumer.kafka.delivery import PublishError
from consumer.kafka.memory.broker import MemoryBroker
from consumer.settings import Settings, load_settings
from tests.unit.loop.support import (
    EVENTS,
    OUTPUT,
    TP,
    broker_with,
    event_ids,
    run,
    scored_all,
    settings_for,
    source_of,
)


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
    # the lost batch's failed results are not produced again: the partition's next owner (here, the worker itself
    # once it joins again) scores them from the committed offset, so one copy reaches the output
    assert len(ids) == len(set(ids)) == len(EVENTS)
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


def test_a_produce_refused_because_the_transaction_awaits_its_abort_is_aborted_and_rescored(
    engine: ScoringEngine,
) -> None:
    # Seen on Apache Kafka: the broker refused a record of the transaction (too large), and before the delivery
    # report was served the next produce() raised _STATE ("Erroneous state"): abort and rescore, never crash.
    broker = broker_with(EVENTS)
    broker.fail_next("produce", KafkaError(KafkaError._STATE, "Unable to produce message: Local: Erroneous state"))
    run(broker, settings_for("exactly_once"), engine, until=scored_all(broker))
    ids = event_ids(broker.records(OUTPUT))
    assert len(ids) == len(set(ids)) == len(EVENTS)
    assert len(broker.aborted_transactions) == 1


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


def test_fenced_four_times_within_a_minute_stops_the_worker_naming_the_instance_id(
    engine: ScoringEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guarantees, "_FENCED_BACKOFF_S", (0.0,))
    broker = broker_with(EVENTS)

    def fence() -> None:
        broker.sink(broker.sinks[0].conf).init_transactions()

    with pytest.raises(PublishError, match=r"consumer\.instance_id"):
        fences = {2: fence, 3: fence, 4: fence, 5: fence}
        run(broker, settings_for("exactly_once"), engine, fences, until=scored_all(broker))
    assert source_of(broker).closed


def test_fenced_three_times_a_worker_waits_longer_before_each_replacement_and_goes_on(
    engine: ScoringEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An intruder's init_transactions retried while our replacement's transaction is open fences it again: the
    # replacements back off so the intruder gets its turn, and three fences are not taken for a live replica.
    waits: list[float] = []
    monkeypatch.setattr(guarantees.time, "sleep", waits.append)
    broker = broker_with(EVENTS)

    def fence() -> None:
        broker.sink(broker.sinks[0].conf).init_transactions()

    run(broker, settings_for("exactly_once"), engine, {2: fence, 3: fence, 4: fence}, until=scored_all(broker))
    ids = event_ids(broker.records(OUTPUT))
    assert len(ids) == len(set(ids)) == len(EVENTS)
    assert [w for w in waits if w in guarantees._FENCED_BACKOFF_S] == [0.0, 1.0, 2.0]


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


def _two_unacknowledged_batches_of_five(monkeypatch: pytest.MonkeyPatch) -> tuple[MemoryBroker, Settings]:
    """At-least-once over batches of five with at most two awaiting acknowledgement, and a short wait for them."""
    monkeypatch.setattr(guarantees, "_ACK_WAIT_S", 0.01)
    consumer = {"batch_size": 5, "instance_id": "unit", "max_unacknowledged_batches": 2}
    return broker_with(EVENTS), load_settings(None, guarantee="at_least_once", consumer=consumer)


def test_at_least_once_holds_its_partitions_while_its_unacknowledged_batches_are_at_the_bound(
    engine: ScoringEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A broker that stops answering: what the worker publishes meanwhile is all a lost session or a crash could
    # score twice, so it stops at max_unacknowledged_batches, and goes on once the broker answers again.
    broker, settings = _two_unacknowledged_batches_of_five(monkeypatch)
    seen: dict[str, object] = {}

    def silent() -> None:
        broker.go_silent()

    def look() -> None:
        seen["produced"] = broker.sinks[0].produced
        seen["paused"] = set(source_of(broker).paused)
        broker.heal()

    observer = run(broker, settings, engine, {1: silent, 12: look}, until=scored_all(broker))
    assert seen["produced"] == 2 * 5, "two batches of five published while the broker said nothing"
    assert seen["paused"] == {TP}
    assert not source_of(broker).paused, "resumed once the broker answered"
    ids = event_ids(broker.records(OUTPUT))
    assert len(ids) == len(set(ids)) == len(EVENTS)
    assert broker.committed[TP] == len(EVENTS)
    assert observer.rounds > 12


def test_partitions_held_for_acknowledgements_and_lost_are_consumed_again_when_given_back(
    engine: ScoringEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker that held its partitions through a frozen broker, lost its session, and got the same partitions
    # back consumes them again (its hold is released as they go, whatever the client keeps of a pause).
    broker, settings = _two_unacknowledged_batches_of_five(monkeypatch)

    def lose() -> None:
        assert source_of(broker).paused == {TP}, "held while the broker said nothing"
        broker.lose(source_of(broker))

    observer = run(broker, settings, engine, {1: broker.go_silent, 8: lose, 9: broker.heal}, until=scored_all(broker))
    assert len(set(event_ids(broker.records(OUTPUT)))) == len(EVENTS), f"stopped after {observer.rounds} rounds"
    assert broker.committed[TP] == len(EVENTS)
    assert not source_of(broker).paused
