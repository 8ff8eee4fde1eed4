"""The scores view's state store: what the gateway knows about each task, keyed by application hash.

RocksDB through ``rocksdict`` (as the monitor's store). Keys:

- ``p/<hash>``: when the gateway accepted an upload of that content (ms; the broker acknowledged its event),
- ``r/<hash>``: the score result, as the JSON the ``get_result`` answer is built from,
- ``d/<hash>``: the dead letter's reason, error and field,
- ``o/<topic>/<partition>``: the next offset of the topics the view reads.

Results and dead letters are written with their offsets in one ``WriteBatch``, so after a crash the store
resumes exactly where what it holds ends; a missing folder is an empty store, refilled from the topics.
Accepted uploads and results are separate keys: an upload written after its result cannot hide it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rocksdict import Options, Rdict, WriteBatch

TaskState = Literal["pending", "scored", "dead_letter"]


@dataclass(frozen=True)
class Task:
    """What is known of one task: ``record`` is the result (scored) or the dead letter (dead_letter)."""

    state: TaskState
    record: dict[str, Any] | None = None


@dataclass
class ViewBatch:
    """What one poll of the view read: results and dead letters by hash, and the next offsets."""

    results: dict[str, dict[str, Any]]
    dead_letters: dict[str, dict[str, Any]]
    offsets: dict[tuple[str, int], int]


class TaskStore:
    """The RocksDB database in ``path`` (a context manager). Raises OSError if it cannot be opened (a lock held by
    another process, a path that is not a folder): the gateway is not ready until it can."""

    def __init__(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._db = Rdict(str(path), options=Options(raw_mode=True))
        except Exception as exc:  # rocksdict raises a bare Exception (a lock held by another process, a bad path)
            raise OSError(f"the state store cannot be opened: {exc}") from None

    def __enter__(self) -> TaskStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def task(self, task_id: str) -> Task | None:
        """The task's state, the strongest known: a result, else a dead letter, else accepted; None: unknown."""
        key = task_id.encode()
        for prefix, state in ((b"r/", "scored"), (b"d/", "dead_letter")):
            raw = self._db.get(prefix + key)
            if raw is not None:
                return Task(state, json.loads(bytes(raw)))  # type: ignore[arg-type]
        if self._db.get(b"p/" + key) is not None:
            return Task("pending")
        return None

    def accept(self, task_id: str, at_ms: int) -> None:
        """Remember an upload the broker acknowledged at ``at_ms`` (epoch milliseconds)."""
        self._db.put(b"p/" + task_id.encode(), str(at_ms).encode())

    def offsets(self, topic: str) -> dict[int, int]:
        """The next offset per partition of ``topic`` the store holds everything before."""
        prefix = f"o/{topic}/".encode()
        out = {}
        it = self._db.iter()
        it.seek(prefix)
        while it.valid() and bytes(it.key()).startswith(prefix):
            out[int(bytes(it.key())[len(prefix) :])] = int(bytes(it.value()))
            it.next()
        return out

    def apply(self, batch: ViewBatch) -> dict[str, int]:
        """Write a poll's results, dead letters and offsets at once. Returns, for each task this gateway accepted
        that has its first answer now, when it was accepted (ms): how long the stream took to answer it."""
        answered = self._first_answers([*batch.results, *batch.dead_letters])
        write = WriteBatch(raw_mode=True)
        for prefix, records in ((b"r/", batch.results), (b"d/", batch.dead_letters)):
            for task_id, record in records.items():
                write.put(prefix + task_id.encode(), json.dumps(record, separators=(",", ":")).encode())
        for (topic, partition), offset in batch.offsets.items():
            write.put(f"o/{topic}/{partition}".encode(), str(offset).encode())
        self._db.write(write)
        return answered

    def _first_answers(self, task_ids: list[str]) -> dict[str, int]:
        answered = {}
        for task_id in task_ids:
            key = task_id.encode()
            accepted = self._db.get(b"p/" + key)
            if accepted and self._db.get(b"r/" + key) is None and self._db.get(b"d/" + key) is None:
                answered[task_id] = int(bytes(accepted))
        return answered
