"""Consumer lag as the Admin API counts it: a partition's log-end offset minus the group's committed offset.

That is ``AdminClient.list_offsets`` (latest, ``read_committed``: the scorer reads that way, so its log end is the
last stable offset) minus ``list_consumer_group_offsets``; ``kafka-consumer-groups --describe`` prints the same
unless a transaction is open on the partition (it lists the high watermark).

librdkafka knows both halves: the end from every fetch response, the committed offset from every commit the broker
acknowledged. Its statistics carry both, but only every ``statistics.interval.ms`` (5 s), while the group commits
every second: a gauge read from them alone trailed the Admin API by up to five commits, a second of throughput
each. So ``LagBook`` takes the statistics for the set of partitions held and both halves, and every acknowledged
commit (``on_commit``; with exactly_once, each committed transaction, which librdkafka never records as a commit)
for the committed half, with the high watermark of the latest fetch response read at that moment for the end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Partition = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """One partition as librdkafka's statistics show it; a negative offset is unknown (-1001)."""

    stable: int  # ls_offset: the last stable offset (librdkafka's end for read_committed)
    high: int  # hi_offset: the high watermark
    committed: int  # committed_offset: the group's, as of the last commit librdkafka made or fetched


def stats_offsets(stats: Mapping[str, Any]) -> dict[Partition, PartitionOffsets]:
    """The partitions the consumer holds (``desired``; not librdkafka's internal partition -1) in a parsed
    statistics object, with their offsets."""
    found = {}
    for topic, t in (stats.get("topics") or {}).items():
        for partition, p in (t.get("partitions") or {}).items():
            if int(partition) >= 0 and p.get("desired", True):
                found[topic, int(partition)] = PartitionOffsets(
                    int(p.get("ls_offset", -1)), int(p.get("hi_offset", -1)), int(p.get("committed_offset", -1))
                )
    return found


class LagBook:
    """A worker's end and committed offset per partition it holds; ``lags()`` is end minus committed."""

    def __init__(self) -> None:
        self._end: dict[Partition, int] = {}
        self._committed: dict[Partition, int] = {}
        self._open: set[Partition] = set()  # last stable offset below the high watermark: a transaction is open

    def read_stats(self, offsets: Mapping[Partition, PartitionOffsets]) -> None:
        """The partitions held are the statistics' ones. Their end replaces ours (it is at least as fresh); the
        committed offset only moves forward while a partition is held, and with exactly_once librdkafka's is the
        one it fetched at assignment, older than the transactions reported since."""
        self._end = {key: o.stable if o.stable >= 0 else self._end.get(key, -1) for key, o in offsets.items()}
        self._committed = {key: max(o.committed, self._committed.get(key, -1)) for key, o in offsets.items()}
        self._open = {key for key, o in offsets.items() if 0 <= o.stable < o.high}

    def committed(self, offsets: Mapping[Partition, int], high_watermarks: Mapping[Partition, int]) -> None:
        """A commit the broker acknowledged (``offsets``: next offset to consume), and the high watermark of each
        partition's latest fetch response. That watermark is the log end unless the statistics showed a
        transaction open on the partition: then the end stays their last stable offset until the next ones."""
        for key, offset in offsets.items():
            self._committed[key] = max(offset, self._committed.get(key, -1))
            high = high_watermarks.get(key, -1)
            if key not in self._open and high > self._end.get(key, -1):
                self._end[key] = high

    def clear(self) -> None:
        """The partitions were revoked or lost: their lag is the next owner's to report."""
        self._end, self._committed, self._open = {}, {}, set()

    def lags(self) -> dict[Partition, int]:
        """Messages behind per partition whose end and committed offset are both known (never negative: an end
        read before the commit's fetch may trail it)."""
        return {
            key: max(0, self._end[key] - committed)
            for key, committed in self._committed.items()
            if committed >= 0 and self._end.get(key, -1) >= 0
        }
