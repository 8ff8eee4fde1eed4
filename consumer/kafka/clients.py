"""What the run loop needs of a Kafka consumer (``Source``) and of a producer (``Sink``), and how it makes them.

Both are the subset of librdkafka's ``Consumer`` and ``Producer`` the loop, the guarantees and the publisher
call, so the real clients satisfy them as they are. ``Clients`` makes them from a librdkafka dict; the default
makes the real ones, :mod:`consumer.kafka.memory` makes in-memory ones (the way httpx's ``MockTransport``
stands in for the network), so the loop runs in a unit test or a benchmark with no broker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

Headers = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]]
DeliveryCallback = Callable[[KafkaError | None, Message], None]
# (the consumer, the partitions); librdkafka serves these inside consume() and close()
RebalanceCallback = Callable[[Any, list[TopicPartition]], None]


class Source(Protocol):
    """The consumer side: group membership, batches of messages, offsets."""

    def subscribe(
        self,
        topics: list[str],
        on_assign: RebalanceCallback | None = ...,
        on_revoke: RebalanceCallback | None = ...,
        on_lost: RebalanceCallback | None = ...,
    ) -> None: ...

    def consume(self, num_messages: int = ..., timeout: float = ...) -> list[Message]: ...

    def assignment(self) -> list[TopicPartition]: ...

    def store_offsets(self, message: Message | None = ..., offsets: list[TopicPartition] | None = ...) -> None: ...

    def commit(self, *, asynchronous: Literal[False]) -> list[TopicPartition]: ...

    def committed(self, partitions: list[TopicPartition], timeout: float = ...) -> list[TopicPartition]: ...

    def seek(self, partition: TopicPartition) -> None: ...

    def pause(self, partitions: list[TopicPartition]) -> None: ...

    def resume(self, partitions: list[TopicPartition]) -> None: ...

    def consumer_group_metadata(self) -> Any: ...

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = ..., cached: bool = ...
    ) -> tuple[int, int]: ...

    def close(self) -> None: ...


class Sink(Protocol):
    """The producer side: produce with a delivery callback, serve the callbacks, transactions."""

    def produce(
        self,
        topic: str,
        value: str | bytes | None = ...,
        key: str | bytes | None = ...,
        *,
        on_delivery: DeliveryCallback | None = ...,
        headers: Headers | None = ...,
    ) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...

    def purge(self) -> None: ...

    def init_transactions(self, timeout: float = ...) -> None: ...

    def begin_transaction(self) -> None: ...

    def send_offsets_to_transaction(
        self, positions: list[TopicPartition], group_metadata: Any, timeout: float = ...
    ) -> None: ...

    def commit_transaction(self, timeout: float = ...) -> None: ...

    def abort_transaction(self, timeout: float = ...) -> None: ...


def next_offsets(messages: Sequence[Message]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), the offset after the last of ``messages``: what a commit of them stores."""
    offsets: dict[tuple[str, int], int] = {}
    for m in messages:
        tp = (m.topic() or "", m.partition() or 0)
        offsets[tp] = max(offsets.get(tp, 0), (m.offset() or 0) + 1)
    return offsets


def first_offsets(messages: Sequence[Message]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), the offset of the first of ``messages``: where to seek to read them again."""
    offsets: dict[tuple[str, int], int] = {}
    for m in messages:
        tp = (m.topic() or "", m.partition() or 0)
        offsets[tp] = min(offsets.get(tp, m.offset() or 0), m.offset() or 0)
    return offsets


def _consumer(conf: dict[str, Any]) -> Source:
    return Consumer(conf)


def _producer(conf: dict[str, Any]) -> Sink:
    return Producer(conf)


@dataclass(frozen=True)
class Clients:
    """Makes a worker's consumer and producers from their librdkafka dicts (default: librdkafka's own)."""

    source: Callable[[dict[str, Any]], Source] = _consumer
    sink: Callable[[dict[str, Any]], Sink] = _producer
