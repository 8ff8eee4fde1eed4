"""What the scenarios on the three-broker cluster share: the stream and what watches it, the three broker faults,
and one scenario's run through a scorer with its check.

Every topic has three replicas and ``min.insync.replicas`` 2, and both writers ask for ``acks=all``: the scorer's
producer sets it with idempotence (``Settings.producer_config``), the test's feeder through idempotence. So an
acknowledged write sits on at least two brokers, and losing or freezing any one broker may delay events but
never lose one.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from consumer.kafka.watchdog import CALL_OF_EXIT_CODE
from producer_tools.servers.apache_kafka import ApacheKafka
from tests.integration.faults.processes import worker_pids
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

RATE = 1500  # events/s: steady load one worker keeps up with on a shared two-core machine
OUTPUT_PARTITIONS = 3
ASSIGNED = re.compile(r"worker \d+ assigned \d+ partition")
# The host's line for a worker it replaces, and the worker's own when its watchdog ends it
# (consumer.host.supervisor, consumer.kafka.watchdog.end_worker).
REPLACED = re.compile(r"worker \d+ (.*); starting a replacement")
BY_WATCHDOG = "was ended by its watchdog"
WATCHDOG_FIRED = re.compile(r"watchdog: \w+ did not return within its bound of [\d.]+ s")
WORKERS_EXITED = re.compile(r"workers exited with \{(.*)\}")  # the host's last line: {worker: exit status}
Fault = Callable[[ScorerProcess], str]  # makes its fault while the scorer runs; returns a note for the table
CHAOS_SCENARIO = "chaos"  # how the chaos runs' rows in the fault table begin: the chaos table shows them instead


@dataclass(frozen=True)
class Pace:
    """How a scenario runs: its workers, how many results before and after the fault, how long it waits."""

    workers: int = 1
    warm: int = 5000  # results before the fault, and again after it
    after_s: float = 120.0  # the wait for the results after the fault
    hang_s: float | None = None  # the output not growing this long with events pending fails the run as a hang
    stop_s: float = 30.0  # from SIGTERM to the scorer's exit


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
    """Samples the output's high watermarks twice a second, in the background, until :meth:`settle` (every event
    scored and committed): ``longest_stall_s`` is the longest the output did not grow, ``stalled_s`` how long it
    has not grown now. A partition whose leader is away keeps its last mark (nothing is written to it meanwhile).
    In exactly_once the marks count transaction markers too."""

    def __init__(self, lanes: Lanes) -> None:
        self._lanes = lanes
        self.longest_stall_s = 0.0
        self._grew: float | None = None  # when the output last grew; None before its first result
        self._error: BaseException | None = None
        self._settled = threading.Event()
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

    def settle(self) -> None:
        self._settled.set()

    @property
    def stalled_s(self) -> float:
        grew = self._grew
        return 0.0 if grew is None or self._settled.is_set() else time.monotonic() - grew

    def _run(self) -> None:
        consumer = Consumer(probe(self._lanes.bootstrap) | {"group.id": self._lanes.group})
        marks, seen = [0] * OUTPUT_PARTITIONS, 0
        try:
            while not self._stop.wait(0.5):
                for p in range(OUTPUT_PARTITIONS):
                    with contextlib.suppress(KafkaException):
                        marks[p] = _high_watermark(consumer, self._lanes.output, p, timeout=2)
                if sum(marks) > seen:
                    seen, self._grew = sum(marks), time.monotonic()
                self.longest_stall_s = max(self.longest_stall_s, self.stalled_s)
        except BaseException as exc:  # re-raised in __exit__, in the test's thread
            self._error = exc
        finally:
            consumer.close()


def unless_hung(
    predicate: Callable[[], bool], progress: Progress, hang_s: float | None, scorer: ScorerProcess
) -> Callable[[], bool]:
    """``predicate`` for ``wait_until``, failing the run as a hang once the output has not grown for ``hang_s``."""

    def check() -> bool:
        stalled = progress.stalled_s
        assert hang_s is None or stalled < hang_s, (
            f"hang: the scorer published nothing for {stalled:.0f} s (bound {hang_s:.0f} s):\n{scorer.log[-3000:]}"
        )
        return predicate()

    return check


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


def published(lanes: Lanes) -> int | None:
    """Sum of the output's high watermarks (in exactly_once they count transaction markers too: progress only),
    or None while a fault leaves a partition without a leader."""
    consumer = Consumer(probe(lanes.bootstrap) | {"group.id": lanes.group})
    try:
        return sum(_high_watermark(consumer, lanes.output, p, timeout=5) for p in range(OUTPUT_PARTITIONS))
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


def watchdog_firings(log: str) -> int:
    """Workers ended by their watchdog, counted from each one's own line in the scorer's log."""
    return len(WATCHDOG_FIRED.findall(log))


def assert_replaced_only_by_watchdog(log: str) -> None:
    """A worker the host replaced must have been ended by its watchdog: a broker fault kills none. (A worker its
    watchdog ends while the host stops is not replaced.)"""
    reasons = REPLACED.findall(log)
    unasked = [reason for reason in reasons if not reason.startswith(BY_WATCHDOG)]
    assert not unasked, f"a worker died on a broker fault ({unasked}):\n{log[-5000:]}"
    assert len(reasons) <= watchdog_firings(log), f"{watchdog_firings(log)} firings, {len(reasons)} replacements"


def stop(scorer: ScorerProcess, timeout: float) -> None:
    """SIGTERM and wait ``timeout`` (failing as a hang after it) for a clean exit, or for one whose only failed
    workers were ended by their watchdog: a worker blocked in librdkafka cannot finish its batch, and its
    watchdog ends it within the call's bound."""
    try:
        scorer.stop(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"hang: the scorer did not stop within {timeout:.0f} s:\n{scorer.log[-3000:]}") from None
    except AssertionError:
        exits = WORKERS_EXITED.findall(scorer.log)
        statuses = [int(status) for status in re.findall(r": (-?\d+)", exits[-1])] if exits else []
        if not any(statuses) or any(status and status not in CALL_OF_EXIT_CODE for status in statuses):
            raise


@contextlib.contextmanager
def workers_reaped(scorer: ScorerProcess) -> Iterator[None]:
    """On a failure, kill -9 the scorer's workers before the scorer itself: a worker blocked in librdkafka would
    otherwise outlive its parent until its watchdog fires, into the next scenario."""
    try:
        yield
    except BaseException:
        for pid in worker_pids(scorer):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        raise


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


def scored_through(lanes: Lanes, tmp_path: Path, guarantee: str, seed: int, fault: Fault, pace: Pace = Pace()) -> Run:
    """Stream events through the scorer's workers, make ``fault`` once they are scoring, stream on until they
    published ``pace.warm`` more, then stop the stream and wait until every offset is committed. Every wait is
    bounded; with ``pace.hang_s`` one fails as a hang once the output stops growing for that long."""
    started = time.monotonic()
    wait_until(lambda: fully_replicated(lanes.bootstrap), 120, "a whole cluster before the scenario")
    stream = Stream(seed)
    args = ("--guarantee", guarantee, "--workers", str(pace.workers))
    with (
        ScorerProcess(lanes, tmp_path, *args) as scorer,
        workers_reaped(scorer),
        Feeder(lanes.bootstrap, lanes.input, stream.pairs(), rate=RATE) as feeder,
        Progress(lanes) as progress,
    ):

        def flowing(predicate: Callable[[], bool]) -> Callable[[], bool]:
            return unless_hung(predicate, progress, pace.hang_s, scorer)

        for worker in range(pace.workers):
            scorer.wait_for_log(f"worker {worker} assigned", 60)
        wait_until(flowing(progressed(lanes, 0, pace.warm)), 90, f"{pace.warm:,} results", scorer)
        before = committed_offsets(lanes)
        since = len(scorer.log)
        note = fault(scorer)
        resumed = flowing(progressed(lanes, published(lanes) or 0, pace.warm))
        wait_until(resumed, pace.after_s, "results after the fault", scorer)
        after = input_ends(lanes)  # later than any re-delivery the fault caused: the window is not too narrow
        stream.stop()
        delivered = feeder.join()
        assert delivered.count == len(stream.event_ids)
        wait_until(flowing(lambda: committed_total(lanes) >= delivered.count), 240, "every offset committed", scorer)
        progress.settle()
        stop(scorer, pace.stop_s)
    assert_replaced_only_by_watchdog(scorer.log)
    where = {stream.event_ids[index]: position for position, index in delivered.positions.items()}
    return Run(
        lanes,
        guarantee,
        Expected(frozenset(stream.event_ids)),
        where,
        before,
        after,
        progress.longest_stall_s,
        len(ASSIGNED.findall(scorer.log[since:])),
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


# --- the three faults -------------------------------------------------------------------------------------------


def leader_kill(cluster: ApacheKafka, lanes: Lanes, guarantee: str, down_s: float) -> Fault:
    """kill -9 of the node leading most of the scenario's partitions; restarted ``down_s`` later."""

    def fault(scorer: ScorerProcess) -> str:
        victim, led = leading_broker(cluster, lanes)
        before = published(lanes) or 0
        cluster.kill(victim)
        killed = time.monotonic()
        try:
            during = alive_for(down_s, scorer, lanes)
        finally:  # a failed scenario leaves the cluster whole for the next one
            cluster.restart(victim)
        # at_least_once scores on through the two brokers left; exactly_once may wait the whole outage on its
        # transaction (its offsets call is retried until the coordinator has moved), so there it is only reported.
        if guarantee == "at_least_once":
            assert (during or 0) > before, f"nothing published with {led} down:\n{scorer.log[-3000:]}"
        in_sync = in_sync_after(cluster, scorer, killed)
        meanwhile = f"{during - before:,}" if during is not None else "unknown"
        return f"{led} down {down_s:.0f} s, {meanwhile} results meanwhile; all in sync {in_sync:.0f} s after"

    return fault


def rolling_restart(cluster: ApacheKafka) -> Fault:
    """Every node stopped gracefully and started again, one at a time, each once the cluster is back in sync."""

    def fault(scorer: ScorerProcess) -> str:
        took = []
        for node in cluster.nodes:
            began = time.monotonic()
            cluster.restart(node.node_id, graceful=True)
            took.append(in_sync_after(cluster, scorer, began))
            assert scorer.process is not None and scorer.process.poll() is None, scorer.log[-3000:]
        return "nodes 1, 2, 3 one at a time, each back in sync in " + " / ".join(f"{s:.0f}" for s in took) + " s"

    return fault


def frozen_broker(cluster: ApacheKafka, lanes: Lanes, pause_s: float) -> Fault:
    """The node leading most of the scenario's partitions paused (SIGSTOP) for ``pause_s``, then resumed."""

    def fault(scorer: ScorerProcess) -> str:
        victim, led = leading_broker(cluster, lanes)
        before = published(lanes) or 0
        with cluster.paused(victim):
            paused = time.monotonic()
            during = alive_for(pause_s, scorer, lanes)
        in_sync = in_sync_after(cluster, scorer, paused)
        meanwhile = f"{during - before:,}" if during is not None else "unknown"
        return f"{led} paused {pause_s:.0f} s, {meanwhile} results meanwhile; all in sync {in_sync:.0f} s after"

    return fault
