"""What the model-loop demo starts and watches: the scorer and the monitor as subprocesses with their logs, the
monitor's joined counts, the results' model versions, and the one timeline it prints.

The tools never import the service: ``crm-scorer``, ``crm-train`` and ``crm-scorer models`` run as commands.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas import ResultDecoder

TANSU_FRIENDLY = {"CRM_SCORER_CONSUMER__SESSION_TIMEOUT_MS": "6000", "CRM_MONITOR_KAFKA__SESSION_TIMEOUT_MS": "6000"}


@dataclass
class Timeline:
    """The demo's one timeline: each event printed as it happens, with the demo's clock, the world events sent
    and the bank's outcomes the monitor has joined."""

    bank: str
    started: float = field(default_factory=time.monotonic)
    sent: int = 0
    joined: int = 0  # the bank's
    outcomes_read: int = 0  # outcome messages the monitor has read
    events: list[tuple[str, int, float, str]] = field(default_factory=list)  # (kind, joined, wall ms, line)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, text: str, joined: int | None = None) -> None:
        """Print and keep one event; ``joined``: the bank's outcomes at the event when known better than now."""
        with self._lock:
            elapsed = time.monotonic() - self.started
            count = self.joined if joined is None else joined
            line = f"{elapsed:6.1f} s  events {self.sent:>7,}  {self.bank} outcomes {count:>6,}  {text}"
            self.events.append((kind, count, time.time() * 1000.0, line))
            print(f"timeline  {line}", flush=True)

    def at(self, kind: str) -> int | None:
        """The bank's outcomes joined at the first event of ``kind`` (None: it did not happen)."""
        return next((joined for k, joined, _, _ in self.events if k == kind), None)


class Service:
    """``crm-scorer COMMAND ...`` as a subprocess, its output in ``log``."""

    def __init__(self, command: list[str], env: Mapping[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "consumer.commands.cli", *command],
            env=os.environ | TANSU_FRIENDLY | dict(env),
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def check(self) -> None:
        if self.process.poll() is not None:
            raise SystemExit(f"{self.log.stem} exited with code {self.process.returncode}: {self.tail()}")

    def find(self, pattern: str) -> re.Match[str] | None:
        """The first line of the log matching ``pattern``."""
        return re.search(pattern, self.log.read_text(errors="replace"), re.M)

    def stop(self) -> str:
        """SIGTERM, wait; the last line it printed."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._out.close()
        return self.tail()

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"(exit {self.process.returncode})"


def run_command(argv: list[str], log: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A one-shot command (``python -m MODULE ...``), its output appended to ``log``; a failure ends the demo
    when ``check``."""
    done = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, check=False)
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}")
    if check and done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")
    return done


def monitor_figures(metrics_port: int) -> dict[tuple[str, str], float] | None:
    """The monitor's samples by (name, model or topic), from its /metrics (None: not answering yet)."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    return {
        (sample.name, sample.labels.get("model", sample.labels.get("topic", ""))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@dataclass
class Results:
    """What the results topic says about one bank: the first result of each model version and its event, the
    time each event was scored (ms), and how many results were read."""

    read: int = 0
    first_of: dict[str, str] = field(default_factory=dict)  # version -> event id
    scored_at: dict[str, int] = field(default_factory=dict)  # event id -> ms
    on_first: Callable[[str, str], Any] | None = None


def watch_results(bootstrap: str, topic: str, bank: str, results: Results, stop: threading.Event) -> None:
    """Read ``topic`` from the beginning until ``stop``, filling ``results``; closes its consumer."""
    decoder = ResultDecoder()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"crm-lifecycle-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
            "isolation.level": "read_committed",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        while not stop.is_set():
            for message in consumer.consume(500, timeout=0.2):
                if message.error() is None:
                    _read_result(decoder.decode(message.value()), bank, results)
    finally:
        consumer.close()


def _read_result(result: Mapping[str, Any], bank: str, results: Results) -> None:
    event_id = str(result["event_id"])
    results.read += 1
    results.scored_at.setdefault(event_id, int(result["scored_at"].timestamp() * 1000))
    version = next((str(b["model_version"]) for b in result["banks"] if b["bank"] == bank), None)
    if version is not None and version not in results.first_of:
        results.first_of[version] = event_id
        if results.on_first is not None:
            results.on_first(version, event_id)
