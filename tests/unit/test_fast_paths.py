"""The fast paths give exactly what the straightforward path gives.

The reference below is the plain way to score: fastavro decodes every message with full writer -> reader
resolution, the application hash reads fields one ``get`` at a time, features are built one event at a time,
every model predicts, reasons come from XGBoost's approximate contributions, a result record (dicts) is built
and fastavro, the oracle, encodes it. The engine (decode without resolution for an added-fields writer,
column-wise features, and ``ResultWriter``, the only producer of result bytes) must produce the same bytes.
"""

from __future__ import annotations

import copy
import json
import random
from io import BytesIO
from typing import Any

import numpy as np
import pytest
from fastavro import schemaless_reader

from consumer.core.dedup import application_hash
from consumer.core.offers import OfferBook
from consumer.core.result_writer import avro_string, result_schema, zigzag_varint
from models.artifacts import BankModel, ModelSet
from models.config import ProductConfig
from producer_tools.publishing.poison import poison_kinds
from producer_tools.publishing.publisher import event_encoders, event_messages
from producer_tools.world import generate
from schemas import EventDecoder, ResultDecoder, SingleObjectEncoder
from schemas.catalog import SchemaVersion
from schemas.errors import InvalidEventError
from tests.unit.reference_path import (
    CATALOG,
    EVENTS,
    READER,
    fast_engine,
    reference_events,
    reference_hash,
    reference_values,
    scrubbed,
)


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
        rejected |= {start + r.index: (r.error.reason, scrubbed(r.error)) for r in outcome.rejected}
    assert len(scored) + len(rejected) == len(payloads) and len(scored) > 9000
    events, expected_rejected = reference_events(payloads)
    assert rejected == expected_rejected
    expected = reference_values(model_set, events)
    assert set(expected) == set(scored)
    for index, value in expected.items():
        assert scored[index] == value, f"message {index}"


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


def test_results_carry_the_statements_of_the_configured_languages_only(
    model_set: ModelSet, payloads: list[bytes | None]
) -> None:
    """``results.statement_languages``: none (the default: codes alone), one, or both, against the oracle; the
    default's results are a fraction of the size."""
    batch = payloads[:300]
    events, _ = reference_events(batch)
    sizes = {}
    for languages in ((), ("en",), ("ru", "en")):
        fast = fast_engine(model_set, 3, None, languages).score_batch(batch)
        assert {s.index: s.value for s in fast.scored} == reference_values(model_set, events, 3, None, languages)
        sizes[languages] = sum(len(s.value) for s in fast.scored) / len(fast.scored)
        reasons = ResultDecoder(CATALOG).decode(fast.scored[0].value)["banks"][0]["reasons"]
        assert reasons and all(set(r["statement"]) == set(languages) and r["code"] for r in reasons)
    assert sizes[()] < 0.5 * sizes[("ru", "en")]


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
