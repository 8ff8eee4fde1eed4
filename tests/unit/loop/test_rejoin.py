"""A worker whose session was lost and that the group never takes back joins again with a new consumer."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from consumer.core.engine import ScoringEngine
from consumer.kafka import loop as loop_module
from consumer.kafka.loop import RejoinWatch
from tests.unit.loop.support import EVENTS, OUTPUT, TP, broker_with, event_ids, run, scored_all, settings_for


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Cluster:
    """Answers a partition's offsets, or not (a frozen broker)."""

    def __init__(self) -> None:
        self.up = True
        self.asked = 0

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float = -1) -> tuple[int, int]:
        self.asked += 1
        if not self.up:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        return 0, 10


def test_only_the_time_the_cluster_answers_counts_towards_the_bound() -> None:
    clock, cluster = Clock(), Cluster()
    watch = RejoinWatch(30.0, clock)
    assert not watch.stalled(cluster, "in"), "never lost: never stalled"
    assert cluster.asked == 0
    watch.lost()
    cluster.up = False
    for _ in range(20):  # 100 s of a frozen broker: nothing can join, nothing counts
        clock.now += 5.0
        assert not watch.stalled(cluster, "in")
    cluster.up = True
    clock.now += 5.0
    assert not watch.stalled(cluster, "in"), "answering from now on"
    clock.now += 25.0
    assert not watch.stalled(cluster, "in")
    clock.now += 5.0
    assert watch.stalled(cluster, "in"), "30 s of answers and still not taken back"
    assert round(watch.lost_s) == 135


def test_a_worker_taken_back_or_given_nothing_is_not_stalled() -> None:
    clock, cluster = Clock(), Cluster()
    watch = RejoinWatch(30.0, clock)
    watch.lost()
    clock.now += 5.0
    watch.stalled(cluster, "in")
    watch.joined()  # the assign callback ran (with partitions, or with none)
    clock.now += 100.0
    assert not watch.stalled(cluster, "in")


def test_probes_are_spaced_out() -> None:
    clock, cluster = Clock(), Cluster()
    watch = RejoinWatch(30.0, clock)
    watch.lost()
    for _ in range(100):
        clock.now += 0.01
        watch.stalled(cluster, "in")
    assert cluster.asked == 1, "one offsets request per probe interval, not one per batch"


def test_the_loop_joins_again_with_a_new_consumer_when_the_group_never_takes_it_back(
    engine: ScoringEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Impatient(RejoinWatch):  # the bound is under test, not the wait
        def __init__(self, bound_s: float) -> None:
            super().__init__(0.0)

    monkeypatch.setattr(loop_module, "_REJOIN_PROBE_S", 0.0)
    monkeypatch.setattr(loop_module, "RejoinWatch", Impatient)
    broker = broker_with(EVENTS)

    def lose_for_good() -> None:
        broker.lose_for_good(broker.sources[0])

    run(broker, settings_for("at_least_once"), engine, {2: lose_for_good}, until=scored_all(broker))
    assert len(broker.sources) == 2, "a new consumer joined"
    assert broker.sources[0].closed, "the stalled one closed"
    assert len(set(event_ids(broker.records(OUTPUT)))) == len(EVENTS)
    assert broker.committed[TP] == len(EVENTS)
