"""Broker faults on a three-broker Apache Kafka cluster: scenarios 9a, 9b and 9c of the fault suite.

Every topic has three replicas and ``min.insync.replicas`` 2, and both writers ask for ``acks=all``: the scorer's
producer sets it with idempotence (``Settings.producer_config``), the test's feeder through idempotence. So an
acknowledged write sits on at least two brokers, and losing or freezing any one broker may delay events but
never lose one. Each scenario runs one worker under a steady stream, makes its fault, lets the stream run on
after the cluster is whole again, then checks conservation in both guarantees. They use ``kafka_cluster``, so
they are marked ``cluster``: ``make test-faults`` runs them, ``make test`` does not.

Duplicates: none in exactly_once (read back ``read_committed``). In at_least_once a re-delivery (after the group
coordinator moved and the member lost its partitions) starts again from a committed offset, so only events between
the offsets committed just before the fault and the input's end just after it may be scored twice: every
duplicate is checked to lie in that window, and each at most once per re-assignment.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from producer_tools.publishing.topics import ensure_topics
from producer_tools.servers.apache_kafka import ApacheKafka
from tests.integration.faults.producing import Feeder
from tests.integration.faults.support import (
    INPUT_PARTITIONS,
    Expected,
    Row,
    committed_total,
    conservation,
    read_outcomes,
    stream_messages,
    wait_until,
)
from tests.integration.harness import Lanes, ScorerProcess

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]
RATE = 1500  # events/s: steady load one worker keeps up with on a shared two-core machine
OUTPUT_PARTITIONS = 3
DOWN_S = 20.0  # a killed broker stays down this long: well past the controller fencing it (9 s) and failover
PAUSE_S = 30.0
WARM_RESULTS = 5000  # results before the fault, and again after it
ASSIGNED = re.compile(r"worker \d+ assigned \d+ partition")


@pytest.fixture
def cluster_lanes(kafka_cluster: ApacheKafka, unique_group: Callable[[], str]) -> Lanes:
    """Like ``lanes``, on the three-broker cluster: every topic has three replicas (min.insync.replicas 2)."""
    source, sink, dlq = (f"cluster-{lane}-{uuid.uuid4().hex[:12]}" for lane in ("in", "out", "dlq"))
    ensure_topics(kafka_cluster.bootstrap_servers, {source: INPUT_PARTITIONS, sink: OUTPUT_PARTITIONS, dlq: 1})
    return Lanes(kafka_cluster.bootstrap_servers, source, sink, dlq, unique_group())


def probe(bootstrap: str) -> dict[str, str | int | float | bool]:
    """Settings of the test's own watching clients: quiet about the broker a scenario took away (librdkafka logs
    every refused reconnect as an error; the scorer's log says what matters)."""
    return {"bootstrap.servers": bootstrap, "log_level": 2}


class Stream:
    """Events for the feeder, generated until :meth:`stop`; remembers the event_id of each one it handed out."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.event_ids: list[str] = []
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def pairs(self) -> Iterator[tuple[bytes | None, bytes | None]]:
        for key, value, event_id in stream_messages(10_000_000, self.seed, chunk=5000):
            if self._stop.is_set():
                return
            self.event_ids.append(event_id)
            yield key, value


class Progress:
    """Samples the output's high watermarks twice a second, in the background, while ``stream`` flows:
    ``longest_stall_s`` is the longest the output did not grow. A partition whose leader is away keeps its last
    mark (nothing is written to it meanwhile). In exactly_once the marks count transaction markers too."""

    def __init__(self, lanes: Lanes, stream: Stream) -> None:
        self._lanes = lanes
        self._stream = stream
        self.longest_stall_s = 0.0
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(30)
        if self._error is not None and exc is None:
            raise AssertionError("the progress sampler failed") from self._error

    def _run(self) -> None:
        consumer = Consumer(probe(self._lanes.bootstrap) | {"group.id": self._lanes.group})
        marks, seen, grew = [0] * OUTPUT_PARTITIONS, 0, time.monotonic()
        try:
            while not self._stop.wait(0.5):
                for p in range(OUTPUT_PARTITIONS):
                    with contextlib.suppress(KafkaException):
                        marks[p] = _high_watermark(consumer, self._lanes.output, p, timeout=2)
                now = time.monotonic()
                if sum(marks) > seen:
                    seen, grew = sum(marks), now
                elif seen and not self._stream.stopped:
                    self.longest_stall_s = max(self.longest_stall_s, now - grew)
        except BaseException as exc:  # re-raised in __exit__, in the test's thread
            self._error = exc
        finally:
            consumer.close()


def _high_watermark(consumer: Consumer, topic: str, partition: int, timeout: float) -> int:
    marks = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout, cached=False)
    if marks is None:  # what the client returns on a timeout
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"no watermarks for {topic}[{partition}]"))
    return int(marks[1])


def positions(lanes: Lanes, read: Callable[[Consumer], dict[int, int]], what: str) -> dict[int, int]:
    """``read`` through a watching consumer, again until the cluster answers (a fault may be ending)."""
    consumer = Consumer(probe(lanes.bootstrap) | {"group.id": lanes.group, "enable.auto.commit": False})
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                return read(consumer)
            except KafkaException:
                assert time.monotonic() < deadline, f"could not read {what} within 60 s"
                time.sleep(0.5)
    finally:
        consumer.close()


def committed_offsets(lanes: Lanes) -> dict[int, int]:
    """The group's committed input offset per partition (0 where none yet)."""

    def read(consumer: Consumer) -> dict[int, int]:
        partitions = [TopicPartition(lanes.input, p) for p in range(INPUT_PARTITIONS)]
        return {tp.partition: max(tp.offset, 0) for tp in consumer.committed(partitions, timeout=5)}

    # Never subscribes, so it never joins (or disturbs) the group it reads.
    return positions(lanes, read, "committed offsets")


def input_ends(lanes: Lanes) -> dict[int, int]:
    """The input's end offset per partition."""

    def read(consumer: Consumer) -> dict[int, int]:
        return {p: _high_watermark(consumer, lanes.input, p, timeout=5) for p in range(INPUT_PARTITIONS)}

    return positions(lanes, read, "input end offsets")


def _published(consumer: Consumer, lanes: Lanes) -> int:
    """Sum of the output's high watermarks (in exactly_once they count transaction markers too: progress only)."""
    return sum(_high_watermark(consumer, lanes.output, p, timeout=5) for p in range(OUTPUT_PARTITIONS))


def published(lanes: Lanes) -> int | None:
    """Results published so far (see ``_published``), or None while a fault leaves a partition without a leader."""
    consumer = Consumer(probe(lanes.bootstrap) | {"group.id": lanes.group})
    try:
        return _published(consumer, lanes)
    except KafkaException:
        return None
    finally:
        consumer.close()


def progressed(lanes: Lanes, beyond: int, by: int) -> Callable[[], bool]:
    return lambda: (published(lanes) or 0) > beyond + by


def under_replicated(bootstrap: str) -> list[str]:
    """Partitions of every topic (the internal ones too) whose in-sync replicas are fewer than their replicas."""
    metadata = AdminClient(probe(bootstrap)).list_topics(timeout=10)
    return [
        f"{name}[{p.id}]"
        for name, topic in metadata.topics.items()
        for p in topic.partitions.values()
        if p.leader < 0 or len(p.isrs) < len(p.replicas)
    ]


def fully_replicated(bootstrap: str) -> bool:
    try:
        return not under_replicated(bootstrap)
    except KafkaException:
        return False


def group_coordinator(lanes: Lanes) -> int:
    admin = AdminClient(probe(lanes.bootstrap))
    description = admin.describe_consumer_groups([lanes.group])[lanes.group].result(timeout=10)
    return int(description.coordinator.id)


def leading_broker(cluster: ApacheKafka, lanes: Lanes) -> tuple[int, str]:
    """The node leading most input and output partitions (among equals, the group's coordinator), and a note."""
    leaders = cluster.leaders([lanes.input, lanes.output])
    coordinator = group_coordinator(lanes)
    victim = max(sorted(leaders), key=lambda node: (leaders[node], node == coordinator))
    also = ", the group coordinator" if victim == coordinator else ""
    return victim, f"node {victim} (led {leaders[victim]} of {INPUT_PARTITIONS + OUTPUT_PARTITIONS} partitions{also})"


@dataclass(frozen=True)
class Run:
    """What a scenario's stream left behind: what must come out, where each event sat in the input, and the
    fault's window (committed offsets just before it, the input's end once it was over)."""

    lanes: Lanes
    guarantee: str
    expected: Expected
    where: dict[str, tuple[int, int]]  # event_id -> input (partition, offset)
    before: dict[int, int]
    after: dict[int, int]
    stall_s: float
    reassignments: int
    note: str
    started: float

    def check(self, scenario: str) -> Row:
        """Conservation (with no duplicate in exactly_once); in at_least_once every event scored twice lies in
        the fault's window, and is scored again at most once per re-assignment."""
        outcomes = read_outcomes(self.lanes)
        window = sum(self.after[p] - self.before[p] for p in self.before)
        within = f"{self.reassignments} re-assignment(s), all within the fault's {window:,}-event window"
        allowed = "none allowed (read_committed)" if self.guarantee == "exactly_once" else within
        note = f"{self.note}; output stalled {self.stall_s:.0f} s at most; duplicates: {allowed}"
        row = conservation(scenario, self.expected, outcomes, time.monotonic() - self.started, note, self.guarantee)
        again = {self.where[event_id]: n - 1 for event_id, n in outcomes.scored.items() if n > 1}
        outside = sorted((p, o) for p, o in again if not self.before[p] <= o < self.after[p])
        assert not outside, f"{scenario}: {len(outside):,} scored twice outside the fault's window: {outside[:5]}"
        most = max(again.values(), default=0)
        assert most <= max(1, self.reassignments), f"{scenario}: an event scored {most + 1} times"
        return row


def scored_through(
    lanes: Lanes, tmp_path: Path, guarantee: str, seed: int, fault: Callable[[ScorerProcess], str]
) -> Run:
    """Stream events through one worker, make ``fault`` once it is scoring, stream on until it published
    ``WARM_RESULTS`` more, then stop the stream and wait until every offset is committed."""
    started = time.monotonic()
    wait_until(lambda: fully_replicated(lanes.bootstrap), 120, "a whole cluster before the scenario")
    stream = Stream(seed)
    with (
        ScorerProcess(lanes, tmp_path, "--guarantee", guarantee) as scorer,
        Feeder(lanes.bootstrap, lanes.input, stream.pairs(), rate=RATE) as feeder,
        Progress(lanes, stream) as progress,
    ):
        scorer.wait_for_log(f"worker 0 assigned {INPUT_PARTITIONS}", 60)
        wait_until(progressed(lanes, 0, WARM_RESULTS), 90, f"{WARM_RESULTS:,} results", scorer)
        before = committed_offsets(lanes)
        note = fault(scorer)
        wait_until(progressed(lanes, published(lanes) or 0, WARM_RESULTS), 120, "results after the fault", scorer)
        after = input_ends(lanes)  # later than any re-delivery the fault caused: the window is not too narrow
        stream.stop()
        delivered = feeder.join()
        assert delivered.count == len(stream.event_ids)
        wait_until(lambda: committed_total(lanes) >= delivered.count, 240, "every offset committed", scorer)
        scorer.stop(30)
    # With several workers the pool replaces one that died: conservation would pass, but a fault must kill none.
    assert "starting a replacement" not in scorer.log, f"a worker died on a broker fault:\n{scorer.log[-5000:]}"
    where = {stream.event_ids[index]: position for position, index in delivered.positions.items()}
    reassignments = len(ASSIGNED.findall(scorer.log)) - 1
    return Run(
        lanes,
        guarantee,
        Expected(frozenset(stream.event_ids)),
        where,
        before,
        after,
        progress.longest_stall_s,
        reassignments,
        note,
        started,
    )


def alive_for(seconds: float, scorer: ScorerProcess, lanes: Lanes) -> int | None:
    """Watch the scorer for ``seconds`` (failing if it exits); the last count of results published seen."""
    last = None
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        assert scorer.process is not None and scorer.process.poll() is None, f"scorer exited:\n{scorer.log[-3000:]}"
        last = published(lanes) or last
        time.sleep(1.0)
    return last


def in_sync_after(cluster: ApacheKafka, scorer: ScorerProcess, since: float) -> float:
    wait_until(lambda: fully_replicated(cluster.bootstrap_servers), 180, "every partition back in sync", scorer)
    return time.monotonic() - since


def test_kill_9_of_the_leading_broker_then_restart_loses_nothing(
    kafka_cluster: ApacheKafka, cluster_lanes: Lanes, tmp_path: Path, guarantee: str
) -> None:
    def fault(scorer: ScorerProcess) -> str:
        victim, led = leading_broker(kafka_cluster, cluster_lanes)
        before = published(cluster_lanes) or 0
        kafka_cluster.kill(victim)
        killed = time.monotonic()
        during = alive_for(DOWN_S, scorer, cluster_lanes)
        # at_least_once scores on through the two brokers left; exactly_once may wait the whole outage on its
        # transaction (its offsets call is retried until the coordinator has moved), so there it is only reported.
        if guarantee == "at_least_once":
            assert (during or 0) > before, f"nothing published with {led} down:\n{scorer.log[-3000:]}"
        kafka_cluster.restart(victim)
        in_sync = in_sync_after(kafka_cluster, scorer, killed)
        meanwhile = f"{during - before:,}" if during is not None else "unknown"
        return f"{led} down {DOWN_S:.0f} s, {meanwhile} results meanwhile; all in sync {in_sync:.0f} s after"

    run = scored_through(cluster_lanes, tmp_path, guarantee, 901, fault)
    run.check("9a. cluster: kill -9 of the leader broker, restart")


def test_rolling_restart_of_all_three_brokers_under_load_loses_nothing(
    kafka_cluster: ApacheKafka, cluster_lanes: Lanes, tmp_path: Path, guarantee: str
) -> None:
    def fault(scorer: ScorerProcess) -> str:
        took = []
        for node in kafka_cluster.nodes:
            began = time.monotonic()
            kafka_cluster.restart(node.node_id, graceful=True)
            took.append(in_sync_after(kafka_cluster, scorer, began))
            assert scorer.process is not None and scorer.process.poll() is None, scorer.log[-3000:]
        return "nodes 1, 2, 3 one at a time, each back in sync in " + " / ".join(f"{s:.0f}" for s in took) + " s"

    run = scored_through(cluster_lanes, tmp_path, guarantee, 902, fault)
    run.check("9b. cluster: rolling restart of 3 brokers")


def test_broker_paused_for_30_s_under_load_loses_nothing(
    kafka_cluster: ApacheKafka, cluster_lanes: Lanes, tmp_path: Path, guarantee: str
) -> None:
    def fault(scorer: ScorerProcess) -> str:
        victim, led = leading_broker(kafka_cluster, cluster_lanes)
        before = published(cluster_lanes) or 0
        with kafka_cluster.paused(victim):
            paused = time.monotonic()
            during = alive_for(PAUSE_S, scorer, cluster_lanes)
        in_sync = in_sync_after(kafka_cluster, scorer, paused)
        meanwhile = f"{during - before:,}" if during is not None else "unknown"
        return f"{led} paused {PAUSE_S:.0f} s, {meanwhile} results meanwhile; all in sync {in_sync:.0f} s after"

    run = scored_through(cluster_lanes, tmp_path, guarantee, 903, fault)
    run.check("9c. cluster: one broker paused 30 s")
