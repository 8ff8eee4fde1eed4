"""consumer.group_protocol: classic or KIP-848 ``consumer``, and the classic-only properties the new one refuses."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException

from consumer.settings import CLASSIC_ONLY_PROPERTIES, load_settings
from schemas.errors import ConfigError

# A closed loopback port: librdkafka validates its configuration when the client is created, before connecting.
NOWHERE = {"bootstrap_servers": "127.0.0.1:1"}
SAMPLE_VALUES: dict[str, str | int] = {
    "session.timeout.ms": 30_000,
    "heartbeat.interval.ms": 1000,
    "partition.assignment.strategy": "cooperative-sticky",
    "group.protocol.type": "consumer",
}


def create_consumer(conf: dict[str, Any]) -> None:
    Consumer(conf).close()


def test_classic_is_the_default_and_keeps_the_session_timeout() -> None:
    conf = load_settings(None, consumer={"session_timeout_ms": 7000}).librdkafka("consumer")
    assert conf["group.protocol"] == "classic"
    assert conf["session.timeout.ms"] == 7000


def test_the_consumer_protocol_sends_no_classic_only_property() -> None:
    conf = load_settings(None, consumer={"group_protocol": "consumer", "session_timeout_ms": 7000}).librdkafka(
        "consumer"
    )
    assert conf["group.protocol"] == "consumer"
    assert not set(CLASSIC_ONLY_PROPERTIES) & conf.keys()


def test_the_environment_chooses_the_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_SCORER_CONSUMER__GROUP_PROTOCOL", "consumer")
    assert load_settings(None).librdkafka("consumer")["group.protocol"] == "consumer"


def test_an_unknown_protocol_names_the_key_and_its_environment_variable() -> None:
    pattern = r"consumer\.group_protocol: .*'classic' or 'consumer'.*\(env CRM_SCORER_CONSUMER__GROUP_PROTOCOL\)"
    with pytest.raises(ConfigError, match=pattern):
        load_settings(None, consumer={"group_protocol": "cooperative"})


@pytest.mark.parametrize("prop", CLASSIC_ONLY_PROPERTIES)
def test_a_classic_only_property_in_extra_fails_with_the_consumer_protocol(prop: str) -> None:
    extra = {prop: SAMPLE_VALUES[prop]}
    with pytest.raises(ConfigError, match=rf"kafka\.extra sets {prop}, which librdkafka refuses"):
        load_settings(None, kafka={"extra": extra}, consumer={"group_protocol": "consumer"})


def test_every_refused_property_is_named_at_once() -> None:
    extra = {"session.timeout.ms": 30_000, "heartbeat.interval.ms": 1000}
    with pytest.raises(ConfigError, match=r"sets session\.timeout\.ms, heartbeat\.interval\.ms, which"):
        load_settings(None, kafka={"extra": extra}, consumer={"group_protocol": "consumer"})


def test_classic_only_properties_in_extra_stay_allowed_with_classic() -> None:
    extra = {"heartbeat.interval.ms": 1000, "partition.assignment.strategy": "cooperative-sticky"}
    conf = load_settings(None, kafka={"extra": extra}).librdkafka("consumer")
    assert conf["heartbeat.interval.ms"] == 1000
    assert conf["partition.assignment.strategy"] == "cooperative-sticky"


def test_a_group_protocol_in_extra_must_agree_with_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.extra sets group\.protocol=consumer but consumer\.group_protocol"):
        load_settings(None, kafka={"extra": {"group.protocol": "consumer"}})
    settings = load_settings(
        None, kafka={"extra": {"group.protocol": "consumer"}}, consumer={"group_protocol": "consumer"}
    )
    assert settings.librdkafka("consumer")["group.protocol"] == "consumer"


def test_a_server_side_assignor_passes_through_with_the_consumer_protocol() -> None:
    extra = {"group.remote.assignor": "range"}
    conf = load_settings(None, kafka={"extra": extra}, consumer={"group_protocol": "consumer"}).librdkafka("consumer")
    assert conf["group.remote.assignor"] == "range"


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_librdkafka_accepts_the_built_consumer_config(protocol: str) -> None:
    create_consumer(load_settings(None, kafka=NOWHERE, consumer={"group_protocol": protocol}).librdkafka("consumer"))


@pytest.mark.parametrize("prop", CLASSIC_ONLY_PROPERTIES)
def test_librdkafka_refuses_what_the_settings_refuse(prop: str) -> None:
    # Keeps CLASSIC_ONLY_PROPERTIES true of the installed librdkafka.
    conf = load_settings(None, kafka=NOWHERE, consumer={"group_protocol": "consumer"}).librdkafka("consumer")
    with pytest.raises(KafkaException, match=rf"`{prop}` is not supported for `group.protocol=consumer`"):
        create_consumer(conf | {prop: SAMPLE_VALUES[prop]})
