"""A worker's side of the scorer's metrics: ``WorkerObserver`` turns each batch into a small ``Report``
(counts, histogram bucket counts, drift bin counts: numpy, never a Python call per event) and hands it to a
sink (``consumer.telemetry.metrics`` holds the reports and the registry's metrics they feed).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from consumer.core.engine import BatchOutcome
from consumer.telemetry.drift import DriftCounter, load_reference_profile
from consumer.telemetry.lag import LagBook, Partition, PartitionOffsets, stats_offsets
from consumer.telemetry.metrics import (
    LATENCY_BUCKETS,
    SCORE_BUCKETS,
    STAGES,
    BatchReport,
    BulkHistogram,
    PublishedReport,
    SchemaContractReport,
    Sink,
    WorkerStateReport,
)
from consumer.telemetry.shadow import shadow_report
from models.artifacts import ModelSet
from models.schema_contract import FAILURE, check_contract
from schemas.catalog import SchemaVersion
from schemas.errors import ArtifactError


def summarise_batch(
    outcome: BatchOutcome, consumed: int, worker: int, thresholds: dict[str, float], drift: DriftCounter | None
) -> BatchReport:
    """What a batch contributes to the metrics: a few numpy calls, independent of the batch size in Python calls."""
    dead: dict[str, int] = {}
    for rejected in outcome.rejected:
        dead[rejected.error.reason] = dead.get(rejected.error.reason, 0) + 1
    frame = outcome.frame
    fresh = 0 if frame is None else len(frame.matrix)
    approvals, scores = {}, {}
    for model, p in outcome.predictions.items():
        scores[model] = _SCORE.bucket_counts(p)
        if model in thresholds:
            approvals[model] = int(np.count_nonzero(p >= thresholds[model]))
    return BatchReport(
        worker=worker,
        consumed=consumed,
        duplicates=outcome.duplicates,
        dead_letters=dead,
        anomalies=dict(frame.anomalies) if frame is not None else {},
        stage_seconds={s: v for s, v in outcome.stage_seconds.items() if s in STAGES},
        fresh=fresh,
        approvals=approvals,
        scores=scores,
        drift=drift.count(frame, outcome.predictions) if drift is not None else None,
    )


log = logging.getLogger(__name__)
_SCORE = BulkHistogram("score", "", SCORE_BUCKETS)  # bucket arithmetic only, never registered
_LATENCY = BulkHistogram("latency", "", LATENCY_BUCKETS)


def parse_kafka_stats(stats_json: str) -> tuple[dict[Partition, PartitionOffsets], bool | None]:
    """The offsets of each partition the consumer holds (see ``consumer.telemetry.lag``) and whether any broker
    is up, from librdkafka's statistics. Malformed JSON gives ``({}, None)``."""
    try:
        stats = json.loads(stats_json)
    except (json.JSONDecodeError, TypeError):
        return {}, None
    brokers = stats.get("brokers") or {}
    up = any(b.get("state") == "UP" for b in brokers.values()) if brokers else None
    return stats_offsets(stats), up


class WorkerObserver:
    """The run loop's observer in a worker: summarises each callback into a ``Report`` for ``sink``."""

    def __init__(
        self,
        sink: Sink,
        worker: int = 0,
        drift: DriftCounter | None = None,
        heartbeat_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink, self.worker, self.drift = sink, worker, drift
        self._heartbeat_every_s = heartbeat_every_s
        self._clock = clock
        self._thresholds: dict[str, float] = {}
        self._last_beat = -math.inf
        self._lag = LagBook()
        self._profile: tuple[str, str] | None = None  # the served set's reference profile: (sha256, directory)
        self._models: ModelSet | None = None

    def models_loaded(self, models: ModelSet) -> None:
        self._thresholds = {bank.name: bank.threshold for bank in models.banks}
        self._models = models  # the schema contract checks writer schemas against the models of the moment
        banks = tuple(bank.name for bank in models.banks)
        profile = _profile_of(models)
        if self.drift is not None and profile is not None and self._profile not in (None, profile):
            self._rebase_drift(profile)
        self._profile = profile
        self.sink(WorkerStateReport(self.worker, models=models.versions(), banks=banks, profile=profile))

    def _rebase_drift(self, profile: tuple[str, str]) -> None:
        """A newly activated set: count drift against its reference profile (verified again; a few ms)."""
        try:
            self.drift = DriftCounter(load_reference_profile(Path(profile[1])))
        except ArtifactError as exc:
            log.error("drift keeps the previous set's reference profile: %s", exc)

    def model_set_refused(self, reason: str) -> None:
        self.sink(WorkerStateReport(self.worker, refused=reason))

    def watchdog_fired(self, call: str) -> None:
        self.sink(WorkerStateReport(self.worker, watchdog=call))

    def batch_scored(self, outcome: BatchOutcome, consumed: int) -> None:
        self.sink(summarise_batch(outcome, consumed, self.worker, self._thresholds, self.drift))
        if outcome.shadow:
            self.sink(shadow_report(outcome.shadow, self.worker))

    def batch_published(self, results: int, dead_letters: int, latencies_s: np.ndarray) -> None:
        counts, total = _LATENCY.bucket_counts(latencies_s)
        # dead_letters: counted per reason when the batch was scored (crm_scorer_dead_letters_total)
        self.sink(PublishedReport(self.worker, results, counts, total))

    def writer_schema_seen(self, writer: SchemaVersion, reader: SchemaVersion) -> None:
        """Check a writer schema met for the first time against this worker's models (once per schema)."""
        models = self._models
        if models is None:
            return
        try:
            features = {**{bank.name: bank.features for bank in models.banks}, "lead": models.lead.features}
            rows = check_contract(writer, reader, features)
        except Exception:  # the check must never cost a message: it runs inside that message's decoding
            log.exception("schema contract check of %s failed; scoring goes on", writer.label)
            return
        failures = tuple((r.model, r.feature, r.field, r.problem) for r in rows if r.severity == FAILURE)
        self.sink(
            SchemaContractReport(self.worker, writer.label, writer.fingerprint, failures, len(rows) - len(failures))
        )

    def heartbeat(self) -> None:
        now = self._clock()
        if now - self._last_beat >= self._heartbeat_every_s:  # the loop turns up to ~20 times a second
            self._last_beat = now
            self.sink(WorkerStateReport(self.worker, heartbeat=True))

    def assignment_changed(self, partitions: int) -> None:
        if partitions == 0:
            self._lag.clear()
        self.sink(WorkerStateReport(self.worker, partitions=partitions))

    def broker_state(self, up: bool) -> None:
        self.sink(WorkerStateReport(self.worker, broker_up=up))

    def registry_state(self, up: bool) -> None:
        self.sink(WorkerStateReport(self.worker, registry_up=up))

    def kafka_stats(self, stats_json: str) -> None:
        offsets, up = parse_kafka_stats(stats_json)
        self._lag.read_stats(offsets)
        self.sink(WorkerStateReport(self.worker, broker_up=up, lags=self._lag.lags()))

    def offsets_committed(self, offsets: dict[Partition, int], high_watermarks: dict[Partition, int]) -> None:
        self._lag.committed(offsets, high_watermarks)
        self.sink(WorkerStateReport(self.worker, lags=self._lag.lags()))


def _profile_of(models: ModelSet) -> tuple[str, str] | None:
    """The set's reference profile as (sha256, the set's directory), None when it has none or no directory."""
    manifest, directory = getattr(models, "manifest", None), getattr(models, "directory", None)  # stand-ins lack them
    entry = manifest.reference_profile if manifest is not None else None
    return (entry.sha256, str(directory)) if entry is not None and directory is not None else None
