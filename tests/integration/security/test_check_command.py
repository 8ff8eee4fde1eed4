"""``crm-scorer check`` against the secured broker: all green with the ACLs ``crm-scorer acls`` prints, then one
fault at a time, each named in one line with its exit code (docs/exit-codes.md).

In this process, through the same ``main()`` the console script calls. The ACLs are described with the
super-user's connection file (``--acl-connection``): a least-privilege principal may not describe ACLs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from confluent_kafka.admin import AclBindingFilter

from consumer import exit_codes
from consumer.commands import cli as scorer_cli
from consumer.commands.acls_cmd import Acl
from producer_tools.servers.kafka_security import ADMIN
from tests.integration.security.support import SecureLanes, binding, create_topics
from tests.integration.security.test_tool_connections import WRONG, connection_file, credentials, printed_acls


def admin_connection(secure_lanes: SecureLanes) -> Path:
    """A connection file of the super-user, who may describe every ACL."""
    security = secure_lanes.kafka.security
    assert security is not None
    secret = secure_lanes.folder / "admin.password"
    secret.write_text(security.password(ADMIN))
    secret.chmod(0o600)
    kafka = {
        "bootstrap_servers": secure_lanes.lanes.bootstrap,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": ADMIN,
        "sasl_password_file": str(secret),
        "ssl_ca_location": str(security.ca_path),
    }
    path = secure_lanes.folder / "admin.yaml"
    path.write_text(yaml.safe_dump({"kafka": kafka}))
    return path


def revoke(secure_lanes: SecureLanes, acls: list[Acl]) -> None:
    """Delete ``acls`` (the Admin API deletes by filter) and wait until the authorizer no longer holds them."""
    bindings = [binding(a) for a in acls]
    filters = [
        AclBindingFilter(
            b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type
        )
        for b in bindings
    ]
    for future in secure_lanes.admin.delete_acls(filters, request_timeout=15).values():
        future.result(20)
    deadline = time.monotonic() + 20
    while any(
        b in secure_lanes.admin.describe_acls(f, request_timeout=10).result(15)
        for b, f in zip(bindings, filters, strict=True)
    ):
        assert time.monotonic() < deadline, "the authorizer still holds the revoked ACLs"
        time.sleep(0.1)


def check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = scorer_cli.main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    with capsys.disabled():  # shown with -s
        print(f"$ crm-scorer {argv[0]} ... -> exit {code}\n{captured.out}")
    return code, captured.out.splitlines()


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("FAIL")]


def test_check_is_green_with_the_printed_acls_then_names_each_fault(
    secure_lanes: SecureLanes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lanes, config = secure_lanes.lanes, connection_file(secure_lanes)
    argv = ["check", "--config", str(config), "--acl-connection", str(admin_connection(secure_lanes))]
    argv += ["--timeout", "5"]
    scorer_acls = printed_acls(config, "scorer", "crm.outcomes", "crm-scorer-monitor", capsys)
    secure_lanes.grant(scorer_acls)
    for key, value in secure_lanes.scorer_env().items():
        monkeypatch.setenv(key, value)

    code, lines = check(argv, capsys)
    assert code == exit_codes.OK, "\n".join(lines)
    assert [line.split()[1].rstrip(":") for line in lines[:-1]] == [
        "settings",
        "artifacts",
        "reason",
        "broker",
        "acls",
        "topics",
        "schema",
    ]
    assert f"{len(scorer_acls)} needed by User:crm-scorer, all granted" in "\n".join(lines)

    group_read = [a for a in scorer_acls if a.resource_type == "GROUP" and a.resource_name == lanes.group]
    revoke(secure_lanes, group_read)
    code, lines = check(argv, capsys)
    assert code == exit_codes.ACLS and len(failures(lines)) == 1
    assert f"FAIL  acls: User:crm-scorer lacks READ on GROUP {lanes.group}" in failures(lines)[0]
    secure_lanes.grant(group_read)

    with monkeypatch.context() as wrong:
        for key, value in secure_lanes.scorer_env(password=WRONG).items():
            wrong.setenv(key, value)
        code, lines = check(argv, capsys)
    assert code == exit_codes.KAFKA_UNREACHABLE and failures(lines)[0].startswith("FAIL  broker: ")
    assert "refused the credentials" in failures(lines)[0] and WRONG not in "\n".join(lines)

    missing = f"missing-{lanes.group}"
    with monkeypatch.context() as elsewhere:
        elsewhere.setenv("CRM_SCORER_TOPICS__DLQ", missing)
        secure_lanes.grant(printed_acls(config, "scorer", "crm.outcomes", "crm-scorer-monitor", capsys))
        code, lines = check(argv, capsys)
    assert code == exit_codes.TOPICS and failures(lines) == [
        f"FAIL  topics: missing: {missing} (create them, e.g. make topics)"
    ]

    with monkeypatch.context() as registry:
        registry.setenv("CRM_SCORER_SCHEMA_REGISTRY__URL", "http://127.0.0.1:9")
        code, lines = check(argv, capsys)
    assert code == exit_codes.REGISTRY_UNAVAILABLE and len(failures(lines)) == 1
    assert failures(lines)[0].startswith("FAIL  schema registry: http://127.0.0.1:9 did not answer")


def test_monitor_check_names_a_partition_count_mismatch_with_the_outcomes(
    secure_lanes: SecureLanes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lanes, config = secure_lanes.lanes, connection_file(secure_lanes)
    outcomes, group = f"outcomes-{lanes.group}", f"monitor-{lanes.group}"
    create_topics(secure_lanes.admin, {outcomes: 1})  # the scores have 3
    secure_lanes.grant(printed_acls(config, "monitor", outcomes, group, capsys))
    for key, value in credentials(secure_lanes, "CRM_MONITOR_", "crm-monitor").items():
        monkeypatch.setenv(key, value)
    argv = ["monitor", "--check", "--connection", str(config), "--scores-topic", lanes.output]
    argv += ["--outcomes-topic", outcomes, "--group-id", group, "--timeout", "5"]
    argv += ["--acl-connection", str(admin_connection(secure_lanes))]
    code, lines = check(argv, capsys)
    assert code == exit_codes.TOPICS, "\n".join(lines)
    assert failures(lines) == [
        f"FAIL  topics: {lanes.output} has 3 partitions but {outcomes} has 1: co-partitioned topics need the same "
        "count (add partitions to the smaller one)"
    ]
