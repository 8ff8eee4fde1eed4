"""The world's outcomes: routing, determinism, delays, lost and re-sent outcomes, the policy change, the contract."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from functools import cache
from typing import Any

import numpy as np
import pytest

from producer_tools.publishing.outcomes import OutcomeSchedule, world_truth
from producer_tools.world.outcomes import (
    LEAD_HORIZON_S,
    ROUTING_RULE,
    OutcomeDraws,
    PlannedOutcome,
    PolicyChange,
    Truth,
    plan_outcomes,
    route,
)
from schemas import RecordDecoder, SingleObjectEncoder, load_catalog

SCORED_AT = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@cache
def _truths(count: int = 3000, seed: int = 21) -> dict[str, Truth]:
    return world_truth(count, seed, "baseline", "v1")


def oracle_score(event_id: str, truth: Truth) -> dict[str, Any]:
    """A score result whose probabilities are the oracle's (decoded shape, as the monitor reads it)."""
    banks = [
        {"bank": b, "probability": v["p"], "approved": v["p"] >= 0.5, "model_version": f"{b}-oracle"}
        for b, v in truth.truth["banks"].items()
    ]
    return {
        "event_id": event_id,
        "application_id": truth.event["application_id"],
        "scored_at": SCORED_AT,
        "banks": banks,
        "lead": {"probability": truth.truth["lead"]["p"], "model_version": "lead-oracle", "score": 0},
    }


NO_LOSS = OutcomeDraws(0.0, 0.0)
DEFAULT_DRAWS = OutcomeDraws()


def all_outcomes(policy: PolicyChange | None = None, draws: OutcomeDraws = DEFAULT_DRAWS) -> list[PlannedOutcome]:
    out = []
    for event_id, truth in _truths().items():
        out += plan_outcomes(oracle_score(event_id, truth), truth, 3, draws, policy)
    return out


def test_an_application_goes_to_its_top_bank_and_to_the_second_only_when_it_approves() -> None:
    banks = [
        {"bank": "bank_a", "probability": 0.2, "approved": False},
        {"bank": "bank_b", "probability": 0.7, "approved": True},
        {"bank": "bank_c", "probability": 0.6, "approved": True},
    ]
    assert route(banks) == ["bank_b", "bank_c"]
    banks[2]["approved"] = False
    assert route(banks) == ["bank_b"]
    assert route([{"bank": "bank_a", "probability": 0.1, "approved": False}]) == ["bank_a"]  # none approves


def test_bank_labels_exist_only_for_routed_banks_and_carry_the_rule() -> None:
    planned_outcomes = all_outcomes(draws=OutcomeDraws(0.0, 0.0))[:500]
    kinds = {planned.record["kind"] for planned in planned_outcomes}
    assert "bank_decision" in kinds and len(kinds) > 1  # both branches below are taken
    for planned in planned_outcomes:
        record = planned.record
        if record["kind"] == "bank_decision":
            assert record["routing"] == ROUTING_RULE and record["bank"] is not None
        else:
            assert record["bank"] is None and record["routing"] is None


def test_the_same_score_always_gets_the_same_outcomes() -> None:
    event_id, truth = next(iter(_truths().items()))
    score = oracle_score(event_id, truth)
    first = plan_outcomes(score, truth, 3)
    assert first == plan_outcomes(score, truth, 3)
    assert [p.record["event_id"] for p in first] != [p.record["event_id"] for p in plan_outcomes(score, truth, 4)]


def test_baseline_bank_decisions_are_the_worlds_own_outcomes() -> None:
    truths = _truths()
    planned_outcomes = all_outcomes(draws=OutcomeDraws(0.0, 0.0))
    assert planned_outcomes
    for planned in planned_outcomes:
        record = planned.record
        truth = truths[record["score_event_id"]].truth
        expected = truth["lead"]["converted"] if record["bank"] is None else truth["banks"][record["bank"]]["approved"]
        assert record["positive"] == expected


def test_delays_are_minutes_to_hours_for_banks_and_days_for_leads() -> None:
    planned = all_outcomes(draws=OutcomeDraws(0.0, 0.0))
    banks = np.array([p.delay_s for p in planned if p.record["kind"] == "bank_decision"])
    leads = [p for p in planned if p.record["kind"] == "lead_conversion"]
    assert 300 < np.median(banks) < 3600 and np.percentile(banks, 95) < 6 * 3600
    converted = np.array([p.delay_s for p in leads if p.record["positive"]])
    assert 0.5 * 86_400 < np.median(converted) < 3 * 86_400 and converted.max() < LEAD_HORIZON_S
    assert all(p.delay_s == LEAD_HORIZON_S for p in leads if not p.record["positive"])


def test_some_outcomes_never_arrive_and_a_few_arrive_twice_with_the_same_id() -> None:
    clean = len(all_outcomes(draws=OutcomeDraws(0.0, 0.0)))
    planned = all_outcomes(draws=OutcomeDraws(0.05, 0.02))
    ids = Counter(p.record["event_id"] for p in planned)
    twice = [i for i, n in ids.items() if n == 2]
    assert 0.03 < 1 - len(ids) / clean < 0.07
    assert 0.01 < len(twice) / len(ids) < 0.03
    again = [p for p in planned if p.duplicate]
    assert len(again) == len(twice) and all(p.record["event_id"] in twice for p in again)


def test_a_policy_change_lowers_one_banks_approvals_from_its_event_on_and_moves_nothing_else() -> None:
    base = all_outcomes()
    changed = all_outcomes(PolicyChange("bank_c", 1500))
    assert [p.record["event_id"] for p in base] == [p.record["event_id"] for p in changed]
    index = {eid: t.index for eid, t in _truths().items()}

    def rate(planned: list[PlannedOutcome], after: bool) -> float:
        hits = [
            p.record["positive"]
            for p in planned
            if p.record["bank"] == "bank_c" and (index[p.record["score_event_id"]] >= 1500) == after
        ]
        return float(np.mean(hits))

    assert rate(changed, after=False) == rate(base, after=False)
    assert rate(changed, after=True) < rate(base, after=True) - 0.15
    others = [(a.record, b.record) for a, b in zip(base, changed, strict=True) if a.record["bank"] != "bank_c"]
    assert all(a == b for a, b in others)


def test_policy_change_is_parsed_from_bank_at_index_and_an_optional_size() -> None:
    assert PolicyChange.parse("bank_d@250") == PolicyChange("bank_d", 250, 1.0)
    assert PolicyChange.parse("bank_d@250:0.5") == PolicyChange("bank_d", 250, 0.5)
    for bad in ("bank_z@1", "bank_d", "bank_d@-1", "bank_d@250:0", "bank_d@250:x", "bank_d@250:nan", "bank_d@250:"):
        with pytest.raises(ValueError, match=r"BANK@EVENT_INDEX\[:SIZE\]"):
            PolicyChange.parse(bad)


def test_a_smaller_policy_change_declines_fewer() -> None:
    index = {eid: t.index for eid, t in _truths().items()}

    def approved_after(size: float) -> float:
        planned = all_outcomes(PolicyChange("bank_c", 1500, size))
        hits = [
            p.record["positive"]
            for p in planned
            if p.record["bank"] == "bank_c" and index[p.record["score_event_id"]] >= 1500
        ]
        return float(np.mean(hits))

    full, half, quarter = approved_after(1.0), approved_after(0.5), approved_after(0.25)
    assert full < half - 0.05 and half < quarter - 0.03


def test_outcomes_encode_in_the_contract_and_decode_back() -> None:
    catalog = load_catalog()
    encode, decoder = SingleObjectEncoder(catalog.outcome), RecordDecoder(catalog.outcome, catalog)
    planned_outcomes = all_outcomes()[:50]
    assert len(planned_outcomes) == 50
    for planned in planned_outcomes:
        record = dict(planned.record, decided_at=dt.datetime.fromtimestamp(planned.record["decided_at"] / 1000, dt.UTC))
        decoded = decoder.decode(encode(record))
        assert str(decoded["event_id"]) == record["event_id"] and decoded["kind"] == record["kind"]
        assert decoded["decided_at"] == record["decided_at"]


def test_the_schedule_releases_outcomes_after_their_compressed_delay() -> None:
    schedule = OutcomeSchedule(time_scale=100.0)
    early, late = (PlannedOutcome({"n": i, "kind": "bank_decision"}, d) for i, d in ((1, 100.0), (2, 1000.0)))
    schedule.add(late, seen_at=0.0)
    schedule.add(early, seen_at=0.0)
    assert schedule.due(0.5) == [] and schedule.due(1.0) == [early]
    assert schedule.due(9.9) == [] and schedule.due(10.0) == [late] and len(schedule) == 0


def test_lead_conversions_can_be_compressed_further_and_the_schedule_says_what_waits() -> None:
    schedule = OutcomeSchedule(time_scale=100.0, lead_time_scale=10_000.0)
    bank = PlannedOutcome({"kind": "bank_decision"}, 1000.0)
    lead = PlannedOutcome({"kind": "lead_conversion"}, 432_000.0)
    schedule.add(bank, seen_at=0.0)
    schedule.add(lead, seen_at=0.0)
    assert schedule.pending() == 2 and schedule.pending(banks_only=True) == 1
    assert schedule.due(10.0) == [bank] and schedule.pending(banks_only=True) == 0
    assert schedule.due(43.1) == [] and schedule.due(43.2) == [lead]
