"""The monitor without Kafka: quality figures, the keyed join, the store's atomic batches, the detectors."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from sklearn.metrics import log_loss, roc_auc_score

from consumer.monitor.join import PartitionJoin, outcome_fields, score_snapshot
from consumer.monitor.metrics import MonitorMetrics
from consumer.monitor.processor import OUTCOMES, SCORES, InputMessage, MonitorCore
from consumer.monitor.quality import auc, ece, expected_auc, quality
from consumer.monitor.settings import MonitorSettings
from consumer.monitor.store import StateStore
from producer_tools.world.outcomes import OutcomeDraws, PolicyChange, plan_outcomes
from schemas import SingleObjectEncoder, load_catalog
from tests.unit.test_outcomes_world import _truths, oracle_score

HOUR_MS = 3_600_000


def test_auc_and_log_loss_agree_with_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    p = np.round(rng.random(2000), 2)  # ties on purpose
    y = (rng.random(2000) < p).astype(float)
    assert auc(p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert quality(p, y).log_loss == pytest.approx(log_loss(y, p), rel=1e-9)
    assert np.isnan(auc(p, np.ones_like(p)))


def test_expected_auc_is_the_pairwise_expectation() -> None:
    p = np.round(np.random.default_rng(2).random(120), 1)
    num = den = 0.0
    for i in range(p.size):
        for j in range(p.size):
            if i != j:
                w = p[i] * (1 - p[j])
                num += w * (1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0)
                den += w
    assert expected_auc(p) == pytest.approx(num / den, rel=1e-9)


def test_a_calibrated_model_matches_its_expectation_and_a_shifted_one_does_not() -> None:
    rng = np.random.default_rng(3)
    p = rng.beta(2, 2, 20_000)
    y = (rng.random(p.size) < p).astype(float)
    calibrated = quality(p, y)
    assert calibrated.ece < 0.02 and abs(calibrated.auc - calibrated.expected_auc) < 0.01
    assert abs(calibrated.brier - calibrated.expected_brier) < 0.005
    tightened = (rng.random(p.size) < p * 0.6).astype(float)
    shifted = quality(p, tightened)
    assert shifted.ece > 0.15 and shifted.observed_rate < shifted.predicted_rate - 0.15
    assert ece(np.array([0.05, 0.95]), np.array([0.0, 1.0]), bins=10) == pytest.approx(0.05)


def test_precision_and_recall_use_the_scores_own_decision() -> None:
    p, y = np.array([0.9, 0.8, 0.3, 0.2]), np.array([1.0, 0.0, 1.0, 0.0])
    figures = quality(p, y, decided=np.array([True, True, False, False]))
    assert figures.precision == 0.5 and figures.recall == 0.5


class FakeChanges(dict[bytes, bytes]):
    """A dict as the join's transaction."""

    def get_json(self, key: bytes) -> Any:
        import json

        return None if key not in self else json.loads(self[key])

    def put(self, key: bytes, value: bytes) -> None:
        self[key] = value

    def put_json(self, key: bytes, value: Any) -> None:
        import json

        self[key] = json.dumps(value).encode()

    def delete(self, key: bytes) -> None:
        self.pop(key, None)

    def add(self, key: bytes, amount: int = 1) -> None:
        self[key] = str(int(self.get(key) or 0) + amount).encode()


def _score(event_id: str, app: str, scored_at_ms: int, p: float = 0.7) -> dict[str, Any]:
    return score_snapshot(
        {
            "event_id": event_id,
            "scored_at": scored_at_ms,
            "banks": [{"bank": "bank_a", "probability": p, "approved": p >= 0.5, "model_version": "a-1"}],
            "lead": {"probability": 0.4, "model_version": "lead-1"},
        }
    )


def _outcome(event_id: str, app: str, decided_at_ms: int, names: str | None, positive: bool = True) -> dict[str, Any]:
    return outcome_fields(
        {
            "event_id": event_id,
            "application_id": app,
            "kind": "bank_decision",
            "bank": "bank_a",
            "positive": positive,
            "decided_at": decided_at_ms,
            "score_event_id": names,
        }
    )


def test_an_outcome_before_its_score_waits_for_that_score_and_is_counted_once() -> None:
    tx = FakeChanges()
    join = PartitionJoin(tx, b"p0000/")
    assert join.add_score("app-1", _score("s-old", "app-1", 1000, p=0.2)) == []
    assert join.add_outcome(_outcome("o-1", "app-1", 5000, names="s-new")) == []  # names a score not here yet
    assert join.add_outcome(_outcome("o-1", "app-1", 5000, names="s-new")) == []  # re-sent: a duplicate
    rows = join.add_score("app-1", _score("s-new", "app-1", 2000, p=0.9))
    assert [(r.outcome_id, r.score_event_id, r.probability, r.delay_s) for r in rows] == [("o-1", "s-new", 0.9, 3.0)]
    assert join.add_outcome(_outcome("o-1", "app-1", 5000, names="s-new")) == []
    assert int(tx[b"p0000/stat/outcomes"]) == 1 and int(tx[b"p0000/stat/outcomes_duplicate"]) == 2
    assert int(tx[b"p0000/stat/joined/bank_a"]) == 1


def test_an_outcome_naming_no_score_takes_the_latest_before_its_decision() -> None:
    tx = FakeChanges()
    join = PartitionJoin(tx, b"p0000/")
    join.add_score("app-1", _score("s-1", "app-1", 1000, p=0.2))
    join.add_score("app-1", _score("s-2", "app-1", 3000, p=0.6))
    join.add_score("app-1", _score("s-3", "app-1", 9000, p=0.9))
    (row,) = join.add_outcome(_outcome("o-1", "app-1", 5000, names=None))
    assert row.score_event_id == "s-2"


def test_the_ttl_expires_unanswered_scores_and_outcomes_that_found_no_score(tmp_path: Path) -> None:
    with StateStore(tmp_path / "s") as store:
        tx = store.transaction()
        join = PartitionJoin(tx, b"p0000/")
        join.add_score("app-1", _score("s-1", "app-1", 1 * HOUR_MS))
        join.add_score("app-2", _score("s-2", "app-2", 1 * HOUR_MS))
        join.add_outcome(_outcome("o-2", "app-2", 2 * HOUR_MS, names="s-2"))
        join.add_outcome(_outcome("o-9", "app-9", 2 * HOUR_MS, names="s-9"))  # never scored
        tx.commit()
        tx = store.transaction()
        join = PartitionJoin(tx, b"p0000/")
        join.add_score("app-3", _score("s-3", "app-3", 30 * HOUR_MS))  # moves the partition's event time on
        join.expire(store, ttl_ms=24 * HOUR_MS)
        tx.commit()
        assert store.get(b"p0000/stat/scores_expired_unanswered") == b"1"  # s-1; s-2 was answered
        assert store.get(b"p0000/stat/outcomes_unmatched") == b"1"
        assert store.get(b"p0000/score/app-1") is None and store.get(b"p0000/pend/app-9") is None
        assert store.get(b"p0000/score/app-3") is not None


@cache
def _messages(policy: PolicyChange | None = None, seed: int = 3, count: int = 3000) -> tuple[InputMessage, ...]:
    """The world's scores (oracle probabilities: a calibrated model) and outcomes, on 3 partitions (cached:
    callers copy before reordering)."""
    catalog = load_catalog()
    encode_score = SingleObjectEncoder(catalog.get("score_result.v1"))
    encode_outcome = SingleObjectEncoder(catalog.outcome)
    messages, offsets = [], {(s, p): 0 for s in (SCORES, OUTCOMES) for p in range(3)}

    def add(stream: str, app: str, value: bytes) -> None:
        partition = sum(app.encode()) % 3
        messages.append(InputMessage(stream, partition, offsets[(stream, partition)], app.encode(), value))
        offsets[(stream, partition)] += 1

    for n, (event_id, truth) in enumerate(_truths(count).items()):
        score = oracle_score(event_id, truth)
        score["scored_at"] = score["scored_at"] + dt.timedelta(seconds=n)
        full = {
            **score,
            "lead_id": "lead-1",
            "application_hash": "h",
            "event_time": score["scored_at"],
            "best_offer": None,
            "reasons": [],
            "config_hash": "c",
            "lead": {**score["lead"], "score": round(1000 * score["lead"]["probability"])},
        }
        add(SCORES, score["application_id"], encode_score(full))
        for planned in plan_outcomes(score, truth, seed, OutcomeDraws(), policy):
            record = dict(
                planned.record, decided_at=dt.datetime.fromtimestamp(planned.record["decided_at"] / 1000, dt.UTC)
            )
            add(OUTCOMES, record["application_id"], encode_outcome(record))
    return tuple(messages)


def _core(path: Path, **quality: Any) -> MonitorCore:
    settings = MonitorSettings(store={"path": path}, quality={"count_window": 3000, **quality})
    core = MonitorCore(StateStore(path), settings)
    core.assigned(range(3))
    return core


def _run(core: MonitorCore, messages: Sequence[InputMessage], batch: int = 400) -> list[str]:
    fired = []
    for start in range(0, len(messages), batch):
        fired += core.apply(messages[start : start + batch]).fired
    return fired


def test_the_figures_depend_on_what_was_joined_not_on_how_the_topics_interleaved(tmp_path: Path) -> None:
    messages = list(_messages())
    by_stream = [m for m in messages if m.stream == OUTCOMES] + [m for m in messages if m.stream == SCORES]
    shuffled = messages[:]
    random.Random(5).shuffle(shuffled)
    # keep each partition's order (Kafka's guarantee), interleave partitions and topics at random
    in_order = sorted(shuffled, key=lambda m: (m.stream, m.partition, m.offset))
    interleaved = _keep_partition_order(shuffled, in_order)
    states = []
    for name, order in (("in", messages), ("streams", by_stream), ("shuffled", interleaved)):
        core = _core(tmp_path / name)
        _run(core, order)
        states.append(core.state())
    assert states[0].counters == states[1].counters == states[2].counters
    assert states[0].figures == states[1].figures == states[2].figures
    joined = sum(v for k, v in states[0].counters.items() if k.startswith("joined/"))
    assert joined == states[0].counters["outcomes"] and states[0].counters["outcomes_duplicate"] > 0


def _keep_partition_order(shuffled: list[InputMessage], in_order: list[InputMessage]) -> list[InputMessage]:
    queues: dict[tuple[str, int], list[InputMessage]] = {}
    for m in in_order:
        queues.setdefault((m.stream, m.partition), []).append(m)
    return [queues[(m.stream, m.partition)].pop(0) for m in shuffled]


def test_a_batch_is_stored_whole_or_not_at_all_and_a_restart_resumes_from_the_stored_offsets(tmp_path: Path) -> None:
    messages = list(_messages())
    undisturbed = _core(tmp_path / "calm")
    _run(undisturbed, messages)
    core = _core(tmp_path / "crash")
    half = len(messages) // 2
    _run(core, messages[:half])
    crashed = core._store.transaction()  # a batch half applied, never committed: what a kill -9 leaves
    PartitionJoin(crashed, b"p0000/").add_score("app-x", _score("s-x", "app-x", 0))
    core._store.close()
    restarted = _core(tmp_path / "crash")
    resume = {(s, p): restarted.start_offset(s, p) for s in (SCORES, OUTCOMES) for p in range(3)}
    rest = [
        m for m in messages if resume[(m.stream, m.partition)] is None or m.offset >= resume[(m.stream, m.partition)]
    ]
    assert len(rest) == len(messages) - half
    _run(restarted, rest)
    assert restarted.state().counters == undisturbed.state().counters
    assert restarted.state().figures == undisturbed.state().figures


def test_a_calibrated_model_keeps_the_detector_quiet_and_a_policy_change_fires_it(tmp_path: Path) -> None:
    assert _run(_core(tmp_path / "base"), _messages(count=6000)) == []
    changed = _core(tmp_path / "policy")
    fired = _run(changed, _messages(PolicyChange("bank_c", 2000), count=6000))
    assert set(fired) == {"bank_c"}
    state = changed.state()
    assert state.drift_detected["bank_c"] and not state.drift_detected["bank_b"]
    figures = state.figures[("bank_c", "count")]
    assert figures.ece > 0.1 and figures.observed_rate < figures.predicted_rate - 0.1


def test_metrics_export_the_stored_counters_and_figures(tmp_path: Path) -> None:
    core = _core(tmp_path / "m")
    _run(core, _messages())
    metrics = MonitorMetrics(CollectorRegistry())
    metrics.state.publish(core.state())
    get = metrics.registry.get_sample_value
    joined = core.state().counters["joined/bank_b"]
    assert get("crm_monitor_outcomes_joined_total", {"model": "bank_b"}) == joined
    assert get("crm_monitor_outcomes_total", {"result": "duplicate"}) == core.state().counters["outcomes_duplicate"]
    assert 0.6 < get("crm_monitor_auc", {"model": "bank_b", "window": "count"}) < 1.0
    assert get("crm_monitor_ece", {"model": "lead", "window": "time"}) < 0.05
    assert get("crm_monitor_join_coverage_ratio") == 1.0
    assert get("crm_monitor_concept_drift_detected", {"model": "bank_b"}) == 0.0
