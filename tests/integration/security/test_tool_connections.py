"""Every command that talks to Kafka reaches the secured broker through one connection file.

The file is a scorer.yaml for this test's lanes (SASL_SSL, SCRAM-SHA-512, the test CA); each principal's user
and password file come from its command's environment (``CRM_PRODUCER_KAFKA__*``, ``CRM_MONITOR_KAFKA__*``).
``crm-producer produce``, ``tail``, ``replay-dlq``, ``outcomes`` and ``crm-scorer monitor`` each run with only
the ACLs ``crm-scorer acls --format json`` prints for their principal (as commands, in subprocesses), and each
ends with one line on stderr, no traceback and a non-zero exit, when the password is wrong (in this process,
through the same ``main()``: no interpreter start per command).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from consumer.commands import cli as scorer_cli
from consumer.commands.acls_cmd import Acl
from consumer.exit_codes import ACLS, KAFKA_UNREACHABLE
from producer_tools.commands import cli as producer_cli
from tests.integration.faults.support import wait_until
from tests.integration.harness import ScorerProcess
from tests.integration.security.support import SecureLanes, create_topics

PROGRAMS = {
    "crm-producer": [sys.executable, "-m", "producer_tools.commands.cli"],
    "crm-scorer": [sys.executable, "-m", "consumer.commands.cli"],
}
MAINS = {"crm-producer": producer_cli.main, "crm-scorer": scorer_cli.main}
Command = tuple[str, list[str]]
EVENTS, SEED = 40, 1919
WRONG = "not-the-password-1919"


def connection_file(secure_lanes: SecureLanes) -> Path:
    """The scorer's own scorer.yaml for these lanes: where the broker is and how to trust it, no credential."""
    security, lanes = secure_lanes.kafka.security, secure_lanes.lanes
    assert security is not None
    scorer_yaml = {
        "kafka": {
            "bootstrap_servers": lanes.bootstrap,
            "client_id": "crm-scorer",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "ssl_ca_location": str(security.ca_path),
        },
        "topics": {"input": lanes.input, "output": lanes.output, "dlq": lanes.dlq},
        "consumer": {"group_id": lanes.group},
    }
    path = secure_lanes.folder / "scorer.yaml"
    path.write_text(yaml.safe_dump(scorer_yaml))
    return path


def credentials(secure_lanes: SecureLanes, prefix: str, user: str, password: str | None = None) -> dict[str, str]:
    """``<prefix>KAFKA__SASL_USERNAME`` and a 0600 password file, as an operator would mount them."""
    security = secure_lanes.kafka.security
    assert security is not None
    secret = secure_lanes.folder / f"{prefix.lower()}{user}.password"
    secret.write_text(security.password(user) if password is None else password)
    secret.chmod(0o600)
    return {f"{prefix}KAFKA__SASL_USERNAME": user, f"{prefix}KAFKA__SASL_PASSWORD_FILE": str(secret)}


def printed_acls(config: Path, role: str, outcomes: str, group: str, capsys: pytest.CaptureFixture[str]) -> list[Acl]:
    """What ``crm-scorer acls`` prints for ``role``, read back from its JSON."""
    argv = ["acls", "--config", str(config), "--role", role, "--format", "json"]
    assert scorer_cli.main([*argv, "--outcomes-topic", outcomes, "--monitor-group", group]) == 0
    acls = [Acl(**entry) for entry in json.loads(capsys.readouterr().out)]
    assert acls, f"crm-scorer acls printed nothing for {role}"
    return acls


def commands(config: Path, secure_lanes: SecureLanes, outcomes: str, group: str) -> dict[str, Command]:
    """Each command's program and arguments, all on the one connection file."""
    lanes, store = secure_lanes.lanes, secure_lanes.folder / f"monitor-{time.monotonic_ns()}"
    on, world = ["--config", str(config)], ["--count", str(EVENTS), "--seed", str(SEED)]
    tail = ["--topic", lanes.output, "--from-beginning", "--max", "3", "--idle-timeout", "15"]
    answer = ["--scores-topic", lanes.output, "--topic", outcomes, *world, "--idle-timeout", "3"]
    monitor = ["--connection", str(config), "--scores-topic", lanes.output, "--outcomes-topic", outcomes]
    monitor += ["--group-id", group, "--store-path", str(store), "--metrics-port", "0", "--idle-timeout", "3"]
    return {
        "produce": ("crm-producer", ["produce", *on, "--topic", lanes.input, *world, "--bad-ratio", "0.25"]),
        "tail": ("crm-producer", ["tail", *on, *tail]),
        "replay-dlq": ("crm-producer", ["replay-dlq", *on, "--from", lanes.dlq, "--to", lanes.input]),
        "outcomes": ("crm-producer", ["outcomes", *on, *answer]),
        "monitor": ("crm-scorer", ["monitor", *monitor]),
    }


def start(command: Command, env: dict[str, str]) -> subprocess.Popen[str]:
    program, args = command
    argv = [*PROGRAMS[program], *args]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_every_tool_and_the_monitor_connect_with_one_file_and_their_printed_acls(
    secure_lanes: SecureLanes, capsys: pytest.CaptureFixture[str]
) -> None:
    lanes, config = secure_lanes.lanes, connection_file(secure_lanes)
    outcomes, group = f"outcomes-{lanes.group}", f"monitor-{lanes.group}"
    create_topics(secure_lanes.admin, {outcomes: 3})
    for role in ("scorer", "producer", "monitor"):
        secure_lanes.grant(printed_acls(config, role, outcomes, group, capsys))
    tools = os.environ | credentials(secure_lanes, "CRM_PRODUCER_", "crm-producer")
    monitor = os.environ | credentials(secure_lanes, "CRM_MONITOR_", "crm-monitor")
    argv = commands(config, secure_lanes, outcomes, group)

    produced, errors = start(argv["produce"], tools).communicate(timeout=180)
    sent, failed, bad = (int(produced.split(f"{k}=")[1].split()[0]) for k in ("sent", "failed", "bad"))
    assert (sent + bad, failed) == (EVENTS, 0), produced + errors
    with ScorerProcess(lanes, secure_lanes.folder, "--config", str(config), env=secure_lanes.scorer_env()) as scorer:
        wait_until(lambda: secure_lanes.committed() >= EVENTS, 120, "every offset committed", scorer)
        scorer.stop()
    dead = len(secure_lanes.dead_letters())
    assert dead > 0, "the poison was dead-lettered"

    readers = {name: start(argv[name], tools) for name in ("tail", "replay-dlq", "outcomes")}  # side by side
    (tail, _), (replay, _), (answered, _) = (p.communicate(timeout=180) for p in readers.values())
    codes = {name: p.returncode for name, p in readers.items()}
    assert codes == {"tail": 0, "replay-dlq": 0, "outcomes": 0}, f"{codes}\n{tail}{replay}{answered}"
    assert len(tail.splitlines()) == 3, tail
    assert f"replayed {dead} of {dead} to {lanes.input} failed=0" in replay, replay
    assert "failed=0" in answered, answered
    watching = start(argv["monitor"], monitor)
    watched, errors = watching.communicate(timeout=180)
    assert watching.returncode == 0, errors[-3000:]
    joined = int(watched.split("joined=")[1].split()[0])
    assert joined > 0, watched


def test_a_wrong_password_ends_every_command_with_one_line(
    secure_lanes: SecureLanes, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    lanes, config = secure_lanes.lanes, connection_file(secure_lanes)
    for prefix, user in (("CRM_PRODUCER_", "crm-producer"), ("CRM_MONITOR_", "crm-monitor")):
        for key, value in credentials(secure_lanes, prefix, user, WRONG).items():
            monkeypatch.setenv(key, value)
    argv = commands(config, secure_lanes, f"outcomes-{lanes.group}", f"monitor-{lanes.group}")
    assert set(argv) == {"produce", "tail", "replay-dlq", "outcomes", "monitor"}
    for name, (program, args) in argv.items():  # in this process: the same main() the console scripts call
        code = MAINS[program](args)
        err = capfd.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == KAFKA_UNREACHABLE, f"{name} ended with {code} on a wrong password (docs/exit-codes.md: 5)"
        assert len(lines) == 1 and "Traceback" not in err, f"{name}:\n{err}"
        assert "refused the credentials" in lines[0] and "Authentication failed" in lines[0], f"{name}: {lines[0]}"
        assert lanes.bootstrap in lines[0] and WRONG not in err, f"{name}: {lines[0]}"


def test_a_refused_acl_ends_the_tools_and_the_monitor_with_one_line(
    secure_lanes: SecureLanes, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    lanes, config = secure_lanes.lanes, connection_file(secure_lanes)
    outcomes, group = f"outcomes-{lanes.group}", f"monitor-{lanes.group}"
    create_topics(secure_lanes.admin, {outcomes: 3})
    monitor_acls = printed_acls(config, "monitor", outcomes, group, capfd)
    secure_lanes.grant(a for a in monitor_acls if a.resource_type == "TOPIC")  # its group refused
    for key, value in credentials(secure_lanes, "CRM_PRODUCER_", "crm-producer").items():
        monkeypatch.setenv(key, value)  # and no ACL at all for the tools
    argv = commands(config, secure_lanes, outcomes, group)
    for name in ("tail", "replay-dlq", "outcomes"):
        program, args = argv[name]
        assert MAINS[program](args) == ACLS, name
        lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and "refused to describe topic" in lines[0], f"{name}: {lines}"
    watching = start(argv["monitor"], os.environ | credentials(secure_lanes, "CRM_MONITOR_", "crm-monitor"))
    _out, err = watching.communicate(timeout=180)
    lines = [line for line in err.splitlines() if line.strip() and "INFO" not in line]
    assert watching.returncode == ACLS and "Traceback" not in err, err
    assert len(lines) == 1 and "Group authorization failed" in lines[0], err
