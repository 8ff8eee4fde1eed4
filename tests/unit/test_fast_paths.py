"""The fast paths give exactly what the straightforward path gives.

The reference below is the plain way to score: fastavro decodes every message with full writer -> reader
resolution, the application hash reads fields one ``get`` at a time, features are built one event at a time,
every model predicts, reasons come from XGBoost's approximate contributions, a result record (dicts) is built
and fastavro, the oracle, encodes it. The engine (decode without resolution for an added-fields writer,
column-wise features, and ``ResultWriter``, the only producer of result bytes) must produce the same bytes.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import hashlib
import json
import math
import random
import re
from io import BytesIO
from typing import Any

import numpy as np
import pytest
from fastavro import schemaless_reader

from consumer.core.dedup import ACTIVITY_FIELDS, APPLICANT_FIELDS, RecentScores, application_hash
from consumer.core.engine import ScoringEngine
from consumer.core.offers import OfferBook
from consumer.core.result_writer import avro_string, result_schema, zigzag_varint
from consumer.core.validation import check_event
from models.artifacts import BankModel, ModelSet
from models.config import ProductConfig
from models.features import FeatureFrame, build_features
from models.reasons import reason_name, shipped_reason_codes
from producer_tools.publishing.poison import poison_kinds
from producer_tools.publishing.publisher import event_encoders, event_messages
from producer_tools.world import generate
from schemas import EventDecoder, ResultDecoder, SingleObjectEncoder, load_catalog
from schemas.catalog import SchemaVersion
from schemas.errors import InvalidEventError

CATALOG = load_catalog()
READER = CATALOG.application_event_latest
RESULT_ENCODER = SingleObjectEncoder(CATALOG.score_result)
CONFIG_HASH = "0123456789ab"
CLOCK = 1_790_000_000.123456
EVENTS = 10_000
SERVICE_DECODER = EventDecoder(CATALOG)


@pytest.fixture(scope="module")
def payloads() -> list[bytes | None]:
    """10,000 messages: v1 and v2 writers in turn, 2% malformed (every kind but the 900 KB one), and 200
    resubmissions of earlier applications (new ids, same content) so the cache of recent scores is used."""
    events = generate(EVENTS - 200, seed=31, schema_version="v2").events
    rng = random.Random(5)
    for original in rng.sample(events, 200):
        twin = copy.deepcopy(original) | {"event_id": f"6f1c7d0e-3a55-4c1b-9a0e-{rng.randrange(10**12):012d}"}
        events.append(twin | {"application_id": f"app-twin-{rng.randrange(10**9)}"})
    kinds = [k for k in poison_kinds() if k.name != "huge_string"]
    messages = event_messages(events, event_encoders("mixed"), bad_ratio=0.02, seed=3, kinds=kinds)
    return [m.value for m in messages]


# --- the straightforward path ----------------------------------------------------------------------------


def reference_decode(payload: bytes | None) -> dict[str, Any]:
    """Full fastavro resolution of every writer, through the decoder's own framing checks."""
    record = SERVICE_DECODER.decode(payload)  # framing, errors and trailing-byte checks as the service
    assert payload is not None
    writer = CATALOG.by_fingerprint(payload[2:10])
    assert writer is not None
    resolved = schemaless_reader(BytesIO(payload[10:]), writer.parsed, READER.parsed)
    assert repr(resolved) == repr(record)  # repr: NaN (a poison kind) equals itself there
    return resolved  # type: ignore[return-value]


def reference_hash(event: dict[str, Any]) -> str:
    applicant, activity = event["applicant"], event["activity"]
    content = (
        tuple(applicant.get(f) for f in APPLICANT_FIELDS),
        tuple(activity.get(f) for f in ACTIVITY_FIELDS),
        event["occurred_at"].date(),
    )
    return hashlib.blake2b(repr(content).encode(), digest_size=16).hexdigest()


def reference_scores(
    models: ModelSet, events: list[dict[str, Any]], top_k: int, book: OfferBook | None = None
) -> list[dict[str, Any]]:
    """Features one event at a time; each model once over the stacked rows; every bank's reasons and the
    lead's picked row by row in Python; offers ranked row by row with ``sorted``."""
    book = book if book is not None else OfferBook([b.name for b in models.banks], {})
    frame = FeatureFrame(np.vstack([build_features([e]).matrix for e in events]))
    bank_p = np.column_stack([b.probability(frame.columns(b.features)) for b in models.banks])
    lead_x = frame.columns(models.lead.features).astype(np.float64)
    lead_p = models.lead.probability(lead_x)
    xs = [frame.columns(b.features) for b in models.banks]
    contribs = [b.explain(b.leaves(x))[1] for b, x in zip(models.banks, xs, strict=True)]
    lead_contribs = models.lead.params.contributions(lead_x)
    out = []
    for row in range(len(events)):
        p, lead = bank_p[row].tolist(), float(lead_p[row])
        approved = [p[j] >= b.threshold for j, b in enumerate(models.banks)]
        bank_reasons = [
            _reference_reasons(b.features, xs[j][row], contribs[j][row], approved[j], top_k)
            for j, b in enumerate(models.banks)
        ]
        lead_reasons = _reference_reasons(
            models.lead.features, lead_x[row], lead_contribs[row], lead >= models.lead.threshold, top_k
        )
        offers = _reference_offers(book, frame, row, p, approved)
        explained = (
            models.banks.index(next(b for b in models.banks if b.name == offers[0]["bank"]))
            if offers
            else (int(np.argmax(bank_p[row])))
        )
        out.append(
            {
                "lead": _reference_lead(models, lead, lead_reasons),
                "banks": _reference_banks(models, p, approved, bank_reasons),
                "best_offer": offers[0]["bank"] if offers else None,
                "offers": offers,
                "reasons": bank_reasons[explained],
            }
        )
    return out


def _reference_lead(models: ModelSet, probability: float, reasons: list[dict[str, Any]]) -> dict[str, Any]:
    """The lead's entry of a result."""
    score = round(1000 * probability)
    return {"score": score, "probability": probability, "model_version": models.lead.version, "reasons": reasons}


def _reference_banks(
    models: ModelSet, p: list[float], approved: list[bool], reasons: list[list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Every bank's entry of a result, in the model set's order."""
    return [
        {
            "bank": b.name,
            "probability": p[j],
            "approved": approved[j],
            "model_version": b.version,
            "reasons": reasons[j],
        }
        for j, b in enumerate(models.banks)
    ]


def _reference_reasons(
    features: tuple[str, ...], x: np.ndarray, contributions: np.ndarray, up: bool, top_k: int
) -> list[dict[str, Any]]:
    """Contributions summed per reason name, the ``top_k`` strongest of the decision's sign, with their codes."""
    table = shipped_reason_codes()
    by_name: dict[str, float] = {}
    missing: dict[str, bool] = {}
    for feature, name, value, c in zip(features, _names(features), x.tolist(), contributions.tolist(), strict=True):
        by_name[name] = by_name.get(name, 0.0) + c
        if feature == name:
            missing[name] = math.isnan(value)
        elif feature == f"{name}_unknown":
            missing[name] = value == 1
    sign = 1.0 if up else -1.0
    ranked = sorted(((-sign * v, i, n) for i, (n, v) in enumerate(by_name.items())), key=lambda t: (t[0], t[1]))
    reasons = []
    for negative, _, name in ranked[:top_k]:
        if negative >= 0:
            break
        kind = "missing" if missing.get(name, False) else ("up" if up else "down")
        statement = table[name].statement(kind)
        value = float(np.float32(by_name[name]))
        reasons.append(
            {
                "feature": name,
                "contribution": value,
                "code": statement.code,
                "statement": {"ru": statement.ru, "en": statement.en},
            }
        )
    return reasons


@functools.cache
def _names(features: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(reason_name(f) for f in features)


def _reference_offers(
    book: OfferBook, frame: FeatureFrame, row: int, p: list[float], approved: list[bool]
) -> list[dict[str, Any]]:
    amount, term = float(frame.column("loan_amount")[row]), float(frame.column("loan_term")[row])
    offers = []
    for position, product in enumerate(book.products):
        if not approved[product.bank]:
            continue
        payment = None
        if product.annual_rate is not None:
            if not (product.amount[0] <= amount <= product.amount[1] and product.term[0] <= term <= product.term[1]):
                continue
            r = product.annual_rate / 12
            exact = amount * r / (1 - (1 + r) ** -term) if r > 0 else amount / term
            payment = float(np.rint(exact * 100) / 100)  # to the kopeck, as rint(100 x) / 100
        offers.append((product, position, payment))
    if book.policy == "customer_cost":
        offers.sort(key=lambda o: (o[2] is None, o[2] or 0.0, -p[o[0].bank], o[1]))
    else:
        offers.sort(key=lambda o: (-p[o[0].bank], o[2] is None, o[2] or 0.0, o[1]))
    return [
        {
            "bank": book.banks[o[0].bank],
            "product": o[0].name,
            "approval_probability": p[o[0].bank],
            "annual_rate": o[0].annual_rate,
            "monthly_payment": o[2],
            "rank": rank,
        }
        for rank, o in enumerate(offers, start=1)
    ]


def reference_value(event: dict[str, Any], scores: dict[str, Any]) -> bytes:
    record = {
        "event_id": str(event["event_id"]),
        "application_id": event["application_id"],
        "lead_id": event["lead_id"],
        "application_hash": reference_hash(event),
        "event_time": event["occurred_at"],
        "scored_at": dt.datetime.fromtimestamp(CLOCK, dt.UTC),
        **scores,
        "config_hash": CONFIG_HASH,
    }
    return RESULT_ENCODER(record)


def fast_engine(models: ModelSet, top_k: int = 3, book: OfferBook | None = None) -> ScoringEngine:
    return ScoringEngine(
        models,
        EventDecoder(CATALOG),
        RESULT_ENCODER.header,
        config_hash=CONFIG_HASH,
        reasons=top_k,
        recent=RecentScores(100_000),
        clock=lambda: CLOCK,
        offers=book,
    )


def reference_events(payloads: list[bytes | None]) -> tuple[dict[int, dict[str, Any]], dict[int, tuple[str, str]]]:
    """The valid events by message index, and each invalid message's (reason, error text)."""
    events: dict[int, dict[str, Any]] = {}
    rejected: dict[int, tuple[str, str]] = {}
    for index, payload in enumerate(payloads):
        try:
            event = reference_decode(payload)
            check_event(event)
        except InvalidEventError as exc:
            rejected[index] = (exc.reason, _scrubbed(exc))
            continue
        events[index] = event
    return events, rejected


def reference_values(
    models: ModelSet, events: dict[int, dict[str, Any]], top_k: int = 3, book: OfferBook | None = None
) -> dict[int, bytes]:
    """The result bytes of every event by message index, the straightforward way."""
    scores = reference_scores(models, list(events.values()), top_k, book)
    return {index: reference_value(event, s) for (index, event), s in zip(events.items(), scores, strict=True)}


# --- the tests -------------------------------------------------------------------------------------------


def test_ten_thousand_events_score_to_the_same_bytes_as_the_straightforward_path(
    model_set: ModelSet, payloads: list[bytes | None]
) -> None:
    engine = fast_engine(model_set)
    scored: dict[int, bytes] = {}
    rejected: dict[int, tuple[str, str]] = {}
    for start in range(0, len(payloads), 1000):
        outcome = engine.score_batch(payloads[start : start + 1000])
        scored |= {start + s.index: s.value for s in outcome.scored}
        rejected |= {start + r.index: (r.error.reason, _scrubbed(r.error)) for r in outcome.rejected}
    assert len(scored) + len(rejected) == len(payloads) and len(scored) > 9000
    events, expected_rejected = reference_events(payloads)
    assert rejected == expected_rejected
    expected = reference_values(model_set, events)
    assert set(expected) == set(scored)
    for index, value in expected.items():
        assert scored[index] == value, f"message {index}"


def _scrubbed(error: Exception) -> str:
    """The error text without object addresses (fastavro names its buffer in some messages)."""
    return re.sub(r" at 0x[0-9a-f]+", "", str(error))


def test_no_reasons_and_short_banks_write_the_same_bytes(model_set: ModelSet, payloads: list[bytes | None]) -> None:
    """``reasons: 0`` and a bank with fewer features than reasons (it gives fewer), against the oracle."""
    short = _two_feature_bank()
    models = ModelSet((*model_set.banks, short), model_set.lead, model_set.manifest)
    batch = payloads[:300]
    events, _ = reference_events(batch)
    for top_k in (0, 3):
        fast = fast_engine(models, top_k).score_batch(batch)
        assert {s.index: s.value for s in fast.scored} == reference_values(models, events, top_k)
    results = [ResultDecoder(CATALOG).decode(s.value) for s in fast.scored]
    short_reasons = [len(r["banks"][-1]["reasons"]) for r in results]
    assert max(short_reasons) == 2 and any(r["best_offer"] == "bank_zz" for r in results)  # the padded case ran


def test_offers_of_configured_products_write_the_same_bytes(model_set: ModelSet, payloads: list[bytes | None]) -> None:
    """Products on some banks (one overlapping another's range, one at a zero rate), none on the others; both
    ranking policies; four reasons, the most a result gives."""
    products = {
        "bank_a": [
            ProductConfig(
                name="small", amount_min=5_000, amount_max=150_000, term_min=3, term_max=24, annual_rate=0.249
            ),
            ProductConfig(
                name="large", amount_min=100_000, amount_max=2_000_000, term_min=6, term_max=60, annual_rate=0.189
            ),
        ],
        "bank_c": [
            ProductConfig(
                name="instalment", amount_min=10_000, amount_max=300_000, term_min=3, term_max=12, annual_rate=0.0
            )
        ],
        "bank_d": [
            ProductConfig(
                name="standard", amount_min=20_000, amount_max=1_000_000, term_min=6, term_max=36, annual_rate=0.219
            )
        ],
    }
    batch = payloads[:600]
    events, _ = reference_events(batch)
    for policy in ("customer_cost", "approval_probability"):
        book = OfferBook([b.name for b in model_set.banks], products, policy)
        fast = fast_engine(model_set, 4, book).score_batch(batch)
        assert {s.index: s.value for s in fast.scored} == reference_values(model_set, events, 4, book)
    results = [ResultDecoder(CATALOG).decode(s.value) for s in fast.scored]
    kinds = {(o["product"] is None, o["rank"]) for r in results for o in r["offers"]}
    assert {(True, 1), (False, 1), (False, 2), (True, 2)} <= kinds  # priced and unpriced offers, first and later
    assert any(len(b["reasons"]) == 4 for r in results for b in r["banks"])


def _two_feature_bank() -> BankModel:
    import xgboost as xgb

    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 2)).astype(np.float32)
    booster = xgb.train({"max_depth": 2, "nthread": 1}, xgb.DMatrix(x, label=(x[:, 0] + x[:, 1] > 0).astype(float)), 3)
    return BankModel("bank_zz", "bank_zz-1", ("income", "age_years"), 0.01, booster, (1.0, 0.0))


@pytest.mark.parametrize("value", [0, 1, -1, 63, 64, -65, 2**31, -(2**31), 1_790_000_000_123, -(2**62)])
def test_zigzag_varint_matches_fastavro(value: int) -> None:
    from fastavro import schemaless_writer

    buffer = BytesIO()
    schemaless_writer(buffer, {"type": "long"}, value)
    assert zigzag_varint(value) == buffer.getvalue()


@pytest.mark.parametrize("text", ["", "a", "x" * 63, "x" * 64, "é" * 40, "лид" * 50])
def test_avro_string_matches_fastavro(text: str) -> None:
    from fastavro import schemaless_writer

    buffer = BytesIO()
    schemaless_writer(buffer, {"type": "string"}, text)
    assert avro_string(text) == buffer.getvalue()


def test_results_are_framed_and_registered_with_the_schema_the_writer_writes() -> None:
    from consumer.service import result_header
    from consumer.settings import load_settings
    from schemas.framing import confluent_header, single_object_header

    class Registry:
        def __init__(self) -> None:
            self.registered: list[tuple[str, str]] = []

        def register_schema(self, subject: str, schema_str: str) -> int:
            self.registered.append((subject, schema_str))
            return 41

    settings = load_settings(None)
    assert result_header(settings, None) == single_object_header(result_schema())
    registry = Registry()
    assert result_header(settings, registry) == confluent_header(41)
    assert registry.registered == [(f"{settings.topics.output}-value", result_schema().schema_str)]
    assert ResultDecoder(CATALOG).reader.full_name == result_schema().full_name


def test_application_hash_is_the_field_by_field_hash(payloads: list[bytes | None]) -> None:
    events = [e for e in EventDecoder(CATALOG).decode_batch(payloads[:2000]).records if e is not None]
    assert [application_hash(e) for e in events] == [reference_hash(e) for e in events]
    partial = copy.deepcopy(events[0])
    del partial["applicant"]["position"], partial["activity"]["occupation"]
    assert application_hash(partial) == reference_hash(partial)


def test_an_added_fields_writer_decodes_as_fastavro_resolves_it(payloads: list[bytes | None]) -> None:
    v1 = CATALOG.get("application_event.v1")
    decoder = EventDecoder(CATALOG)
    v1_payloads = [p for p in payloads if p and p[2:10] == v1.fingerprint][:500]
    compared = 0
    for payload in v1_payloads:
        try:
            record = decoder.decode(payload)
        except InvalidEventError:
            continue
        resolved = schemaless_reader(BytesIO(payload[10:]), v1.parsed, READER.parsed)
        assert repr(record) == repr(resolved)  # same values (NaN included) in the reader's field order
        compared += 1
    assert compared > len(v1_payloads) // 2, f"{compared} of {len(v1_payloads)} v1 events decoded"


def test_a_writer_that_changes_a_type_is_still_resolved_by_fastavro() -> None:
    raw = json.loads(READER.schema_str)
    for f in raw["fields"]:
        if f["name"] == "merchant_region":
            f["type"] = ["null", "string", "int"]  # a new branch: not an added field, so fastavro resolves
    writer = SchemaVersion.parse(json.dumps(raw), "application_event.v9")
    decoder = EventDecoder(_catalog_with(writer), reader_schema=READER)
    event = generate(1, seed=2, schema_version="v2").events[0]
    payload = SingleObjectEncoder(writer)(event | {"merchant_region": "RU-SPE"})
    assert decoder.decode(payload) == schemaless_reader(BytesIO(payload[10:]), writer.parsed, READER.parsed)
    with pytest.raises(InvalidEventError, match="schema mismatch"):  # an int has no branch in the reader
        decoder.decode(SingleObjectEncoder(writer)(event | {"merchant_region": 77}))


def _catalog_with(extra: SchemaVersion) -> Any:
    from schemas.catalog import SchemaCatalog

    versions = {v.label: v for v in CATALOG}
    return SchemaCatalog(versions | {extra.label: extra})


def test_fixtures_cover_both_writers_and_malformed_messages(payloads: list[bytes | None]) -> None:
    fingerprints = {p[2:10] for p in payloads if p and p[:2] == b"\xc3\x01"}
    assert {CATALOG.get("application_event.v1").fingerprint, READER.fingerprint} <= fingerprints
    assert len(payloads) == EVENTS
