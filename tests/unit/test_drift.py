"""Drift: bin counting per batch, windows, PSI noise at the publishing count, detection of a real shift."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from consumer.core.scoring import score_columns
from consumer.telemetry.drift import MIN_EVENTS, DriftCounter, DriftMonitor, ReferenceProfile, load_reference_profile
from models.artifacts import load_models
from models.config import DEFAULT_ARTIFACTS_DIR, ModelsConfig
from models.features import FeatureFrame, build_features
from models.profile import input_column, psi
from producer_tools import world
from schemas.errors import ArtifactError


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    return load_reference_profile(DEFAULT_ARTIFACTS_DIR)


def frame_of(count: int, seed: int, scenario: str = "baseline") -> FeatureFrame:
    return build_features(world.generate(count, seed, scenario=scenario).events)


def counts_in_batches(counter: DriftCounter, frame: FeatureFrame, batch: int) -> list[np.ndarray]:
    out = []
    for start in range(0, len(frame.matrix), batch):
        part = FeatureFrame(frame.matrix[start : start + batch], {})
        counts = counter.count(part, {})
        assert counts is not None
        out.append(counts)
    return out


def test_counter_gives_the_profiles_own_bin_counts(profile: ReferenceProfile) -> None:
    counter = DriftCounter(profile)
    for scenario in ("baseline", "drift"):
        frame = frame_of(1500, 3, scenario)
        counts = counter.count(frame, {})
        assert counts is not None
        for i, p in enumerate(profile.inputs):
            expected = p.counts(input_column(frame, p.name))
            np.testing.assert_array_equal(counts[counter.offsets[i] : counter.offsets[i + 1]], expected, p.name)


def test_counter_counts_predictions_and_unseen_categories(profile: ReferenceProfile) -> None:
    counter = DriftCounter(profile)
    frame = frame_of(200, 4)
    frame.anomalies = {("lead_source", "unknown_category"): 7, ("income", "out_of_range"): 3}
    scores = np.linspace(0.0, 1.0, 200)
    counts = counter.count(frame, {"bank_a": scores})
    assert counts is not None
    bank_a = next(j for j, p in enumerate(profile.predictions) if p.name == "bank_a") + len(profile.inputs)
    np.testing.assert_array_equal(
        counts[counter.offsets[bank_a] : counter.offsets[bank_a + 1]], profile.predictions[0].counts(scores)
    )
    slot = len(profile.inputs) + len(profile.predictions) + counter.categorical.index("lead_source")
    assert counts[counter.offsets[slot]] == 7


def test_nothing_scored_afresh_counts_nothing(profile: ReferenceProfile) -> None:
    assert DriftCounter(profile).count(None, {}) is None


def test_noise_psi_at_the_publishing_count_stays_well_under_the_warning_threshold(profile: ReferenceProfile) -> None:
    # Baseline against baseline: samples of MIN_EVENTS drawn from the reference shares themselves.
    rng = np.random.default_rng(0)
    values = np.array(
        [
            psi(np.asarray(p.expected), rng.multinomial(MIN_EVENTS, np.asarray(p.expected) / sum(p.expected)))
            for p in (*profile.inputs, *profile.predictions)
            for _ in range(100)
        ]
    )
    assert values.mean() < 0.03
    assert np.quantile(values, 0.99) < 0.06
    assert values.max() < 0.1


def test_baseline_world_matches_its_reference_profile(profile: ReferenceProfile) -> None:
    monitor = DriftMonitor(profile, short_window=1000, long_window=1000)
    monitor.add(monitor.counter.count(frame_of(1000, 21), {}))  # type: ignore[arg-type]
    snapshot = monitor.evaluate()
    assert max(snapshot.feature_psi.values()) < 0.1


def test_drift_scenario_is_detected_in_the_short_window(profile: ReferenceProfile) -> None:
    monitor = DriftMonitor(profile, short_window=1000, long_window=5000)
    for counts in counts_in_batches(monitor.counter, frame_of(2000, 5), 250):
        monitor.add(counts)
    before = monitor.evaluate()
    for counts in counts_in_batches(monitor.counter, frame_of(1000, 6, "drift"), 250):
        monitor.add(counts)
    after = monitor.evaluate()
    assert before.feature_psi["income", "short"] < 0.1
    assert after.window_events == {"short": 1000, "long": 3000}
    for shifted in ("income", "goods_category", "job_tenure_years"):
        assert after.feature_psi[shifted, "short"] > 0.25, shifted
        assert after.feature_psi[shifted, "long"] < after.feature_psi[shifted, "short"]
    assert after.feature_psi["lead_source", "short"] > 0.1  # 19% -> 40% of one source: PSI ~0.21 by construction
    for unshifted in ("childcount", "gender", "education_rank", "age_years"):
        assert after.feature_psi[unshifted, "short"] < 0.1, unshifted
    assert after.missing_ratio["job_tenure_years", "short"] > 0.4


def test_prediction_drift_follows_the_income_shift(profile: ReferenceProfile) -> None:
    models = load_models(ModelsConfig())
    monitor = DriftMonitor(profile, short_window=1000, long_window=1000)
    frame = frame_of(1000, 8, "drift")
    predictions = score_columns(models, frame, 0, lambda _stage: contextlib.nullcontext()).predictions(models)
    monitor.add(monitor.counter.count(frame, predictions))  # type: ignore[arg-type]
    snapshot = monitor.evaluate()
    assert snapshot.prediction_psi["bank_c", "short"] > 0.25
    assert set(snapshot.prediction_psi) == {(p.name, w) for p in profile.predictions for w in ("short", "long")}


def test_gauges_are_absent_until_a_window_holds_enough_events(profile: ReferenceProfile) -> None:
    registry = CollectorRegistry()
    monitor = DriftMonitor(profile, short_window=1000, long_window=2000)
    registry.register(monitor)
    labels = {"feature": "income", "window": "short"}
    assert registry.get_sample_value("crm_scorer_drift_evaluated_timestamp_seconds") is None

    batches = counts_in_batches(monitor.counter, frame_of(MIN_EVENTS, 9), 100)
    for counts in batches[:-1]:
        monitor.add(counts)
    monitor.evaluate()
    assert registry.get_sample_value("crm_scorer_feature_psi", labels) is None
    assert registry.get_sample_value("crm_scorer_feature_missing_ratio", labels) is None
    assert registry.get_sample_value("crm_scorer_drift_window_events", {"window": "short"}) == MIN_EVENTS - 100
    assert registry.get_sample_value("crm_scorer_drift_evaluated_timestamp_seconds") is not None

    monitor.add(batches[-1])
    snapshot = monitor.evaluate()
    assert registry.get_sample_value("crm_scorer_feature_psi", labels) == snapshot.feature_psi["income", "short"]
    unseen = {"feature": "lead_source", "window": "long"}
    assert registry.get_sample_value("crm_scorer_feature_unseen_ratio", unseen) is not None
    assert registry.get_sample_value("crm_scorer_feature_unseen_ratio", {**labels, "feature": "income"}) is None


def test_windows_hold_about_their_size(profile: ReferenceProfile) -> None:
    monitor = DriftMonitor(profile, short_window=1000, long_window=4000)
    frame = frame_of(1000, 10)
    counter = monitor.counter
    for _ in range(6):  # batches as large as the short window: it keeps the last one, not the last two
        monitor.add(counter.count(frame, {}))  # type: ignore[arg-type]
    assert monitor.evaluate().window_events == {"short": 1000, "long": 4000}
    for counts in counts_in_batches(counter, frame, 7) * 3:  # small batches: the short window tracks 1,000 closely
        monitor.add(counts)
    short = monitor.evaluate().window_events["short"]
    assert abs(short - 1000) <= 1000 // 20  # within one chunk (a twentieth of the window)


def test_window_smaller_than_the_publishing_count_is_raised_to_it(profile: ReferenceProfile) -> None:
    monitor = DriftMonitor(profile, short_window=100, long_window=1000)
    for counts in counts_in_batches(monitor.counter, frame_of(2000, 11), 50):
        monitor.add(counts)
    assert monitor.evaluate().window_events["short"] == MIN_EVENTS


def test_a_tampered_profile_is_refused(tmp_path: Path) -> None:
    shutil.copy(DEFAULT_ARTIFACTS_DIR / "manifest.json", tmp_path / "manifest.json")
    raw = json.loads((DEFAULT_ARTIFACTS_DIR / "reference_profile.json").read_text())
    raw["inputs"][0]["expected"][0] += 0.01
    (tmp_path / "reference_profile.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="sha256"):
        load_reference_profile(tmp_path)


def test_a_manifest_without_a_profile_is_refused(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "models": {}}))
    with pytest.raises(ArtifactError, match="reference_profile"):
        load_reference_profile(tmp_path)
