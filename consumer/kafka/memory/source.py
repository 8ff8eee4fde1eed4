"""An in-memory consumer-group member: assignment at the first ``consume()``, stored and committed offsets,
rebalances served inside ``consume()``, read_committed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, Message, TopicPartition

from consumer.kafka.clients import RebalanceCallback
from consumer.kafka.memory.records import TP

if TYPE_CHECKING:
    from consumer.kafka.memory.broker import MemoryBroker


class MemorySource:
    """A consumer-group member of its broker's one group (the ``Source`` the loop needs)."""

    def __init__(self, broker: MemoryBroker, conf: dict[str, Any]) -> None:
        self.broker = broker
        self.conf = conf
        self.closed = False
        self._topics: list[str] = []
        self._callbacks: dict[str, RebalanceCallback | None] = {}
        self._assignment: list[TP] = []
        self._positions: dict[TP, int] = {}
        self._stored: dict[TP, int] = {}
        self.paused: set[TP] = set()
        self._joined = False
        self.consume_calls = 0

    @property
    def auto_commit(self) -> bool:
        return bool(self.conf.get("enable.auto.commit", True))

    def subscribe(
        self,
        topics: list[str],
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        on_lost: RebalanceCallback | None = None,
    ) -> None:
        self._topics = list(topics)
        self._callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        self._check_open()
        self.consume_calls += 1
        if self.auto_commit and self._stored:
            self._commit_stored()
        self._serve_rebalance()
        out: list[Message] = []
        for tp in self._assignment:
            if tp in self.paused:
                continue
            log = self.broker.logs[tp]
            position = self._positions[tp]
            while position < len(log) and len(out) < num_messages:
                record = log[position]
                position += 1
                if self.broker._visible(record):
                    out.append(
                        Message(
                            topic=tp[0],
                            partition=tp[1],
                            offset=position - 1,
                            key=record.key,
                            value=record.value,
                            headers=record.headers,
                        )
                    )
            self._positions[tp] = position
        return out

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self._assignment]

    def store_offsets(self, message: Message | None = None, offsets: list[TopicPartition] | None = None) -> None:
        for tp in offsets or []:
            if (tp.topic, tp.partition) not in self._assignment:
                raise KafkaException(KafkaError(KafkaError._STATE, "store_offsets: partition not assigned"))
            self._stored[(tp.topic, tp.partition)] = tp.offset

    def commit(self, *, asynchronous: Literal[False]) -> list[TopicPartition]:
        self._check_open()
        if not self._stored:
            raise KafkaException(KafkaError(KafkaError._NO_OFFSET))
        return self._commit_stored()

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        known = self.broker.committed
        return [
            TopicPartition(tp.topic, tp.partition, known.get((tp.topic, tp.partition), OFFSET_INVALID))
            for tp in partitions
        ]

    def seek(self, partition: TopicPartition) -> None:
        tp = (partition.topic, partition.partition)
        if tp not in self._assignment:
            raise KafkaException(KafkaError(KafkaError._STATE, "seek: partition not assigned"))
        offset = partition.offset
        self._positions[tp] = 0 if offset < 0 else offset  # OFFSET_BEGINNING; the tests use earliest

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def position(self, tp: TP) -> int:
        return self._positions[tp]

    def consumer_group_metadata(self) -> Any:
        return self.conf.get("group.id", "")

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        return 0, len(self.broker.logs[(partition.topic, partition.partition)])

    def close(self) -> None:
        if self.closed:
            return
        try:  # librdkafka closes the handle even when the revoke callback raises (and re-raises it after)
            if self._assignment:
                self._revoke("revoke")
            if self.auto_commit and self._stored:
                self._commit_stored()
        finally:
            self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("Consumer closed")

    def _serve_rebalance(self) -> None:
        kind = self.broker._take_rebalance(self)
        if kind is not None:
            self._revoke(kind)
            return  # the next consume() joins again
        if not self._joined and id(self) not in self.broker.stuck_rejoins:
            self._joined = True
            partitions = [tp for topic in self._topics for tp in self.broker.partitions_of(topic)]
            if (on_assign := self._callbacks.get("assign")) is not None:
                on_assign(self, [TopicPartition(t, p) for t, p in partitions])
            self._assignment = partitions
            for tp in partitions:
                committed = self.broker.committed.get(tp)
                self._positions[tp] = committed if committed is not None else 0  # auto.offset.reset=earliest

    def _revoke(self, kind: Literal["revoke", "lose"]) -> None:
        partitions = [TopicPartition(t, p) for t, p in self._assignment]
        callback = self._callbacks.get("revoke" if kind == "revoke" else "lost")
        if callback is not None:
            callback(self, partitions)
        if kind == "revoke" and self.auto_commit and self._stored:
            self._commit_stored()  # librdkafka commits what was stored when the partitions go
        self._assignment = []
        self._positions.clear()
        self._stored.clear()
        # not self.paused: librdkafka keeps an application's pause across a re-assignment (on Apache Kafka a worker
        # that paused its partitions, lost its session and got them back consumed nothing more); resume() ends it
        self._joined = False

    def _commit_stored(self) -> list[TopicPartition]:
        stored, self._stored = self._stored, {}
        self.broker.committed.update(stored)
        committed = [TopicPartition(t, p, o) for (t, p), o in stored.items()]
        on_commit = self.conf.get("on_commit")
        if on_commit is not None:
            on_commit(None, committed)
        return committed
