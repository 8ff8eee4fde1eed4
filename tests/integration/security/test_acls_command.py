"""``crm-scorer acls`` prints exactly the list the secured suite grants, in both of its formats."""

from __future__ import annotations

import json

import pytest

from consumer.commands.acls_cmd import scorer_acls
from consumer.commands.cli import main
from consumer.settings import load_settings


def test_the_json_format_is_the_list_the_suite_grants(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acls", "--role", "scorer", "--guarantee", "exactly_once", "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = [vars(a) for a in scorer_acls(load_settings(None, guarantee="exactly_once"))]
    assert printed == expected
    prefix = load_settings(None).transactional_id_prefix()
    assert {"TRANSACTIONAL_ID"} == {a["resource_type"] for a in printed if a["pattern_type"] == "PREFIXED"}
    assert any(a["resource_name"] == prefix for a in printed)


def test_at_least_once_needs_no_transactional_id_and_the_commands_name_every_operation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["acls", "--role", "scorer", "--guarantee", "at_least_once", "--bootstrap-server", "kafka:9093"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    settings = load_settings(None)
    t = settings.topics
    assert lines == [
        f"kafka-acls.sh --bootstrap-server kafka:9093 --command-config admin.properties --add --allow-principal "
        f"User:crm-scorer {ops} {resource}"
        for ops, resource in (
            ("--operation Read --operation Describe", f"--topic {t.input}"),
            ("--operation Read", f"--group {settings.consumer.group_id}"),
            ("--operation Read --operation Describe", f"--topic {settings.models.control_topic}"),
            ("--operation Read", f"--group {settings.consumer.group_id}.models"),
            ("--operation Write --operation Describe", f"--topic {t.output}"),
            ("--operation Write --operation Describe", f"--topic {t.dlq}"),
            ("--operation Write --operation Describe", f"--topic {settings.models.shadow_topic}"),
        )
    ]


def test_the_gateway_and_the_monitor_reach_the_model_topics_they_use(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acls", "--role", "gateway", "--format", "json"]) == 0
    gateway = json.loads(capsys.readouterr().out)
    assert main(["acls", "--role", "monitor", "--format", "json"]) == 0
    monitor = json.loads(capsys.readouterr().out)
    models = load_settings(None).models
    assert gateway and monitor
    assert {a["principal"] for a in gateway} == {"User:crm-gateway"}
    assert {(a["resource_name"], a["operation"]) for a in gateway if a["resource_type"] == "GROUP"} == {
        ("crm-gateway-view", "READ"),
        ("crm-gateway-view.models", "READ"),
    }
    assert (models.control_topic, "READ") in {(a["resource_name"], a["operation"]) for a in gateway}
    assert (models.control_topic, "WRITE") in {(a["resource_name"], a["operation"]) for a in monitor}
    assert (models.shadow_topic, "READ") in {(a["resource_name"], a["operation"]) for a in monitor}
