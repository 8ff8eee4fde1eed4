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


class _Answers:
    """The world's outcomes of the scores, each released once the world's time passes its ``decided_at``."""

    def __init__(self, seed: int, policy: PolicyChange | None, draws: OutcomeDraws) -> None:
        catalog = load_catalog()
        self._results, self._encode = ResultDecoder(catalog), SingleObjectEncoder(catalog.outcome)
        self._seed, self._policy, self._draws = seed, policy, draws
        self._heap: list[tuple[int, int, bytes]] = []
        self.planned = 0

    def answer(self, result: bytes, truth: Truth) -> None:
        for planned in plan_outcomes(self._results.decode(result), truth, self._seed, self._draws, self._policy):
            record = dict(planned.record)
            record["decided_at"] = dt.datetime.fromtimestamp(record["decided_at"] / 1000, dt.UTC)
            heapq.heappush(self._heap, (planned.record["decided_at"], self.planned, self._encode(record)))
            self.planned += 1

    def due(self, now_ms: float = float("inf")) -> list[bytes]:
        out = []
        while self._heap and self._heap[0][0] <= now_ms:
            out.append(heapq.heappop(self._heap)[2])
        return out


def capture_world(
    directory: Path,
    world: WorldBatch,
    seed: int,
    policy: PolicyChange | None = None,
    draws: OutcomeDraws | None = None,
    log: Callable[[str], None] = print,
) -> WorldCapture:
    """Score ``world``, answer it (outcomes seeded by ``seed``), and capture the joined rows under ``directory``."""
    world_now = [0.0]
    engine = _engine(load_settings(None), clock=lambda: world_now[0])
    answers = _Answers(seed, policy, draws or OutcomeDraws())
    with tempfile.TemporaryDirectory() as store_dir, StateStore(Path(store_dir)) as store:
        core = MonitorCore(store, load_monitor_settings(None))
        core.assigned([0])
        capture = Capture(directory, core.event_of)
        feed = _Feed(core, capture)
        for start in range(0, len(world.events), BATCH):
            world_now[0] = world.events[min(start + BATCH, len(world.events)) - 1]["occurred_at"].timestamp()
            _score(world, start, engine, feed, answers)
            for value in answers.due(world_now[0] * 1000):
                feed.add(OUTCOMES, value)
            feed.apply()
            if start % (20 * BATCH) == 0:
                log(f"  scored {start + BATCH} of {len(world.events)} events")
        for value in answers.due():  # what is decided after the last score: in order, a batch at a time
            feed.add(OUTCOMES, value)
            if len(feed.messages) >= 5 * BATCH:
                feed.apply()
        feed.apply()
        capture.flush()
    return WorldCapture(len(world.events), answers.planned, capture.written)


def _score(world: WorldBatch, start: int, engine: ScoringEngine, feed: _Feed, answers: _Answers) -> None:
    """Events ``start`` to ``start + BATCH``: to the monitor, through the engine, their scores answered."""
    encode = SingleObjectEncoder(load_catalog().application_event_latest)
    payloads = [encode(event) for event in world.events[start : start + BATCH]]
    for payload in payloads:
        feed.add(APPLICATIONS, payload)
    for scored in engine.score_batch(payloads).scored:
        feed.add(SCORES, scored.value)
        index = start + scored.index
        answers.answer(scored.value, Truth(index, world.truth[index], world.events[index]))


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
