"""End to end over SASL_SSL with SCRAM-SHA-512, with exactly the ACLs ``crm-scorer acls`` prints: every event
scored, in both guarantees, and a principal without an ACL refused."""

from __future__ import annotations

import time
from functools import partial

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from tests.integration.faults.support import wait_until
from tests.integration.harness import ScorerProcess
from tests.integration.security.support import SecureLanes


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_the_scorer_with_exactly_the_documented_acls_scores_everything(
    secure_lanes: SecureLanes, guarantee: str
) -> None:
    secure_lanes.grant(secure_lanes.scorer_acls(guarantee))
    events = secure_lanes.feed(200, seed=1601)
    env = secure_lanes.scorer_env()
    with ScorerProcess(secure_lanes.lanes, secure_lanes.folder, "--guarantee", guarantee, env=env) as scorer:
        wait_until(lambda: secure_lanes.committed() >= len(events), 90, "every offset committed", scorer)
        scorer.stop()
    scored = secure_lanes.scored()
    assert set(scored) == events
    assert sum(scored.values()) == len(events), "duplicates in a run without faults"
    assert "uthoriz" not in scorer.log, scorer.log[-3000:]


def test_each_principal_is_refused_what_its_acls_do_not_allow(secure_lanes: SecureLanes) -> None:
    lanes, kafka = secure_lanes.lanes, secure_lanes.kafka
    secure_lanes.grant(secure_lanes.scorer_acls("exactly_once"))
    secure_lanes.feed(5, seed=1606)  # grants the producer tools theirs
    # the producer tools may write the input, not the scores; the scorer may not write its own input
    for user, topic in (("crm-producer", lanes.output), ("crm-scorer", lanes.input)):
        producer = Producer(kafka.client_config(user, **{"enable.idempotence": True}))
        errors: list[KafkaError] = []
        producer.produce(topic, b"x", on_delivery=partial(_record, errors))
        producer.flush(15)
        assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED], (user, topic, errors)
    # the monitor, with no ACL granted here, may not read the input
    consumer = Consumer(
        kafka.client_config("crm-monitor", **{"group.id": lanes.group, "auto.offset.reset": "earliest"})
    )
    try:
        consumer.subscribe([lanes.input])
        deadline, refused = time.monotonic() + 15, None
        while refused is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is not None:
                refused = msg.error().code()
            assert msg is None or msg.error() is not None, "the monitor read an application event"
        assert refused in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED), refused
    finally:
        consumer.close()


def _record(errors: list[KafkaError], err: KafkaError | None, _msg: object) -> None:
    if err is not None:
        errors.append(err)
