"""Offsets are released only in consumption order; logs are JSON when asked and never repeat librdkafka noise."""

from __future__ import annotations

import json
import logging

from consumer.core.offsets import InFlightBatch, OffsetTracker
from consumer.telemetry.logs import JsonFormatter, OncePerInterval


def test_a_later_batch_acknowledged_first_waits_for_the_earlier_one() -> None:
    tracker = OffsetTracker()
    first = tracker.add(InFlightBatch({("in", 0): 10, ("in", 1): 5}, pending=2))
    second = tracker.add(InFlightBatch({("in", 0): 20}, pending=1))
    second.pending = 0
    assert tracker.releasable() == ({}, [])
    first.pending = 0
    offsets, done = tracker.releasable()
    assert offsets == {("in", 0): 20, ("in", 1): 5}
    assert done == [first, second] and len(tracker) == 0


def test_revoked_partitions_are_not_stored_by_batches_still_in_flight() -> None:
    tracker = OffsetTracker()
    batch = tracker.add(InFlightBatch({("in", 0): 10, ("in", 1): 5}, pending=1))
    tracker.forget_partitions({("in", 1)})
    batch.pending = 0
    assert tracker.releasable()[0] == {("in", 0): 10}


def test_json_logs_carry_the_extra_fields() -> None:
    record = logging.LogRecord("consumer.kafka.loop", logging.WARNING, __file__, 1, "lag %d", (5,), None)
    record.worker = 1
    line = json.loads(JsonFormatter().format(record))
    assert (line["level"], line["logger"], line["msg"], line["worker"]) == (
        "WARNING",
        "consumer.kafka.loop",
        "lag 5",
        1,
    )
    assert line["ts"].endswith("Z")


def test_librdkafka_noise_passes_once_per_interval_per_client() -> None:
    gate = OncePerInterval(60.0)

    def record(client: str) -> logging.LogRecord:
        args = ("FAIL", client, "Connect failed")
        return logging.LogRecord("librdkafka", logging.ERROR, __file__, 1, "%s [%s] %s", args, None)

    assert gate.filter(record("consumer-1")) is True
    assert gate.filter(record("consumer-1")) is False
    assert gate.filter(record("producer-1")) is True
