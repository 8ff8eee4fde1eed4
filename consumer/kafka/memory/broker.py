"""The in-memory broker: topics, one group's committed offsets, transactional ids, and what a test breaks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException

from consumer.kafka.clients import Clients
from consumer.kafka.memory.records import TP, Record, Transaction
from consumer.kafka.memory.sink import MemorySink
from consumer.kafka.memory.source import MemorySource


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
        self.silent = False  # an outage: no delivery is answered, acknowledged or failed, until heal()
        self.stuck_rejoins: set[int] = set()  # ids of sources that never join again once their session is lost
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

    def go_silent(self) -> None:
        """From now on deliveries stay unanswered (neither acknowledged nor failed), as while a broker is frozen."""
        self.silent = True

    def heal(self) -> None:
        """Deliveries are acknowledged again."""
        self._failures.clear()
        self.silent = False

    def fail_next(self, call: str, error: KafkaError) -> None:
        """The next ``call`` (``commit_transaction``, ``send_offsets_to_transaction``, ...) of any producer raises."""
        self._fail_next[call].append(error)

    def revoke(self, source: MemorySource) -> None:
        """A graceful rebalance takes every partition from ``source`` at its next ``consume()``."""
        self._pending_rebalance.append(("revoke", source))

    def lose(self, source: MemorySource) -> None:
        """The session of ``source`` times out: its partitions are lost at its next ``consume()``."""
        self._pending_rebalance.append(("lose", source))

    def lose_for_good(self, source: MemorySource) -> None:
        """Like ``lose``, and ``source`` never joins again (a client whose coordinator requests stay queued); a new
        source joins as usual."""
        self.lose(source)
        self.stuck_rejoins.add(id(source))

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

    def _begin(self) -> Transaction:
        self._next_transaction += 1
        return Transaction(self._next_transaction)
