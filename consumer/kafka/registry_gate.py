"""Schema Registry outages: the partitions that need a writer schema the registry cannot give right now wait;
everything else keeps scoring.

A Confluent-framed message names its writer schema by registry id. Ids already fetched are cached for good (an
id's schema never changes), so an outage only matters for an id the worker has not seen yet. Before a batch is
scored, :class:`RegistryGate` asks the decoder which messages would need the registry and fetches those ids. If
the registry does not answer, each partition holding such a message is paused and set back to that message:
the messages before it, and every other partition, are scored; nothing is dead-lettered for the outage, and
nothing is lost (the held messages are consumed again after ``resume``, their offsets never stored or
committed meanwhile). The gate then tries the registry again with a growing backoff, logs once per interval,
reports the worker not ready, and resumes the partitions when it answers.

The gate also hands the decoder the edge's ``writer_seen``: every writer schema the decoder resolves for the first
time (by registry id or by fingerprint) is checked once against the models (``models.schema_contract``), off the
per-message path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from confluent_kafka import Message, TopicPartition

from consumer.core.engine import BatchDecoder
from consumer.kafka.clients import Source, first_offsets
from consumer.telemetry.logs import Throttle
from schemas.codec import WriterWatcher
from schemas.errors import RegistryUnavailableError

log = logging.getLogger(__name__)
TP = tuple[str, int]
_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
_LOG_EVERY_S = 15.0


@runtime_checkable
class WatchedDecoder(Protocol):
    def watch_writers(self, watcher: WriterWatcher) -> None: ...


class RegistryGate:
    """Holds back partitions whose next message needs a registry id the registry cannot serve yet.

    ``registry_up(False)`` when the first partition is held, ``registry_up(True)`` when the last one resumes.
    Every method runs on the loop's thread.
    """

    def __init__(
        self,
        decoder: BatchDecoder,
        registry_up: Callable[[bool], None],
        writer_seen: WriterWatcher | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._decoder = decoder
        if writer_seen is not None and isinstance(decoder, WatchedDecoder):
            decoder.watch_writers(writer_seen)
        self._registry_up = registry_up
        self._clock = clock
        self._held: dict[TP, int] = {}  # partition -> offset of its first message that waits
        self._awaiting: set[int] = set()
        self._since = 0.0
        self._attempt = 0
        self._next_try = 0.0
        self._last_error = ""
        self._throttle = Throttle(_LOG_EVERY_S, clock)

    @property
    def held(self) -> dict[TP, int]:
        return dict(self._held)

    def admit(self, source: Source, messages: Sequence[Message]) -> list[Message]:
        """The messages to score now. Those from the first one needing an unavailable id on, per partition,
        wait: the partition is paused and rewound to it."""
        first_waiting: dict[TP, int] = {}
        resumed: set[TP] = set()
        for m in messages:
            tp = (m.topic() or "", m.partition() or 0)
            if tp in self._held:
                resumed.add(tp)  # resumed by someone else (the guarantee's own pause for a missing ACL ended)
                continue
            if tp in first_waiting:
                continue
            schema_id = self._decoder.needs_registry(m.value())
            if schema_id is None or (not self._held and not first_waiting and self._fetched(schema_id)):
                continue
            first_waiting[tp] = m.offset() or 0
            self._awaiting.add(schema_id)
        if resumed:
            self._rehold(source, resumed)
        if first_waiting:
            self._hold(source, first_waiting)
        if not self._held:
            return list(messages)
        return [
            m for m in messages if (m.offset() or 0) < self._held.get((m.topic() or "", m.partition() or 0), 1 << 62)
        ]

    def hold_all(self, source: Source, messages: Sequence[Message], error: RegistryUnavailableError) -> None:
        """The registry failed while the batch was decoded (an id that turned up missing since ``admit``):
        every partition of the batch waits from its first message."""
        self._last_error = str(error)
        self._hold(source, first_offsets(messages))

    def tick(self, source: Source) -> None:
        """Before each consume: when the backoff is over, ask the registry again; resume once it answers."""
        if not self._held or self._clock() < self._next_try:
            return
        for schema_id in sorted(self._awaiting):
            if not self._fetched(schema_id):
                self._attempt += 1
                self._next_try = self._clock() + _BACKOFF_S[min(self._attempt, len(_BACKOFF_S) - 1)]
                if self._throttle.ready("down", _LOG_EVERY_S):
                    log.warning(
                        "schema registry unavailable for %.0f s; %d partition(s) wait for writer schema id(s) %s (%s)",
                        self._clock() - self._since,
                        len(self._held),
                        sorted(self._awaiting),
                        self._last_error,
                    )
                return
        waited = self._clock() - self._since
        log.info("schema registry answered again after %.1f s: resuming %d partition(s)", waited, len(self._held))
        source.resume([TopicPartition(t, p) for t, p in self._held])
        self._clear()

    def forget(self, partitions: Sequence[TopicPartition]) -> None:
        """Partitions revoked or lost: a partition assigned again starts unpaused, from the committed offset."""
        for tp in partitions:
            self._held.pop((tp.topic, tp.partition), None)
        if not self._held and self._awaiting:
            self._clear()

    def _fetched(self, schema_id: int) -> bool:
        try:
            self._decoder.resolve(schema_id)
        except RegistryUnavailableError as exc:
            self._last_error = str(exc)
            return False
        self._awaiting.discard(schema_id)
        return True

    def _hold(self, source: Source, first: dict[TP, int]) -> None:
        new = {tp: offset for tp, offset in first.items() if tp not in self._held}
        if not new:
            return
        partitions = [TopicPartition(t, p, offset) for (t, p), offset in new.items()]
        source.pause(partitions)
        for tp in partitions:
            source.seek(tp)  # consumed again from here after resume; nothing after it is scored meanwhile
        if not self._held:
            self._since = self._clock()
            self._attempt = 0
            self._next_try = self._since + _BACKOFF_S[0]
            self._registry_up(False)
            self._throttle.ready("down")  # the next line about it comes an interval later
            log.warning(
                "schema registry unavailable (%s): holding %d partition(s) until it answers; ids already "
                "known keep scoring",
                self._last_error,
                len(new),
            )
        self._held.update(new)

    def _rehold(self, source: Source, partitions: set[TP]) -> None:
        """Pause again, and rewind to the waiting message, partitions that were resumed while still held: what
        was consumed from them is dropped here and read again after the registry answers."""
        held = [TopicPartition(t, p, self._held[(t, p)]) for t, p in partitions]
        source.pause(held)
        for tp in held:
            source.seek(tp)

    def _clear(self) -> None:
        self._held.clear()
        self._awaiting.clear()
        self._attempt = 0
        self._registry_up(True)
