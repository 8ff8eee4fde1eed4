"""Outcome answering: the synthetic world's bank decisions and lead conversions for the scores on a topic.

Each score finds its event's ground truth by ``event_id`` in the world regenerated from the arguments
``produce`` used; outcomes are published keyed by ``application_id`` once their (compressed) delay has passed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer

from producer_tools.publishing.connection import client_config
from producer_tools.publishing.publisher import producer_config
from producer_tools.world import DEFAULT_START, generate
from producer_tools.world.outcomes import OutcomeDraws, PlannedOutcome, Truth, plan_outcomes
from schemas import ResultDecoder, SingleObjectEncoder, load_catalog
from schemas.errors import InvalidEventError

_POLL_SECONDS = 0.2
_FIRST_WAIT_S = 60.0


@dataclass
class OutcomeTally:
    """What the command did; ``line()`` is its summary."""

    scores: int = 0
    unknown: int = 0
    outcomes: int = 0
    duplicates: int = 0
    failed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        kinds = " ".join(f"{k}={v}" for k, v in sorted(self.by_kind.items()))
        return (
            f"scores={self.scores} unknown={self.unknown} outcomes={self.outcomes} "
            f"duplicates={self.duplicates} failed={self.failed} {kinds}".rstrip()
        )


class OutcomeSchedule:
    """Planned outcomes waiting for their (compressed) delay, earliest first."""

    def __init__(self, time_scale: float, lead_time_scale: float | None = None) -> None:
        self._scale = time_scale
        self._lead_scale = time_scale if lead_time_scale is None else lead_time_scale
        self._heap: list[tuple[float, int, PlannedOutcome]] = []
        self._seq = 0

    def add(self, planned: PlannedOutcome, seen_at: float) -> None:
        scale = self._lead_scale if planned.record["kind"] == "lead_conversion" else self._scale
        due = seen_at + (planned.delay_s / scale if scale > 0 else 0.0)
        heapq.heappush(self._heap, (due, self._seq, planned))
        self._seq += 1

    def due(self, now: float) -> list[PlannedOutcome]:
        out = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def __len__(self) -> int:
        return len(self._heap)

    def pending(self, banks_only: bool = False) -> int:
        """Outcomes still waiting (only bank decisions, with ``banks_only``)."""
        if not banks_only:
            return len(self._heap)
        return sum(1 for _, _, planned in self._heap if planned.record["kind"] == "bank_decision")


def world_truth(count: int, seed: int, scenario: str, schema_version: str) -> dict[str, Truth]:
    """The regenerated world, by event id (the same world ``produce`` drew from these arguments)."""
    version = "v2" if schema_version == "mixed" else schema_version
    batch = generate(count, seed, scenario=scenario, schema_version=version, start=DEFAULT_START)
    return {
        str(event["event_id"]): Truth(i, truth, event)
        for i, (event, truth) in enumerate(zip(batch.events, batch.truth, strict=True))
    }


def answer_scores(
    args: argparse.Namespace,
    truths: dict[str, Truth] | None = None,
    stop: threading.Event | None = None,
    tally: OutcomeTally | None = None,
) -> OutcomeTally:
    """Read scores from the beginning, publish their outcomes when due, until idle (or ``stop``); the tally.

    ``truths`` (by event id) defaults to the world regenerated from ``args``; the demo passes the world it sent.
    ``args.score_registry`` (optional): the Schema Registry behind Confluent-framed scores (a scorer with a
    registry writes them so).
    ``tally``: counted into as it goes, so a caller in another thread can watch the progress.
    """
    if truths is None:
        truths = world_truth(args.count, args.seed, args.scenario, args.schema_version)
    answerer = _Answerer(args, truths, tally)
    consumer = Consumer(
        {
            **client_config(args.bootstrap_servers),
            "group.id": f"crm-producer-outcomes-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([args.scores_topic])
    last_score = time.monotonic()
    try:
        while stop is None or not stop.is_set():
            messages = [m for m in consumer.consume(500, timeout=_POLL_SECONDS) if m.error() is None]
            if messages:
                last_score = time.monotonic()
                answerer.read(messages, last_score)
            answerer.send_due(time.monotonic())
            # Before the first score, the scorer may still be starting: wait longer than between scores.
            seen = answerer.tally.scores or answerer.tally.unknown
            idle = args.idle_exit if seen else max(args.idle_exit, _FIRST_WAIT_S)
            waiting = answerer.schedule.pending(banks_only=getattr(args, "banks_only", False))
            done = args.max_scores is not None and answerer.tally.scores >= args.max_scores
            if not waiting and (done or time.monotonic() - last_score > idle):
                break
    finally:
        answerer.producer.flush(30)
        consumer.close()
    return answerer.tally


class _Answerer:
    """Plans the outcomes of the scores read and sends them when due."""

    def __init__(self, args: argparse.Namespace, truths: dict[str, Truth], tally: OutcomeTally | None = None) -> None:
        self._args, self._truths = args, truths
        self._draws = OutcomeDraws(args.missing, args.duplicates)
        self._decoder = ResultDecoder(registry=getattr(args, "score_registry", None))
        self._encode = SingleObjectEncoder(load_catalog().outcome)
        self.producer = Producer(producer_config(args.bootstrap_servers))
        self.tally = tally if tally is not None else OutcomeTally()
        self.schedule = OutcomeSchedule(args.time_scale, getattr(args, "lead_time_scale", None))
        self._scores: set[str] = set()
        self._applications: set[str] = set()

    def read(self, messages: list[Any], now: float) -> None:
        for message in messages:
            if self._args.max_scores and self.tally.scores >= self._args.max_scores:
                return
            try:
                score = self._decoder.decode(message.value())
            except InvalidEventError:
                self.tally.unknown += 1
                continue
            event_id = str(score["event_id"])
            if event_id in self._scores:  # a score published twice (at-least-once) is answered once
                continue
            self._scores.add(event_id)
            self.tally.scores += 1
            truth = self._truths.get(event_id)
            if truth is None:
                self.tally.unknown += 1
                continue
            first = score["application_id"] not in self._applications
            self._applications.add(score["application_id"])
            policy = self._args.policy_change
            for planned in plan_outcomes(score, truth, self._args.seed, self._draws, policy, with_lead=first):
                self.schedule.add(planned, now)

    def send_due(self, now: float) -> None:
        for planned in self.schedule.due(now):
            _send(self.producer, self._args.topic, self._encode, planned, self._delivered)
            self.tally.outcomes += 1
            self.tally.duplicates += planned.duplicate
            kind = str(planned.record["kind"])
            self.tally.by_kind[kind] = self.tally.by_kind.get(kind, 0) + 1
        self.producer.poll(0)

    def _delivered(self, error: KafkaError | None, _: Any) -> None:
        if error is not None:
            self.tally.failed += 1


def _send(producer: Producer, topic: str, encode: Any, planned: PlannedOutcome, delivered: Any) -> None:
    record = dict(planned.record)
    record["decided_at"] = dt.datetime.fromtimestamp(record["decided_at"] / 1000, dt.UTC)
    key = str(record["application_id"]).encode()
    while True:
        try:
            producer.produce(topic, key=key, value=encode(record), on_delivery=delivered)
            return
        except BufferError:
            producer.poll(0.05)
