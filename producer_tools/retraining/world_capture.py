"""A training capture of the synthetic world without a broker: the scorer's engine, the world's outcomes and the
monitor's own join and capture writer, in one process.

The world's events are scored by the streaming engine (``consumer.service.build_offline_engine``, the models
the scorer is configured with) in batches whose scoring time follows the world's clock; each result is answered
with ``producer_tools.world.outcomes.plan_outcomes`` (routing, delays, lost and re-sent outcomes, the policy
change), and events, results and outcomes go, as the bytes they would be on the topics, through the monitor's
core (``consumer.monitor.processor.MonitorCore``, its RocksDB store, one partition) into its Parquet capture
(``consumer.monitor.capture.Capture``): the rows are exactly those ``crm-scorer monitor --capture-dir`` writes.
Outcomes are fed when the world's time passes their ``decided_at``, as they would arrive.
"""

from __future__ import annotations

import datetime as dt
import heapq
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from consumer.core.dedup import RecentScores
from consumer.core.engine import ScoringEngine
from consumer.core.offers import OfferBook
from consumer.core.result_writer import result_schema
from consumer.monitor.capture import Capture
from consumer.monitor.processor import APPLICATIONS, OUTCOMES, SCORES, InputMessage, MonitorCore
from consumer.monitor.settings import load_monitor_settings
from consumer.monitor.store import StateStore
from consumer.settings import Settings, load_settings
from models.artifacts import load_models
from producer_tools.world import WorldBatch, generate
from producer_tools.world.outcomes import OutcomeDraws, PolicyChange, Truth, plan_outcomes
from schemas import EventDecoder, ResultDecoder, SingleObjectEncoder, load_catalog
from schemas.framing import single_object_header

BATCH = 500  # events per scoring batch: 10 s of world time at the world's 50 events/s


@dataclass(frozen=True)
class WorldCapture:
    """What the run wrote: scored events, outcomes fed to the monitor, rows captured."""

    events: int
    outcomes: int
    rows: int

    def line(self) -> str:
        return f"world capture: {self.events} events scored, {self.outcomes} outcomes, {self.rows} rows captured"


class _Feed:
    """The monitor's input in arrival order: each message gets its stream's next offset."""

    def __init__(self, core: MonitorCore, capture: Capture) -> None:
        self._core, self._capture = core, capture
        self._offsets = {APPLICATIONS: 0, SCORES: 0, OUTCOMES: 0}
        self.messages: list[InputMessage] = []

    def add(self, stream: str, value: bytes) -> None:
        self.messages.append(InputMessage(stream, 0, self._offsets[stream], None, value))
        self._offsets[stream] += 1

    def apply(self) -> None:
        if self.messages:
            self._capture.add(self._core.apply(self.messages).rows)
            self.messages = []


def capture_world(
    directory: Path,
    world: WorldBatch,
    seed: int,
    policy: PolicyChange | None = None,
    draws: OutcomeDraws | None = None,
    log: Callable[[str], None] = print,
) -> WorldCapture:
    """Score ``world``, answer it (outcomes seeded by ``seed``), and capture the joined rows under ``directory``."""
    catalog = load_catalog()
    world_now = [0.0]
    engine = _engine(load_settings(None), clock=lambda: world_now[0])
    encode_event, encode_outcome = (
        SingleObjectEncoder(catalog.application_event_latest),
        SingleObjectEncoder(catalog.outcome),
    )
    results = ResultDecoder(catalog)
    due: list[tuple[int, int, bytes]] = []
    outcomes = 0
    with tempfile.TemporaryDirectory() as store_dir, StateStore(Path(store_dir)) as store:
        core = MonitorCore(store, load_monitor_settings(None))
        core.assigned([0])
        capture = Capture(directory, core.event_of)
        feed = _Feed(core, capture)
        for start in range(0, len(world.events), BATCH):
            chunk = world.events[start : start + BATCH]
            world_now[0] = chunk[-1]["occurred_at"].timestamp()
            payloads = [encode_event(event) for event in chunk]
            for payload in payloads:
                feed.add(APPLICATIONS, payload)
            for scored in engine.score_batch(payloads).scored:
                feed.add(SCORES, scored.value)
                index = start + scored.index
                truth = Truth(index, world.truth[index], world.events[index])
                for planned in plan_outcomes(
                    results.decode(scored.value), truth, seed, draws or OutcomeDraws(), policy
                ):
                    record = dict(planned.record)
                    record["decided_at"] = dt.datetime.fromtimestamp(record["decided_at"] / 1000, dt.UTC)
                    heapq.heappush(due, (planned.record["decided_at"], outcomes, encode_outcome(record)))
                    outcomes += 1
            while due and due[0][0] <= world_now[0] * 1000:
                feed.add(OUTCOMES, heapq.heappop(due)[2])
            feed.apply()
            if start % (20 * BATCH) == 0:
                log(f"  scored {start + len(chunk)} of {len(world.events)} events")
        while due:
            feed.add(OUTCOMES, heapq.heappop(due)[2])
            if len(feed.messages) >= 5 * BATCH:
                feed.apply()
        feed.apply()
        capture.flush()
    return WorldCapture(len(world.events), outcomes, capture.written)


def _engine(settings: Settings, clock: Callable[[], float]) -> ScoringEngine:
    """The scorer's offline engine (``consumer.service.build_offline_engine``) on the world's clock."""
    return ScoringEngine(
        load_models(settings.models),
        EventDecoder(load_catalog()),
        single_object_header(result_schema()),
        config_hash=settings.config_hash(),
        reasons=settings.models.reasons,
        recent=RecentScores[bytes](settings.dedup.capacity if settings.dedup.enabled else 0),
        clock=clock,
        offers=OfferBook.of(settings.models),
        reason_codes=settings.models.reason_codes,
    )


def world_of(count: int, seed: int) -> WorldBatch:
    """The world ``crm-producer produce --count --seed`` sends (the latest event schema)."""
    return generate(count, seed, schema_version="v2")
