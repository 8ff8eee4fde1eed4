"""End to end over SASL_SSL with SCRAM-SHA-512, with exactly the ACLs ``crm-scorer acls`` prints: every event
scored, in both guarantees, no secret in the DEBUG log or ``/metrics``, and a principal without an ACL refused."""

from __future__ import annotations

import json
import time
from functools import partial

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from tests.integration.faults.support import http_get, telemetry_url, wait_until
from tests.integration.harness import ScorerProcess
from tests.integration.security.support import SecureLanes


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_the_scorer_with_exactly_the_documented_acls_scores_everything(
    secure_lanes: SecureLanes, guarantee: str
) -> None:
    secure_lanes.grant(secure_lanes.scorer_acls(guarantee))
    events = secure_lanes.feed(200, seed=1601)
    # at_least_once runs at DEBUG with librdkafka's security, broker and conf debugging: no secret may show
    debug = {"log__level": "DEBUG", "kafka__extra": json.dumps({"debug": "security,broker,conf"})}
    env = secure_lanes.scorer_env(**(debug if guarantee == "at_least_once" else {}))
    with ScorerProcess(secure_lanes.lanes, secure_lanes.folder, "--guarantee", guarantee, env=env) as scorer:
        url = telemetry_url(scorer)
        wait_until(lambda: secure_lanes.committed() >= len(events), 90, "every offset committed", scorer)
        status, metrics = http_get(f"{url}/metrics", timeout=10)
        scorer.stop()
    scored = secure_lanes.scored()
    assert set(scored) == events
    assert sum(scored.values()) == len(events), "duplicates in a run without faults"
    assert "uthoriz" not in scorer.log, scorer.log[-3000:]
    assert secure_lanes.kafka.security is not None
    secret = secure_lanes.kafka.security.password("crm-scorer")
    assert status == 200 and "crm_scorer_" in metrics and secret not in metrics
    assert secret not in scorer.log
    if guarantee == "at_least_once":
        assert " DEBUG " in scorer.log and "SASL" in scorer.log, "the log is not at DEBUG with librdkafka's debugging"


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
