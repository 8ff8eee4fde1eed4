"""An in-memory Kafka for the run loop: one process, no broker, no threads, deterministic.

``MemoryBroker`` holds topics (lists of records per partition), one consumer group's committed offsets and
the transactional ids in use; ``broker.clients()`` makes the loop's ``Source`` and ``Sink`` from it, the way
httpx's ``MockTransport`` stands in for the network. It keeps the parts of Kafka's contract the loop relies
on, and lets a test break them on purpose:

- a consumer joins at its first ``consume()`` and is assigned every partition of its topics (``on_assign``);
  ``revoke()`` and ``lose()`` take them away at the next ``consume()`` (``on_revoke`` / ``on_lost``), as
  librdkafka serves rebalances inside ``consume()``; ``close()`` revokes, commits what was stored, leaves;
- offsets: ``store_offsets`` then ``commit`` (or auto-commit at every ``consume()`` with
  ``enable.auto.commit``; the interval is not simulated), ``on_commit`` for every answered commit;
- read_committed: records of an open or aborted transaction are never consumed;
- deliveries are reported by ``poll()`` / ``flush()``: acknowledged unless ``fail_deliveries()`` says otherwise;
- transactions: ``send_offsets_to_transaction`` commits the group's offsets with the transaction; a
  ``fail_next(call, error)`` makes the next such call raise; a second producer initialising the same
  transactional id fences the first, whose every later call raises ``_FENCED`` (fatal).

What it does not model: partitioning by key (every record goes to partition 0 of its topic unless the topic
has more and a test appends to them), timeouts, and more than one member per group.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, Message, TopicPartition

from consumer.kafka.clients import Clients, DeliveryCallback, Headers, RebalanceCallback

TP = tuple[str, int]


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None
    transaction: int | None = None  # the id of the transaction it was produced in; None: not transactional


@dataclass
class _Transaction:
    id: int
    records: list[tuple[TP, int]] = field(default_factory=list)  # where each record of it landed
    offsets: dict[TP, int] = field(default_factory=dict)


class MemoryBroker:
    """Topics, one group's committed offsets, transactional ids; the factory of in-memory clients."""

    def __init__(self, partitions: int = 1) -> None:
        self.partitions = partitions
        self.logs: dict[TP, list[Record]] = defaultdict(list)
        self.committed: dict[TP, int] = {}  # the group's committed offsets
        self.committed_transactions: set[int] = set()
        self.aborted_transactions: set[int] = set()
        self._next_transaction = 0
        self._owners: dict[str, MemorySink] = {}  # transactional id -> the producer that holds it
        self._failures: list[Callable[[str, Record], KafkaError | None]] = []
        self._fail_next: dict[str, list[KafkaError]] = defaultdict(list)
        self._pending_rebalance: list[tuple[Literal["revoke", "lose"], MemorySource]] = []
        self.sources: list[MemorySource] = []
        self.sinks: list[MemorySink] = []

    def clients(self) -> Clients:
        return Clients(source=self.source, sink=self.sink)

    def source(self, conf: dict[str, Any]) -> MemorySource:
        source = MemorySource(self, conf)
        self.sources.append(source)
        return source

    def sink(self, conf: dict[str, Any]) -> MemorySink:
        sink = MemorySink(self, conf)
        self.sinks.append(sink)
        return sink

    # -- what a test does -------------------------------------------------------------------------------------

    def append(self, topic: str, value: bytes, key: bytes | None = None, partition: int = 0) -> int:
        """Put a record on ``topic`` (committed, as a non-transactional producer would); returns its offset."""
        log = self.logs[(topic, partition)]
        log.append(Record(key, value))
        return len(log) - 1

    def records(self, topic: str, partition: int = 0, *, committed_only: bool = True) -> list[Record]:
        """What a read_committed consumer would see of the partition (or everything written to it)."""
        return [r for r in self.logs[(topic, partition)] if not committed_only or self._visible(r)]

    def fail_deliveries(self, decide: Callable[[str, Record], KafkaError | None]) -> None:
        """From now on each delivery asks ``decide(topic, record)``; an error fails it (None: acknowledged)."""
        self._failures.append(decide)

    def heal(self) -> None:
        """Deliveries are acknowledged again."""
        self._failures.clear()

    def fail_next(self, call: str, error: KafkaError) -> None:
        """The next ``call`` (``commit_transaction``, ``send_offsets_to_transaction``, ...) of any producer raises."""
        self._fail_next[call].append(error)

    def revoke(self, source: MemorySource) -> None:
        """A graceful rebalance takes every partition from ``source`` at its next ``consume()``."""
        self._pending_rebalance.append(("revoke", source))

    def lose(self, source: MemorySource) -> None:
        """The session of ``source`` times out: its partitions are lost at its next ``consume()``."""
        self._pending_rebalance.append(("lose", source))

    # -- what the clients ask -------------------------------------------------------------------------------

    def partitions_of(self, topic: str) -> list[TP]:
        known = {p for t, p in self.logs if t == topic}
        return [(topic, p) for p in sorted(known | set(range(self.partitions)))]

    def _visible(self, record: Record) -> bool:
        return record.transaction is None or record.transaction in self.committed_transactions

    def _delivery_error(self, topic: str, record: Record) -> KafkaError | None:
        for decide in self._failures:
            if (error := decide(topic, record)) is not None:
                return error
        return None

    def _raise_if_failing(self, call: str) -> None:
        if self._fail_next[call]:
            raise KafkaException(self._fail_next[call].pop(0))

    def _take_rebalance(self, source: MemorySource) -> Literal["revoke", "lose"] | None:
        for i, (kind, whom) in enumerate(self._pending_rebalance):
            if whom is source:
                del self._pending_rebalance[i]
                return kind
        return None

    def _claim(self, transactional_id: str, sink: MemorySink) -> None:
        previous = self._owners.get(transactional_id)
        if previous is not None and previous is not sink:
            previous._fenced = True
            if previous._transaction is not None:  # the coordinator aborts the zombie's open transaction
                self.aborted_transactions.add(previous._transaction.id)
                previous._transaction = None
        self._owners[transactional_id] = sink

    def _begin(self) -> _Transaction:
        self._next_transaction += 1
        return _Transaction(self._next_transaction)


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
                    out.append(Message(topic=tp[0], partition=tp[1], offset=position - 1, key=record.key,
                                       value=record.value, headers=record.headers))  # fmt: skip
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
        return [TopicPartition(tp.topic, tp.partition, known.get((tp.topic, tp.partition), OFFSET_INVALID))
                for tp in partitions]  # fmt: skip

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
        if not self._joined:
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
        self.paused.clear()  # librdkafka: a partition assigned again starts unpaused
        self._joined = False

    def _commit_stored(self) -> list[TopicPartition]:
        stored, self._stored = self._stored, {}
        self.broker.committed.update(stored)
        committed = [TopicPartition(t, p, o) for (t, p), o in stored.items()]
        on_commit = self.conf.get("on_commit")
        if on_commit is not None:
            on_commit(None, committed)
        return committed


class MemorySink:
    """A producer (the ``Sink`` the loop needs): deliveries reported by ``poll()`` / ``flush()``."""

    def __init__(self, broker: MemoryBroker, conf: dict[str, Any]) -> None:
        self.broker = broker
        self.conf = conf
        self.produced = 0
        self.purged = 0
        self._queue: list[tuple[str, Record, DeliveryCallback | None]] = []
        self._transaction: _Transaction | None = None
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
        if self.transactional_id and self._transaction is None:
            raise KafkaException(KafkaError(KafkaError._STATE, "produce outside a transaction"))
        record = Record(_as_bytes(key), _as_bytes(value), headers)
        self._queue.append((topic, record, on_delivery))
        self.produced += 1

    def poll(self, timeout: float = 0.0) -> int:
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
                message = Message(topic=topic, partition=0, offset=offset, key=record.key, value=record.value,
                                  headers=record.headers, error=error)  # fmt: skip
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

    def _open_transaction(self) -> _Transaction:
        if self._transaction is None:
            raise KafkaException(KafkaError(KafkaError._STATE, "no transaction is open"))
        return self._transaction

    def _check_usable(self) -> None:
        if self._fenced:
            raise KafkaException(KafkaError(KafkaError._FENCED, "producer fenced by a newer instance", fatal=True))


def _as_bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value
