"""An in-memory producer: deliveries reported by ``poll()`` / ``flush()``, transactions, fencing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from consumer.kafka.clients import DeliveryCallback, Headers
from consumer.kafka.memory.records import Record, Transaction

if TYPE_CHECKING:
    from consumer.kafka.memory.broker import MemoryBroker


class MemorySink:
    """A producer (the ``Sink`` the loop needs): deliveries reported by ``poll()`` / ``flush()``."""

    def __init__(self, broker: MemoryBroker, conf: dict[str, Any]) -> None:
        self.broker = broker
        self.conf = conf
        self.produced = 0
        self.purged = 0
        self._queue: list[tuple[str, Record, DeliveryCallback | None]] = []
        self._transaction: Transaction | None = None
        self._initialised = False
        self._fenced = False

    @property
    def transactional_id(self) -> str | None:
        value = self.conf.get("transactional.id")
        return str(value) if value else None

    def produce(
        self,
        topic: str,
        value: str | bytes | None = None,
        key: str | bytes | None = None,
        *,
        on_delivery: DeliveryCallback | None = None,
        headers: Headers | None = None,
    ) -> None:
        self._check_usable()
        self.broker._raise_if_failing("produce")
        if self.transactional_id and self._transaction is None:
            raise KafkaException(KafkaError(KafkaError._STATE, "produce outside a transaction"))
        record = Record(_as_bytes(key), _as_bytes(value), headers)
        self._queue.append((topic, record, on_delivery))
        self.produced += 1

    def poll(self, timeout: float = 0.0) -> int:
        if self.broker.silent:
            return 0
        queue, self._queue = self._queue, []
        for topic, record, on_delivery in queue:
            error = self.broker._delivery_error(topic, record)
            offset = -1
            if error is None:
                if self._transaction is not None:
                    record.transaction = self._transaction.id
                log = self.broker.logs[(topic, 0)]
                log.append(record)
                offset = len(log) - 1
                if self._transaction is not None:
                    self._transaction.records.append(((topic, 0), offset))
            if on_delivery is not None:
                message = Message(
                    topic=topic,
                    partition=0,
                    offset=offset,
                    key=record.key,
                    value=record.value,
                    headers=record.headers,
                    error=error,
                )
                on_delivery(error, message)
        return len(queue)

    def flush(self, timeout: float = 0.0) -> int:
        self.poll()
        return 0

    def purge(self) -> None:
        """What is not yet delivered fails with _PURGE_QUEUE, as librdkafka reports it."""
        queue, self._queue = self._queue, []
        self.purged += len(queue)
        for topic, record, on_delivery in queue:
            if on_delivery is not None:
                error = KafkaError(KafkaError._PURGE_QUEUE)
                on_delivery(error, Message(topic=topic, key=record.key, value=record.value, error=error))

    def init_transactions(self, timeout: float = -1) -> None:
        self._check_usable()
        self.broker._raise_if_failing("init_transactions")
        if self.transactional_id is None:
            raise KafkaException(KafkaError(KafkaError._NOT_CONFIGURED, "no transactional.id"))
        self.broker._claim(self.transactional_id, self)
        self._initialised = True

    def begin_transaction(self) -> None:
        self._check_usable()
        self.broker._raise_if_failing("begin_transaction")
        if not self._initialised or self._transaction is not None:
            raise KafkaException(KafkaError(KafkaError._STATE, "begin_transaction in the wrong state"))
        self._transaction = self.broker._begin()

    def send_offsets_to_transaction(
        self, positions: list[TopicPartition], group_metadata: Any, timeout: float = -1
    ) -> None:
        self._check_usable()
        self.broker._raise_if_failing("send_offsets_to_transaction")
        transaction = self._open_transaction()
        transaction.offsets.update({(tp.topic, tp.partition): tp.offset for tp in positions})

    def commit_transaction(self, timeout: float = -1) -> None:
        self._check_usable()
        self.poll()  # librdkafka flushes before it commits
        self.broker._raise_if_failing("commit_transaction")
        transaction = self._open_transaction()
        self._transaction = None
        self.broker.committed_transactions.add(transaction.id)
        self.broker.committed.update(transaction.offsets)

    def abort_transaction(self, timeout: float = -1) -> None:
        self._check_usable()
        self.broker._raise_if_failing("abort_transaction")
        self.purge()
        transaction = self._open_transaction()
        self._transaction = None
        self.broker.aborted_transactions.add(transaction.id)

    def _open_transaction(self) -> Transaction:
        if self._transaction is None:
            raise KafkaException(KafkaError(KafkaError._STATE, "no transaction is open"))
        return self._transaction

    def _check_usable(self) -> None:
        if self._fenced:
            raise KafkaException(KafkaError(KafkaError._FENCED, "producer fenced by a newer instance", fatal=True))


def _as_bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value
