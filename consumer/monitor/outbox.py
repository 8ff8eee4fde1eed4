"""The capture's outbox in the state store: joined rows kept durable until their Parquet file is in place.

A row enters the outbox in the batch's own ``WriteBatch``, with the offsets of the messages that made it: a
member killed at any point resumes from offsets whose rows are either in the outbox or already in a file,
never from past a row that was only in memory. Keys, beside the partitions' (``consumer.monitor.store``):

- ``g/cap/<partition>/<outcome_id>``: a row waiting to be written (the row as JSON); its event is looked up in
  its own partition's state, whether or not the member still holds that partition.
- ``g/capfile/<sequence>``: a sealed flush: the records of one write, taken out of ``cap/`` in one batch,
  until every file of that write is in place; a member that finds one when it opens writes it again under
  the same names (``rename`` over what an earlier attempt left), so a write is never lost and never doubled.
- ``g/capseq``: the next flush's sequence number; ``g/capwriter``: this store's writer id, random, made once,
  so the files of two stores (two members, or one that lost its folder) never share a name.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any, Protocol

from consumer.monitor.join import CHALLENGER, Changes, JoinedRow
from consumer.monitor.store import StateStore, partition_prefix
from consumer.monitor.windows import GLOBAL

PENDING = GLOBAL + b"cap/"
SEALED = GLOBAL + b"capfile/"
_SEQUENCE = GLOBAL + b"capseq"
_WRITER = GLOBAL + b"capwriter"
Records = list[tuple[str, dict[str, Any]]]  # (date, the row as its file holds it)


class Outbox(Protocol):
    """Where rows wait for their file: the state store (``StoreOutbox``) or memory (``MemoryOutbox``)."""

    writer: str

    def stage(self, changes: Changes, rows: Iterable[tuple[int, JoinedRow]]) -> None: ...
    def add(self, rows: Iterable[JoinedRow]) -> None: ...
    def pending(self) -> Iterator[tuple[bytes, JoinedRow, bytes | None]]: ...
    def seal(self, keys: list[bytes], records: Records) -> int: ...
    def sealed(self) -> Iterator[tuple[int, Records]]: ...
    def release(self, sequence: int) -> None: ...


def captured(rows: Iterable[JoinedRow]) -> list[JoinedRow]:
    """The rows the capture keeps: a challenger's rows are its paired comparison's, not training data."""
    return [row for row in rows if not row.model.endswith(CHALLENGER)]


class StoreOutbox:
    """The outbox in the monitor's state store (the rows survive a kill -9 with the offsets that made them)."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        writer = store.get(_WRITER)
        if writer is None:
            writer = uuid.uuid4().hex[:12].encode()
            tx = store.transaction()
            tx.put(_WRITER, writer)
            tx.commit()
        self.writer = writer.decode()

    def stage(self, changes: Changes, rows: Iterable[tuple[int, JoinedRow]]) -> None:
        """Put ``rows`` (partition, row) in the batch's transaction (``changes``): written with its offsets or not
        at all."""
        for partition, row in rows:
            if not row.model.endswith(CHALLENGER):  # as ``captured``
                key = PENDING + b"%04d/" % partition + row.outcome_id.encode()
                changes.put(key, json.dumps(asdict(row)).encode())

    def add(self, rows: Iterable[JoinedRow]) -> None:
        """Nothing to do: ``stage`` put the rows in the store with their batch."""

    def pending(self) -> Iterator[tuple[bytes, JoinedRow, bytes | None]]:
        """The waiting rows, each with its application event when its partition's state holds it."""
        for key, value in list(self._store.scan(PENDING, PENDING[:-1] + b"0")):
            row = JoinedRow(**json.loads(value))
            partition = int(key[len(PENDING) :].split(b"/", 1)[0])
            yield key, row, self._store.get(partition_prefix(partition) + b"evt/" + row.score_event_id.encode())

    def seal(self, keys: list[bytes], records: Records) -> int:
        """Move ``keys`` out of the outbox into one sealed write of ``records``, in one batch; its sequence."""
        sequence = int(self._store.get(_SEQUENCE) or 0)
        tx = self._store.transaction()
        tx.put(SEALED + b"%010d" % sequence, json.dumps(records).encode())
        tx.put(_SEQUENCE, b"%d" % (sequence + 1))
        for key in keys:
            tx.delete(key)
        tx.commit()
        return sequence

    def sealed(self) -> Iterator[tuple[int, Records]]:
        """Sealed writes whose files may not all be in place (a member killed while writing them)."""
        for key, value in list(self._store.scan(SEALED, SEALED[:-1] + b"0")):
            yield int(key[len(SEALED) :]), [(date, record) for date, record in json.loads(value)]

    def release(self, sequence: int) -> None:
        tx = self._store.transaction()
        tx.delete(SEALED + b"%010d" % sequence)
        tx.commit()


class MemoryOutbox:
    """Rows in memory until written (an in-process capture with no member to resume: nothing to recover)."""

    def __init__(self) -> None:
        self.writer = uuid.uuid4().hex[:12]
        self._rows: dict[bytes, JoinedRow] = {}
        self._sequence = 0

    def stage(self, changes: Changes, rows: Iterable[tuple[int, JoinedRow]]) -> None:
        """Nothing to do: ``add`` keeps the rows."""

    def add(self, rows: Iterable[JoinedRow]) -> None:
        for row in captured(rows):
            self._rows[row.outcome_id.encode()] = row

    def pending(self) -> Iterator[tuple[bytes, JoinedRow, bytes | None]]:
        """The waiting rows (their events are the capture's ``event_of`` to find)."""
        for key, row in list(self._rows.items()):
            yield key, row, None

    def seal(self, keys: list[bytes], records: Records) -> int:
        for key in keys:
            del self._rows[key]
        self._sequence += 1
        return self._sequence - 1

    def sealed(self) -> Iterator[tuple[int, Records]]:
        yield from ()

    def release(self, sequence: int) -> None:
        """Nothing kept once written."""
