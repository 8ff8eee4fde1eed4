"""The scoring engine: framed bytes in, encoded score results and dead letters out, one batch at a time.

decode -> validate -> application hash (recent scores reused) -> features -> every bank + lead -> best offer
-> reasons -> result bytes. It imports no Kafka client: the run loop, the offline ``score`` command and the
benchmark all drive this same object.

The batch path never builds a result record: ``ResultWriter`` packs each application's scores into Avro bytes
column-wise (the same bytes fastavro writes, see ``tests/unit/test_fast_paths.py``), and the cache of recent
applications keeps those bytes. Records (dicts) are built only by ``score_events`` and for an encoder the
writer does not know.
"""

from __future__ import annotations

import datetime as dt
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from consumer.core.dedup import RecentScores, application_hash
from consumer.core.result_writer import ResultWriter, zigzag_varint
from consumer.core.scoring import RowScores, ScoreColumns, score_columns, scores_of
from consumer.core.validation import check_event
from models.artifacts import ModelSet
from models.features import FeatureFrame, build_features
from schemas.errors import InvalidEventError

STAGES = ("decode", "dedup", "features", "predict", "reasons", "encode")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class BatchDecoder(Protocol):
    def decode_batch(self, payloads: Sequence[bytes | None]) -> tuple[list[Any], list[Any]]: ...


@dataclass(frozen=True, slots=True)
class ScoredMessage:
    """One result ready to produce: ``index`` is the message's position in the batch."""

    index: int
    key: bytes
    value: bytes
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    index: int
    error: InvalidEventError


@dataclass
class BatchOutcome:
    """What one batch turned into. Every input index appears exactly once in ``scored`` or ``rejected``."""

    scored: list[ScoredMessage] = field(default_factory=list)
    rejected: list[RejectedMessage] = field(default_factory=list)
    duplicates: int = 0
    frame: FeatureFrame | None = None  # features of the events scored afresh (for drift)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # per model, aligned with ``frame``
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    model_seconds: dict[str, float] = field(default_factory=dict)  # the predict stage, per model


class _Cached(NamedTuple):
    """A recent application's scores: as plain values (records path) or as result bytes (batch path).

    A tuple of bytes and None is left alone by the garbage collector, so a full cache costs no collection time.
    """

    row: RowScores | None
    block: bytes | None


def quiet_collector() -> None:
    """Tune the garbage collector for a worker that scores batches, once its models are loaded.

    Everything alive now (modules, models, schemas) is frozen out of the collector's sight, and young objects
    are collected every 50,000 allocations instead of 700: a batch allocates tens of thousands of short-lived
    dicts that reference counting frees anyway, and scanning them dozens of times per batch cost a fifth of
    the decode time. A full collection still runs every 200 young ones (a few hundred batches), so cyclic
    garbage cannot pile up in the oldest generation over a long run.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


class ScoringEngine:
    """Scores batches with one set of verified models. Not thread-safe: one engine per worker process."""

    def __init__(
        self,
        models: ModelSet,
        decoder: BatchDecoder,
        encode_result: Callable[[dict[str, Any]], bytes],
        *,
        config_hash: str,
        reasons: int = 3,
        recent: RecentScores[Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.models = models
        self._decoder = decoder
        self._encode = encode_result
        self.config_hash = config_hash
        self._reasons = reasons
        self._recent: RecentScores[_Cached] = recent if recent is not None else RecentScores[_Cached](0)
        self._clock = clock
        self._writer = ResultWriter.for_encoder(encode_result, models, config_hash)

    def score_batch(self, payloads: Sequence[bytes | None]) -> BatchOutcome:
        """Score framed message values; bad ones come back as ``rejected`` with their error, never raised."""
        outcome = BatchOutcome()
        timer = _StageTimer(outcome.stage_seconds)
        with timer("decode"):
            events, indices = self._decode(payloads, outcome.rejected)
        with timer("dedup"):
            hashes = [application_hash(e) for e in events]
            known, fresh = self._lookup(hashes, need_block=self._writer is not None)
        columns = self._score_fresh([events[r] for r in fresh], outcome, timer) if fresh else None
        outcome.duplicates = len(events) - len(fresh)
        scored_at = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        with timer("encode"):
            if self._writer is not None:
                outcome.scored = self._framed(self._writer, events, indices, hashes, known, fresh, columns, scored_at)
            else:
                rows = columns.rows() if columns is not None else []
                self._remember(hashes, known, fresh, rows=rows)
                outcome.scored = [
                    ScoredMessage(i, r["application_id"].encode(), self._encode(r), avro_millis(r["event_time"]))
                    for i, r in zip(indices, self._records(events, hashes, known, scored_at), strict=True)
                ]
        return outcome

    def score_events(self, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score decoded, validated events into score result records (the offline path and the tests)."""
        timer = _StageTimer(dict.fromkeys(STAGES, 0.0))
        hashes = [application_hash(e) for e in events]
        known, fresh = self._lookup(hashes, need_block=False)
        if fresh:
            frame = build_features([events[r] for r in fresh])
            self._remember(hashes, known, fresh, rows=score_columns(self.models, frame, self._reasons, timer).rows())
        return self._records(events, hashes, known, dt.datetime.fromtimestamp(self._clock(), dt.UTC))

    def _decode(
        self, payloads: Sequence[bytes | None], rejected: list[RejectedMessage]
    ) -> tuple[list[dict[str, Any]], list[int]]:
        records, errors = self._decoder.decode_batch(payloads)
        events, indices = [], []
        for index, (event, error) in enumerate(zip(records, errors, strict=True)):
            if error is None:
                try:
                    check_event(event)
                except InvalidEventError as exc:
                    error = exc.with_traceback(None)  # no frames kept alive through a reference cycle
            if error is None:
                events.append(event)
                indices.append(index)
            else:
                rejected.append(RejectedMessage(index, error))
        return events, indices

    def _lookup(self, hashes: list[str], *, need_block: bool) -> tuple[dict[str, _Cached | None], list[int]]:
        """Cached scores by hash, and the rows to score afresh (each new hash's first occurrence)."""
        known: dict[str, _Cached | None] = {}
        fresh = []
        for row, h in enumerate(hashes):
            if h in known:
                continue
            cached = self._recent.get(h)
            if cached is None or (cached.block if need_block else cached.row) is None:
                known[h] = None
                fresh.append(row)
            else:
                known[h] = cached
        return known, fresh

    def _score_fresh(self, events: list[dict[str, Any]], outcome: BatchOutcome, timer: _StageTimer) -> ScoreColumns:
        with timer("features"):
            frame = build_features(events)
        columns = score_columns(self.models, frame, self._reasons, timer, outcome.model_seconds)
        outcome.frame, outcome.predictions = frame, columns.predictions(self.models)
        return columns

    def _remember(
        self,
        hashes: list[str],
        known: dict[str, _Cached | None],
        fresh: list[int],
        *,
        rows: Sequence[RowScores] = (),
        blocks: Sequence[bytes] = (),
    ) -> None:
        for i, row in enumerate(fresh):
            cached = _Cached(rows[i] if rows else None, blocks[i] if blocks else None)
            known[hashes[row]] = cached
            self._recent.put(hashes[row], cached)

    def _framed(
        self,
        writer: ResultWriter,
        events: list[dict[str, Any]],
        indices: list[int],
        hashes: list[str],
        known: dict[str, _Cached | None],
        fresh: list[int],
        columns: ScoreColumns | None,
        scored_at: dt.datetime,
    ) -> list[ScoredMessage]:
        if columns is not None:
            self._remember(hashes, known, fresh, blocks=writer.blocks(columns))
        stamp = zigzag_varint(avro_millis(scored_at))
        out = []
        for i, event, h in zip(indices, events, hashes, strict=True):
            cached = known[h]
            assert cached is not None and cached.block is not None  # every hash was found or scored above
            app_id, event_ms = event["application_id"], avro_millis(event["occurred_at"])
            value = writer.framed(str(event["event_id"]), app_id, event["lead_id"], h, event_ms, stamp, cached.block)
            out.append(ScoredMessage(i, app_id.encode(), value, event_ms))
        return out

    def _records(
        self, events: Sequence[dict[str, Any]], hashes: list[str], known: dict[str, _Cached | None], at: dt.datetime
    ) -> list[dict[str, Any]]:
        records = []
        for event, h in zip(events, hashes, strict=True):
            cached = known[h]
            assert cached is not None and cached.row is not None  # every hash was found or scored above
            records.append(self._record(event, h, scores_of(cached.row, self.models), at))
        return records

    def _record(self, event: dict[str, Any], app_hash: str, s: Any, scored_at: dt.datetime) -> dict[str, Any]:
        return {
            "event_id": str(event["event_id"]),
            "application_id": event["application_id"],
            "lead_id": event["lead_id"],
            "application_hash": app_hash,
            "event_time": event["occurred_at"],
            "scored_at": scored_at,
            "lead": s.lead,
            "banks": s.banks,
            "best_offer": s.best_offer,
            "reasons": s.reasons,
            "config_hash": self.config_hash,
        }


def avro_millis(when: dt.datetime) -> int:
    """Milliseconds since the epoch exactly as fastavro writes an aware ``timestamp-millis`` (no float)."""
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


class _StageTimer:
    """Adds the wall time of ``with timer("stage"):`` blocks into a dict of seconds per stage."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        self._stage = ""
        self._started = 0.0

    def __call__(self, stage: str) -> _StageTimer:
        self._stage = stage
        return self

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds[self._stage] = self.seconds.get(self._stage, 0.0) + time.perf_counter() - self._started
