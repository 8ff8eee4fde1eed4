"""schemas/asyncapi.yaml against what it describes: the Avro schemas, the dead-letter contract, the settings'
topics, and the broker and registry of docker-compose.yml."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumer.monitor.settings import MonitorSettings
from consumer.settings import Settings
from schemas import SingleObjectEncoder, load_catalog
from schemas.catalog import SchemaVersion
from schemas.codec import RecordDecoder
from schemas.dead_letter import ALL_HEADERS, FIELD, RESULT_REJECTED, DeadLetterInfo
from schemas.errors import InvalidEventError
from schemas.json_view import from_json_view, to_json_view

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "schemas" / "asyncapi.yaml"
AVRO_FORMAT = "application/vnd.apache.avro;version=1.9.0"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))


def resolve(spec: dict[str, Any], ref: str) -> Any:
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def avro_messages(spec: dict[str, Any]) -> dict[str, tuple[dict[str, Any], SchemaVersion]]:
    """Message name -> (message, the shipped schema version its payload references)."""
    catalog = load_catalog()
    out = {}
    for name, message in spec["components"]["messages"].items():
        payload = message["payload"]
        if payload.get("schemaFormat") == AVRO_FORMAT:
            label = Path(payload["schema"]["$ref"]).name.removesuffix(".avsc")
            out[name] = (message, catalog.get(label))
    return out


def dead_letter_reasons() -> set[str]:
    """Every reason code the code can put in dlq.reason: the error tree's and the literal ones."""
    reasons = {cls.reason for cls in InvalidEventError.__subclasses__()} | {RESULT_REJECTED}
    for package in ("consumer", "schemas"):
        for source in (ROOT / package).rglob("*.py"):
            reasons |= set(re.findall(r'reason="(\w+)"', source.read_text(encoding="utf-8")))
    return reasons


def record_fields(schema: Any) -> dict[str, Any]:
    """Field name -> its record schema, for a record's nested records (unions with null unwrapped)."""
    return {field["name"]: field["type"] for field in schema["fields"]}


def assert_same_field_names(example: dict[str, Any], schema: dict[str, Any], path: str = "") -> None:
    fields = record_fields(schema)
    assert set(example) == set(fields), f"{path or 'payload'}: example fields differ from the schema"
    for name, kind in fields.items():
        if isinstance(kind, dict) and kind.get("type") == "record" and example[name] is not None:
            assert_same_field_names(example[name], kind, f"{path}{name}.")


def test_channels_are_the_scorers_topics(spec: dict[str, Any]) -> None:
    topics = Settings().topics
    addresses = {name: channel["address"] for name, channel in spec["channels"].items()}
    outcomes = MonitorSettings().topics.outcomes
    assert addresses == {
        "applications": topics.input,
        "scores": topics.output,
        "deadLetters": topics.dlq,
        "outcomes": outcomes,
    }
    assert MonitorSettings().topics.scores == topics.output
    for channel in spec["channels"].values():
        assert channel["bindings"]["kafka"]["topic"] == channel["address"]


def test_topic_layout_matches_the_compose_defaults(spec: dict[str, Any]) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["services"]["topic-init"]["environment"]

    def default(variable: str) -> int:
        return int(re.fullmatch(r"\$\{\w+:-(\d+)\}", env[variable]).group(1))  # type: ignore[union-attr]

    assert "deadLetters" in spec["channels"] and len(spec["channels"]) > 1
    for name, channel in spec["channels"].items():
        kafka = channel["bindings"]["kafka"]
        retention = default("DLQ_RETENTION_MS" if name == "deadLetters" else "RETENTION_MS")
        assert kafka["partitions"] == default("PARTITIONS"), name
        assert kafka["topicConfiguration"]["retention.ms"] == retention, name


def test_every_shipped_schema_version_is_a_message(spec: dict[str, Any]) -> None:
    referenced = {version.label for _, version in avro_messages(spec).values()}
    shipped = {version.label for version in load_catalog()}
    assert referenced == shipped
    for message, _ in avro_messages(spec).values():
        assert (DOCUMENT.parent / message["payload"]["schema"]["$ref"]).is_file()


def test_examples_use_the_schemas_field_names_and_encode(spec: dict[str, Any]) -> None:
    messages = avro_messages(spec)
    assert messages, "the AsyncAPI document has no Avro message"
    for name, (message, version) in messages.items():
        assert message["examples"], f"{name} has no example"
        for example in message["examples"]:
            payload = example["payload"]
            assert_same_field_names(payload, version.raw)
            record = from_json_view(payload, version.parsed)
            framed = SingleObjectEncoder(version)(record)  # raises when the example does not fit the schema
            decoded = RecordDecoder(version, load_catalog()).decode(framed)
            assert to_json_view(decoded) == to_json_view(record)


def test_messages_are_keyed_by_application_id(spec: dict[str, Any]) -> None:
    messages = avro_messages(spec)
    assert messages, "the AsyncAPI document has no Avro message"
    for name, (message, _) in messages.items():
        traits = [resolve(spec, trait["$ref"]) for trait in message["traits"]]
        keys = [trait["bindings"]["kafka"]["key"] for trait in traits]
        assert any("application_id" in key["description"] for key in keys), name


def test_dead_letter_headers_are_the_contracts(spec: dict[str, Any]) -> None:
    headers = spec["components"]["messages"]["DeadLetter"]["headers"]
    assert tuple(headers["properties"]) == ALL_HEADERS
    assert set(headers["required"]) == set(ALL_HEADERS) - {FIELD}
    assert set(headers["properties"]["dlq.reason"]["enum"]) == dead_letter_reasons()


def test_dead_letter_examples_read_back_as_dead_letters(spec: dict[str, Any]) -> None:
    examples = spec["components"]["messages"]["DeadLetter"]["examples"]
    assert examples, "the DeadLetter message has no example"
    for example in examples:
        pairs = [(name, str(value).encode()) for name, value in example["headers"].items()]
        info = DeadLetterInfo.from_headers(pairs)
        assert info.topic == Settings().topics.input
        assert info.reason in dead_letter_reasons()


def test_operations_receive_events_and_send_scores_and_dead_letters(spec: dict[str, Any]) -> None:
    actions = {resolve(spec, op["channel"]["$ref"])["address"]: op["action"] for op in spec["operations"].values()}
    topics = Settings().topics
    outcomes = MonitorSettings().topics.outcomes
    assert actions == {topics.input: "receive", topics.output: "send", topics.dlq: "send", outcomes: "receive"}
    monitor = spec["operations"]["monitorOutcomes"]["bindings"]["kafka"]["groupId"]["default"]
    assert monitor == MonitorSettings().kafka.group_id
    group = spec["operations"]["consumeApplications"]["bindings"]["kafka"]["groupId"]["default"]
    assert group == Settings().consumer.group_id


def test_servers_are_the_compose_broker_and_registry(spec: dict[str, Any]) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    listeners = dict(
        item.split("://") for item in compose["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    scorer = compose["scorer"]["environment"]
    registry_url = scorer["CRM_SCORER_SCHEMA_REGISTRY__URL"]  # http://schema-registry:8080/apis/ccompat/v7
    internal = re.fullmatch(r"http://([\w.-]+):(\d+)(/.*)", registry_url)
    assert internal, registry_url
    host_port = next(p.split(":")[0] for p in compose["schema-registry"]["ports"] if p.endswith(f":{internal[2]}"))
    servers = spec["servers"]

    assert servers["compose"]["host"] == listeners["HOST"]
    assert servers["compose-internal"]["host"] == listeners["INTERNAL"] == scorer["CRM_SCORER_KAFKA__BOOTSTRAP_SERVERS"]
    assert servers["schema-registry"]["host"] == f"localhost:{host_port}"
    assert servers["schema-registry"]["pathname"] == internal[3]
    assert servers["compose"]["bindings"]["kafka"]["schemaRegistryUrl"] == f"http://localhost:{host_port}{internal[3]}"
    assert servers["compose-internal"]["bindings"]["kafka"]["schemaRegistryUrl"] == registry_url
    assert "apicurio" in compose["schema-registry"]["image"]
    assert {s["bindings"]["kafka"]["schemaRegistryVendor"] for s in servers.values() if "bindings" in s} == {"apicurio"}
