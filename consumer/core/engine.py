"""The scoring engine: framed bytes in, encoded score results and dead letters out, one batch at a time.

decode -> validate -> application hash (recent scores reused) -> features -> every bank + lead with their
reasons -> ranked offers and the best one -> result bytes. It imports no Kafka client: the run loop, the
offline ``score`` command and the benchmark all drive this same object.

Results exist only as bytes: ``ResultWriter`` packs each application's scores into Avro column-wise (the
same bytes fastavro writes, see ``tests/unit/test_fast_paths.py``), and the cache of recent applications
keeps a compact fixed-size record of the scores (``ResultWriter.pack``) from which the writer writes the
same bytes again. Whoever wants a record (the offline command's JSON view, a test) decodes them.
"""

from __future__ import annotations

import datetime as dt
import gc
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from consumer.core.challenger import Challenger, ShadowScores, shadow_record, shadow_scores
from consumer.core.dedup import RecentScores, application_hash
from consumer.core.offers import OfferBook
from consumer.core.result_writer import ResultWriter, zigzag_varint
from consumer.core.scoring import ScoreColumns, score_columns
from consumer.core.validation import check_event
from models.artifacts import ModelSet
from models.features import FeatureFrame, build_features
from models.reasons import FeatureReasons
from schemas.errors import InvalidEventError

STAGES = ("decode", "dedup", "features", "predict", "reasons", "encode")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class BatchDecoder(Protocol):
    def decode_batch(self, payloads: Sequence[bytes | None]) -> tuple[list[Any], list[Any]]: ...

    def needs_registry(self, payload: bytes | None) -> int | None:
        """The registry id decoding ``payload`` would fetch (not cached yet), else None; sends nothing."""

    def resolve(self, schema_id: int) -> None:
        """Fetch and cache ``schema_id``'s writer schema now; raises RegistryUnavailableError."""


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
    shadow: dict[str, ShadowScores] = field(default_factory=dict)  # per challenged model, aligned with ``frame``
    shadow_records: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, value) for the shadow topic


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
    """Scores batches with one set of verified models. Not thread-safe: one engine per worker process.

    ``result_header`` is the framing written before every result body (``schemas.framing``'s single-object
    or Confluent header of ``consumer.core.result_writer.result_schema()``). ``offers`` holds the banks'
    products and the ranking (default: none, ranked by cost); ``reason_codes`` the reason-code table (default:
    the shipped one); ``statement_languages`` the languages of the statements written beside each reason code
    (default none: the code alone).
    """

    def __init__(
        self,
        models: ModelSet,
        decoder: BatchDecoder,
        result_header: bytes,
        *,
        config_hash: str,
        reasons: int = 3,
        recent: RecentScores[bytes] | None = None,
        clock: Callable[[], float] = time.time,
        offers: OfferBook | None = None,
        reason_codes: Mapping[str, FeatureReasons] | None = None,
        statement_languages: Sequence[str] = (),
    ) -> None:
        self.models = models
        self._decoder = decoder
        self.config_hash = config_hash
        self._reasons = reasons
        self._recent = recent if recent is not None else RecentScores[bytes](0)
        self._clock = clock
        self._book = offers if offers is not None else OfferBook([b.name for b in models.banks], {})
        self._header, self._reason_codes, self._languages = result_header, reason_codes, tuple(statement_languages)
        self._writer = self._result_writer(models)
        self.challenger: Challenger | None = None
        # Read at the start and the end of every stage: the instruction count swaps in a clock that marks them.
        self.stage_clock: Callable[[], float] = time.perf_counter

    def set_challenger(self, challenger: Challenger | None) -> None:
        """Score ``challenger``'s models beside the champion's from the next batch on (None: no challenger).

        Raises:
            ValueError: it challenges a model the running set does not hold.
        """
        if challenger is not None:
            unknown = [name for name in challenger.names if name not in self.models.versions()]
            if unknown:
                raise ValueError(f"challenger set {challenger.version}: {', '.join(unknown)} not in the running set")
        self.challenger = challenger

    def swap_models(self, models: ModelSet) -> None:
        """Score the next batch with ``models`` (verified and loaded by the caller; call between two batches).

        The result writer is rebuilt (it writes each model's version into every result) and the recent
        applications' scores are forgotten: an answer from the cache would carry the previous set's scores and
        versions. The offer book stays: banks and their products are configuration, and a set must hold every
        configured bank (``load_models`` refuses one that does not). Leaf tables are built by ``load_models``.

        Raises:
            ValueError: ``models`` scores other banks than the running set (the offer book and results are
                shaped by the configured banks).
        """
        if [b.name for b in models.banks] != [b.name for b in self.models.banks]:
            raise ValueError(f"model set {models.version} has other banks than the running set")
        writer = self._result_writer(models)
        self.models, self._writer = models, writer
        self._recent = RecentScores[bytes](self._recent.capacity)
        if self.challenger is not None and self.challenger.version == models.version:
            self.challenger = None  # promoted: the challenger is the champion now

    def _result_writer(self, models: ModelSet) -> ResultWriter:
        return ResultWriter(self._header, models, self.config_hash, self._book, self._reason_codes, self._languages)

    @property
    def decoder(self) -> BatchDecoder:
        """What decodes the message values (the run loop asks it which writer schemas it still lacks)."""
        return self._decoder

    def score_batch(self, payloads: Sequence[bytes | None]) -> BatchOutcome:
        """Score framed message values; bad ones come back as ``rejected`` with their error, never raised."""
        outcome = BatchOutcome()
        timer = _StageTimer(outcome.stage_seconds, self.stage_clock)
        with timer("decode"):
            events, indices = self._decode(payloads, outcome.rejected)
        self._score(events, indices, outcome, timer)
        return outcome

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

    def _score(
        self, events: list[dict[str, Any]], indices: list[int], outcome: BatchOutcome, timer: _StageTimer
    ) -> None:
        with timer("dedup"):
            hashes = [application_hash(e) for e in events]
            cached, fresh = self._lookup(hashes)
        columns = self._score_fresh([events[r] for r in fresh], outcome, timer) if fresh else None
        outcome.duplicates = len(events) - len(fresh)
        scored_at = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        with timer("encode"):
            blocks: dict[str, bytes] = {}
            if cached:  # the cache keeps a compact record of the scores; their bytes are written again
                again = self._writer.blocks(self._writer.unpack(list(cached.values()), self._reasons))
                blocks.update(zip(cached, again, strict=True))
            if columns is not None:
                fresh_hashes = [hashes[row] for row in fresh]
                blocks.update(zip(fresh_hashes, self._writer.blocks(columns), strict=True))
                for h, record in zip(fresh_hashes, self._writer.pack(columns), strict=True):
                    self._recent.put(h, record)
            outcome.scored = self._framed(events, indices, hashes, blocks, scored_at)
            if outcome.shadow:
                outcome.shadow_records = _shadow_records([events[r] for r in fresh], scored_at, outcome.shadow)

    def _lookup(self, hashes: list[str]) -> tuple[dict[str, bytes], list[int]]:
        """Cached scores (``ResultWriter.pack`` records) by hash, and the rows to score afresh (each new hash's
        first occurrence)."""
        blocks: dict[str, bytes] = {}
        missing: set[str] = set()
        fresh = []
        for row, h in enumerate(hashes):
            if h in blocks or h in missing:
                continue
            block = self._recent.get(h)
            if block is None:
                missing.add(h)
                fresh.append(row)
            else:
                blocks[h] = block
        return blocks, fresh

    def _score_fresh(self, events: list[dict[str, Any]], outcome: BatchOutcome, timer: _StageTimer) -> ScoreColumns:
        with timer("features"):
            frame = build_features(events)
        columns = score_columns(self.models, frame, self._reasons, timer, outcome.model_seconds, self._book)
        outcome.frame, outcome.predictions = frame, columns.predictions(self.models)
        if self.challenger is not None:
            outcome.shadow = shadow_scores(self.challenger, self.models, frame, outcome.predictions)
            outcome.model_seconds |= {f"{name}:challenger": s.seconds for name, s in outcome.shadow.items()}
        return columns

    def _framed(
        self,
        events: list[dict[str, Any]],
        indices: list[int],
        hashes: list[str],
        blocks: dict[str, bytes],
        scored_at: dt.datetime,
    ) -> list[ScoredMessage]:
        framed, stamp = self._writer.framed, zigzag_varint(avro_millis(scored_at))
        out = []
        for i, event, h in zip(indices, events, hashes, strict=True):
            app_id, event_ms = event["application_id"], avro_millis(event["occurred_at"])
            value = framed(str(event["event_id"]), app_id, event["lead_id"], h, event_ms, stamp, blocks[h])
            out.append(ScoredMessage(i, app_id.encode(), value, event_ms))
        return out


def _shadow_records(
    events: list[dict[str, Any]], scored_at: dt.datetime, shadow: dict[str, ShadowScores]
) -> list[tuple[bytes, bytes]]:
    """The shadow topic's records of the fresh rows, keyed by application id like the results."""
    at_ms = avro_millis(scored_at)
    out = []
    for row, event in enumerate(events):
        app_id = str(event["application_id"])
        out.append((app_id.encode(), shadow_record(str(event["event_id"]), app_id, at_ms, row, shadow)))
    return out


def avro_millis(when: dt.datetime) -> int:
    """Milliseconds since the epoch exactly as fastavro writes an aware ``timestamp-millis`` (no float)."""
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


class _StageTimer:
    """Adds the wall time of ``with timer("stage"):`` blocks into a dict of seconds per stage."""

    def __init__(self, seconds: dict[str, float], clock: Callable[[], float] = time.perf_counter) -> None:
        self.seconds = seconds
        self._clock = clock
        self._stage = ""
        self._started = 0.0

    def __call__(self, stage: str) -> _StageTimer:
        self._stage = stage
        return self

    def __enter__(self) -> None:
        self._started = self._clock()

    def __exit__(self, *exc: object) -> None:
        self.seconds[self._stage] = self.seconds.get(self._stage, 0.0) + self._clock() - self._started
