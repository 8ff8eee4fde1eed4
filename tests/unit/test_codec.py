"""The schema catalog, single-object framing, the encoders and the decoders, against exact bytes."""

from __future__ import annotations

import datetime as dt
import shutil
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest

import schemas.codec
from schemas import (
    EventDecoder,
    ResultDecoder,
    SchemaCatalog,
    SchemaVersion,
    SingleObjectEncoder,
    load_catalog,
)
from schemas.catalog import SCHEMA_DIR
from schemas.errors import (
    ConfigError,
    InvalidEventError,
    RecordEncodingError,
)

UTC = dt.UTC
# The Avro project's published CRC-64-AVRO test vector (share/test/data/schema-tests.txt), as a signed long.
SPEC_RECORD = '{"type":"record","name":"foo","fields":[{"name":"f1","type":"boolean"}]}'
SPEC_RECORD_FINGERPRINT = 7843277075252814651


@pytest.fixture
def catalog() -> SchemaCatalog:
    return load_catalog()


def make_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": uuid.UUID("6f1c7d0e-3a55-4c1b-9a0e-2b7d5e8f9a10"),
        "application_id": "APP-000123",
        "lead_id": "LEAD-000987",
        "event_type": "APPLICATION_SUBMITTED",
        "occurred_at": dt.datetime(2026, 3, 1, 9, 30, 0, 123000, tzinfo=UTC),
        "channel": "web",
        "merchant_region": "RU-MOW",
        "applicant": {
            "birthdate": dt.date(1985, 5, 17),
            "education": "Высшее - специалист",
            "employment_status": "Собственное дело",
            "value": "от 1 года до 3 лет",
            "jobstartdate": dt.date(2021, 2, 1),
            "position": "Менеджер",
            "monthprofit": 85000.0,
            "monthexpense": 30000.0,
            "gender": 1,
            "family_status": "Женат/замужем",
            "childcount": 2,
            "snils": 1,
            "merch_code": 61,
            "loan_amount": 45990.0,
            "loan_term": 12,
            "goods_category": "Furniture",
        },
        "activity": {
            "lead_origin": "Landing Page Submission",
            "lead_source": "Google",
            "do_not_email": False,
            "total_visits": 5,
            "total_time_spent_on_website": 1532,
            "page_views_per_visit": 2.5,
            "last_activity": "Email Opened",
            "last_notable_activity": "Modified",
            "occupation": None,
            "specialization": None,
            "what_matters_most_to_you_in_choosing_a_course": None,
        },
    }
    event.update(overrides)
    return event


def make_score_result() -> dict[str, Any]:
    return {
        "event_id": uuid.UUID("6f1c7d0e-3a55-4c1b-9a0e-2b7d5e8f9a10"),
        "application_id": "APP-000123",
        "lead_id": "LEAD-000987",
        "application_hash": "ab" * 16,
        "event_time": dt.datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
        "scored_at": dt.datetime(2026, 3, 1, 9, 30, 1, tzinfo=UTC),
        "lead": {"score": 731, "probability": 0.731, "model_version": "lead-1", "reasons": []},
        "banks": [
            {
                "bank": "alfa",
                "probability": 0.8,
                "approved": True,
                "model_version": "alfa-1",
                "reasons": [
                    {
                        "feature": "income",
                        "contribution": 0.42,
                        "code": "INCOME_SUFFICIENT",
                        "statement": {
                            "ru": "Доход соответствует требованиям банка",
                            "en": "Income meets the bank's requirement",
                        },
                    }
                ],
            }
        ],
        "best_offer": "alfa",
        "offers": [
            {
                "bank": "alfa",
                "product": "classic",
                "approval_probability": 0.8,
                "annual_rate": 0.219,
                "monthly_payment": 9_343.37,
                "rank": 1,
            }
        ],
        "reasons": [
            {
                "feature": "income",
                "contribution": 0.42,
                "code": "INCOME_SUFFICIENT",
                "statement": {
                    "ru": "Доход соответствует требованиям банка",
                    "en": "Income meets the bank's requirement",
                },
            }
        ],
        "config_hash": "cfg",
    }


# --- catalog and fingerprints -------------------------------------------------------------------------------


def test_fingerprint_is_the_avro_spec_crc64_in_little_endian_bytes() -> None:
    schema = SchemaVersion.parse(SPEC_RECORD, "spec")

    assert schema.fingerprint == SPEC_RECORD_FINGERPRINT.to_bytes(8, "little")
    assert schema.fingerprint.hex() == "3ba368c9f1ead86c"


def test_single_object_encoding_is_magic_fingerprint_body() -> None:
    encode = SingleObjectEncoder(SchemaVersion.parse(SPEC_RECORD, "spec"))

    assert encode({"f1": True}) == b"\xc3\x01" + bytes.fromhex("3ba368c9f1ead86c") + b"\x01"


def test_shipped_versions_never_change_their_fingerprint(catalog: SchemaCatalog) -> None:
    assert {v.label: v.fingerprint.hex() for v in catalog} == {
        "application_event.v1": "474eba83fb654e82",
        "application_event.v2": "f021f894a29b4f8c",
        "score_result.v1": "c5e99a2734722792",
        "score_result.v2": "82bfbbee1158cc1e",
        "outcome.v1": "040897a2673e5299",
    }


def test_catalog_finds_versions_by_name_and_fingerprint(catalog: SchemaCatalog) -> None:
    v1 = catalog.by_name_version("application_event", "v1")

    assert catalog.application_event_latest.label == "application_event.v2"
    assert catalog.score_result.full_name == "crm.scores.ScoreResult"
    assert catalog.fingerprint_of("application_event.v1") == v1.fingerprint
    assert catalog.by_fingerprint(v1.fingerprint) is v1
    assert catalog.by_fingerprint(b"\x00" * 8) is None
    with pytest.raises(KeyError, match=r"application_event\.v9"):
        catalog.by_name_version("application_event", "v9")


def test_catalog_discovers_a_new_version_without_code_change(tmp_path: Path) -> None:
    for name in ("application_event.v1.avsc", "application_event.v2.avsc", "score_result.v1.avsc"):
        shutil.copy(SCHEMA_DIR / name, tmp_path / name)
    v2_text = (SCHEMA_DIR / "application_event.v2.avsc").read_text(encoding="utf-8")
    v3_text = v2_text.replace(
        '"fields": [', '"fields": [{"name": "promo_code", "type": ["null", "string"], "default": null},', 1
    )
    (tmp_path / "application_event.v10.avsc").write_text(v3_text, encoding="utf-8")
    catalog = load_catalog(tmp_path)
    v1_payload = SingleObjectEncoder(catalog.get("application_event.v1"))(make_event())

    record = EventDecoder(catalog).decode(v1_payload)

    assert catalog.application_event_latest.label == "application_event.v10"  # numeric, not lexical, order
    assert record["promo_code"] is None
    assert record["channel"] is None


def test_catalog_rejects_a_misnamed_or_invalid_schema_file(tmp_path: Path) -> None:
    (tmp_path / "application_event.avsc").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"application_event\.avsc"):
        load_catalog(tmp_path)
    (tmp_path / "application_event.avsc").unlink()
    (tmp_path / "application_event.v1.avsc").write_text(
        '{"type": "record", "name": "x", "fields": [{"name": "a", "type": "no_such_type"}]}', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"application_event\.v1\.avsc"):
        load_catalog(tmp_path)


# --- encoding -----------------------------------------------------------------------------------------------


def test_a_tiny_event_encodes_to_exact_bytes(catalog: SchemaCatalog) -> None:
    v2 = catalog.get("application_event.v2")
    event = {
        "event_id": "00000000-0000-0000-0000-000000000001",
        "application_id": "a",
        "lead_id": "l",
        "event_type": "APPLICATION_UPDATED",
        "occurred_at": dt.datetime(1970, 1, 1, 0, 0, 0, 64000, tzinfo=UTC),
        "channel": "web",
        "merchant_region": None,
        "applicant": {"monthprofit": 1.0},
        "activity": {"do_not_email": True},
    }
    body = b"".join(
        [
            b"\x48" + b"00000000-0000-0000-0000-000000000001",  # string: zigzag length 36, then UTF-8
            b"\x02a",
            b"\x02l",
            b"\x02",  # enum index 1
            b"\x80\x01",  # timestamp-millis 64 as a zigzag varint
            b"\x02\x06web",  # channel: union branch 1, then the string
            b"\x00",  # merchant_region: union branch 0 (null)
            b"\x00" * 6,
            b"\x02" + struct.pack("<d", 1.0),  # monthprofit: branch 1, then a little-endian double
            b"\x00" * 9,
            b"\x00\x00",  # lead_origin, lead_source
            b"\x02\x01",  # do_not_email: branch 1, then true
            b"\x00" * 8,
        ]
    )

    assert SingleObjectEncoder(v2)(event) == b"\xc3\x01" + v2.fingerprint + body


def test_encoding_a_record_that_does_not_fit_raises_record_encoding_error(catalog: SchemaCatalog) -> None:
    encode = SingleObjectEncoder(catalog.application_event_latest)

    with pytest.raises(RecordEncodingError, match=r"application_event\.v2") as info:
        encode(make_event(occurred_at="yesterday"))
    assert info.value.__cause__ is not None
    assert not isinstance(info.value, InvalidEventError)  # our own record: not a dead-letter type


# --- decoding -----------------------------------------------------------------------------------------------


def test_v2_event_round_trips_with_logical_types(catalog: SchemaCatalog) -> None:
    event = make_event()
    payload = SingleObjectEncoder(catalog.application_event_latest)(event)

    assert EventDecoder(catalog).decode(payload) == event


def test_v1_event_read_as_v2_gets_the_new_fields_defaults(catalog: SchemaCatalog) -> None:
    payload = SingleObjectEncoder(catalog.get("application_event.v1"))(make_event())

    record = EventDecoder(catalog).decode(payload)

    assert record == make_event(channel=None, merchant_region=None)


def test_resolution_only_when_writer_differs_and_the_pair_is_cached(
    catalog: SchemaCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, Any]] = []
    real_reader = schemas.codec.schemaless_reader

    def spy(buffer: Any, writer: Any, reader: Any) -> Any:
        calls.append((writer, reader))
        return real_reader(buffer, writer, reader)

    monkeypatch.setattr(schemas.codec, "schemaless_reader", spy)
    v1, v2 = catalog.get("application_event.v1"), catalog.get("application_event.v2")
    decoder = EventDecoder(catalog)
    v1_payload, v2_payload = SingleObjectEncoder(v1)(make_event()), SingleObjectEncoder(v2)(make_event())

    for payload in (v2_payload, v1_payload, v1_payload):
        decoder.decode(payload)

    assert calls[0] == (v2.parsed, None)
    # v1 is v2 minus two optional fields: read with its own schema, the defaults filled in (no fastavro resolution)
    assert calls[1] == (v1.parsed, None)
    assert calls[2][0] is calls[1][0] and calls[2][1] is calls[1][1]


def test_score_result_round_trips_through_the_result_decoder(catalog: SchemaCatalog) -> None:
    result = make_score_result()
    payload = SingleObjectEncoder(catalog.score_result)(result)

    assert ResultDecoder(catalog).decode(payload) == result


def test_field_lists_and_what_an_evolution_added_come_from_the_schema_files(catalog: SchemaCatalog) -> None:
    v1, v2 = catalog.get("application_event.v1"), catalog.get("application_event.v2")
    assert v2.added_since(v1) == ("channel", "merchant_region") and v1.added_since(v2) == ()
    assert list(v2.fields())[:3] == ["event_id", "application_id", "lead_id"]
    assert list(v2.fields("applicant"))[:2] == ["birthdate", "education"]
    assert v2.fields("activity")["total_visits"] == ["null", "int"]
    with pytest.raises(KeyError, match="no record field 'lead_id'"):
        v2.fields("lead_id")
