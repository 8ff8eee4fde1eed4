"""The Confluent framing path on a real Schema Registry: Apicurio Registry 3.3 (its ccompat API) and Apache Kafka.

The producer side is confluent-kafka's own ``AvroSerializer`` (not our encoder): it registers the v1 and v2
event schemas under ``<input>-value`` and frames each message with the id the registry gave. The scorer decodes
both by id, publishes Confluent-framed results under the id it registered for ``<output>-value``, and those
results decode with confluent-kafka's own ``AvroDeserializer``. Where Apicurio's ccompat answers differently
from Confluent's registry (its default compatibility is NONE; see docs/registry.md), the test pins our side.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from producer_tools.publishing.topics import read_all
from producer_tools.servers.apicurio import ApicurioRegistry
from producer_tools.world import generate
from schemas import load_catalog
from schemas.catalog import SchemaVersion
from schemas.dead_letter import DeadLetterInfo
from schemas.errors import ConfigError
from schemas.registry import RegistrySchemaSource, value_subject
from tests.integration.harness import Lanes, ScorerProcess

CATALOG = load_catalog()
V1, V2 = CATALOG.get("application_event.v1"), CATALOG.get("application_event.v2")
UNKNOWN_ID = 987_654


@pytest.fixture
def client(apicurio: ApicurioRegistry) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": apicurio.url}) as client:
        yield client


@pytest.fixture
def source(apicurio: ApicurioRegistry) -> Iterator[RegistrySchemaSource]:
    source = RegistrySchemaSource.from_url(apicurio.url)
    yield source
    source.close()


@pytest.fixture
def lanes(kafka_bootstrap: str, make_topic: Callable[..., str], unique_group: Callable[[], str]) -> Lanes:
    return Lanes(kafka_bootstrap, make_topic(3, "in"), make_topic(3, "out"), make_topic(1, "dlq"), unique_group())


def serializer(client: SchemaRegistryClient, schema: SchemaVersion) -> AvroSerializer:
    return AvroSerializer(client, schema.schema_str, conf={"auto.register.schemas": True})


def produce_with_confluent_serializers(
    lanes: Lanes, client: SchemaRegistryClient, events: list[dict[str, Any]]
) -> dict[str, int]:
    """Half the events as v1, half as v2, each through confluent-kafka's serializer; the ids it registered."""
    context = SerializationContext(lanes.input, MessageField.VALUE)
    v1, v2 = serializer(client, V1), serializer(client, V2)
    producer = Producer({"bootstrap.servers": lanes.bootstrap})
    for i, event in enumerate(events):
        value = (v1 if i % 2 else v2)(event, context)
        producer.produce(lanes.input, value, event["application_id"].encode())
    producer.produce(lanes.input, b"\x00" + UNKNOWN_ID.to_bytes(4, "big") + b"\x02", b"unknown-id")
    assert producer.flush(30) == 0
    versions = client.get_versions(value_subject(lanes.input))
    return {f"v{version}": client.get_version(value_subject(lanes.input), version).schema_id for version in versions}


def test_events_framed_by_confluent_serializers_are_scored_and_results_decode_with_confluents_deserializer(
    lanes: Lanes, apicurio: ApicurioRegistry, client: SchemaRegistryClient, tmp_path: Path
) -> None:
    events = generate(200, seed=401).events
    ids = produce_with_confluent_serializers(lanes, client, events)
    assert len(set(ids.values())) == 2, f"v1 and v2 registered under two ids: {ids}"
    with ScorerProcess(lanes, tmp_path, "--schema-registry-url", apicurio.url) as scorer:
        scorer.wait_for(lanes.output, len(events), timeout=90)
        scorer.wait_for(lanes.dlq, 1)
        scorer.stop()
    deserialize = AvroDeserializer(client)
    context = SerializationContext(lanes.output, MessageField.VALUE)
    results = [deserialize(m.value, context) for m in read_all(lanes.bootstrap, lanes.output)]
    assert sorted(str(r["event_id"]) for r in results) == sorted(str(e["event_id"]) for e in events)
    assert all(len(r["banks"]) == 5 for r in results)
    result_id = client.get_latest_version(value_subject(lanes.output)).schema_id
    assert {m.value[:5] for m in read_all(lanes.bootstrap, lanes.output)} == {b"\x00" + result_id.to_bytes(4, "big")}
    (dead,) = read_all(lanes.bootstrap, lanes.dlq)
    info = DeadLetterInfo.from_headers(dead.headers)
    assert info.reason == "unknown_schema" and str(UNKNOWN_ID) in info.error, info


def test_the_result_schema_registered_again_keeps_its_id_and_the_served_text_parses_to_the_same_schema(
    lanes: Lanes, apicurio: ApicurioRegistry, source: RegistrySchemaSource
) -> None:
    result = CATALOG.score_result
    first = source.register_schema(value_subject(lanes.output), result.schema_str)
    second_source = RegistrySchemaSource.from_url(apicurio.url)  # a restarted scorer: a client with no cache
    again = second_source.register_schema(value_subject(lanes.output), result.schema_str)
    second_source.close()
    assert first == again, "registering the same schema again answers the id it has (as Confluent's registry does)"
    # The text the registry serves for an id parses to the schema we registered (same canonical form).
    assert SchemaVersion.parse(source.get_schema_str(first), "registry").fingerprint == result.fingerprint


def test_apicurio_defaults_to_no_compatibility_check_and_our_evolution_passes_backward(
    lanes: Lanes, apicurio: ApicurioRegistry, source: RegistrySchemaSource, client: SchemaRegistryClient
) -> None:
    # Confluent's registry defaults to BACKWARD; Apicurio's ccompat API answers NONE. Operators set BACKWARD
    # per subject (docs/registry.md); v1 -> v2 passes it, and a breaking change is refused as a ConfigError.
    base = apicurio.url
    with urllib.request.urlopen(f"{base}/config", timeout=10) as response:
        assert json.load(response)["compatibilityLevel"] == "NONE"
    subject = value_subject(lanes.input)
    request = urllib.request.Request(
        f"{base}/config/{subject}",
        method="PUT",
        data=json.dumps({"compatibility": "BACKWARD"}).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["compatibility"] == "BACKWARD"
    v1_id = source.register_schema(subject, V1.schema_str)
    v2_id = source.register_schema(subject, V2.schema_str)
    assert v1_id != v2_id
    breaking = json.loads(V2.schema_str)
    breaking["fields"].append({"name": "required_without_default", "type": "string"})
    with pytest.raises(ConfigError, match=subject):
        source.register_schema(subject, json.dumps(breaking))
    assert client.get_versions(subject) == [1, 2]
