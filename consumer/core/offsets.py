"""Which input offsets may be stored: only those whose every result or dead letter the broker acknowledged.

Batches complete out of order (acks come per output partition), but offsets must be stored in order: a batch's
offsets are released only when it and every batch before it are fully acknowledged.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class InFlightBatch:
    """One consumed batch: its next offsets per input partition and how many deliveries it still awaits."""

    next_offsets: dict[tuple[str, int], int]
    pending: int
    event_times_ms: list[int] = field(default_factory=list)
    dead_letters: int = 0

    @property
    def done(self) -> bool:
        return self.pending == 0


class OffsetTracker:
    """In-flight batches in consumption order; ``releasable()`` pops the acknowledged prefix."""

    def __init__(self) -> None:
        self._batches: deque[InFlightBatch] = deque()

    def add(self, batch: InFlightBatch) -> InFlightBatch:
        self._batches.append(batch)
        return batch

    def releasable(self) -> tuple[dict[tuple[str, int], int], list[InFlightBatch]]:
        """Offsets to store (highest per partition) and the batches they complete, oldest first."""
        offsets: dict[tuple[str, int], int] = {}
        done: list[InFlightBatch] = []
        while self._batches and self._batches[0].done:
            batch = self._batches.popleft()
            offsets.update(batch.next_offsets)
            done.append(batch)
        return offsets, done

    def forget_partitions(self, partitions: set[tuple[str, int]]) -> None:
        """Drop revoked partitions from batches still in flight (their offsets are no longer ours to store)."""
        for batch in self._batches:
            for tp in partitions & batch.next_offsets.keys():
                del batch.next_offsets[tp]

    @property
    def in_flight(self) -> int:
        return sum(b.pending for b in self._batches)

    def __len__(self) -> int:
        return len(self._batches)
