"""The connection every command shares: one model, one layering, one connection file; secrets stay secret."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from consumer.commands import cli as scorer_cli
from consumer.connection import KafkaConnection, RegistryConnection
from consumer.exit_codes import KAFKA_UNREACHABLE
from consumer.layering import load_connection
from consumer.monitor.loop import registry_source
from consumer.monitor.settings import load_monitor_settings
from consumer.reachability import require_kafka
from consumer.settings import load_settings
from consumer.telemetry.host import Telemetry
from producer_tools.commands import arguments
from producer_tools.commands import cli as producer_cli
from producer_tools.publishing.connection import Brokers, client_config
from schemas.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "configs"
SECRET = "hunter2-a-secret"


@pytest.fixture
def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"  # nothing listens once the socket is closed


def secured(tmp_path: Path, bootstrap: str = "broker:9093") -> KafkaConnection:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("PEM")
    return KafkaConnection(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="crm-producer",
        sasl_password=SECRET,
        ssl_ca_location=tmp_path / "ca.pem",
        ssl_certificate_location=tmp_path / "client.pem",
        ssl_key_location=tmp_path / "client.key",
        ssl_key_password=SECRET + "-key",
    )


def test_one_method_turns_the_connection_into_librdkafka_properties(tmp_path: Path) -> None:
    conf = secured(tmp_path).librdkafka(defaults={"linger.ms": 5}, owned={"group.id": ("g", "g")})
    assert conf["sasl.password"] == SECRET and conf["ssl.key.password"] == SECRET + "-key"
    assert (conf["security.protocol"], conf["sasl.mechanism"], conf["sasl.username"]) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "crm-producer",
    )
    assert conf["ssl.ca.location"] == str(tmp_path / "ca.pem") and conf["ssl.key.location"] == str(
        tmp_path / "client.key"
    )
    assert (conf["linger.ms"], conf["group.id"], conf["enable.ssl.certificate.verification"]) == (5, "g", True)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"security.protocol": "PLAINTEXT"},
            "kafka.extra sets security.protocol=PLAINTEXT but kafka.security_protocol",
        ),
        ({"enable.ssl.certificate.verification": False}, "kafka.ssl_verify is true"),
        ({"sasl.password": SECRET + "-other"}, r"sasl.password=\*\*\* but kafka.sasl_password"),
    ],
)
def test_an_extra_that_contradicts_the_connection_is_named(tmp_path: Path, extra: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        secured(tmp_path).model_copy().model_validate(secured(tmp_path).model_dump() | {"extra": extra})
    assert SECRET not in str(caught.value)


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValueError, match=r"ssl_certificate_location and kafka\.ssl_key_location go together"):
        KafkaConnection(ssl_certificate_location=Path("client.pem"))


def test_the_registry_connection_gives_the_clients_config() -> None:
    conf = RegistryConnection(
        url="https://registry:8081", basic_auth_user="u", basic_auth_password="p", ssl_ca_location=Path("ca.pem")
    ).client_config()
    assert conf == {"url": "https://registry:8081", "basic.auth.user.info": "u:p", "ssl.ca.location": "ca.pem"}
    assert RegistryConnection().client_config() == {}
    with pytest.raises(ValueError, match="choose one"):
        RegistryConnection(url="http://r", basic_auth_user_info="u:p", basic_auth_user="u", basic_auth_password="p")


def test_the_monitor_layers_its_file_the_connection_file_the_environment_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monitor_yaml = tmp_path / "monitor.yaml"
    monitor_yaml.write_text("kafka:\n  bootstrap_servers: from-monitor-yaml:1\n  group_id: file-group\n")
    scorer_yaml = tmp_path / "scorer.yaml"
    scorer_yaml.write_text(
        "kafka:\n  bootstrap_servers: from-scorer-yaml:1\n  client_id: crm-scorer\n  security_protocol: SSL\n"
        "  consumer_extra: {fetch.min.bytes: 1}\ntopics:\n  input: in\nschema_registry:\n  url: http://r:8081\n"
    )
    monkeypatch.setenv("CRM_MONITOR_KAFKA__SASL_USERNAME", "crm-monitor")
    settings = load_monitor_settings(monitor_yaml, scorer_yaml, quality={"min_outcomes": 7})
    k = settings.kafka
    assert (k.bootstrap_servers, k.security_protocol, k.group_id, k.client_id) == (
        "from-scorer-yaml:1",
        "SSL",
        "file-group",
        "crm-scorer-monitor",
    )
    assert (k.sasl_username, settings.quality.min_outcomes) == ("crm-monitor", 7)
    assert settings.schema_registry.url == "http://r:8081" and registry_source(settings) is not None
    flagged = load_monitor_settings(monitor_yaml, scorer_yaml, kafka={"bootstrap_servers": "flag:1"})
    assert flagged.kafka.bootstrap_servers == "flag:1" and flagged.kafka.group_id == "file-group"


@pytest.mark.parametrize("shipped", ["scorer.yaml", "monitor.yaml"])
def test_the_shipped_configs_are_connection_files(shipped: str) -> None:
    settings = load_connection(SHIPPED / shipped)
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092" and settings.kafka.client_id is None


def test_a_bad_key_of_a_connection_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "connection.yaml"
    path.write_text("kafka:\n  sasl_pasword: x\n")
    with pytest.raises(ConfigError, match=r"kafka\.sasl_pasword: Extra inputs are not permitted"):
        load_connection(path)


def test_the_tools_take_the_file_the_environment_and_the_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "scorer.yaml"
    path.write_text("kafka:\n  bootstrap_servers: file:1\n  security_protocol: SASL_SSL\n  sasl_mechanism: PLAIN\n")
    monkeypatch.setenv("CRM_PRODUCER_KAFKA__SASL_PASSWORD", SECRET)
    args = producer_cli.build_parser().parse_args(["tail", "--config", str(path), "--bootstrap-servers", "flag:1"])
    brokers = arguments.connect(args)
    assert (str(brokers), client_config(brokers)["sasl.password"]) == ("flag:1", SECRET)
    assert client_config(brokers)["security.protocol"] == "SASL_SSL" and SECRET not in f"{brokers!r} {brokers}"
    assert client_config("plain:1") == {"bootstrap.servers": "plain:1"}


def test_a_tool_with_no_broker_named_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with pytest.raises(ConfigError, match="no broker named: give --bootstrap-servers, --config FILE"):
        arguments.connect(producer_cli.build_parser().parse_args(["tail"]))


# A secret never reaches a printed config, an error, a log line or /metrics.


def test_the_printed_config_masks_every_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRM_SCORER_KAFKA__SASL_PASSWORD", SECRET)
    monkeypatch.setenv("CRM_SCORER_KAFKA__EXTRA", '{"sasl.oauthbearer.client.secret": "' + SECRET + '-x"}')
    monkeypatch.setenv("CRM_SCORER_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO", f"u:{SECRET}")
    assert scorer_cli.main(["config"]) == 0
    printed = capsys.readouterr().out
    assert "sasl_password: '**********'" in printed and "basic_auth_user_info: '**********'" in printed
    assert "sasl.oauthbearer.client.secret: '***'" in printed and SECRET not in printed
    monkeypatch.setenv("CRM_MONITOR_KAFKA__SSL_KEY_PASSWORD", SECRET)
    monkeypatch.setenv("CRM_MONITOR_SCHEMA_REGISTRY__BASIC_AUTH_PASSWORD", SECRET)
    monkeypatch.setenv("CRM_MONITOR_SCHEMA_REGISTRY__BASIC_AUTH_USER", "u")
    assert scorer_cli.main(["config", "--monitor"]) == 0
    printed = capsys.readouterr().out
    assert "ssl_key_password: '**********'" in printed and "group_id: crm-scorer-monitor" in printed
    assert SECRET not in printed


def test_errors_name_the_key_never_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, closed_port: str, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRM_SCORER_KAFKA__SASL_PASSWORD", SECRET)
    monkeypatch.setenv("CRM_SCORER_KAFKA__SSL_VERIFY", SECRET)  # not a boolean: the error names the key only
    with pytest.raises(ConfigError, match=r"kafka\.ssl_verify: .*CRM_SCORER_KAFKA__SSL_VERIFY") as caught:
        load_settings(None)
    assert SECRET not in str(caught.value)
    with pytest.raises(ConfigError, match=r"cannot make a Kafka client for broker:9093: .*ssl\.ca\.location") as bad:
        require_kafka(secured(tmp_path).librdkafka(), timeout_s=1)  # the PEM files hold no certificate
    plain = KafkaConnection(
        bootstrap_servers=closed_port, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u"
    )
    conf = plain.librdkafka() | {"sasl.password": SECRET}
    with pytest.raises(ConfigError, match=f"no Kafka broker answered at {closed_port} within 1 s") as unreachable:
        require_kafka(conf, timeout_s=1)
    assert SECRET not in str(bad.value) + str(unreachable.value)
    monkeypatch.setattr(arguments, "BROKER_ANSWER_S", 1.0)
    monkeypatch.setenv("CRM_PRODUCER_KAFKA__SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("CRM_PRODUCER_KAFKA__SASL_PASSWORD", SECRET)
    assert producer_cli.main(["replay-dlq", "--bootstrap-servers", closed_port, "--timeout", "1"]) == KAFKA_UNREACHABLE
    err = capfd.readouterr().err
    assert err.startswith(f"crm-producer replay-dlq: no Kafka broker answered at {closed_port}") and SECRET not in err


def test_log_lines_never_carry_a_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    kafka = secured(tmp_path).model_dump() | {"ssl_verify": False}
    kafka["sasl_password"], kafka["ssl_key_password"] = SECRET, SECRET + "-key"
    settings = load_settings(None, kafka=kafka, log={"level": "DEBUG"})
    assert settings.librdkafka("producer")["sasl.password"] == SECRET
    monitor = load_monitor_settings(None, kafka=kafka)
    assert monitor.librdkafka()["ssl.key.password"] == SECRET + "-key"
    assert "kafka.ssl_verify is false" in caplog.text and SECRET not in caplog.text


def test_metrics_never_carry_a_secret(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        kafka={"sasl_mechanism": "PLAIN", "sasl_password": SECRET},
        schema_registry={"url": "http://r:8081", "basic_auth_user_info": f"u:{SECRET}"},
        metrics={"drift": False},
    )
    exposed = generate_latest(Telemetry(settings).registry).decode()
    assert "crm_scorer_config_info" in exposed and SECRET not in exposed
    assert SECRET not in repr(settings) and SECRET not in repr(Brokers(settings.librdkafka("consumer")))


def test_the_monitor_reads_confluent_framed_scores_through_its_registry(tmp_path: Path) -> None:
    from consumer.monitor.processor import SCORES, InputMessage, MonitorCore
    from consumer.monitor.settings import MonitorSettings
    from consumer.monitor.store import StateStore
    from schemas import load_catalog
    from schemas.framing import SINGLE_OBJECT_HEADER_SIZE, confluent_header
    from tests.unit.test_monitor import _messages, _run

    settings = MonitorSettings(store={"path": tmp_path}, schema_registry={"url": "mock://monitor-scores"})
    registry = registry_source(settings)
    assert registry is not None
    schema_id = registry.register_schema("crm.scores-value", load_catalog().get("score_result.v1").schema_str)
    single_object = list(_messages(count=300))
    confluent = [
        InputMessage(
            m.stream, m.partition, m.offset, m.key, confluent_header(schema_id) + m.value[SINGLE_OBJECT_HEADER_SIZE:]
        )
        if m.stream == SCORES
        else m
        for m in single_object
    ]
    assert sum(m.stream == SCORES for m in confluent) == 300
    states = []
    for name, messages, source in (("single", single_object, None), ("confluent", confluent, registry)):
        core = MonitorCore(StateStore(tmp_path / name), settings, source)
        core.assigned(range(3))
        _run(core, messages)
        states.append(core.state())
    assert states[0].counters["scores"] == states[1].counters["scores"] == 300
    assert states[0].counters == states[1].counters
