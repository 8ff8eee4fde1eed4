"""Publishing on the model control topic, and creating the topics a challenger needs, outside the scoring path.

``crm-scorer models shadow|promote`` and the monitor's rollback rule publish here; the scorer's workers read the
topic (``consumer.kafka.model_control``). The monitor may not import the scoring path's Kafka edge, so the few
producer and admin calls live in this neutral module.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic


def publish(producer_conf: dict[str, Any], topic: str, key: str, value: bytes, timeout_s: float = 30.0) -> None:
    """Publish ``value`` under ``key`` on the compacted control ``topic`` (created, one partition, if missing).

    Raises:
        KafkaException: the topic cannot be created or the record is not acknowledged within ``timeout_s``.
    """
    conf = {k: v for k, v in producer_conf.items() if not k.startswith("transaction")}
    ensure_topic(conf, topic, 1, {"cleanup.policy": "compact"}, timeout_s)
    producer = Producer(conf)
    errors: list[KafkaError | None] = []
    producer.produce(topic, value, key.encode(), on_delivery=lambda err, _m: errors.append(err))
    if producer.flush(timeout_s) or not errors:
        raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, f"{topic}: record not acknowledged"))
    if (error := errors[0]) is not None:
        raise KafkaException(error)


def ensure_copartitioned(conf: dict[str, Any], topic: str, like: str, timeout_s: float = 30.0) -> int:
    """Create ``topic`` with as many partitions as ``like`` (the results topic), or add partitions to reach it, so a
    key lands in the same partition number in both; returns that number.

    Raises:
        KafkaException: ``like`` does not exist, or the topic cannot be created or grown.
    """
    conf = {k: v for k, v in conf.items() if not k.startswith("transaction")}
    topics = AdminClient(conf).list_topics(timeout=timeout_s).topics
    if like not in topics or topics[like].error is not None:
        raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, f"{like} does not exist"))
    partitions = len(topics[like].partitions)
    if topic in topics and len(topics[topic].partitions) < partitions:
        AdminClient(conf).create_partitions([NewPartitions(topic, partitions)])[topic].result(timeout_s)
    elif topic not in topics:
        ensure_topic(conf, topic, partitions, {}, timeout_s)
    return partitions


def ensure_topic(conf: dict[str, Any], topic: str, partitions: int, config: dict[str, str], timeout_s: float) -> None:
    admin = AdminClient(conf)
    if topic in admin.list_topics(timeout=timeout_s).topics:
        return
    # replication_factor -1: the broker's default.replication.factor
    new = NewTopic(topic, num_partitions=partitions, replication_factor=-1, config=config)
    try:
        admin.create_topics([new], operation_timeout=timeout_s)[topic].result(timeout_s)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another operator created it meanwhile
            raise
