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

The broker is in ``broker``, its two kinds of client in ``source`` (a group member) and ``sink`` (a producer).
"""

from consumer.kafka.memory.broker import MemoryBroker
from consumer.kafka.memory.records import TP, Record
from consumer.kafka.memory.sink import MemorySink
from consumer.kafka.memory.source import MemorySource

__all__ = ["TP", "MemoryBroker", "MemorySink", "MemorySource", "Record"]
