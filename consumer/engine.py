"""The scoring engine: framed bytes in, encoded score results and dead letters out, one batch at a time.

decode -> validate -> application hash (recent scores reused) -> features -> every bank + lead -> best offer
-> reasons -> result records -> encode. It imports no Kafka client: the run loop, the offline ``score``
command and the benchmark all drive this same object.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from consumer.dedup import RecentScores, application_hash
from consumer.scoring import Scores, score_frame
from consumer.validation import check_event
from models.artifacts import ModelSet
from models.features import FeatureFrame, build_features
from schemas.errors import InvalidEventError

STAGES = ("decode", "features", "predict", "reasons", "encode")
_PENDING = Scores({}, [], None, [])  # placeholder while a batch's first occurrence of a hash is being scored


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


@dataclass
class _Scored:
    records: list[dict[str, Any]]
    duplicates: int
    frame: FeatureFrame | None
    predictions: dict[str, np.ndarray]


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
        recent: RecentScores[Scores] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.models = models
        self._decoder = decoder
        self._encode = encode_result
        self.config_hash = config_hash
        self._reasons = reasons
        self._recent = recent if recent is not None else RecentScores[Scores](0)
        self._clock = clock

    def score_batch(self, payloads: Sequence[bytes | None]) -> BatchOutcome:
        """Score framed message values; bad ones come back as ``rejected`` with their error, never raised."""
        outcome = BatchOutcome()
        timer = _StageTimer(outcome.stage_seconds)
        with timer("decode"):
            records, errors = self._decoder.decode_batch(payloads)
        events, indices = [], []
        for index, (event, error) in enumerate(zip(records, errors, strict=True)):
            if error is None:
                try:
                    check_event(event)
                except InvalidEventError as exc:
                    error = exc
            if error is None:
                events.append(event)
                indices.append(index)
            else:
                outcome.rejected.append(RejectedMessage(index, error))
        scored = self._score(events, timer)
        outcome.duplicates, outcome.frame, outcome.predictions = scored.duplicates, scored.frame, scored.predictions
        with timer("encode"):
            encode = self._encode
            outcome.scored = [
                ScoredMessage(i, r["application_id"].encode(), encode(r), _millis(r["event_time"]))
                for i, r in zip(indices, scored.records, strict=True)
            ]
        return outcome

    def score_events(self, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score decoded, validated events into score result records (the offline path and the tests)."""
        return self._score(events, _StageTimer(dict.fromkeys(STAGES, 0.0))).records

    def _score(self, events: Sequence[dict[str, Any]], timer: _StageTimer) -> _Scored:
        hashes = [application_hash(e) for e in events]
        known: dict[str, Scores] = {}
        fresh_rows = []
        for row, h in enumerate(hashes):
            if h in known:
                continue
            cached = self._recent.get(h)
            if cached is None:
                known[h] = _PENDING
                fresh_rows.append(row)
            else:
                known[h] = cached
        frame: FeatureFrame | None = None
        predictions: dict[str, np.ndarray] = {}
        if fresh_rows:
            with timer("features"):
                frame = build_features([events[r] for r in fresh_rows])
            fresh_scores, predictions = score_frame(self.models, frame, self._reasons, timer)
            for row, s in zip(fresh_rows, fresh_scores, strict=True):
                known[hashes[row]] = s
                self._recent.put(hashes[row], s)
        scored_at = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        records = [self._record(e, h, known[h], scored_at) for e, h in zip(events, hashes, strict=True)]
        return _Scored(records, len(events) - len(fresh_rows), frame, predictions)

    def _record(self, event: dict[str, Any], app_hash: str, s: Scores, scored_at: dt.datetime) -> dict[str, Any]:
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


def _millis(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


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
