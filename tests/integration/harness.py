"""Running the real scorer against the test broker, and reading back what it wrote.

``ScorerProcess`` starts ``crm-scorer run`` as a subprocess (the way operators run it), on its own topics and
group, and stops it with a real SIGTERM. ``Lanes`` names one test's input, output and dead-letter topics.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from producer_tools.publishing.topics import RecordedMessage, read_all
from schemas import ResultDecoder, SingleObjectEncoder, load_catalog

CATALOG = load_catalog()
ENCODE_V2 = SingleObjectEncoder(CATALOG.application_event_latest)
ENCODE_V1 = SingleObjectEncoder(CATALOG.get("application_event.v1"))
V1_FIELDS = tuple(ENCODE_V1.schema.fields())  # a v1 writer's event: the v2 event without what v2 added
SCORER = [sys.executable, "-m", "consumer.commands.cli", "run"]


@dataclass(frozen=True)
class Lanes:
    bootstrap: str
    input: str
    output: str
    dlq: str
    group: str

    def flags(self) -> list[str]:
        """The command-line flags that point ``crm-scorer run`` (or any command taking them) at these lanes."""
        return [
            *("--bootstrap-servers", self.bootstrap),
            *("--input-topic", self.input, "--output-topic", self.output, "--dlq-topic", self.dlq),
            *("--group-id", self.group),
        ]


def produce(bootstrap: str, topic: str, items: Iterable[tuple[bytes | None, bytes | None]]) -> int:
    """Produce (key, value) pairs with delivery checks; returns how many were acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 10})
    acked = []
    count = 0
    for key, value in items:
        producer.produce(topic, value, key, on_delivery=lambda err, _m: acked.append(err is None))
        count += 1
        producer.poll(0)
    producer.flush(30)
    assert len(acked) == count and all(acked), "the test producer could not deliver"
    return count


def encoded(events: Sequence[dict], mixed_versions: bool = False) -> list[tuple[bytes, bytes]]:
    """(key, value) of each event, in v2 framing (or alternating v1 and v2 writers)."""
    out = []
    for i, event in enumerate(events):
        if mixed_versions and i % 2:
            v1 = {k: v for k, v in event.items() if k in V1_FIELDS}
            out.append((event["application_id"].encode(), ENCODE_V1(v1)))
        else:
            out.append((event["application_id"].encode(), ENCODE_V2(event)))
    return out


def scored_event_ids(bootstrap: str, topic: str) -> list[str]:
    decoder = ResultDecoder(CATALOG)
    return [str(decoder.decode(m.value)["event_id"]) for m in read_all(bootstrap, topic, idle=1.0)]


def dead_letters(bootstrap: str, topic: str) -> list[RecordedMessage]:
    return read_all(bootstrap, topic, idle=1.0)


class ScorerProcess:
    """``crm-scorer run`` on ``lanes`` in a subprocess; logs go to a file the test can read."""

    def __init__(self, lanes: Lanes, log_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.lanes = lanes
        self.log_path = log_dir / f"scorer-{time.monotonic_ns()}.log"
        self.args = [*SCORER, *lanes.flags(), "--metrics-port", "0", *extra]
        # 6 s: a killed member's partitions move on sooner than with the 10 s default (and Tansu, which holds a
        # group join for half the session timeout, forms groups in 3 s).
        # Its own instance id: two scorer processes on this one host are two replicas, whose exactly_once
        # transactional ids must differ (by default they would share the host name and fence each other).
        self.instance_id = f"scorer-{uuid.uuid4().hex[:8]}"
        defaults = {
            "CRM_SCORER_CONSUMER__SESSION_TIMEOUT_MS": "6000",
            "CRM_SCORER_CONSUMER__INSTANCE_ID": self.instance_id,
        }
        self.env = os.environ | defaults | (env or {})
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ScorerProcess:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log:
                return
            assert self.process and self.process.poll() is None, f"scorer exited:\n{self.log[-3000:]}"
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not logged within {timeout} s:\n{self.log[-3000:]}")

    def stop(self, timeout: float = 15.0) -> float:
        """SIGTERM, wait; returns the seconds it took to exit. Fails if it did not exit cleanly in time."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        assert code == 0, f"scorer exited with {code}:\n{self.log[-3000:]}"
        return time.monotonic() - started

    def wait_for(self, topic: str, expected: int, timeout: float = 60.0) -> int:
        """Like ``wait_for_count``, but fails at once (with the scorer's log) if the scorer died."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process and self.process.poll() is None, f"scorer exited:\n{self.log[-3000:]}"
            try:
                return wait_for_count(self.lanes.bootstrap, topic, expected, timeout=min(5.0, timeout))
            except AssertionError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{topic}: fewer than {expected} messages; log:\n{self.log[-3000:]}") from None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_for_count(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> int:
    """Poll the topic until it holds at least ``expected`` messages; returns the last count seen."""
    from producer_tools.publishing.topics import count_messages

    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        seen = count_messages(bootstrap, topic, idle=0.5)
        if seen >= expected:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"{topic} holds {seen} messages after {timeout} s, expected {expected}")


def outcome_args(
    bootstrap: str, scores: str, topic: str, count: int, seed: int, policy: Any = None
) -> argparse.Namespace:
    """``crm-producer outcomes``' arguments answering ``count`` scores of the world of ``seed`` (baseline,
    v1 outcomes, 3% missing and 1% duplicated, no pacing), as ``answer_scores`` takes them."""
    return argparse.Namespace(
        bootstrap_servers=bootstrap,
        scores_topic=scores,
        topic=topic,
        count=count,
        seed=seed,
        scenario="baseline",
        schema_version="v1",
        time_scale=0.0,
        missing=0.03,
        duplicates=0.01,
        policy_change=policy,
        idle_exit=30.0,
        max_scores=count,
    )
