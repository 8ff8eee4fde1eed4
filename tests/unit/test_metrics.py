"""Metrics, reports and health: counters agree with the batches, bulk histograms equal one-by-one observation."""

from __future__ import annotations

import json
import queue
import urllib.error
import urllib.request
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from consumer.core.engine import BatchOutcome, RejectedMessage, ScoredMessage
from consumer.settings import Settings
from consumer.telemetry.health import HealthState
from consumer.telemetry.host import Telemetry
from consumer.telemetry.lag import PartitionOffsets
from consumer.telemetry.metrics import (
    LATENCY_BUCKETS,
    STAGES,
    BulkHistogram,
    WorkerStateReport,
)
from consumer.telemetry.worker_observer import WorkerObserver, parse_kafka_stats
from consumer.telemetry.worker_reports import QueueSink
from models.features import build_features
from producer_tools import world
from schemas.errors import AvroDecodeError, EventValidationError, FramingError

MODELS: Any = SimpleNamespace(
    banks=(SimpleNamespace(name="bank_a", threshold=0.5), SimpleNamespace(name="bank_b", threshold=0.2)),
    versions=lambda: {"bank_a": "bank_a-1", "bank_b": "bank_b-2", "lead": "lead-3"},
)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def fake_outcome(fresh: int = 40, duplicates: int = 5) -> BatchOutcome:
    frame = build_features(world.generate(fresh, 1).events)
    frame.anomalies = {("income", "out_of_range"): 2, ("goods_category", "unknown_category"): 1}
    rng = np.random.default_rng(0)
    rejected = [
        RejectedMessage(100, AvroDecodeError("bad bytes")),
        RejectedMessage(101, AvroDecodeError("bad bytes")),
        RejectedMessage(102, FramingError("no magic")),
        RejectedMessage(103, EventValidationError("missing", field="event_id", reason="missing_id")),
    ]
    scored = [ScoredMessage(i, b"k", b"v", 0) for i in range(fresh + duplicates)]
    predictions = {"bank_a": rng.random(fresh), "bank_b": rng.random(fresh), "lead": rng.random(fresh)}
    stages = {stage: 0.001 * (k + 1) for k, stage in enumerate(STAGES)}
    return BatchOutcome(scored, rejected, duplicates, frame, predictions, stages)


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry.from_settings(Settings(), CollectorRegistry())


def test_bulk_histogram_equals_observing_one_by_one() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.exponential(0.5, 2000), np.array(LATENCY_BUCKETS), [0.0, 1e6]])  # bounds exactly
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    bulk = BulkHistogram("latency_seconds", "doc", LATENCY_BUCKETS, ["stage"])
    ours.register(bulk)
    one_by_one = Histogram("latency_seconds", "doc", ["stage"], buckets=LATENCY_BUCKETS, registry=theirs)
    for chunk in np.array_split(values, 7):
        bulk.observe_many(np.concatenate([chunk, [np.nan]]), ("decode",))  # NaN is no observation
    for v in values:
        one_by_one.labels("decode").observe(float(v))
    for le in [*LATENCY_BUCKETS, float("inf")]:
        labels = {"stage": "decode", "le": _go(le)}
        assert ours.get_sample_value("latency_seconds_bucket", labels) == theirs.get_sample_value(
            "latency_seconds_bucket", labels
        )
    assert ours.get_sample_value("latency_seconds_count", {"stage": "decode"}) == len(values)
    assert ours.get_sample_value("latency_seconds_sum", {"stage": "decode"}) == pytest.approx(values.sum())


def _go(bound: float) -> str:
    from prometheus_client.utils import floatToGoString

    return floatToGoString(bound)


def test_counters_agree_with_the_batch(telemetry: Telemetry) -> None:
    registry = telemetry.registry
    observer = telemetry.observer()
    observer.models_loaded(MODELS)
    outcome = fake_outcome()
    observer.batch_scored(outcome, consumed=49)

    assert value(registry, "crm_scorer_events_consumed_total") == 49
    assert value(registry, "crm_scorer_duplicates_total") == 5
    assert value(registry, "crm_scorer_dead_letters_total", reason="avro_decode_error") == 2
    assert value(registry, "crm_scorer_dead_letters_total", reason="unknown_framing") == 1
    assert value(registry, "crm_scorer_dead_letters_total", reason="missing_id") == 1
    assert value(registry, "crm_scorer_feature_anomalies_total", feature="income", kind="out_of_range") == 2
    for bank, threshold in (("bank_a", 0.5), ("bank_b", 0.2)):
        approved = int((outcome.predictions[bank] >= threshold).sum())
        assert value(registry, "crm_scorer_approvals_total", bank=bank) == approved
        assert value(registry, "crm_scorer_bank_scored_total", bank=bank) == 40
    assert value(registry, "crm_scorer_approvals_total", bank="lead") is None  # the lead model approves nothing
    lead = outcome.predictions["lead"]
    assert value(registry, "crm_scorer_prediction_score_count", model="lead") == 40
    assert value(registry, "crm_scorer_prediction_score_bucket", model="lead", le="0.5") == (lead <= 0.5).sum()
    assert value(registry, "crm_scorer_batch_size_sum") == 49
    for stage, seconds in outcome.stage_seconds.items():
        assert value(registry, "crm_scorer_stage_seconds_sum", stage=stage) == pytest.approx(seconds)
        assert value(registry, "crm_scorer_stage_seconds_count", stage=stage) == 49
    assert value(registry, "crm_scorer_model_info", model="lead", version="lead-3") == 1
    assert value(registry, "crm_scorer_config_info", config_hash=Settings().config_hash()) == 1


def test_published_results_and_latency(telemetry: Telemetry) -> None:
    observer = telemetry.observer()
    observer.batch_published(3, 1, np.array([0.004, 0.2, 7.0]))
    registry = telemetry.registry
    assert value(registry, "crm_scorer_results_published_total") == 3
    assert value(registry, "crm_scorer_end_to_end_latency_seconds_count") == 3
    assert value(registry, "crm_scorer_end_to_end_latency_seconds_bucket", le="0.005") == 1
    assert value(registry, "crm_scorer_end_to_end_latency_seconds_bucket", le="10.0") == 3


def test_drift_counts_reach_the_windows(telemetry: Telemetry) -> None:
    assert telemetry.drift is not None
    observer = telemetry.observer()
    for _ in range(13):
        observer.batch_scored(fake_outcome(fresh=40), consumed=49)
    assert telemetry.drift.evaluate().window_events == {"short": 520, "long": 520}
    assert value(telemetry.registry, "crm_scorer_feature_psi", feature="income", window="short") is not None


STATS = {
    "brokers": {"127.0.0.1:9092/1": {"state": "UP"}, "GroupCoordinator": {"state": "INIT"}},
    "topics": {
        "in": {
            "partitions": {
                "0": {"desired": True, "ls_offset": 112, "hi_offset": 112, "committed_offset": 100},
                "1": {"desired": True, "ls_offset": 50, "hi_offset": 50, "committed_offset": -1001},  # none yet
                "2": {"desired": False, "ls_offset": 90, "hi_offset": 90, "committed_offset": 50},  # no longer ours
                "-1": {"desired": False, "ls_offset": -1001, "hi_offset": -1001, "committed_offset": -1001},
            }
        }
    },
}


def test_kafka_statistics_give_offsets_and_broker_state(telemetry: Telemetry) -> None:
    offsets, up = parse_kafka_stats(json.dumps(STATS))
    assert up is True
    assert offsets == {("in", 0): PartitionOffsets(112, 112, 100), ("in", 1): PartitionOffsets(50, 50, -1001)}
    assert parse_kafka_stats("not json") == ({}, None)
    down = {"brokers": {"b/1": {"state": "DOWN"}}, "topics": {}}
    assert parse_kafka_stats(json.dumps(down)) == ({}, False)


def test_lag_gauge_follows_statistics_and_commits_per_worker(telemetry: Telemetry) -> None:
    registry = telemetry.registry
    telemetry.observer(0).kafka_stats(json.dumps(STATS))
    assert value(registry, "crm_scorer_consumer_lag", topic="in", partition="0") == 12
    assert value(registry, "crm_scorer_consumer_lag", topic="in", partition="1") is None  # nothing committed yet
    telemetry.observer(0).offsets_committed({("in", 0): 110, ("in", 1): 20}, {("in", 0): 115, ("in", 1): 50})
    assert value(registry, "crm_scorer_consumer_lag", topic="in", partition="0") == 5
    assert value(registry, "crm_scorer_consumer_lag", topic="in", partition="1") == 30

    moved = {"topics": {"in": {"partitions": {"0": {"ls_offset": 120, "hi_offset": 120, "committed_offset": 117}}}}}
    telemetry.observer(1).kafka_stats(json.dumps(moved))
    assert value(registry, "crm_scorer_consumer_lag", topic="in", partition="0") == 3
    telemetry.observer(0).kafka_stats(json.dumps({"topics": {}}))
    assert value(registry, "crm_scorer_consumer_lag", topic="in", partition="0") == 3  # still worker 1's
    telemetry.observer(1).assignment_changed(0)
    assert value(registry, "crm_scorer_consumer_lag", topic="in", partition="0") is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_liveness_follows_every_workers_heartbeat() -> None:
    clock = Clock()
    health = HealthState(workers=2, stale_after_s=30, clock=clock)
    assert health.liveness().ok  # loading the models: within the start-up grace
    clock.now += 20
    health.apply(WorkerStateReport(0, heartbeat=True))
    clock.now += 15
    verdict = health.liveness()
    assert not verdict.ok
    assert "worker 1" in verdict.checks["loop"]["detail"]
    health.apply(WorkerStateReport(1, heartbeat=True))
    assert health.liveness().ok


def test_readiness_needs_models_partitions_and_a_broker() -> None:
    health = HealthState(workers=2)
    verdict = health.readiness()
    assert not verdict.ok
    assert {name for name, check in verdict.checks.items() if not check["ok"]} == {
        "models_loaded",
        "partitions_assigned",
        "broker_reachable",
    }
    health.apply(WorkerStateReport(0, models={"bank_a": "1"}))
    health.apply(WorkerStateReport(1, models={"bank_a": "1"}))
    health.apply(WorkerStateReport(1, partitions=3))  # an assignment comes from the group coordinator: broker up
    assert health.readiness().ok
    health.apply(WorkerStateReport(1, broker_up=False))
    assert health.readiness().checks["broker_reachable"]["ok"] is False
    health.apply(WorkerStateReport(1, partitions=0))
    assert not health.readiness().checks["partitions_assigned"]["ok"]


def test_a_worker_waiting_on_the_schema_registry_makes_the_host_not_ready_until_it_answers() -> None:
    health = HealthState(workers=2)
    for worker in (0, 1):
        health.apply(WorkerStateReport(worker, models={"bank_a": "1"}, partitions=3))
    assert health.readiness().ok
    health.apply(WorkerStateReport(1, registry_up=False))
    check = health.readiness().checks["schema_registry"]
    assert not health.readiness().ok and check["detail"] == "not answering: 1 worker(s) wait for writer schemas"
    health.apply(WorkerStateReport(1, registry_up=True))
    assert health.readiness().ok


def test_endpoints_answer_with_status_and_json(telemetry: Telemetry) -> None:
    with telemetry.serving("127.0.0.1", 0, drift_interval_s=60) as port:
        base = f"http://127.0.0.1:{port}"
        status, body = _get(f"{base}/readyz")
        assert status == 503
        assert json.loads(body)["checks"]["models_loaded"]["ok"] is False
        assert _get(f"{base}/healthz")[0] == 200
        telemetry.observer().models_loaded(MODELS)
        telemetry.observer().assignment_changed(1)
        assert _get(f"{base}/readyz")[0] == 200
        status, body = _get(f"{base}/metrics")
        assert status == 200
        assert 'crm_scorer_model_info{model="bank_a",version="bank_a-1"} 1.0' in body
        assert "crm_scorer_ready 1.0" in body
        assert _get(f"{base}/nothing")[0] == 404


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_a_full_report_queue_drops_and_counts_instead_of_blocking(telemetry: Telemetry) -> None:
    reports: queue.Queue = queue.Queue(maxsize=1)
    observer = WorkerObserver(QueueSink(reports, 3), worker=3)
    observer.assignment_changed(1)
    observer.assignment_changed(2)  # dropped
    observer.assignment_changed(3)  # dropped
    telemetry.apply(reports.get_nowait())
    observer.assignment_changed(4)
    while not reports.empty():
        telemetry.apply(reports.get_nowait())
    observer.assignment_changed(5)
    telemetry.apply(reports.get_nowait())
    assert value(telemetry.registry, "crm_scorer_telemetry_dropped_total") == 3


def test_heartbeats_are_reported_at_most_once_a_second() -> None:
    sent: list[Any] = []
    clock = Clock()
    observer = WorkerObserver(sent.append, clock=clock)
    for _ in range(50):
        observer.heartbeat()
        clock.now += 0.05
    assert len(sent) == 3
