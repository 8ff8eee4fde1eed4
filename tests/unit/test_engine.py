"""The scoring engine: bytes in, results and dead letters out; identical content, identical hash and scores."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import numpy as np
import pytest

from consumer.core.engine import ScoringEngine
from models.features import build_features
from producer_tools.world import generate
from schemas import ResultDecoder, SingleObjectEncoder, load_catalog

CATALOG = load_catalog()
ENCODE = SingleObjectEncoder(CATALOG.application_event_latest)
ENCODE_V1 = SingleObjectEncoder(CATALOG.get("application_event.v1"))
RESULT_ENCODER = SingleObjectEncoder(CATALOG.score_result)  # fastavro: the oracle of the result bytes
RESULTS = ResultDecoder(CATALOG)


def results(engine: ScoringEngine, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The engine's result bytes for ``events`` (as v2 messages), decoded."""
    return [RESULTS.decode(s.value) for s in engine.score_batch([ENCODE(e) for e in events]).scored]


def no_cache_engine() -> ScoringEngine:
    """An engine that remembers nothing, so every result is scored afresh."""
    from consumer.service import build_engine
    from consumer.settings import load_settings

    return build_engine(load_settings(None, dedup={"enabled": False}))


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return generate(300, seed=11).events


def test_every_payload_ends_as_a_result_or_a_dead_letter(engine: ScoringEngine, events: list[dict]) -> None:
    payloads = [ENCODE(e) for e in events[:50]] + [b"", b"garbage", ENCODE(events[0])[:-7], None]
    outcome = engine.score_batch(payloads)
    assert sorted([s.index for s in outcome.scored] + [r.index for r in outcome.rejected]) == list(range(54))
    reasons = {r.index: r.error.reason for r in outcome.rejected}
    assert reasons == {50: "empty_value", 51: "unknown_framing", 52: "avro_decode_error", 53: "empty_value"}


def test_results_decode_with_the_score_result_schema(engine: ScoringEngine, events: list[dict]) -> None:
    outcome = engine.score_batch([ENCODE(e) for e in events[:20]])
    decoder = ResultDecoder(CATALOG)
    assert outcome.scored, "nothing was scored"
    for scored in outcome.scored:
        result = decoder.decode(scored.value)
        source = events[scored.index]
        assert str(result["event_id"]) == source["event_id"]
        assert scored.key == source["application_id"].encode()
        assert [b["bank"] for b in result["banks"]] == ["bank_a", "bank_b", "bank_c", "bank_d", "bank_e"]
        assert 0 <= result["lead"]["score"] <= 1000
        assert result["lead"]["score"] == round(1000 * result["lead"]["probability"])
        assert all(1 <= len(b["reasons"]) <= 3 for b in result["banks"]) and len(result["lead"]["reasons"]) == 3


def test_best_offer_is_the_first_offer_and_offers_are_approved_banks_cheapest_first(
    engine: ScoringEngine, events: list
) -> None:
    scored = results(engine, events)
    for result in scored:
        offers = result["offers"]
        approved = {b["bank"] for b in result["banks"] if b["approved"]}
        assert result["best_offer"] == (offers[0]["bank"] if offers else None)
        assert {o["bank"] for o in offers} <= approved and [o["rank"] for o in offers] == list(
            range(1, len(offers) + 1)
        )
        priced = [o["monthly_payment"] for o in offers if o["monthly_payment"] is not None]
        unpriced = [o["monthly_payment"] is None for o in offers]
        assert priced == sorted(priced) and unpriced == sorted(unpriced)  # the priced ones first, cheapest first
    assert any(r["best_offer"] is None for r in scored)  # both branches ran
    assert any(r["best_offer"] is not None for r in scored)


def test_each_bank_gives_its_strongest_contributions_of_its_decisions_sign(engine: ScoringEngine, events: list) -> None:
    """XGBoost's own approximate contributions: an approval's largest positive ones, a decline's most negative."""
    banks = {b.name: b for b in engine.models.banks}
    scored = results(engine, events[:60])
    assert len(scored) == 60 and len(banks) > 1
    for event, result in zip(events[:60], scored, strict=True):
        for entry in result["banks"]:
            bank = banks[entry["bank"]]
            contributions = bank.contributions(build_features([event]).columns(bank.features))[0]
            signed = contributions if entry["approved"] else -contributions
            top = [f for f in np.argsort(-signed)[:3] if signed[f] > 0]
            assert [r["feature"] for r in entry["reasons"]] == [bank.features[f] for f in top]
            assert np.allclose([r["contribution"] for r in entry["reasons"]], contributions[top], rtol=1e-5, atol=1e-6)
        explained = result["best_offer"] or max(result["banks"], key=lambda b: b["probability"])["bank"]
        assert result["reasons"] == next(b["reasons"] for b in result["banks"] if b["bank"] == explained)


def test_identical_content_gives_identical_hash_and_scores_whatever_the_ids(events: list[dict]) -> None:
    original = events[3]
    twin = copy.deepcopy(original) | {"event_id": str(uuid.uuid4()), "application_id": "app-other", "lead_id": "x1"}
    twin["occurred_at"] = original["occurred_at"].replace(hour=(original["occurred_at"].hour + 1) % 24)
    engine = no_cache_engine()  # the twin is scored afresh, not served from the cache of recent scores
    (a,), (b,) = results(engine, [original]), results(engine, [twin])
    assert a["application_hash"] == b["application_hash"]
    for key in ("lead", "banks", "best_offer", "reasons"):
        assert a[key] == b[key]
    changed = copy.deepcopy(original)
    changed["applicant"]["monthprofit"] = (changed["applicant"]["monthprofit"] or 0) + 1000.0
    (c,) = results(engine, [changed])
    assert c["application_hash"] != a["application_hash"]
    assert c["banks"] != a["banks"]  # the income enters the bank models


def test_v1_and_v2_writers_score_the_same(events: list[dict]) -> None:
    v1 = {k: v for k, v in events[5].items() if k in ENCODE_V1.schema.fields()}  # without what v2 added
    engine = no_cache_engine()  # two batches, each scored afresh: equal scores are not the cache's doing
    (first,), (second,) = (engine.score_batch([payload]).scored for payload in (ENCODE_V1(v1), ENCODE(events[5])))
    first_result, second_result = RESULTS.decode(first.value), RESULTS.decode(second.value)
    assert first_result["banks"] == second_result["banks"]
    assert first_result["application_hash"] == second_result["application_hash"]


def test_repeated_applications_are_counted_and_not_rescored(settings, events: list[dict]) -> None:
    from consumer.service import build_engine

    engine = build_engine(settings)
    payloads = [ENCODE(e) for e in events[:10]]
    first = engine.score_batch(payloads + payloads[:2])
    assert first.duplicates == 2 and first.frame is not None and len(first.frame.matrix) == 10
    again = engine.score_batch(payloads[:4])
    assert again.duplicates == 4 and again.frame is None and len(again.scored) == 4


def test_dedup_can_be_switched_off(events: list[dict]) -> None:
    from consumer.service import build_engine
    from consumer.settings import load_settings

    engine = build_engine(load_settings(None, dedup={"enabled": False}))
    payload = ENCODE(events[0])
    assert engine.score_batch([payload]).duplicates == 0
    second = engine.score_batch([payload])
    assert second.duplicates == 0 and second.frame is not None  # scored afresh: nothing was remembered


@pytest.mark.parametrize(
    ("change", "reason", "field"),
    [
        ({"application_id": ""}, "missing_id", "application_id"),
        ({"lead_id": "lead 1\n"}, "invalid_field", "lead_id"),
        ({"application_id": "a" * 65}, "invalid_field", "application_id"),
    ],
)
def test_unusable_ids_are_dead_lettered_with_the_field(engine, events, change, reason, field) -> None:
    outcome = engine.score_batch([ENCODE(events[0] | change)])
    assert [(r.error.reason, r.error.field) for r in outcome.rejected] == [(reason, field)]


def test_result_bytes_are_what_fastavro_writes_for_the_decoded_result(engine: ScoringEngine, events: list) -> None:
    outcome = engine.score_batch([ENCODE(e) for e in events[:30]])
    assert outcome.scored, "nothing was scored"
    for scored in outcome.scored:
        assert RESULT_ENCODER(RESULTS.decode(scored.value)) == scored.value
