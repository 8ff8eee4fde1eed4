"""The monitor without Kafka: batches of (topic, partition, offset, value) in, joined rows and figures out.

``MonitorCore.apply`` decodes a batch (score results by whatever writer schema they carry, through the
project's decoders), joins it, feeds the detectors, expires what passed its TTL and writes all of it with the
next offsets of every partition it touched in one transaction. ``start_offset`` is where a member resumes a
partition: the offset the store holds, or the beginning of the topic when the store holds nothing for it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from consumer.monitor.join import CHALLENGER, LEAD, Changes, JoinedRow, PartitionJoin, outcome_fields, score_snapshot
from consumer.monitor.metrics import MonitorState
from consumer.monitor.paired import Paired, compare, paired_rows
from consumer.monitor.rollback import RollbackRule
from consumer.monitor.settings import MonitorSettings
from consumer.monitor.store import StateStore, partition_prefix
from consumer.monitor.trigger import Decision, TriggerBounds, decide, retrain_line
from consumer.monitor.windows import GLOBAL, WINDOWS, Detectors, detector_recent, window_quality, window_rows
from schemas import EventDecoder, RecordDecoder, ResultDecoder, SchemaSource, load_catalog
from schemas.errors import InvalidEventError

log = logging.getLogger(__name__)
SCORES, OUTCOMES, APPLICATIONS, SHADOW = "scores", "outcomes", "applications", "shadow"
Stage = Callable[[Changes, list[tuple[int, JoinedRow]]], None]  # (input partition, row)


@dataclass(frozen=True)
class InputMessage:
    """One consumed message; ``stream`` is ``"scores"`` or ``"outcomes"``."""

    stream: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class BatchResult:
    rows: list[JoinedRow]
    undecodable: dict[str, int]
    fired: list[str]


class MonitorCore:
    """The join, the detectors and the figures over one state store."""

    def __init__(
        self,
        store: StateStore,
        settings: MonitorSettings,
        registry: SchemaSource | None = None,
        rule: RollbackRule | None = None,
    ) -> None:
        catalog = load_catalog()
        self.rule = rule  # the rollback rule, when the model store is known
        self._store = store
        self._settings = settings
        self._scores = ResultDecoder(catalog, registry)
        self._outcomes = RecordDecoder(catalog.outcome, catalog, registry)
        self._outcomes.expects = "an outcome"
        self._events = EventDecoder(catalog, registry)
        d = settings.detector
        self._detectors = Detectors(d.min_instances, d.delta)
        self._bounds = TriggerBounds.of(settings)
        self.partitions: set[int] = set()
        self.models: set[str] = set()

    def start_offset(self, stream: str, partition: int) -> int | None:
        """The next offset of ``stream``'s ``partition`` the store holds (None: rebuild from the beginning)."""
        raw = self._store.get(partition_prefix(partition) + f"off/{stream}".encode())
        return None if raw is None else int(raw)

    def reset_partition(self, partition: int) -> None:
        """Forget ``partition``'s state: it is replayed from the beginning of both topics."""
        self._store.drop_partition(partition)
        self._detectors.forget()

    def apply(self, batch: Sequence[InputMessage], stage: Stage | None = None) -> BatchResult:
        """Join ``batch`` and write it, with the next offsets, in one transaction; ``stage`` puts the joined rows
        in that transaction too (the capture's outbox: a row is stored with the offsets that made it)."""
        tx = self._store.transaction()
        rows: list[JoinedRow] = []
        staged: list[tuple[int, JoinedRow]] = []
        undecodable = {SCORES: 0, OUTCOMES: 0, APPLICATIONS: 0, SHADOW: 0}
        touched: set[int] = set()
        for message in batch:
            join = PartitionJoin(tx, partition_prefix(message.partition))
            touched.add(message.partition)
            tx.put(partition_prefix(message.partition) + f"off/{message.stream}".encode(), b"%d" % (message.offset + 1))
            try:
                joined = self._apply_one(join, message)
                rows += joined
                staged += [(message.partition, row) for row in joined]
            except (InvalidEventError, KeyError, TypeError, ValueError) as exc:
                undecodable[message.stream] += 1
                tx.add(partition_prefix(message.partition) + f"stat/undecodable_{message.stream}".encode())
                log.warning("%s partition %d offset %d: %s", message.stream, message.partition, message.offset, exc)
        fired = self._detectors.update(tx, rows)
        ttl_ms = int(self._settings.store.ttl_s * 1000)
        for partition in touched:
            PartitionJoin(tx, partition_prefix(partition)).expire(self._store, ttl_ms)
        if stage is not None:
            stage(tx, staged)
        tx.commit()
        self.models.update(row.model for row in rows)
        return BatchResult(rows, undecodable, fired)

    def event_of(self, row: JoinedRow) -> bytes | None:
        """The bytes of the application event ``row``'s score answered, when the store holds them."""
        for partition in sorted(self.partitions):
            raw = self._store.get(partition_prefix(partition) + f"evt/{row.score_event_id}".encode())
            if raw is not None:
                return raw
        return None

    def _apply_one(self, join: PartitionJoin, message: InputMessage) -> list[JoinedRow]:
        if message.stream == SCORES:
            result = self._scores.decode(message.value)
            return join.add_score(str(result["application_id"]), score_snapshot(result))
        if message.stream == SHADOW:
            join.add_shadow(json.loads(message.value or b""))
            return []
        if message.stream == APPLICATIONS:
            event = self._events.decode(message.value)
            join.add_event(str(event["event_id"]), _ms(event["occurred_at"]), bytes(message.value or b""))
            return []
        return join.add_outcome(outcome_fields(self._outcomes.decode(message.value)))

    def state(self) -> MonitorState:
        """Counters summed over the member's partitions, and each model's figures in both windows."""
        counters: dict[str, int] = {}
        for prefix in [*(partition_prefix(p) for p in sorted(self.partitions)), GLOBAL]:
            for key, value in self._store.scan(prefix + b"stat/", prefix + b"stat0"):
                name = key[len(prefix) + 5 :].decode()
                counters[name] = counters.get(name, 0) + int(value)
        self.models.update(k.partition("/")[2] for k in counters if k.startswith("joined/"))
        q = self._settings.quality
        drift = {
            m: detector_recent(
                counters.get(f"fed/{m}", 0), self._drift_at(m), counters.get(f"drift/{m}", 0), q.count_window
            )
            for m in self.models
        }
        figures, decisions = {}, {}
        for model in sorted(self.models):
            horizon = q.lead_horizon_s * 1000 if model == LEAD else 0.0
            windows = window_rows(self._store, self.partitions, model, q.count_window, q.time_window_s * 1000, horizon)
            for window in WINDOWS:
                if windows[window].probability.size >= q.min_outcomes:  # fewer: no figure yet
                    figures[(model, window)] = window_quality(windows[window], q.calibration_bins)
            rows = windows["count"]
            decisions[model] = decide(
                rows.probability, rows.positive, rows.probability.size, drift[model], self._bounds, q.min_outcomes
            )
        state = MonitorState(counters, figures, drift, decisions, self._retrain_since(counters, decisions))
        state.paired = self._paired()
        if self.rule is not None:
            state.rollback = self.rule.figures(self._store, self.partitions, q.count_window)
        return state

    def _paired(self) -> dict[str, Paired]:
        """Champion and challenger on the same outcomes, per model that has a challenger's rows."""
        count, least = self._settings.quality.count_window, self._settings.lifecycle.promote_min_outcomes
        out = {}
        for model in sorted(m.removesuffix(CHALLENGER) for m in self.models if m.endswith(CHALLENGER)):
            champion, challenger, y = paired_rows(self._store, self.partitions, model, count)
            out[model] = compare(champion, challenger, y, least)
        return out

    def _retrain_since(self, counters: dict[str, int], decisions: dict[str, Decision]) -> dict[str, int]:
        """Each recommending model's outcomes since its trigger fired. The joined count at the firing is kept in
        the store, so a restart neither forgets the firing nor logs it again; it is dropped when the decision
        goes back to no."""
        tx, since = self._store.transaction(), {}
        for model, decision in sorted(decisions.items()):
            key, joined = GLOBAL + f"retrain_at/{model}".encode(), counters.get(f"joined/{model}", 0)
            fired_at = self._store.get(key)
            if decision.retrain and fired_at is None:
                tx.put(key, b"%d" % joined)
                line = retrain_line(model, decision, self._bounds, self._settings.capture_dir)
                log.warning("retraining recommended for %s: %s", model, line)
            elif not decision.retrain and fired_at is not None:
                tx.delete(key)
            if decision.retrain:
                since[model] = joined - int(fired_at or joined)
        tx.commit()
        return since

    def _drift_at(self, model: str) -> int:
        raw = self._store.get(GLOBAL + f"drift_at/{model}".encode())
        return int(raw) if raw else 0

    def assigned(self, partitions: Iterable[int]) -> None:
        self.partitions = set(partitions)


def _ms(value: object) -> int:
    return int(value.timestamp() * 1000) if isinstance(value, dt.datetime) else int(str(value))
