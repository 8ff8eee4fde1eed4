"""The synthetic world: determinism, realism, schema validity, the oracle, replays, drift, the CLI."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from functools import cache
from typing import Any

import fastavro
import numpy as np
import pytest
from fastavro.validation import validate_many

from models import vocabulary as vocab
from producer_tools.commands.cli import main as producer_main
from producer_tools.world import BANKS, DEFAULT_START, generate, oracle
from schemas.catalog import SCHEMA_DIR
from schemas.json_view import from_json_view, to_json_view


@cache
def _raw_schema(version: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / f"application_event.{version}.avsc").read_text())


@cache
def _batch(count: int, seed: int, scenario: str = "baseline", schema_version: str = "v1") -> Any:
    return generate(count, seed, scenario=scenario, schema_version=schema_version)


def _field(events: list[dict[str, Any]], section: str, name: str) -> list[Any]:
    return [e[section][name] for e in events]


def _missing_rate(events: list[dict[str, Any]], section: str, name: str) -> float:
    return float(np.mean([v is None for v in _field(events, section, name)]))


def _share(events: list[dict[str, Any]], section: str, name: str, value: str) -> float:
    present = [v for v in _field(events, section, name) if v is not None]
    return present.count(value) / len(present)


def _median_income(events: list[dict[str, Any]]) -> float:
    return float(np.median([v for v in _field(events, "applicant", "monthprofit") if v is not None]))


def test_same_seed_gives_identical_events_and_truth() -> None:
    first, second = generate(300, 5), generate(300, 5)
    assert first.events == second.events
    assert first.truth == second.truth


def test_different_seeds_give_different_events() -> None:
    first, second = generate(50, 5), generate(50, 6)
    assert [e["event_id"] for e in first.events] != [e["event_id"] for e in second.events]
    assert _field(first.events, "applicant", "monthprofit") != _field(second.events, "applicant", "monthprofit")


def test_v1_and_v2_of_one_seed_differ_only_by_the_v2_fields() -> None:
    v1, v2 = _batch(200, 3).events, _batch(200, 3, schema_version="v2").events
    assert all("channel" not in e and "merchant_region" not in e for e in v1)
    stripped = [{k: v for k, v in e.items() if k not in ("channel", "merchant_region")} for e in v2]
    assert stripped == v1


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_every_event_validates_against_its_schema(version: str) -> None:
    events = _batch(3000, 11, schema_version=version).events
    assert validate_many(events, fastavro.parse_schema(_raw_schema(version)), raise_errors=True)


def test_nested_records_carry_every_field_in_schema_order() -> None:
    fields = {f["name"]: f["type"] for f in _raw_schema("v1")["fields"]}
    events = _batch(500, 2).events
    assert events
    for section in ("applicant", "activity"):
        names = [f["name"] for f in fields[section]["fields"]]
        assert names and all(list(e[section]) == names for e in events)


def test_ids_timestamps_and_event_types_have_their_documented_shape() -> None:
    events = _batch(5000, 1).events
    assert all(re.fullmatch(r"app-[0-9a-f]{16}", e["application_id"]) for e in events)
    assert all(re.fullmatch(r"lead-[0-9a-f]{12}", e["lead_id"]) for e in events)
    assert len({e["event_id"] for e in events}) == len(events)
    times = [e["occurred_at"] for e in events]
    assert all(t.tzinfo == dt.UTC and t.microsecond % 1000 == 0 for t in times)
    assert times == sorted(times) and times[0] >= DEFAULT_START
    assert times[-1] - DEFAULT_START == pytest.approx(dt.timedelta(seconds=5000 / 50.0), abs=dt.timedelta(seconds=1))
    updated = Counter(e["event_type"] for e in events)["APPLICATION_UPDATED"] / len(events)
    assert 0.03 < updated < 0.05


def test_exact_resubmissions_repeat_the_application_on_the_same_day() -> None:
    events = _batch(5000, 1).events
    first: dict[str, dict[str, Any]] = {}
    exact = 0
    for e in events:
        seen = first.setdefault(e["application_id"], e)
        if seen is not e and e["event_type"] == "APPLICATION_SUBMITTED":
            assert (e["applicant"], e["activity"], e["lead_id"]) == (
                seen["applicant"],
                seen["activity"],
                seen["lead_id"],
            )
            assert e["occurred_at"].date() == seen["occurred_at"].date() and e["event_id"] != seen["event_id"]
            exact += 1
    assert 0.012 < exact / len(events) < 0.03


def test_updates_change_an_earlier_application_a_little() -> None:
    events = _batch(5000, 1).events
    assert any(e["event_type"] == "APPLICATION_UPDATED" for e in events)
    first: dict[str, dict[str, Any]] = {}
    for e in events:
        seen = first.setdefault(e["application_id"], e)
        if e["event_type"] == "APPLICATION_UPDATED":
            assert seen is not e and seen["event_type"] == "APPLICATION_SUBMITTED"
            assert e["applicant"] != seen["applicant"] and e["lead_id"] == seen["lead_id"]
            assert e["applicant"]["birthdate"] == seen["applicant"]["birthdate"]


def test_incomes_are_log_normal_around_55k_with_zeros_and_a_heavy_tail() -> None:
    incomes = np.array([v for v in _field(_batch(20000, 4).events, "applicant", "monthprofit") if v is not None])
    assert 48_000 <= np.median(incomes) <= 62_000
    assert 0.02 < np.mean(incomes == 0) < 0.10
    assert np.percentile(incomes, 99.5) > 6 * np.median(incomes)


def test_missing_rates_and_category_shares_are_plausible() -> None:
    events = _batch(20000, 4).events
    for section in ("applicant", "activity"):
        for name in events[0][section]:
            assert 0.03 < _missing_rate(events, section, name) < 0.3, name
    assert 0.15 < _share(events, "applicant", "goods_category", "Mobile_devices") < 0.25
    assert 0.05 < _share(events, "applicant", "goods_category", "Travel") < 0.10
    assert 0.15 < _share(events, "activity", "lead_source", "Olark Chat") < 0.23
    visits = np.array([v for v in _field(events, "activity", "total_visits") if v is not None and v >= 0])
    assert np.mean(visits == 0) > 0.2 and visits.var() > 2 * visits.mean()  # many zeros, over-dispersed


def test_web_counters_are_consistent_with_visits() -> None:
    events = _batch(5000, 4).events
    counts = [e["activity"]["total_visits"] for e in events]
    assert 0 in counts and any(v is not None and v > 0 for v in counts)  # both branches below are taken
    for e in events:
        visits, seconds, per_visit = (
            e["activity"][k] for k in ("total_visits", "total_time_spent_on_website", "page_views_per_visit")
        )
        if visits == 0:
            assert seconds == 0 and per_visit == 0.0
        elif visits is not None and visits > 0:
            assert per_visit >= 1.0


def test_unknown_categories_appear_at_about_half_a_percent() -> None:
    events = _batch(20000, 4).events
    assert vocab.CATEGORICAL_FIELDS
    for path, vocabulary in vocab.CATEGORICAL_FIELDS.items():
        section, name = path.split(".")
        present = [v for v in _field(events, section, name) if v is not None]
        unknown = sum(v not in vocabulary for v in present) / len(present)
        assert 0.002 < unknown < 0.012, path


def _anomaly_kinds(e: dict[str, Any]) -> set[str]:
    a, day = e["applicant"], e["occurred_at"].date()
    kinds = set()
    if a["monthprofit"] is not None and a["monthprofit"] < 0:
        kinds.add("negative_income")
    if a["birthdate"] is not None and a["birthdate"] > day:
        kinds.add("future_birthdate")
    if None not in (a["birthdate"], a["jobstartdate"]) and a["jobstartdate"] < a["birthdate"]:
        kinds.add("job_before_birth")
    if a["loan_term"] is not None and not 1 <= a["loan_term"] <= 120:
        kinds.add("absurd_loan_term")
    if e["activity"]["total_visits"] is not None and e["activity"]["total_visits"] < 0:
        kinds.add("negative_visits")
    return kinds


def test_soft_anomalies_appear_in_about_one_percent_of_events() -> None:
    events = _batch(20000, 4).events
    kinds = [_anomaly_kinds(e) for e in events]
    assert 0.006 < np.mean([bool(k) for k in kinds]) < 0.015
    assert set().union(*kinds) == {
        "negative_income",
        "future_birthdate",
        "job_before_birth",
        "absurd_loan_term",
        "negative_visits",
    }


def test_oracle_is_a_pure_function_of_the_observed_event() -> None:
    batch = _batch(2000, 8)
    probs = oracle(batch.events)
    assert set(probs) == {"lead", *BANKS}
    np.testing.assert_array_equal(probs["lead"], [t["lead"]["p"] for t in batch.truth])
    for bank in BANKS:
        np.testing.assert_array_equal(probs[bank], [t["banks"][bank]["p"] for t in batch.truth])
    one = oracle(batch.events[7:8])
    assert all(one[k][0] == probs[k][7] for k in probs)


def test_oracle_agrees_after_a_json_round_trip() -> None:
    events = _batch(500, 8).events
    back = [from_json_view(json.loads(json.dumps(to_json_view(e))), _raw_schema("v1")) for e in events]
    for name, p in oracle(back).items():
        np.testing.assert_allclose(p, oracle(events)[name], rtol=0, atol=0)


def test_base_rates_are_distinct_and_outcomes_follow_the_probabilities() -> None:
    truth = _batch(20000, 9).truth
    lead = np.mean([t["lead"]["converted"] for t in truth])
    assert 0.34 < lead < 0.42
    rates = {bank: np.mean([t["banks"][bank]["approved"] for t in truth]) for bank in BANKS}
    assert all(0.12 < r < 0.6 for r in rates.values())
    assert min(np.diff(sorted(rates.values()))) > 0.04
    p = np.array([t["banks"]["bank_c"]["p"] for t in truth])
    approved = np.array([t["banks"]["bank_c"]["approved"] for t in truth])
    assert abs(p.mean() - approved.mean()) < 0.02


def test_drift_lowers_incomes_and_boosts_travel_and_olark_chat() -> None:
    base, drift = _batch(20000, 4).events, _batch(20000, 4, scenario="drift").events
    assert _median_income(drift) == pytest.approx(0.65 * _median_income(base), rel=0.08)
    assert 0.30 < _share(drift, "applicant", "goods_category", "Travel") < 0.40
    assert 0.45 < _share(drift, "activity", "lead_source", "Olark Chat") < 0.55
    assert 0.40 < _missing_rate(drift, "applicant", "jobstartdate") < 0.50
    assert _missing_rate(drift, "applicant", "education") == _missing_rate(base, "applicant", "education")


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="scenario"):
        generate(1, 1, scenario="storm")
    with pytest.raises(ValueError, match="start"):
        generate(1, 1, start=dt.datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="schema_version"):
        generate(1, 1, schema_version="v9")
    assert generate(0, 1).events == []


def test_generate_command_writes_lines_that_round_trip(tmp_path: Any) -> None:
    out = tmp_path / "events.jsonl"
    assert producer_main(["generate", "--count", "40", "--seed", "3", "--labels", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    batch = _batch(40, 3)
    assert len(lines) == 40
    assert [line.pop("truth") for line in lines] == batch.truth
    assert [from_json_view(line, _raw_schema("v1")) for line in lines] == batch.events
