"""Training is reproducible, and the committed models meet the quality bar on events they never saw."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.config import BankConfig, ModelsConfig
from models.train import LabelledEvents, train
from models.train_cli import evaluate
from producer_tools.world import generate


def labelled(count: int, seed: int) -> LabelledEvents:
    batch = generate(count, seed)
    return LabelledEvents.from_truth(batch.events, batch.truth)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    data = labelled(3000, seed=3)
    config = ModelsConfig(banks=[BankConfig(name="bank_a"), BankConfig(name="bank_d")])
    for out in ("one", "two"):
        train(data, config, tmp_path / out, seed=5, folds=2, log=lambda _: None)
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == ["bank_a.ubj", "bank_d.ubj", "lead.json", "manifest.json", "reference_profile.json"]
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


@pytest.fixture(scope="module")
def fresh_quality() -> dict:
    return evaluate(ModelsConfig(), labelled(20_000, seed=4242))


@pytest.mark.parametrize("model", ["bank_a", "bank_b", "bank_c", "bank_d", "bank_e", "lead"])
def test_committed_models_reach_the_oracle_and_are_calibrated(fresh_quality: dict, model: str) -> None:
    quality = fresh_quality[model]
    assert quality.auc >= 0.98 * quality.oracle_auc
    assert quality.ece <= 0.02
