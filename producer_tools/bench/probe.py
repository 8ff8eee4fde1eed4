"""What the benchmark observes from outside the scorer: its progress, its output topics and its processes.

- progress: the consumer group's committed offsets on the input topic (cheap to poll, no rebalance);
- output: every result's and dead letter's broker timestamp (CreateTime: set when the scorer handed the
  message to its producer; the local broker does not offer LogAppendTime), read back after the run;
- processes: ``crm-scorer run`` as a subprocess (the way operators run it), its worker processes (psutil), and
  their resident memory: current from psutil, peak from the kernel's ``VmHWM`` (psutil reports no peak on Linux).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from producer_tools.servers.broker import BrokerError

_MIB_PER_KIB = 1 / 1024
_BYTES_PER_MIB = 1024 * 1024
_READ_BATCH = 2000


@dataclass(frozen=True)
class Lanes:
    """One phase's topics and consumer group."""

    input: str
    output: str
    dlq: str
    group: str


def committed_total(consumer: Consumer, topic: str, partitions: int) -> int:
    """Sum of the group's committed offsets on ``topic`` (offsets start at 0 on a fresh topic, so this is the
    number of messages the group has finished). ``consumer`` carries the group id and never subscribes."""
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=5)
    except KafkaException:
        return 0
    return sum(max(0, tp.offset) for tp in offsets)


def group_reader(bootstrap: str, group: str) -> Consumer:
    """A client that only asks for ``group``'s committed offsets (it never joins the group)."""
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})


@dataclass
class Readback:
    """Messages read back from the output topics: broker timestamps (ms) and, when asked, decoded values."""

    timestamps_ms: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.timestamps_ms)

    def events_per_s(self) -> float:
        """Messages after the first one, divided by the time from the first to the last (broker time)."""
        if self.count < 2:
            return 0.0
        first, last = min(self.timestamps_ms), max(self.timestamps_ms)
        later = sum(1 for t in self.timestamps_ms if t > first)
        return later / ((last - first) / 1000.0) if last > first else 0.0


def read_back(
    bootstrap: str,
    topics: Sequence[str],
    expected: int,
    decode: Callable[[bytes], Any] | None = None,
    timeout: float = 120.0,
) -> Readback:
    """Read ``topics`` from the beginning until at least ``expected`` messages arrived and half a second passes
    with nothing more (or ``timeout``): stopping at the count alone left results unread when the topic holds
    more than ``expected`` (a malformed message the scorer still scores), and they read as lost.

    Raises:
        BrokerError: a fetch failed.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"crm-bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
        }
    )
    out = Readback()
    try:
        assignment = []
        for topic in topics:
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            assignment += [TopicPartition(topic, p, 0) for p in metadata.partitions]
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = consumer.consume(_READ_BATCH, timeout=0.5)
            for message in messages:
                _keep(message, out, decode)
            if out.count >= expected and not messages:
                break
    finally:
        consumer.close()
    return out


def _keep(message: Message, out: Readback, decode: Callable[[bytes], Any] | None) -> None:
    error = message.error()
    if error is not None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        raise BrokerError(f"reading back {message.topic()}: {error}")
    out.timestamps_ms.append(message.timestamp()[1])
    if decode is not None:
        out.values.append(decode(message.value() or b""))


def worker_pids(pid: int, workers: int) -> list[int]:
    """The scoring processes of ``crm-scorer run`` started as ``pid``: itself for one worker, else its
    children started by multiprocessing (``spawn_main``)."""
    if workers == 1:
        return [pid]
    try:
        children = psutil.Process(pid).children()
    except psutil.Error:
        return []
    return [child.pid for child in children if "spawn_main" in " ".join(_cmdline(child))]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def rss_mb(pid: int) -> float | None:
    """The resident memory of ``pid`` in MiB, None when the process is gone."""
    try:
        return psutil.Process(pid).memory_info().rss / _BYTES_PER_MIB
    except psutil.Error:
        return None


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident memory (``VmHWM``) of ``pid`` in MiB, None when the process is gone.

    psutil exposes no peak on Linux and ``getrusage`` only sees this process and its reaped children, so this
    one value is read from the kernel's status file."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * _MIB_PER_KIB
    except OSError:
        return None
    return None


def scorer_argv(bootstrap: str, lanes: Lanes, workers: int, metrics_port: int, config: Path | None) -> list[str]:
    """The ``crm-scorer run`` command line of a scorer on ``lanes`` (its topics and group)."""
    args = [sys.executable, "-m", "consumer.commands.cli", "run", "--bootstrap-servers", bootstrap]
    args += ["--input-topic", lanes.input, "--output-topic", lanes.output, "--dlq-topic", lanes.dlq]
    args += ["--group-id", lanes.group, "--workers", str(workers), "--metrics-port", str(metrics_port)]
    return args + (["--config", str(config)] if config is not None else [])


class ScorerProcess:
    """``crm-scorer run`` on one phase's lanes; stopped with SIGTERM (finish the batch, flush, commit)."""

    def __init__(
        self,
        bootstrap: str,
        lanes: Lanes,
        workers: int,
        log_path: Path,
        config: Path | None,
        metrics_port: int,
        extra_args: Sequence[str] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.workers = workers
        self.log_path = log_path
        self.metrics_port = metrics_port
        args = scorer_argv(bootstrap, lanes, workers, metrics_port, config)
        args += extra_args
        # The local broker makes a join wait about half the session timeout: keep it short (as the tests do).
        env = os.environ | {"CRM_SCORER_CONSUMER__SESSION_TIMEOUT_MS": "6000"} | (extra_env or {})
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.peak_rss: dict[int, float] = {}

    def pids(self) -> list[int]:
        return worker_pids(self.process.pid, self.workers)

    def sample_peaks(self) -> None:
        """Remember every worker's peak resident memory (read while the workers are alive)."""
        for pid in self.pids():
            peak = peak_rss_mb(pid)
            if peak is not None:
                self.peak_rss[pid] = max(peak, self.peak_rss.get(pid, 0.0))

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BrokerError(f"crm-scorer run exited with {self.process.returncode}; log: {self.log_path}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; a scorer that does not stop in ``timeout`` is killed. Returns its exit code."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def rebalances(self) -> int:
        """How many times a worker had partitions revoked (a rebalance inside a measured window skews it)."""
        try:
            return self.log_path.read_text(errors="replace").count("revoked")
        except OSError:
            return 0


class RelayProcess(ScorerProcess):
    """``python -m producer_tools.bench.relay`` on a phase's lanes: the scorer's Kafka path without scoring."""

    def __init__(self, bootstrap: str, lanes: Lanes, log_path: Path, config: Path | None) -> None:
        self.workers = 1
        self.log_path = log_path
        self.metrics_port = 0
        args = [
            sys.executable,
            "-m",
            "producer_tools.bench.relay",
            "--bootstrap-servers",
            bootstrap,
            "--input-topic",
            lanes.input,
            "--output-topic",
            lanes.output,
            "--group-id",
            lanes.group,
        ]
        if config is not None:
            args += ["--config", str(config)]
        env = os.environ | {"CRM_SCORER_CONSUMER__SESSION_TIMEOUT_MS": "6000"}
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.peak_rss = {}


class Subscriber:
    """A downstream consumer of an output topic, in a thread of the bench: when each message *arrived* here
    (wall clock, ms) with the value ``decode`` makes of it (the event time it answers). ``fetch.wait.max.ms``
    is small, as a latency-minded subscriber sets it."""

    def __init__(self, bootstrap: str, topic: str, decode: Callable[[bytes], int], fetch_wait_ms: int = 5) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"crm-bench-sub-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": fetch_wait_ms,
                "fetch.min.bytes": 1,
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=10).topics[topic]
        self._consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
        self._decode = decode
        self.arrivals: list[tuple[int, bytes]] = []  # (arrival ms, value): decoded after the run, off the clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-subscriber", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            messages = self._consumer.consume(_READ_BATCH, timeout=0.05)
            now_ms = int(time.time() * 1000)
            self.arrivals += [(now_ms, m.value() or b"") for m in messages if m.error() is None]

    def close(self) -> list[tuple[int, int]]:
        """Stop; (arrival ms, event time ms) of every message received."""
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()
        return [(arrived, self._decode(value)) for arrived, value in self.arrivals]
