"""The monitor's local state store: RocksDB through ``rocksdict``, the store Quix Streams builds on.

Keys are bytes under one prefix per input partition (``p0003/...``), so a partition's state can be dropped
whole when it moves to another member. Everything one batch changes (the joined state, the counters, the
detectors and the next offsets of both topics) is written in one RocksDB ``WriteBatch``: after a kill -9 the
store holds either all of a batch or none of it, and the member resumes from the offsets the store holds.
RocksDB's write-ahead log survives the process (not the machine): a member that lost its folder, or that is
given a partition it holds no state for, rebuilds it from the topics themselves (see ``consumer.monitor.loop``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rocksdict import Options, Rdict, WriteBatch

_DELETED = object()


def partition_prefix(partition: int) -> bytes:
    return b"p%04d/" % partition


class StateStore:
    """A RocksDB database in ``path``, opened for the life of the monitor (a context manager)."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path), options=Options(raw_mode=True))

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Keys in ``[start, stop)`` in order, with their values."""
        it = self._db.iter()
        it.seek(start)
        while it.valid() and it.key() < stop:
            yield bytes(it.key()), bytes(it.value())
            it.next()

    def scan_back(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Keys in ``[start, stop)`` from the last down."""
        it = self._db.iter()
        it.seek_for_prev(stop)
        if it.valid() and it.key() >= stop:
            it.prev()
        while it.valid() and it.key() >= start:
            yield bytes(it.key()), bytes(it.value())
            it.prev()

    def drop_partition(self, partition: int) -> None:
        """Forget everything of ``partition`` (its state will be rebuilt from the topics)."""
        prefix = partition_prefix(partition)
        self._db.delete_range(prefix, prefix[:-1] + b"0")  # "/" + 1 == "0": the prefix's whole range

    def transaction(self) -> Transaction:
        return Transaction(self)

    def write(self, batch: WriteBatch) -> None:
        self._db.write(batch)


class Transaction:
    """The changes of one batch: reads see them, ``commit`` writes them all at once."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._changes: dict[bytes, Any] = {}

    def get(self, key: bytes) -> bytes | None:
        value = self._changes.get(key)
        if value is _DELETED:
            return None
        return value if value is not None else self._store.get(key)

    def get_json(self, key: bytes) -> Any:
        raw = self.get(key)
        return None if raw is None else json.loads(raw)

    def put(self, key: bytes, value: bytes) -> None:
        self._changes[key] = value

    def put_json(self, key: bytes, value: Any) -> None:
        self._changes[key] = json.dumps(value, separators=(",", ":")).encode()

    def delete(self, key: bytes) -> None:
        self._changes[key] = _DELETED

    def add(self, key: bytes, amount: int = 1) -> None:
        """Add ``amount`` to the integer counter at ``key``."""
        raw = self.get(key)
        self.put(key, str((int(raw) if raw else 0) + amount).encode())

    def commit(self) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in self._changes.items():
            if value is _DELETED:
                batch.delete(key)
            else:
                batch.put(key, value)
        self._store.write(batch)
        self._changes.clear()
