"""The refusal a missing ACL turns into, as values (no broker): which resource and permission it names, and which
later delivery shows it is over."""

from __future__ import annotations

from confluent_kafka import KafkaError

from consumer.kafka.delivery import Verdict, delivery_verdict, refusal_of


def test_each_authorization_error_names_its_resource_and_permission() -> None:
    topic = refusal_of(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), "crm.scores")
    txn = refusal_of(KafkaError(KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED), "crm-scorer-crm.applications-h-0")
    cluster = refusal_of(KafkaError(KafkaError.CLUSTER_AUTHORIZATION_FAILED), "crm.scores")
    assert topic is not None and (topic.resource, topic.operation) == ("Topic:crm.scores", "Write")
    assert txn is not None and txn.resource == "TransactionalId:crm-scorer-crm.applications-h-0"
    assert cluster is not None and (cluster.resource, cluster.operation) == ("Cluster:kafka-cluster", "IdempotentWrite")
    assert "refuses Write on Topic:crm.scores" in topic.line() and "until the ACL is granted" in topic.line()
    assert refusal_of(KafkaError(KafkaError._MSG_TIMED_OUT), "crm.scores") is None


def test_a_refusal_is_retried_never_dead_lettered_or_fatal() -> None:
    for code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED):
        assert delivery_verdict(KafkaError(code), is_dead_letter=False) is Verdict.RETRY
        assert delivery_verdict(KafkaError(code), is_dead_letter=True) is Verdict.RETRY


def test_only_a_delivery_to_the_refused_topic_ends_a_topic_refusal() -> None:
    output = refusal_of(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), "crm.scores")
    either = refusal_of(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), "crm.applications.dlq or crm.scores")
    txn = refusal_of(KafkaError(KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED), "crm-scorer-x-0")
    assert output is not None and either is not None and txn is not None
    assert output.covers("crm.scores") and not output.covers("crm.applications.dlq")
    assert either.covers("crm.scores") and either.covers("crm.applications.dlq")
    assert txn.covers("crm.scores")
