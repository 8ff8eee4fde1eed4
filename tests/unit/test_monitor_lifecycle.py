"""The monitor's side of the model lifecycle without Kafka: a challenger's scores joined like a second model on
the same applications, the paired comparison that makes it win, and the rollback rule after a promotion."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from consumer.monitor.join import PartitionJoin, outcome_fields, score_snapshot
from consumer.monitor.metrics import MonitorMetrics, MonitorState
from consumer.monitor.paired import compare, delong_sd, paired_rows
from consumer.monitor.quality import auc
from consumer.monitor.rollback import RollbackRule, last_promotion
from consumer.monitor.store import StateStore, partition_prefix
from models.config import DEFAULT_ARTIFACTS_DIR
from models.store import ModelStore
from tests.unit.test_monitor import FakeChanges

MODELS = ["bank_a", "bank_b", "bank_c", "bank_d", "bank_e", "lead"]


def snapshot(event_id: str, p: float, version: str = "c-1", scored_at: int = 1000) -> dict[str, Any]:
    bank = {"bank": "bank_c", "probability": p, "approved": p >= 0.5, "model_version": version}
    return score_snapshot(
        {
            "event_id": event_id,
            "scored_at": scored_at,
            "banks": [bank],
            "lead": {"probability": 0.4, "model_version": "l"},
        }
    )


def outcome(event_id: str, app: str, positive: bool, decided_at: int = 9000) -> dict[str, Any]:
    record = {"event_id": event_id, "application_id": app, "kind": "bank_decision", "bank": "bank_c"}
    return outcome_fields(record | {"positive": positive, "decided_at": decided_at, "score_event_id": None})


def shadow(event_id: str, app: str, p: float) -> dict[str, Any]:
    return {"event_id": event_id, "application_id": app, "scored_at": 1000, "models": {"bank_c": [p, p >= 0.5, "c-2"]}}


@pytest.mark.parametrize("shadow_first", [True, False])
def test_a_challengers_score_joins_as_a_second_model_on_the_same_outcome(shadow_first: bool) -> None:
    tx = FakeChanges()
    join = PartitionJoin(tx, b"p0000/")
    if shadow_first:
        join.add_shadow(shadow("s-1", "app-1", 0.3))
    join.add_score("app-1", snapshot("s-1", 0.8))
    if not shadow_first:
        join.add_shadow(shadow("s-1", "app-1", 0.3))
    rows = join.add_outcome(outcome("o-1", "app-1", positive=True))
    assert [(r.model, r.model_version, r.probability, r.outcome_id) for r in rows] == [
        ("bank_c", "c-1", 0.8, "o-1"),
        ("bank_c:challenger", "c-2", 0.3, "o-1"),
    ]
    assert int(tx[b"p0000/stat/shadow_scores"]) == 1 and b"p0000/shad/app-1" not in tx
    assert join.add_outcome(outcome("o-1", "app-1", positive=True)) == [], "a re-sent outcome: no row of either"


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.beta(2, 2, n)
    y = (rng.random(n) < truth).astype(np.float64)
    noisy = np.clip(truth + rng.normal(0, 0.25, n), 0.001, 0.999)
    return noisy, truth, y


def test_a_better_challenger_wins_on_enough_paired_outcomes_and_an_identical_one_does_not() -> None:
    champion, challenger, y = synthetic(3000, seed=5)
    better = compare(champion, challenger, y, min_outcomes=500)
    assert better.wins and better.auc_difference > 0.03 and better.lower_bound > 0
    assert better.challenger_brier < better.champion_brier and better.outcomes == 3000
    same = compare(champion, champion, y, min_outcomes=500)
    assert not same.wins and same.auc_difference == 0.0
    assert not compare(champion[:300], challenger[:300], y[:300], min_outcomes=500).wins, "too few outcomes"
    assert not compare(challenger, champion, y, min_outcomes=500).wins, "a worse challenger"


def test_delongs_deviation_matches_the_bootstrap() -> None:
    champion, challenger, y = synthetic(2000, seed=8)
    rng = np.random.default_rng(1)
    draws = []
    for _ in range(300):
        i = rng.integers(0, y.size, y.size)
        draws.append(auc(challenger[i], y[i]) - auc(champion[i], y[i]))
    assert delong_sd(champion, challenger, y) == pytest.approx(float(np.std(draws)), rel=0.2)


def _write_rows(store: StateStore, rows: list[tuple[str, float, bool]], start: int, shadowed: bool = False) -> None:
    """Scores of bank_c by the given versions, and one outcome each, on partition 0."""
    tx = store.transaction()
    join = PartitionJoin(tx, partition_prefix(0))
    for n, (version, p, positive) in enumerate(rows):
        app, event = f"app-{start + n}", f"s-{start + n}"
        join.add_score(app, snapshot(event, p, version, scored_at=1000 * (start + n)))
        if shadowed:
            join.add_shadow(shadow(event, app, 1.0 - p))
        join.add_outcome(outcome(f"o-{start + n}", app, positive, decided_at=1000 * (start + n) + 500))
    tx.commit()


def test_paired_rows_read_the_champion_and_challenger_of_the_same_outcomes(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state") as store:
        p = np.linspace(0.05, 0.95, 40)
        _write_rows(store, [("c-1", float(x), bool(x > 0.5)) for x in p], start=0, shadowed=True)
        champion, challenger, y = paired_rows(store, [0], "bank_c", count=30)
    assert champion.size == 30 and np.allclose(champion + challenger, 1.0) and np.array_equal(y, champion > 0.5)


def two_set_store(root: Path) -> tuple[ModelStore, str, str]:
    """The committed set, and a copy whose manifest names another set version and bank_c version (same files)."""
    copy = root / "copy"
    shutil.copytree(DEFAULT_ARTIFACTS_DIR, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["version"], manifest["models"]["bank_c"]["version"] = "promoted-1", "bank_c-promoted"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    store = ModelStore(root / "store")
    first, second = store.add(DEFAULT_ARTIFACTS_DIR), store.add(copy)
    store.activate(first, MODELS, "test", "start")
    store.activate(second, MODELS, "test", "promote bank_c", action="promote")
    return store, first, second


def test_a_promoted_model_worse_than_its_predecessor_is_rolled_back_by_the_rule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    models, first, promoted = two_set_store(tmp_path)
    promotion = last_promotion(models)
    old = models.manifest(first).models["bank_c"].version
    assert promotion is not None and promotion.version == promoted
    assert promotion.changed == {"bank_c": (old, "bank_c-promoted")}
    published: list[tuple[str, bytes]] = []
    rule = RollbackRule(models, "default", 0.02, 200, lambda key, value: published.append((key, value)))
    rng = np.random.default_rng(4)
    truth = rng.beta(2, 2, 900)
    y = rng.random(900) < truth
    with StateStore(tmp_path / "state") as store:
        _write_rows(store, [(old, float(t), bool(v)) for t, v in zip(truth[:600], y[:600], strict=True)], start=0)
        coin = rng.random(300)  # the promoted version ranks at random
        _write_rows(store, [("bank_c-promoted", float(c), bool(v)) for c, v in zip(coin, y[600:], strict=True)], 600)
        early = rule.figures(store, [0], 5000)["bank_c"]
        assert early.outcomes == 300 and early.fires
        judged = RollbackRule(models, "default", 0.02, 400, lambda _k, _v: None).figures(store, [0], 5000)["bank_c"]
        assert not judged.fires, "fewer outcomes than the rule needs"
        assert rule.act({"bank_c": early}) == ["bank_c"]
    assert models.active() == first and models.history()[-1]["action"] == "rollback"
    assert [key for key, _ in published] == ["default"] and json.loads(published[0][1])["version"] == first
    line = next(r.getMessage() for r in caplog.records if "rollback rule" in r.getMessage())
    assert f"bank_c-promoted realised AUC {early.promoted_auc:.4f} over 300 outcomes" in line
    assert rule.act({"bank_c": early}) == [], "once rolled back, nothing more to do"


def test_the_lifecycle_gauges_carry_the_paired_figures_and_the_rule(tmp_path: Path) -> None:
    champion, challenger, y = synthetic(1000, seed=2)
    metrics = MonitorMetrics(CollectorRegistry())
    metrics.state.publish(MonitorState(paired={"bank_c": compare(champion, challenger, y, 500)}))
    assert metrics.registry.get_sample_value("crm_monitor_challenger_wins", {"model": "bank_c"}) == 1.0
    assert metrics.registry.get_sample_value("crm_monitor_challenger_paired_outcomes", {"model": "bank_c"}) == 1000
