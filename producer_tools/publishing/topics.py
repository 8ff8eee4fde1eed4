"""Topic administration and read-back for the tools and the integration tests.

Counting goes through reading on purpose, on every broker: on a topic written in transactions, offsets also
number commit/abort markers and aborted records, so log-end minus start overcounts what a ``read_committed``
subscriber sees (and Tansu's ListOffsets answers the last batch's base offset + 1, which undercounts).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import NamedTuple

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from producer_tools.errors import BrokerError
from producer_tools.publishing.connection import client_config

# -1 lets the cluster choose (KIP-464): one on the local broker, the configured default on a real cluster.
BROKER_DEFAULT_REPLICATION = -1
_BATCH = 500
_POLL_SECONDS = 0.2


class RecordedMessage(NamedTuple):
    """One message read back from a topic."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    partition: int
    offset: int


def ensure_topics(
    bootstrap_servers: str,
    topics: Mapping[str, int],
    timeout: float = 10.0,
    *,
    replication_factor: int = BROKER_DEFAULT_REPLICATION,
) -> None:
    """Create each topic (name -> partitions) unless it exists, then wait until metadata lists them all.

    An existing topic is left as it is, whatever its partition count.

    Raises:
        BrokerError: the broker refused a creation or the topics did not appear within ``timeout`` seconds.
    """
    admin = AdminClient(client_config(bootstrap_servers))
    new = [NewTopic(name, num_partitions=n, replication_factor=replication_factor) for name, n in topics.items()]
    if not new:
        return
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BrokerError(f"topic {name!r} on {bootstrap_servers}: creation failed: {exc}") from exc
    _wait_for_topics(admin, list(topics), timeout, bootstrap_servers)


def _wait_for_topics(admin: AdminClient, names: list[str], timeout: float, bootstrap_servers: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        missing = _missing_topics(admin.list_topics(timeout=timeout), names)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"topics {missing} not in {bootstrap_servers} metadata after {timeout:.0f}s")
        time.sleep(0.1)


def _missing_topics(metadata: ClusterMetadata, names: Iterable[str]) -> list[str]:
    missing = []
    for name in names:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None or not topic.partitions:
            missing.append(name)
    return missing


def count_messages(
    bootstrap_servers: str, topic: str, timeout: float = 30.0, *, idle: float = 2.0, read_committed: bool = True
) -> int:
    """Number of messages in ``topic``, counted by reading every partition from the beginning.

    Reading stops when every partition reports its end or nothing arrives for ``idle`` seconds.

    Raises:
        BrokerError: the topic does not exist, a fetch fails, or reading takes longer than ``timeout`` seconds.
    """
    count = 0

    def tally(_: Message) -> None:
        nonlocal count
        count += 1

    scan_topic(bootstrap_servers, topic, tally, timeout, idle, read_committed)
    return count


def read_all(
    bootstrap_servers: str, topic: str, timeout: float = 30.0, *, idle: float = 2.0, read_committed: bool = True
) -> list[RecordedMessage]:
    """Every message in ``topic``, in partition then offset order. Stops and raises as ``count_messages``."""
    messages: list[RecordedMessage] = []

    def keep(message: Message) -> None:
        messages.append(_recorded(message))

    scan_topic(bootstrap_servers, topic, keep, timeout, idle, read_committed)
    return sorted(messages, key=lambda m: (m.partition, m.offset))


def _recorded(message: Message) -> RecordedMessage:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = tuple((name, value.encode() if isinstance(value, str) else value) for name, value in pairs)
    partition, offset = message.partition(), message.offset()
    assert partition is not None and offset is not None  # a delivered message always has both
    return RecordedMessage(message.key(), message.value(), headers, partition, offset)


def follow(
    bootstrap_servers: str, topic: str, from_beginning: bool, idle_timeout: float | None
) -> Iterator[RecordedMessage]:
    """Messages of every partition of ``topic`` as they arrive; ends after ``idle_timeout`` seconds of silence
    (never when None).

    Raises:
        BrokerError: the topic does not exist or a fetch fails.
    """
    consumer = Consumer(
        {
            **client_config(bootstrap_servers),
            # assign() never joins the group: a unique id shares nothing and costs no rebalance.
            "group.id": f"crm-tail-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "fetch.wait.max.ms": 100,
        }
    )
    try:
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in _partitions(consumer, bootstrap_servers, topic, 10)])
        last_seen = time.monotonic()
        while idle_timeout is None or time.monotonic() - last_seen < idle_timeout:
            for message in consumer.consume(_BATCH, timeout=_POLL_SECONDS):
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise BrokerError(f"reading {topic!r} on {bootstrap_servers}: {error}")
                if error is None:
                    last_seen = time.monotonic()
                    yield _recorded(message)
    finally:
        consumer.close()


def scan_topic(
    bootstrap_servers: str,
    topic: str,
    handle: Callable[[Message], None],
    timeout: float = 30.0,
    idle: float = 2.0,
    read_committed: bool = True,
) -> None:
    """Call ``handle`` on every message of ``topic`` from the beginning; stops and raises as ``count_messages``.

    Ends are taken from fetch responses (partition EOF), not from ListOffsets: see the module docstring.
    """
    consumer = Consumer(
        {
            **client_config(bootstrap_servers),
            # assign() never joins the group, so this id costs no rebalance; it is unique so nothing is shared.
            "group.id": f"crm-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # Offset 0 plus reset-to-earliest skips the ListOffsets round that OFFSET_BEGINNING costs (~0.5 s).
            "auto.offset.reset": "earliest",
            # Answers as soon as data arrives on Apache Kafka; Tansu holds every fetch for the full wait.
            "fetch.wait.max.ms": 50,
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
        }
    )
    try:
        partitions = _partitions(consumer, bootstrap_servers, topic, timeout)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        _drain(consumer, set(partitions), handle, timeout, idle, f"{topic!r} on {bootstrap_servers}")
    finally:
        consumer.close()


def _partitions(consumer: Consumer, bootstrap_servers: str, topic: str, timeout: float) -> list[int]:
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    except KafkaException as exc:  # the broker answered a moment ago and went away
        raise BrokerError(f"topic {topic!r} on {bootstrap_servers}: no metadata: {exc.args[0].str()}") from exc
    if metadata is None or metadata.error is not None or not metadata.partitions:
        error = metadata.error if metadata is not None else "not in metadata"
        raise BrokerError(f"topic {topic!r} on {bootstrap_servers}: cannot read it: {error}")
    return sorted(metadata.partitions)


def _drain(
    consumer: Consumer,
    pending: set[int],
    handle: Callable[[Message], None],
    timeout: float,
    idle: float,
    source: str,
) -> None:
    deadline = time.monotonic() + timeout
    last_progress = time.monotonic()
    while pending:
        batch = consumer.consume(_BATCH, timeout=_POLL_SECONDS)
        now = time.monotonic()
        for message in batch:
            error = message.error()
            if error is None:
                handle(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                pending.discard(message.partition() or 0)
            else:
                raise BrokerError(f"reading {source}: {error}")
        if batch:
            last_progress = now
        elif now - last_progress > idle:
            return
        if now > deadline:
            raise BrokerError(f"reading {source}: still receiving after {timeout:.0f}s")
