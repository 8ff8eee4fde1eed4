"""The retraining trigger: fires on a shift within a bound, stays quiet on a stable stream, honours
min_outcomes; its metrics and its one log line in the monitor."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from consumer.monitor.loop import summary_line
from consumer.monitor.metrics import MonitorMetrics, MonitorState
from consumer.monitor.quality import ece
from consumer.monitor.settings import load_monitor_settings
from consumer.monitor.trigger import Decision, TriggerBounds, bound, cusum, decide, retrain_line, sampling_ece
from producer_tools.world.outcomes import PolicyChange
from schemas.errors import ConfigError
from tests.unit.test_monitor import _core, _messages, _run

BOUNDS = TriggerBounds()
EVERY = 20


def _stream(n: int, seed: int, odds: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` outcomes of a model predicting ``p``; the truth's odds are ``odds`` times the predicted."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2.0, 3.0, n)
    truth = odds * p / (1.0 - p + odds * p)
    return p, (rng.random(n) < truth).astype(np.float64)


def _first_firing(p: np.ndarray, y: np.ndarray, start: int = 0) -> int | None:
    """The first evaluation (every EVERY outcomes) from ``start`` on that recommends retraining."""
    for end in range(max(start, EVERY), p.size + 1, EVERY):
        if decide(p[:end], y[:end], end, False, BOUNDS, 200).retrain:
            return end
    return None


def test_a_shift_to_half_the_odds_fires_within_600_outcomes_and_says_where_it_began() -> None:
    delays = []
    for seed in range(10):
        before_p, before_y = _stream(3000, 100 + seed)
        after_p, after_y = _stream(2000, 200 + seed, odds=0.5)
        p, y = np.concatenate([before_p, after_p]), np.concatenate([before_y, after_y])
        fired = _first_firing(p, y, start=3000)
        assert fired is not None, seed
        delays.append(fired - 3000)
        later = decide(p[: fired + 400], y[: fired + 400], fired + 400, False, BOUNDS, 200)
        assert later.retrain and "cusum" in later.past and later.direction == "lower"
        assert abs(later.since_change - (fired + 400 - 3000)) <= 200, seed  # the change's start, estimated
    assert len(delays) == 10 and max(delays) <= 600 and float(np.median(delays)) <= 300, delays


@pytest.mark.parametrize("seed", [11, 12])
def test_a_stable_stream_never_fires_over_40000_outcomes(seed: int) -> None:
    p, y = _stream(40_000, seed)
    windows = [decide(p[:end], y[:end], end, False, BOUNDS, 200) for end in range(200, p.size + 1, 100)]
    assert len(windows) == 399 and not any(d.retrain for d in windows)
    assert max(d.signals["cusum"] for d in windows) < BOUNDS.cusum


def test_nothing_is_decided_or_exported_before_min_outcomes() -> None:
    p, y = _stream(400, 3, odds=0.1)  # as wrong as it gets
    assert decide(p[:199], y[:199], 199, True, BOUNDS, 200) == Decision(False, 0, {}, (), 0, "")
    assert decide(p[:200], y[:200], 200, True, BOUNDS, 200).retrain
    registry = CollectorRegistry()
    metrics = MonitorMetrics(registry)
    metrics.state.publish(MonitorState(decisions={"bank_a": decide(p[:199], y[:199], 199, False, BOUNDS, 200)}))
    assert registry.get_sample_value("crm_monitor_retrain_recommended", {"model": "bank_a"}) is None


def test_a_ranking_that_broke_at_the_same_rate_fires_on_two_weak_signals() -> None:
    p, _ = _stream(1000, 4)
    y = (np.random.default_rng(5).random(p.size) < np.random.default_rng(6).permutation(p)).astype(np.float64)
    decision = decide(p, y, p.size, False, BOUNDS, 200)
    assert decision.retrain and {"auc_gap", "ece_excess"} <= set(decision.past)


def test_cusum_is_the_largest_suffix_sum_of_the_log_likelihood_ratios() -> None:
    p, y = np.array([0.5, 0.5, 0.5, 0.5]), np.array([1.0, 0.0, 0.0, 0.0])
    w0, w1 = np.log(0.5) - np.log(0.75), -np.log(0.75)  # R = 1/2: a positive weighs w0 < 0, a negative w1 > 0
    statistic, run = cusum(p, y, 0.5)
    assert statistic == pytest.approx(3 * w1) and run == 3 and w0 < 0
    assert cusum(p, np.ones(4), 0.5) == (0.0, 0)


def test_the_sampling_ece_is_what_a_calibrated_model_shows() -> None:
    rng = np.random.default_rng(7)
    p = rng.beta(2.0, 3.0, 1000)
    simulated = np.mean([ece(p, (rng.random(p.size) < p).astype(np.float64)) for _ in range(300)])
    assert sampling_ece(p) == pytest.approx(simulated, rel=0.1)


def test_the_bounds_of_the_weak_signals_widen_below_a_full_window() -> None:
    p, y = _stream(250, 10)
    y[p < 0.25] = 0.0  # miscalibrated low bins: an ECE excess past the full window's bound
    small = decide(p, y, p.size, False, BOUNDS, 200)
    assert BOUNDS.ece_excess < small.signals["ece_excess"] < bound("ece_excess", BOUNDS, 2.0)
    assert "ece_excess" not in small.past


def test_the_line_names_the_signals_their_bounds_and_the_command() -> None:
    p, y = _stream(1000, 9, odds=0.4)
    line = retrain_line("bank_c", decide(p, y, p.size, True, BOUNDS, 200), BOUNDS, Path("capture"))
    assert line.startswith("cusum ") and ">= 12" in line and "detector 1.000 >= 1" in line
    assert line.endswith("run: crm-train --from-capture capture --bank bank_c")


def test_the_monitor_recommends_retraining_the_bank_that_changed_once_and_exports_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    core = _core(tmp_path / "store")
    _run(core, _messages(PolicyChange("bank_c", 2000), count=6000))
    with caplog.at_level(logging.WARNING, logger="consumer.monitor.processor"):
        state = core.state()
        again = core.state()
    assert {m for m, d in state.decisions.items() if d.retrain} == {"bank_c"}
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["retraining recommended for bank_c"]
    assert state.retrain_since == {"bank_c": 0} and again.retrain_since == {"bank_c": 0}
    assert " drift=bank_c retrain=bank_c " in summary_line(state)
    registry = CollectorRegistry()
    metrics = MonitorMetrics(registry)
    metrics.state.publish(state)
    value = registry.get_sample_value
    assert value("crm_monitor_retrain_recommended", {"model": "bank_c"}) == 1.0
    assert value("crm_monitor_retrain_recommended", {"model": "bank_b"}) == 0.0
    assert value("crm_monitor_trigger_signal", {"model": "bank_c", "signal": "cusum"}) >= TriggerBounds().cusum
    assert value("crm_monitor_outcomes_since_change_detected", {"model": "bank_c"}) == 0.0
    assert value("crm_monitor_outcomes_since_change_detected", {"model": "bank_b"}) is None
    assert value("crm_monitor_outcomes_since_change_began", {"model": "bank_c"}) > 100
    core._store.close()


def test_quality_figures_wait_for_min_outcomes(tmp_path: Path) -> None:
    core = _core(tmp_path / "store", min_outcomes=1000)
    _run(core, _messages())
    state = core.state()
    counts = {m: d.outcomes for m, d in state.decisions.items()}
    assert {m for m, _ in state.figures} == {m for m in state.decisions if counts[m] >= 1000}
    assert any(not d.signals for d in state.decisions.values())  # a bank with fewer has no decision either
    core._store.close()


def test_the_trigger_settings_come_from_the_monitor_settings_and_a_bad_bound_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRM_MONITOR_TRIGGER__CUSUM", "9")
    assert TriggerBounds.of(load_monitor_settings()) == TriggerBounds(cusum=9.0)
    monkeypatch.setenv("CRM_MONITOR_TRIGGER__CUSUM", "-1")
    with pytest.raises(ConfigError, match=r"trigger\.cusum: Input should be greater than 0"):
        load_monitor_settings()
