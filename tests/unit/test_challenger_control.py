"""The challenger's control without a broker: the store's challenger record, the worker's follower (a list standing
in for the control topic), the scorer's comparison metrics, and the monitor's verdict as `models promote` reads it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from consumer.commands.cli import main
from consumer.commands.promotion import parse_verdict
from consumer.core.challenger import Challenger
from consumer.core.engine import BatchOutcome
from consumer.kafka.challenger_control import ChallengerFollower
from consumer.kafka.loop import ScoringLoop
from consumer.kafka.memory import MemoryBroker
from consumer.monitor.metrics import MonitorMetrics, MonitorState
from consumer.monitor.paired import compare
from consumer.service import build_engine
from consumer.settings import load_settings
from consumer.telemetry.observer import NullObserver
from consumer.telemetry.shadow import ShadowMetrics, ShadowReport
from models import challengers
from models.artifacts import ModelSet
from models.config import ModelsConfig
from models.store import ModelStore, StoreError
from producer_tools.world import generate
from schemas import ResultDecoder, SingleObjectEncoder, load_catalog
from tests.model_sets import flip_a_byte
from tests.unit.test_monitor_lifecycle import synthetic, two_set_store


class ListFeed:
    def __init__(self) -> None:
        self.closed = False

    def poll(self, timeout_s: float) -> list[bytes]:
        time.sleep(min(timeout_s, 0.01))
        return []

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def store(tmp_path: Path) -> tuple[ModelStore, str, str]:
    models, first, second = two_set_store(tmp_path)
    models.rollback(["lead"], "test", "back to the committed set")  # the copy is a candidate again
    return models, first, second


def test_the_store_records_one_challenger_set_and_refuses_what_cannot_challenge(
    store: tuple[ModelStore, str, str],
) -> None:
    models, first, second = store
    assert challengers.current(models) is None
    with pytest.raises(StoreError, match="is the active set"):
        challengers.shadow(models, first, ("bank_c",), "test", "")
    with pytest.raises(StoreError, match="no model bank_z"):
        challengers.shadow(models, second, ("bank_z",), "test", "")
    record = challengers.shadow(models, second, ("bank_c",), "test", "retrained")
    assert challengers.current(models) == record and record.models == ("bank_c",)
    assert challengers.ShadowRecord.from_json(record.to_json()) == record
    assert challengers.clear(models, "test", "done").cleared and challengers.current(models).cleared  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="models missing or of the wrong type"):
        challengers.ShadowRecord.from_json(b'{"version": "x", "manifest_sha256": "", "at": "", "by": "", "reason": ""}')


def test_the_follower_loads_a_challenger_once_and_hands_over_its_end(store: tuple[ModelStore, str, str]) -> None:
    models, _, second = store
    refused: list[str] = []
    follower = ChallengerFollower(ListFeed(), models, ModelsConfig(), refused.append)
    record = challengers.shadow(models, second, ("bank_c",), "test", "")
    follower.follow(record.to_json())
    changed, challenger = follower.take()
    assert changed and challenger is not None and challenger.version == second and challenger.names == ("bank_c",)
    follower.follow(record.to_json())
    assert follower.take() == (False, None), "the challenger in place: nothing to load"
    follower.follow(challengers.clear(models, "test", "").to_json())
    assert follower.take() == (True, None) and refused == []


def test_a_spoilt_challenger_set_is_refused_and_the_worker_keeps_scoring(store: tuple[ModelStore, str, str]) -> None:
    models, _, second = store
    record = challengers.shadow(models, second, ("bank_c",), "test", "")
    flip_a_byte(models.directory(second) / "bank_c.ubj")
    refused: list[str] = []
    follower = ChallengerFollower(ListFeed(), models, ModelsConfig(), refused.append)
    follower.follow(record.to_json())
    follower.follow(b"{not json")
    assert refused == ["verification", "bad_record"] and follower.take() == (False, None)


def test_the_scorer_exports_agreement_flips_cost_rank_correlation_and_psi(model_set: ModelSet) -> None:
    registry = CollectorRegistry()
    metrics = ShadowMetrics(registry)
    p = np.linspace(0.01, 0.99, 200)
    metrics.record(ShadowReport(0, {"bank_c": ("c-2", 200, 190, 4, 6, 0.002)}, {"bank_c": (p, p)}))
    value = registry.get_sample_value
    assert value("crm_scorer_shadow_agreed_total", {"model": "bank_c"}) == 190
    assert value("crm_scorer_shadow_flips_to_approve_total", {"model": "bank_c"}) == 4
    assert value("crm_scorer_shadow_flips_to_decline_total", {"model": "bank_c"}) == 6
    assert value("crm_scorer_shadow_seconds_total", {"model": "bank_c"}) == pytest.approx(0.002)
    assert value("crm_scorer_shadow_rank_correlation", {"model": "bank_c"}) == pytest.approx(1.0)
    assert value("crm_scorer_shadow_psi", {"model": "bank_c"}) == pytest.approx(0.0)
    metrics.record(ShadowReport(0, {"bank_c": ("c-3", 200, 200, 0, 0, 0.001)}, {"bank_c": (p, 1 - p)}))
    assert value("crm_scorer_shadow_rank_correlation", {"model": "bank_c"}) == pytest.approx(-1.0), "a new window"
    assert Challenger(model_set, ("bank_c",)).model_version("bank_c") == model_set.versions()["bank_c"]


def test_promote_reads_the_monitors_verdict_from_its_metrics() -> None:
    champion, challenger, y = synthetic(1000, seed=2)
    metrics = MonitorMetrics(CollectorRegistry())
    metrics.state.publish(MonitorState(paired={"bank_c": compare(champion, challenger, y, 500)}))
    text = generate_latest(metrics.registry).decode()
    verdict = parse_verdict(text, "bank_c")
    assert verdict.wins and verdict.outcomes == 1000 and verdict.lower_bound > 0
    assert verdict.line().startswith("bank_c: challenger AUC minus champion +") and verdict.line().endswith(": wins")
    assert not parse_verdict(text, "bank_a").wins, "no challenger of bank_a: no verdict, no win"


class StopWhenScored(NullObserver):
    def __init__(self, expected: int) -> None:
        self.loop: ScoringLoop | None = None
        self.expected, self.scored, self.rounds = expected, 0, 0

    def batch_scored(self, outcome: BatchOutcome, consumed: int) -> None:
        self.scored += len(outcome.scored)

    def heartbeat(self) -> None:
        self.rounds += 1
        if self.loop is not None and (self.scored >= self.expected or self.rounds > 500):
            self.loop.request_stop()


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_the_loop_publishes_the_challengers_scores_beside_unchanged_results(
    store: tuple[ModelStore, str, str], guarantee: str
) -> None:
    models, _, second = store
    settings = load_settings(None, guarantee=guarantee, consumer={"batch_size": 10, "instance_id": "unit"})
    events = [SingleObjectEncoder(load_catalog().application_event_latest)(e) for e in generate(60, seed=5).events]
    broker = MemoryBroker()
    for value in events:
        broker.append(settings.topics.input, value)
    record = challengers.shadow(models, second, ("bank_c",), "test", "")
    follower = ChallengerFollower(ListFeed(), models, settings.models, lambda _: None, poll_s=0.01)
    follower.follow(record.to_json())  # loaded before the first batch: the loop hands it over between two batches
    observer = StopWhenScored(len(events))
    engine = build_engine(settings)
    observer.loop = ScoringLoop(settings, engine, observer, clients=broker.clients(), shadow=follower)
    observer.loop.run()
    shadowed = [json.loads(r.value or b"") for r in broker.records(settings.models.shadow_topic)]
    results = {str(ResultDecoder().decode(r.value or b"")["event_id"]) for r in broker.records(settings.topics.output)}
    assert len(results) == len(events) and len(events) - 5 < len(shadowed) <= len(events), "every fresh row"
    assert {s["event_id"] for s in shadowed} <= results
    assert {s["models"]["bank_c"][2] for s in shadowed} == {models.manifest(second).models["bank_c"].version}


def test_models_list_names_the_challenger(
    store: tuple[ModelStore, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    models, _, second = store
    challengers.shadow(models, second, ("bank_c",), "ops", "retrained")
    assert main(["models", "--store", str(models.root), "list"]) == 0
    assert f"challenger: {second} (bank_c), by ops at " in capsys.readouterr().out
