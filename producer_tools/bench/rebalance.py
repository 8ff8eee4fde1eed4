"""The rebalance probe: the pause that scaling a scorer group 1 -> 2 -> 3 workers causes, measured
for the classic and the KIP-848 ``consumer`` group protocol (``crm-producer rebalance-probe`` runs it).

For each protocol (and round) it uses fresh topics (a 6-partition input) and a fresh group: one ``crm-scorer run``
worker joins, a producer then offers synthetic events at a steady rate, and after a steady window a second and
then a third worker process join (separate processes, as replicas would). Afterwards it reads every result's
broker timestamp (CreateTime: the moment a worker handed the result to its producer) and each input partition's
keys, and reports per step:

- output pause: the longest gap between consecutive results of the whole group while the step lasted;
- partition stall: the longest such gap within one input partition (a moved partition waits for its new owner);
- assignment: from the moment the broker lists the new member, and from the new process's start, until every
  member holds partitions and every partition has an owner (the broker's own view, polled every 50 ms).

The ``steady`` row is the same measure with no membership change: the noise floor. The scorers run with their
default settings; the broker with its defaults for group heartbeats (``group.consumer.heartbeat.interval.ms``
5 s). It asserts nothing: it prints a table and, with ``--json``, writes every number.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaException, Message
from confluent_kafka.admin import AdminClient

from producer_tools.bench.offer import live_stamped, offer
from producer_tools.bench.phases import workload
from producer_tools.bench.probe import Lanes, committed_total, group_reader, scorer_argv
from producer_tools.publishing.publisher import OutboundMessage
from producer_tools.publishing.topics import ensure_topics, scan_topic
from producer_tools.servers.broker import BrokerError

PROTOCOLS = ("classic", "consumer")
_POLL_S = 0.05
_MIN_POOL = 5000


@dataclass(frozen=True)
class ProbePlan:
    rate: float = 1000.0
    partitions: int = 6
    workers: int = 3
    baseline_s: float = 5.0
    settle_s: float = 12.0
    rounds: int = 1
    protocols: tuple[str, ...] = PROTOCOLS
    seed: int = 848
    config: Path | None = None

    def feed_seconds(self) -> float:
        return 2 + self.baseline_s + (self.workers - 1) * (self.settle_s + 5)


@dataclass
class StepWindow:
    """What the probe saw of one step, in epoch seconds."""

    step: str
    started: float  # the new worker was spawned (steady: the window opened)
    ended: float = 0.0
    joined: float | None = None  # the broker first listed the new member count
    assigned: float | None = None  # every member held partitions and every partition had an owner


@dataclass(frozen=True)
class StepResult:
    protocol: str
    round: int
    step: str
    pause_ms: int
    partition_stall_ms: int
    join_to_assigned_ms: int | None
    start_to_assigned_s: float | None


@dataclass
class Timeline:
    """Result timestamps (ms) of the whole group and per input partition, each sorted."""

    merged: list[int] = field(default_factory=list)
    by_partition: dict[int, list[int]] = field(default_factory=dict)


class Worker:
    """One ``crm-scorer run`` process (one worker) in the probe's group, on ``protocol``."""

    def __init__(self, bootstrap: str, lanes: Lanes, protocol: str, log_path: Path, config: Path | None) -> None:
        args = scorer_argv(bootstrap, lanes, 1, 0, config)
        env = os.environ | {"CRM_SCORER_CONSUMER__GROUP_PROTOCOL": protocol}
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BrokerError(f"crm-scorer run exited with {self.process.returncode}; log: {self.log_path}")

    def stop(self, timeout: float = 30.0) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class SteadyFeed:
    """``bench_offer.offer`` at ``rate`` in a background thread, over the messages (again) until stopped."""

    def __init__(self, bootstrap: str, topic: str, messages: list[OutboundMessage], rate: float) -> None:
        self._stop = threading.Event()
        self.acked = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(bootstrap, topic, messages, rate), daemon=True)

    def _run(self, bootstrap: str, topic: str, messages: list[OutboundMessage], rate: float) -> None:
        try:
            self.acked, _ = offer(bootstrap, topic, self._until_stopped(messages), rate)
        except BaseException as exc:  # re-raised in finish(), in the probe's thread
            self._error = exc

    def _until_stopped(self, messages: list[OutboundMessage]) -> Iterator[OutboundMessage]:
        for message in itertools.chain.from_iterable(live_stamped(messages) for _ in itertools.count()):
            if self._stop.is_set():
                return
            yield message

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(120)

    def finish(self) -> int:
        """Stop offering, wait for the deliveries; returns how many the broker acknowledged."""
        self.stop()
        if self._error is not None:
            raise BrokerError(f"the steady producer failed: {self._error}")
        return self.acked


def group_members(admin: AdminClient, group: str) -> list[int]:
    """Partitions each member of ``group`` holds, in the broker's view (empty while it cannot say)."""
    try:
        description = admin.describe_consumer_groups([group], request_timeout=5)[group].result(timeout=6)
    except KafkaException:  # a group the broker does not know yet (KIP-848 describe) holds nothing
        return []
    return [len(m.assignment.topic_partitions) for m in description.members]


def watch_assignment(
    admin: AdminClient,
    group: str,
    window: StepWindow,
    members: int,
    plan: ProbePlan,
    worker: Worker,
    timeout: float = 60.0,
) -> None:
    """Poll until ``members`` members hold every partition between them; notes when they joined and held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.check_alive()
        counts = group_members(admin, group)
        if len(counts) == members and window.joined is None:
            window.joined = time.time()
        if len(counts) == members and min(counts) > 0 and sum(counts) == plan.partitions:
            window.assigned = time.time()
            return
        time.sleep(_POLL_S)
    raise BrokerError(f"group {group}: {members} members did not share the partitions within {timeout:.0f} s")


def run_protocol(bootstrap: str, protocol: str, round_no: int, plan: ProbePlan, workdir: Path) -> list[StepResult]:
    """One protocol's 1 -> 2 -> 3 run on fresh topics and a fresh group; its rows of the table."""
    base = f"crm-rebalance-{uuid.uuid4().hex[:8]}-{protocol}"
    lanes = Lanes(f"{base}-in", f"{base}-out", f"{base}-dlq", f"{base}-group")
    ensure_topics(bootstrap, {lanes.input: plan.partitions, lanes.output: plan.partitions, lanes.dlq: 1})
    pool = max(_MIN_POOL, int(plan.rate * plan.feed_seconds()))
    messages = list(workload(pool, plan.seed + round_no, 0.0))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    feed = SteadyFeed(bootstrap, lanes.input, messages, plan.rate)
    workers: list[Worker] = []
    windows: list[StepWindow] = []
    try:
        workers.append(Worker(bootstrap, lanes, protocol, workdir / f"{base}-1.log", plan.config))
        watch_assignment(admin, lanes.group, StepWindow("start", time.time()), 1, plan, workers[0])
        feed.start()
        time.sleep(2.0)  # the producer's connection and the first fetches are not the steady state
        windows.append(StepWindow("steady, 1 worker", time.time()))
        time.sleep(plan.baseline_s)
        for members in range(2, plan.workers + 1):
            windows[-1].ended = time.time()
            windows.append(StepWindow(f"{members - 1} -> {members}", time.time()))
            workers.append(Worker(bootstrap, lanes, protocol, workdir / f"{base}-{members}.log", plan.config))
            watch_assignment(admin, lanes.group, windows[-1], members, plan, workers[-1])
            time.sleep(plan.settle_s)
        windows[-1].ended = time.time()
        produced = feed.finish()
        wait_drained(bootstrap, lanes, produced, plan.partitions, workers)
    finally:
        feed.stop()
        for worker in reversed(workers):
            worker.stop()
    timeline = read_timeline(bootstrap, lanes)
    return [step_result(protocol, round_no, w, timeline) for w in windows]


def wait_drained(bootstrap: str, lanes: Lanes, produced: int, partitions: int, workers: Sequence[Worker]) -> None:
    """Until the group has committed every produced message (so every result is in the output topic)."""
    reader = group_reader(bootstrap, lanes.group)
    deadline = time.monotonic() + 120
    try:
        while committed_total(reader, lanes.input, partitions) < produced:
            for worker in workers:
                worker.check_alive()
            if time.monotonic() > deadline:
                raise BrokerError(f"{lanes.group}: not every offset was committed within 120 s")
            time.sleep(0.5)
    finally:
        reader.close()


def read_timeline(bootstrap: str, lanes: Lanes) -> Timeline:
    """Each result's timestamp, merged and by the input partition its key came from."""
    partition_of: dict[bytes, int] = {}

    def note_input(message: Message) -> None:
        partition_of[message.key() or b""] = message.partition() or 0

    scan_topic(bootstrap, lanes.input, note_input, timeout=300)
    timeline = Timeline()

    def note_result(message: Message) -> None:
        stamp = message.timestamp()[1]
        timeline.merged.append(stamp)
        timeline.by_partition.setdefault(partition_of.get(message.key() or b"", -1), []).append(stamp)

    scan_topic(bootstrap, lanes.output, note_result, timeout=300)
    timeline.merged.sort()
    for stamps in timeline.by_partition.values():
        stamps.sort()
    return timeline


def longest_gap(stamps: Sequence[int], start_ms: int, end_ms: int) -> int:
    """The longest gap between consecutive ``stamps`` (sorted) that overlaps ``start_ms..end_ms``."""
    gaps = [b - a for a, b in itertools.pairwise(stamps) if b >= start_ms and a <= end_ms]
    return max(gaps, default=end_ms - start_ms)


def step_result(protocol: str, round_no: int, window: StepWindow, timeline: Timeline) -> StepResult:
    start_ms, end_ms = int(window.started * 1000), int(window.ended * 1000)
    stall = max(longest_gap(s, start_ms, end_ms) for s in timeline.by_partition.values())
    join_ms = None
    if window.joined is not None and window.assigned is not None:
        join_ms = round((window.assigned - window.joined) * 1000)
    start_s = round(window.assigned - window.started, 2) if window.assigned is not None else None
    return StepResult(
        protocol, round_no, window.step, longest_gap(timeline.merged, start_ms, end_ms), stall, join_ms, start_s
    )


def run_probe(plan: ProbePlan, bootstrap: str, workdir: Path, say: Callable[[str], None]) -> list[StepResult]:
    """Every round, the protocols in turn (their order alternates between rounds)."""
    results: list[StepResult] = []
    for round_no in range(1, plan.rounds + 1):
        order = plan.protocols if round_no % 2 else tuple(reversed(plan.protocols))
        for protocol in order:
            say(f"round {round_no}: {protocol} protocol, 1 -> {plan.workers} workers at {plan.rate:,.0f} events/s")
            results += run_protocol(bootstrap, protocol, round_no, plan, workdir)
    return results


def format_table(results: Sequence[StepResult]) -> list[str]:
    """The results as a Markdown table."""
    lines = [
        "| protocol | round | step | output pause ms | partition stall ms | join -> assigned ms | "
        "start -> assigned s |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        join = "-" if r.join_to_assigned_ms is None else f"{r.join_to_assigned_ms:,}"
        start = "-" if r.start_to_assigned_s is None else f"{r.start_to_assigned_s:.2f}"
        lines.append(
            f"| {r.protocol} | {r.round} | {r.step} | {r.pause_ms:,} | {r.partition_stall_ms:,} | {join} | {start} |"
        )
    return lines
