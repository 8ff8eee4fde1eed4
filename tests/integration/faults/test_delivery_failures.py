"""Deliveries the broker refuses for good: a result too large becomes its event's dead letter, a missing output
topic stops the worker with one clear line and nothing committed. Never an endless retry pinning the offsets."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration.faults.producing import produce_tracked
from tests.integration.faults.support import (
    Expected,
    committed_total,
    conservation,
    pairs,
    read_outcomes,
    valid_messages,
    wait_until,
)
from tests.integration.harness import Lanes, ScorerProcess

pytestmark = pytest.mark.faults


def _tiny_output(lanes: Lanes) -> Lanes:
    """The same lanes with an output topic whose records may not exceed 200 bytes: every result is refused."""
    name = f"tiny-out-{uuid.uuid4().hex[:12]}"
    topic = NewTopic(name, num_partitions=3, replication_factor=-1, config={"max.message.bytes": "200"})
    admin = AdminClient({"bootstrap.servers": lanes.bootstrap})  # kept alive until the creation is answered
    admin.create_topics([topic])[name].result(10)
    return Lanes(lanes.bootstrap, lanes.input, name, lanes.dlq, lanes.group)


def test_results_the_broker_refuses_as_too_large_become_dead_letters(
    lanes: Lanes, tmp_path: Path, guarantee: str
) -> None:
    started = time.monotonic()
    lanes = _tiny_output(lanes)
    messages = valid_messages(300, seed=401)
    delivered = produce_tracked(lanes.bootstrap, lanes.input, pairs(messages))
    with ScorerProcess(lanes, tmp_path, "--guarantee", guarantee) as scorer:
        wait_until(lambda: committed_total(lanes) >= len(messages), 90, "every offset committed", scorer)
        scorer.stop()
    assert "the broker refused a result" in scorer.log
    dead = dict.fromkeys(delivered.positions, "result_rejected")
    outcomes = read_outcomes(lanes)
    row = conservation(
        "11. every result refused by the broker (max.message.bytes 200)",
        Expected(frozenset(), dead),
        outcomes,
        time.monotonic() - started,
        "each event dead-lettered as result_rejected",
        guarantee,
    )
    assert row.dead_lettered == len(messages)
    errors = {info.error.split("): ", 1)[1] for info in outcomes.reasons.values()}
    assert errors == {"Broker: Message size too large"}, errors


def test_a_missing_output_topic_stops_the_worker_naming_it_with_nothing_committed(lanes: Lanes, tmp_path: Path) -> None:
    lanes = Lanes(lanes.bootstrap, lanes.input, f"no-such-topic-{uuid.uuid4().hex[:8]}", lanes.dlq, lanes.group)
    produce_tracked(lanes.bootstrap, lanes.input, pairs(valid_messages(50, seed=402)))
    # librdkafka waits topic.metadata.propagation.max.ms (30 s) for a topic to appear before calling it missing
    env = {
        "CRM_SCORER_PRODUCER__DELIVERY_TIMEOUT_MS": "5000",
        "CRM_SCORER_KAFKA__EXTRA": '{"topic.metadata.propagation.max.ms": 3000}',
    }
    with ScorerProcess(lanes, tmp_path, env=env) as scorer:
        assert scorer.process is not None
        code = scorer.process.wait(60)
    assert code != 0
    assert f"cannot publish a result to topic '{lanes.output}'" in scorer.log, scorer.log[-3000:]
    assert committed_total(lanes) == 0, "offsets of results never published were committed"
