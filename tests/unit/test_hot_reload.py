"""Hot reload without a broker: the engine's swap, the follower's verification, and the run loop swapping sets
between two batches (the in-memory Kafka of ``consumer.kafka.memory``, a list standing in for the control topic).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from consumer.core.engine import BatchOutcome, ScoringEngine
from consumer.kafka.loop import ScoringLoop
from consumer.kafka.memory import MemoryBroker
from consumer.kafka.model_control import ModelFollower, Refused, verified_set
from consumer.service import build_engine
from consumer.settings import load_settings
from consumer.telemetry.drift import DriftMonitor, load_reference_profile
from consumer.telemetry.host import Telemetry
from consumer.telemetry.observer import NullObserver
from consumer.telemetry.worker_observer import WorkerObserver
from models.artifacts import ModelSet, load_models
from models.config import DEFAULT_ARTIFACTS_DIR, ModelsConfig
from models.features import build_features
from models.manifest import Manifest
from models.store import Activation, ModelStore
from producer_tools.world import generate
from schemas import ResultDecoder, SingleObjectEncoder, load_catalog
from tests.model_sets import flip_a_byte, small_model_set, store_with_two_sets

CATALOG = load_catalog()
RESULTS = ResultDecoder(CATALOG)
EVENTS = [SingleObjectEncoder(CATALOG.application_event_latest)(e) for e in generate(60, seed=29).events]
MODELS = ["bank_a", "bank_b", "bank_c", "bank_d", "bank_e", "lead"]


class ListFeed:
    """The control topic's values for one channel, handed out once each."""

    def __init__(self, *values: bytes) -> None:
        self.values = list(values)
        self.closed = False

    def poll(self, timeout_s: float) -> list[bytes]:
        values, self.values = self.values, []
        if not values:
            time.sleep(min(timeout_s, 0.01))
        return values

    def close(self) -> None:
        self.closed = True


def versions(value: bytes) -> tuple[tuple[str, str], ...]:
    result = RESULTS.decode(value)
    return (("lead", result["lead"]["model_version"]), *((b["bank"], b["model_version"]) for b in result["banks"]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "set"
    small_model_set(out, parent=Manifest.read(DEFAULT_ARTIFACTS_DIR).version)
    return out


@pytest.fixture
def store(tmp_path: Path, trained: Path) -> tuple[ModelStore, str, str]:
    return store_with_two_sets(tmp_path / "store", trained)


def activation_of(store: ModelStore, version: str) -> Activation:
    return Activation(version, store.manifest_sha256(version), "2026-12-06T20:00:00.000+00:00", "test", "")


def test_after_a_swap_results_carry_the_new_sets_versions_and_no_cached_score(
    engine: ScoringEngine, store: tuple[ModelStore, str, str]
) -> None:
    model_store, _, second = store
    before = {versions(s.value) for s in engine.score_batch(EVENTS[:10]).scored}
    engine.swap_models(load_models(ModelsConfig(), model_store.directory(second)))
    outcome = engine.score_batch(EVENTS[:10])  # the same applications: the cache must not answer them
    after = {versions(s.value) for s in outcome.scored}
    assert len(before) == len(after) == 1 and before != after
    assert outcome.duplicates == 0 and dict(next(iter(after)))["bank_c"].startswith("bank_c-")


def test_the_follower_loads_an_activated_set_once(store: tuple[ModelStore, str, str]) -> None:
    model_store, first, second = store
    refused: list[str] = []
    follower = ModelFollower(ListFeed(), model_store, ModelsConfig(), first, refused.append)
    follower.follow(activation_of(model_store, first).to_json())
    assert follower.take() is None, "the set it serves: nothing to load"
    follower.follow(activation_of(model_store, second).to_json())
    taken = follower.take()
    assert taken is not None and taken.version == second and follower.take() is None and refused == []


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda s, v: flip_a_byte(s.directory(v) / "bank_c.ubj"), "verification"),
        (lambda s, v: flip_a_byte(s.directory(v) / "manifest.json"), "manifest_changed"),
    ],
)
def test_a_spoilt_set_is_refused_with_its_reason_and_the_running_set_stays(
    store: tuple[ModelStore, str, str], spoil, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    model_store, first, second = store
    activation = activation_of(model_store, second)
    spoil(model_store, second)
    refused: list[str] = []
    follower = ModelFollower(ListFeed(), model_store, ModelsConfig(), first, refused.append)
    follower.follow(activation.to_json())
    follower.follow(b"{not json")
    assert refused == [reason, "bad_record"] and follower.take() is None
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2 and f"still scoring with model set {first}" in errors[0]


def test_an_activation_of_a_set_not_in_the_store_is_refused(store: tuple[ModelStore, str, str]) -> None:
    model_store = store[0]
    with pytest.raises(Refused, match="not in the store") as refused:
        verified_set(model_store, ModelsConfig(), Activation("nope", "0" * 64, "", "test", ""))
    assert refused.value.reason == "not_in_store"


class Batches(NullObserver):
    """Records each batch's model versions and the sets loaded; stops once every event was scored."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.loop: ScoringLoop | None = None
        self.batches: list[set[tuple[tuple[str, str], ...]]] = []
        self.loaded: list[ModelSet] = []
        self.scored = 0
        self.telemetry = telemetry
        self.rounds = 0

    def models_loaded(self, models: ModelSet) -> None:
        self.loaded.append(models)
        self.telemetry.metrics.record_models(models.versions(), [b.name for b in models.banks])

    def batch_scored(self, outcome: BatchOutcome, consumed: int) -> None:
        self.batches.append({versions(s.value) for s in outcome.scored})
        self.scored += len(outcome.scored)

    def heartbeat(self) -> None:
        self.rounds += 1
        if self.loop is not None and (self.scored >= len(EVENTS) or self.rounds > 500):
            self.loop.request_stop()


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_the_loop_swaps_sets_between_two_batches(store: tuple[ModelStore, str, str], guarantee: str) -> None:
    model_store, first, second = store
    settings = load_settings(None, guarantee=guarantee, consumer={"batch_size": 5, "instance_id": "unit"})
    engine = build_engine(settings, models=load_models(settings.models, model_store.directory(first)))
    broker = MemoryBroker()
    for value in EVENTS:
        broker.append(settings.topics.input, value)
    telemetry = Telemetry(settings, CollectorRegistry())
    observer = Batches(telemetry)
    feed = ListFeed(activation_of(model_store, second).to_json())
    follower = ModelFollower(feed, model_store, settings.models, first, observer.model_set_refused, poll_s=0.01)
    observer.loop = ScoringLoop(settings, engine, observer, clients=broker.clients(), follower=follower)
    observer.loop.run()
    assert all(len(batch) == 1 for batch in observer.batches) and len(observer.batches) == len(EVENTS) // 5
    sets = [next(iter(batch)) for batch in observer.batches]
    switch = next(i for i, s in enumerate(sets) if s != sets[0])
    assert set(sets[switch:]) == {sets[-1]} and dict(sets[-1])["lead"] == observer.loaded[-1].lead.version
    assert [m.version for m in observer.loaded] == [first, second] and feed.closed
    info = [m for m in telemetry.registry.collect() if m.name == "crm_scorer_model_info"]
    served = {sample.labels["version"] for metric in info for sample in metric.samples}
    assert served == set(observer.loaded[-1].versions().values())
    published = [versions(r.value or b"") for r in broker.records(settings.topics.output)]
    assert len(published) == len(EVENTS) and published.count(sets[-1]) == len(EVENTS) - 5 * switch


def test_drift_follows_the_served_sets_reference_profile(store: tuple[ModelStore, str, str]) -> None:
    model_store, first, second = store
    profiles = {v: load_reference_profile(model_store.directory(v)) for v in (first, second)}
    monitor = DriftMonitor(profiles[first], 500, 500, min_events=1)
    telemetry = Telemetry(load_settings(None), CollectorRegistry(), monitor)
    worker = WorkerObserver(telemetry.apply, 0, monitor.counter)
    worker.models_loaded(load_models(ModelsConfig(), model_store.directory(first)))
    assert worker.drift is not None
    stale = worker.drift.count(build_features(generate(50, seed=3).events), {})
    assert stale is not None
    monitor.add(stale)
    assert monitor.evaluate().window_events["short"] == 50
    worker.models_loaded(load_models(ModelsConfig(), model_store.directory(second)))
    assert worker.drift is not None and worker.drift.profile == profiles[second] == monitor.counter.profile
    assert monitor.evaluate().window_events["short"] == 0, "the windows start again against the new reference"
    monitor.add(np.zeros(monitor.counter.width + 1, np.int64))  # a batch binned for another profile
    assert monitor.evaluate().window_events["short"] == 0
