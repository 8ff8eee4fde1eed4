"""The lifecycle demo's ECE sampling noise: what a perfectly calibrated model with the same probabilities shows."""

from __future__ import annotations

import math

import numpy as np

from models.evaluation import expected_calibration_error
from producer_tools.demos.lifecycle_figures import BankRows, Marks, calibrated_ece


def probabilities(n: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).beta(3.0, 2.0, n)


def test_the_noise_is_the_ece_of_labels_drawn_from_the_probabilities_themselves() -> None:
    p = probabilities(2000)
    rng = np.random.default_rng(11)
    simulated = [expected_calibration_error((rng.random(p.size) < p).astype(float), p) for _ in range(400)]
    median, p95 = calibrated_ece(p, draws=400)
    assert abs(median - float(np.median(simulated))) < 0.002
    assert abs(p95 - float(np.percentile(simulated, 95))) < 0.004
    assert p95 > median > 0.0


def test_the_noise_falls_as_one_over_the_square_root_of_the_outcomes() -> None:
    small, _ = calibrated_ece(probabilities(1000))
    large, _ = calibrated_ece(probabilities(25000))
    assert large < 0.3 * small
    assert math.isclose(small / large, 5.0, rel_tol=0.25)


def test_the_same_seed_gives_the_same_figures() -> None:
    p = probabilities(500)
    assert calibrated_ece(p, seed=3) == calibrated_ece(p, seed=3)


def test_no_outcomes_give_no_figure() -> None:
    median, p95 = calibrated_ece(np.array([]))
    assert math.isnan(median) and math.isnan(p95)


def bank_rows(versions: list[str], event_index: list[int]) -> BankRows:
    n = len(versions)
    return BankRows(
        version=np.array(versions),
        probability=np.full(n, 0.5),
        positive=np.zeros(n, dtype=np.int8),
        event_index=np.array(event_index),
        arrived_ms=np.arange(n, dtype=np.float64),
        event_id=np.array([f"e{i}" for i in event_index]),
    )


def test_the_trigger_is_marked_at_the_outcomes_the_monitor_had_joined_not_at_wall_time() -> None:
    rows = bank_rows(["old"] * 6 + ["new"] * 4, list(range(10)))
    challenger = bank_rows(["new"] * 2, [4, 5])
    marks = Marks.of(rows, challenger, change=3, trigger_joined=5, new="new")
    assert marks == Marks(change=3, trigger=5, shadow=4, activation=6)
    assert Marks.of(rows, challenger, 3, 40, "new").trigger == 10  # never past the last outcome
    assert Marks.of(rows, challenger, 3, None, "new").trigger is None
