"""The monitor's training capture is exactly what was joined, once, after kill -9 at random points and a
partition rebuilt from the topics, while scores and outcomes flow.

One scoring run scores ``EVENTS`` world events and the world answers them; the scores and outcomes are then
replayed, partition for partition, into fresh topics while ``crm-scorer monitor --capture-dir`` runs on them
and is killed with SIGKILL ``KILLS`` times, each at a random moment after it was assigned its partitions (the
replay moves on with each member, so every kill lands while messages flow). After the third kill one
partition's state is dropped from the store, so the next member rebuilds it from the beginning of the topics
and writes its rows again. An undisturbed monitor reads the same topics afterwards. Both captures, read the way
``crm-train --from-capture`` reads them (``models.capture_rows.read_capture``), hold the same rows.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from consumer.monitor.outbox import PENDING, SEALED
from consumer.monitor.store import StateStore
from models.capture_rows import CaptureSummary, read_capture
from producer_tools.publishing.outcomes import answer_scores
from producer_tools.publishing.topics import RecordedMessage, read_all
from producer_tools.world import generate
from tests.integration.harness import Lanes, ScorerProcess, encoded, outcome_args, produce

pytestmark = [pytest.mark.faults, pytest.mark.matrix]  # make test-faults; make test has one kill -9 (test_monitor)

EVENTS, SEED, PARTITIONS, KILLS, CHUNKS, REBUILD_AFTER = 4_000, 29, 6, 6, 140, 3
MONITOR = [sys.executable, "-m", "consumer.commands.cli", "monitor"]
# Flushes every half second: kills land before, during and after writes, not only between them.
ENV = {"CRM_MONITOR_KAFKA__SESSION_TIMEOUT_MS": "6000", "CRM_MONITOR_CAPTURE_FLUSH_S": "0.5"}


@dataclass(frozen=True)
class Streams:
    bootstrap: str
    applications: str
    scores: str
    outcomes: str
    group: str

    def args(self, folder: Path) -> list[str]:
        return [
            *MONITOR,
            *("--bootstrap-servers", self.bootstrap, "--group-id", self.group),
            *("--scores-topic", self.scores, "--outcomes-topic", self.outcomes),
            *("--applications-topic", self.applications),
            *("--store-path", str(folder / "store"), "--capture-dir", str(folder / "capture")),
            *("--metrics-port", "0"),
        ]


class Replay:
    """Produces the recorded scores and outcomes into ``streams``, partition for partition, a chunk of each every
    0.1 s, up to the chunk ``allow`` last granted."""

    def __init__(self, streams: Streams, scores: list[RecordedMessage], outcomes: list[RecordedMessage]) -> None:
        scores, outcomes = _interleaved(scores), _interleaved(outcomes)
        self._chunks = [
            [(streams.scores, m) for m in scores[i * len(scores) // CHUNKS : (i + 1) * len(scores) // CHUNKS]]
            + [(streams.outcomes, m) for m in outcomes[i * len(outcomes) // CHUNKS : (i + 1) * len(outcomes) // CHUNKS]]
            for i in range(CHUNKS)
        ]
        self._producer = Producer({"bootstrap.servers": streams.bootstrap, "enable.idempotence": True})
        self._allowed = 0
        self._granted = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.produced = 0

    def allow(self, chunks: int) -> None:
        with self._granted:
            self._allowed = max(self._allowed, min(chunks, CHUNKS))
            self._granted.notify()

    def _run(self) -> None:
        for i, chunk in enumerate(self._chunks):
            with self._granted:
                while i >= self._allowed:
                    self._granted.wait()
            for topic, m in chunk:
                self._producer.produce(topic, m.value, m.key, partition=m.partition)
            self._producer.poll(0)
            self.produced += len(chunk)
            time.sleep(0.1)
        assert self._producer.flush(60) == 0

    def __enter__(self) -> Replay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.allow(CHUNKS)
        self._thread.join(300)
        assert not self._thread.is_alive(), "the replay did not finish"


def _interleaved(messages: list[RecordedMessage]) -> list[RecordedMessage]:
    """Every partition's messages flowing at once (read_all lists the partitions one after the other)."""
    return sorted(messages, key=lambda m: (m.offset, m.partition))


def test_the_capture_after_kill_9_at_random_points_and_a_rebuilt_partition_equals_an_undisturbed_run(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    seed = random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    applications, scores, outcomes = _scored_and_answered(kafka_bootstrap, make_topic, tmp_path)
    replayed = (make_topic(PARTITIONS, "replay-scores"), make_topic(PARTITIONS, "replay-outcomes"))
    streams = Streams(kafka_bootstrap, applications, *replayed, f"monitor-{seed}")
    killed = tmp_path / "killed"
    points, rebuilt, captured_at_rebuild = [], -1, 0
    with Replay(streams, scores, outcomes) as replay:
        for kill in range(KILLS):
            points.append(_run_and_kill(streams, killed, rng, replay, (kill + 1) * CHUNKS // KILLS))
            print(f"kill -9 #{kill + 1}: {points[-1]}")
            if kill + 1 == REBUILD_AFTER:  # the next member holds no state for it: rebuilt from the topics
                rebuilt, captured_at_rebuild = rng.randrange(PARTITIONS), _captured(killed)
                with StateStore(killed / "store") as store:
                    store.drop_partition(rebuilt)
    _run_until_caught_up(streams, killed)
    reference = tmp_path / "undisturbed"
    _run_until_caught_up(Streams(**{**vars(streams), "group": f"reference-{seed}"}), reference)

    got, want = _read(killed / "capture"), _read(reference / "capture")
    sealed = (killed / "monitor.log").read_text().count("the last run sealed and did not finish")
    print(
        f"seed {seed}: {len(points)} kills ({sealed} inside a write, finished by the next member), partition "
        f"{rebuilt} rebuilt; replayed {replay.produced} messages; "
        f"killed run: {got[0].line()}; undisturbed: {want[0].line()}; {len(want[1])} rows compared"
    )
    assert len(points) >= 5
    assert want[0].duplicates == 0 and want[0].without_event == 0
    assert got[0].duplicates <= captured_at_rebuild  # only the rebuilt partition's rows captured before it
    assert len(want[1]) >= 2 * EVENTS
    assert got[1] == want[1]


def _scored_and_answered(
    bootstrap: str, make_topic: Callable[..., str], tmp: Path
) -> tuple[str, list[RecordedMessage], list[RecordedMessage]]:
    """Score the world and answer it: the input topic, the scores and the outcomes to replay."""
    scores = make_topic(PARTITIONS, "scores")
    lanes = Lanes(bootstrap, make_topic(PARTITIONS, "in"), scores, make_topic(1, "dlq"), f"scorer-{scores}")
    produce(bootstrap, lanes.input, encoded(generate(EVENTS, SEED).events))
    with ScorerProcess(lanes, tmp) as scorer:
        scorer.wait_for(lanes.output, EVENTS, timeout=180)
        scorer.stop()
    outcomes = make_topic(PARTITIONS, "outcomes")
    tally = answer_scores(outcome_args(bootstrap, scores, outcomes, EVENTS, SEED))
    assert tally.scores == EVENTS and tally.unknown == 0 and tally.failed == 0
    return lanes.input, read_all(bootstrap, scores, idle=1.0), read_all(bootstrap, outcomes, idle=1.0)


def _run_and_kill(streams: Streams, folder: Path, rng: random.Random, replay: Replay, chunks: int) -> str:
    """Start a member, let the replay go on to ``chunks`` once it is assigned, SIGKILL it a random 0.2-3 s later."""
    log = folder / "monitor.log"
    folder.mkdir(exist_ok=True)
    seen = log.read_text() if log.exists() else ""
    with log.open("a") as out:
        process = subprocess.Popen(streams.args(folder), stdout=out, stderr=subprocess.STDOUT, env=os.environ | ENV)
    deadline = time.monotonic() + 90
    while "assigned partitions" not in log.read_text()[len(seen) :]:
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[len(seen) :]
        time.sleep(0.05)
    replay.allow(chunks)
    delay = rng.uniform(0.2, 3.0)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    stored = _stored_offsets(folder / "store")
    return f"{delay:.2f} s after assignment, {sum(stored.values())} messages stored, {replay.produced} replayed"


def _run_until_caught_up(streams: Streams, folder: Path) -> None:
    """Run a member until idle (and again, on a loaded machine, until its store reaches the end of every topic)."""
    folder.mkdir(exist_ok=True)
    with (folder / "monitor.log").open("a") as out:
        for _ in range(5):
            args = [*streams.args(folder), "--until-idle", "3"]
            subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, env=os.environ | ENV, timeout=300, check=True)
            if _caught_up(streams, folder / "store"):
                return
    raise AssertionError(f"the monitor in {folder} did not reach the end of its topics")


def _caught_up(streams: Streams, store: Path) -> bool:
    consumer = Consumer({"bootstrap.servers": streams.bootstrap, "group.id": "monitor-capture-probe"})
    try:
        ends = {
            (stream, p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for stream, topic in (
                ("scores", streams.scores),
                ("outcomes", streams.outcomes),
                ("applications", streams.applications),
            )
            for p in range(PARTITIONS)
        }
    finally:
        consumer.close()
    stored = _stored_offsets(store)
    return all(stored.get(f"p{p:04d}/off/{stream}", 0) >= end for (stream, p), end in ends.items())


def _stored_offsets(path: Path) -> dict[str, int]:
    with StateStore(path) as store:
        return {
            k.decode(): int(v) for p in range(PARTITIONS) for k, v in store.scan(b"p%04d/off/" % p, b"p%04d/off0" % p)
        }


def _captured(folder: Path) -> int:
    """Rows in the files, or waiting in the store's outbox to be written (sealed or not)."""
    in_files = sum(pq.read_metadata(f).num_rows for f in (folder / "capture").rglob("*.parquet"))
    with StateStore(folder / "store") as store:
        waiting = sum(1 for _ in store.scan(PENDING, PENDING[:-1] + b"0"))
        sealed = sum(len(json.loads(v)) for _, v in store.scan(SEALED, SEALED[:-1] + b"0"))
    return in_files + waiting + sealed


def _read(capture: Path) -> tuple[CaptureSummary, list[tuple[Any, ...]]]:
    """The capture as crm-train reads it: its summary and every row it trains on, in a stable order."""
    rows = read_capture(capture)
    table = [
        (
            rows.score_event_id[i],
            rows.model[i],
            rows.model_version[i],
            int(rows.positive[i]),
            int(rows.scored_at[i]),
            rows.routing[i],
            json.dumps(rows.events[rows.event_index[i]], sort_keys=True, default=str),
        )
        for i in range(len(rows.model))
    ]
    return rows.summary, sorted(table, key=repr)
