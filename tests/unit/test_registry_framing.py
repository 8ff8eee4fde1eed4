"""Confluent framing: the wire format, the Schema Registry adapter and its in-process mock, the id cache."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.common._httpx_compat import httpx

import schemas.codec
from schemas import ConfluentEncoder, EventDecoder, SchemaCatalog, SingleObjectEncoder, load_catalog
from schemas.errors import (
    ConfigError,
    FramingError,
    RegistryUnavailableError,
    UnknownSchemaError,
)
from schemas.registry import RegistrySchemaSource, value_subject

TOPIC = "crm.applications"
NOT_AN_EVENT = r"writer schema crm\.scores\.ScoreResult is not an application event"


@pytest.fixture
def catalog() -> SchemaCatalog:
    return load_catalog()


@pytest.fixture
def client() -> SchemaRegistryClient:
    """confluent-kafka's in-process registry: ``new_client`` gives the mock for a ``mock://`` URL."""
    return SchemaRegistryClient.new_client({"url": "mock://crm-scorer-tests"})


@pytest.fixture
def registry(client: SchemaRegistryClient) -> RegistrySchemaSource:
    return RegistrySchemaSource(client)


def make_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": uuid.UUID("0b5e2f44-96a1-4a51-8f59-3c0f4d1f7e21"),
        "application_id": "APP-1",
        "lead_id": "LEAD-1",
        "event_type": "APPLICATION_UPDATED",
        "occurred_at": dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC),
        "channel": "pos",
        "merchant_region": "RU-SPE",
        "applicant": {"birthdate": dt.date(1990, 1, 31), "monthprofit": 60000.0, "goods_category": "Travel"},
        "activity": {"lead_source": "Direct Traffic", "total_visits": 2},
    }
    event.update(overrides)
    return event


def full(event: dict[str, Any], catalog: SchemaCatalog) -> dict[str, Any]:
    """``event`` as the decoder returns it: every nested field present."""
    fields = {f["name"]: f for f in catalog.application_event_latest.raw["fields"]}
    nested = {
        name: {f["name"]: event[name].get(f["name"]) for f in fields[name]["type"]["fields"]}
        for name in ("applicant", "activity")
    }
    return {**event, **nested}


class CountingSource:
    """A ``SchemaSource`` fake: a dict of ids, and the list of ids asked for."""

    def __init__(self, schemas_by_id: dict[int, str]) -> None:
        self.schemas_by_id = schemas_by_id
        self.asked: list[int] = []

    def get_schema_str(self, schema_id: int) -> str:
        self.asked.append(schema_id)
        try:
            return self.schemas_by_id[schema_id]
        except KeyError:
            raise UnknownSchemaError(f"registry id {schema_id}: not found") from None


class FailingClient:
    """A ``RegistryClient`` fake whose every call raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def get_schema(self, schema_id: int) -> Schema:
        raise self.error

    def register_schema(self, subject_name: str, schema: Schema) -> int:
        raise self.error


def test_confluent_header_is_magic_zero_and_big_endian_id(catalog: SchemaCatalog) -> None:
    v2 = catalog.application_event_latest
    confluent = ConfluentEncoder(258, v2)(make_event())
    single = SingleObjectEncoder(v2)(make_event())

    assert confluent[:5] == b"\x00\x00\x00\x01\x02"
    assert confluent[5:] == single[10:]  # the same Avro body under either framing
    with pytest.raises(ValueError, match="4-byte"):
        ConfluentEncoder(2**32, v2)


def test_event_round_trips_through_the_mock_registry(catalog: SchemaCatalog, registry: RegistrySchemaSource) -> None:
    v2 = catalog.application_event_latest
    schema_id = registry.register_schema(value_subject(TOPIC), v2.schema_str)
    payload = ConfluentEncoder(schema_id, v2)(make_event())

    assert value_subject(TOPIC) == "crm.applications-value"
    assert EventDecoder(catalog, registry).decode(payload) == full(make_event(), catalog)


def test_v1_registered_writer_is_resolved_to_the_v2_reader(
    catalog: SchemaCatalog, registry: RegistrySchemaSource
) -> None:
    v1 = catalog.get("application_event.v1")
    v1_id = registry.register_schema(value_subject(TOPIC), v1.schema_str)
    payload = ConfluentEncoder(v1_id, v1)(make_event())

    record = EventDecoder(catalog, registry).decode(payload)

    assert record == full(make_event(channel=None, merchant_region=None), catalog)


def test_registry_text_with_the_same_canonical_form_needs_no_resolution(
    catalog: SchemaCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    readers: list[Any] = []
    real_reader = schemas.codec.schemaless_reader

    def spy(buffer: Any, writer: Any, reader: Any) -> Any:
        readers.append(reader)
        return real_reader(buffer, writer, reader)

    monkeypatch.setattr(schemas.codec, "schemaless_reader", spy)
    v2 = catalog.application_event_latest
    reformatted = json.dumps(json.loads(v2.schema_str) | {"doc": "as the registry normalised it"})
    decoder = EventDecoder(catalog, CountingSource({5: reformatted}))

    record = decoder.decode(ConfluentEncoder(5, v2)(make_event()))

    assert readers == [None]
    assert record["occurred_at"] == make_event()["occurred_at"]


def test_unknown_registry_id_raises_unknown_schema(catalog: SchemaCatalog, registry: RegistrySchemaSource) -> None:
    payload = b"\x00\x00\x00\x00\x63" + b"\x00"

    with pytest.raises(UnknownSchemaError, match="registry id 99") as info:
        EventDecoder(catalog, registry).decode(payload)
    assert info.value.reason == "unknown_schema"
    assert isinstance(info.value.__cause__, SchemaRegistryError)


def test_the_registry_is_asked_once_per_id(catalog: SchemaCatalog) -> None:
    v1, v2 = catalog.get("application_event.v1"), catalog.application_event_latest
    source = CountingSource({7: v1.schema_str, 8: v2.schema_str})
    payloads = [ConfluentEncoder(7, v1)(make_event())] * 3 + [ConfluentEncoder(8, v2)(make_event())] * 2

    records, errors = EventDecoder(catalog, source).decode_batch(payloads)

    assert source.asked == [7, 8]
    assert errors == [None] * 5
    assert all(r is not None for r in records)


def test_confluent_framing_without_a_registry_is_an_unknown_schema(catalog: SchemaCatalog) -> None:
    payload = ConfluentEncoder(1, catalog.application_event_latest)(make_event())

    with pytest.raises(UnknownSchemaError, match="no schema registry"):
        EventDecoder(catalog, None).decode(payload)


def test_a_registered_score_result_is_not_an_application_event(catalog: SchemaCatalog) -> None:
    source = CountingSource({3: catalog.score_result.schema_str, 4: "{not json"})
    decoder = EventDecoder(catalog, source)

    with pytest.raises(UnknownSchemaError, match=NOT_AN_EVENT):
        decoder.decode(b"\x00\x00\x00\x00\x03\x00")
    with pytest.raises(UnknownSchemaError, match="registry id 4: not a valid Avro schema"):
        decoder.decode(b"\x00\x00\x00\x00\x04\x00")
    records, errors = decoder.decode_batch([b"\x00\x00\x00\x00\x03\x00", b"\x00\x00\x00\x00\x04\x00"] * 2)

    assert records == [None] * 4
    assert [e.reason if e else None for e in errors] == ["unknown_schema"] * 4
    assert source.asked == [3, 4]  # a rejected writer is still fetched only once


def test_a_cut_confluent_header_is_a_framing_error(catalog: SchemaCatalog) -> None:
    with pytest.raises(FramingError, match="Confluent header cut short"):
        EventDecoder(catalog, CountingSource({})).decode(b"\x00\x00\x00")


@pytest.mark.parametrize(
    ("error", "translated"),
    [
        (SchemaRegistryError(404, 40403, "Schema not found"), UnknownSchemaError),
        (SchemaRegistryError(503, -1, "Service Unavailable"), RegistryUnavailableError),
        (SchemaRegistryError(429, -1, "Too Many Requests"), RegistryUnavailableError),
        (SchemaRegistryError(401, 40101, "Unauthorized"), ConfigError),
        (httpx.ConnectError("connection refused"), RegistryUnavailableError),
        (httpx.ReadTimeout("timed out"), RegistryUnavailableError),
    ],
)
def test_registry_client_errors_are_translated(error: Exception, translated: type[Exception]) -> None:
    source = RegistrySchemaSource(FailingClient(error))

    with pytest.raises(translated, match="registry id 12") as info:
        source.get_schema_str(12)
    assert info.value.__cause__ is error


def test_registry_unavailable_is_not_captured_per_message(catalog: SchemaCatalog) -> None:
    decoder = EventDecoder(catalog, RegistrySchemaSource(FailingClient(httpx.ConnectError("refused"))))

    with pytest.raises(RegistryUnavailableError):
        decoder.decode_batch([b"\x00\x00\x00\x00\x01\x00"])


def test_registering_an_incompatible_schema_is_a_config_error() -> None:
    source = RegistrySchemaSource(FailingClient(SchemaRegistryError(409, 409, "incompatible")))

    with pytest.raises(ConfigError, match=r"subject crm\.applications-value"):
        source.register_schema(value_subject(TOPIC), "{}")


def test_a_non_avro_registry_schema_is_unknown(client: SchemaRegistryClient, registry: RegistrySchemaSource) -> None:
    schema_id = client.register_schema("other-value", Schema('syntax = "proto3";', schema_type="PROTOBUF"))

    with pytest.raises(UnknownSchemaError, match="PROTOBUF"):
        registry.get_schema_str(schema_id)


def test_with_a_registry_the_engine_writes_results_framed_with_the_registered_result_schema(
    catalog: SchemaCatalog, registry: RegistrySchemaSource
) -> None:
    from consumer.core.result_writer import result_schema
    from consumer.service import build_engine
    from consumer.settings import load_settings
    from schemas import ResultDecoder
    from schemas.framing import confluent_header

    settings = load_settings(None)
    v2 = catalog.application_event_latest
    event_id = registry.register_schema(value_subject(settings.topics.input), v2.schema_str)
    outcome = build_engine(settings, registry).score_batch([ConfluentEncoder(event_id, v2)(make_event())])
    (scored,) = outcome.scored
    result_id = registry.register_schema(value_subject(settings.topics.output), result_schema().schema_str)
    assert scored.value.startswith(confluent_header(result_id))  # the id the engine registered, found again
    result = ResultDecoder(catalog, registry).decode(scored.value)
    assert result["event_id"] == make_event()["event_id"]
