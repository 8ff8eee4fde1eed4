"""Exactly-once on Apache Kafka: forced aborts never make an aborted result visible, and nothing is lost.

Each scenario forces the scorer's transaction to abort while events flow, then reads everything back as a
``read_committed`` subscriber would: every event scored exactly once (0 duplicates), none lost, and no record of
an aborted transaction visible (the fencing scenario writes an aborted marker of its own; seeing it would fail
the read-back, which decodes every value). The kill -9 between ``produce`` and ``commit_transaction`` is the
fault suite's kill -9 scenario in ``exactly_once`` (test_process_faults.py, parametrised by guarantee).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from producer_tools.servers.broker import LocalBroker
from tests.integration.conftest import is_tansu
from tests.integration.faults.producing import Feeder, produce_tracked
from tests.integration.faults.support import (
    Expected,
    committed_total,
    conservation,
    count_topic,
    pairs,
    read_outcomes,
    valid_messages,
    wait_until,
)
from tests.integration.harness import Lanes, ScorerProcess

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(is_tansu(), reason="Tansu does not hide aborted transactions from read_committed"),
]
EXACTLY_ONCE = ("--guarantee", "exactly_once")
ABORTED_MARKER = b"aborted-by-the-test: a read_committed reader must never see this"


def transactional_id(lanes: Lanes, scorer: ScorerProcess, worker: int = 0) -> str:
    """The id the scorer's worker uses (stable per group, input, instance and worker: a restart fences its zombie)."""
    return f"{lanes.group}-{lanes.input}-{scorer.instance_id}-{worker}"


def test_fenced_by_a_second_producer_with_its_transactional_id_the_scorer_recovers(
    lanes: Lanes, tmp_path: Path
) -> None:
    started = time.monotonic()
    messages = valid_messages(20_000, seed=301)
    with (
        ScorerProcess(lanes, tmp_path, *EXACTLY_ONCE) as scorer,
        Feeder(lanes.bootstrap, lanes.input, pairs(messages), rate=2000) as feeder,
    ):
        scorer.wait_for_log("worker 0 assigned")
        wait_until(lambda: count_topic(lanes.bootstrap, lanes.output) > 3000, 60, "3,000 results", scorer)
        # A second instance with the same id, as a zombie's replacement would be: the scorer's open transaction
        # is aborted by the coordinator and its producer fenced. Then the intruder writes and aborts its own.
        intruder = Producer({"bootstrap.servers": lanes.bootstrap, "transactional.id": transactional_id(lanes, scorer)})
        intruder.init_transactions(30)
        intruder.begin_transaction()
        intruder.produce(lanes.output, ABORTED_MARKER, b"intruder")
        intruder.flush(10)
        intruder.abort_transaction(30)
        scorer.wait_for_log("fenced", 60)
        feeder.join()
        wait_until(lambda: committed_total(lanes) >= len(messages), 120, "every offset committed", scorer)
        scorer.stop()
    expected = Expected(frozenset(m[2] for m in messages))
    row = conservation(
        "10a. fenced by a second producer with its transactional id",
        expected,
        read_outcomes(lanes),
        time.monotonic() - started,
        "the scorer's open transaction aborted; it re-initialised and rescored",
        "exactly_once",
    )
    assert row.duplicates == 0


def test_broker_paused_past_the_transaction_timeout_aborts_and_rescores(
    lanes: Lanes, local_broker: LocalBroker, tmp_path: Path
) -> None:
    started = time.monotonic()
    backlog, live = valid_messages(20_000, seed=302), valid_messages(10_000, seed=303)
    messages = backlog + live
    produce_tracked(lanes.bootstrap, lanes.input, pairs(backlog))
    # transaction.timeout.ms = delivery timeout + 10 s = 15 s: the 25 s pause outlives the open transaction.
    env = {"CRM_SCORER_PRODUCER__DELIVERY_TIMEOUT_MS": "5000"}
    with (
        ScorerProcess(lanes, tmp_path, *EXACTLY_ONCE, env=env) as scorer,
        Feeder(lanes.bootstrap, lanes.input, pairs(live), rate=1000) as feeder,
    ):
        wait_until(lambda: count_topic(lanes.bootstrap, lanes.output) > 3000, 60, "3,000 results", scorer)
        with local_broker.paused():
            time.sleep(25)
            assert scorer.process is not None and scorer.process.poll() is None, scorer.log[-3000:]
        feeder.join()
        wait_until(lambda: committed_total(lanes) >= len(messages), 180, "every offset committed", scorer)
        scorer.stop()
    # Once the coordinator has timed the transaction out, the producer learns it either as an abortable error or
    # (the coordinator bumped the epoch when it aborted) as fenced: both paths must rescore the batch.
    aborted = "transaction aborted" in scorer.log or "was fenced" in scorer.log
    assert aborted, f"no transaction aborted: nothing was tested\n{scorer.log[-3000:]}"
    assert "starting a replacement" not in scorer.log, "the abort cost a worker"
    row = conservation(
        "10b. broker paused 25 s, past the transaction timeout",
        Expected(frozenset(m[2] for m in messages)),
        read_outcomes(lanes),
        time.monotonic() - started,
        "open transaction aborted by the coordinator; the batch rescored in a new one",
        "exactly_once",
    )
    assert row.duplicates == 0
