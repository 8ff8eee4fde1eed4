"""Every command that talks to Kafka reaches the secured broker through one connection file.

The file is a scorer.yaml for this test's lanes (SASL_SSL, SCRAM-SHA-512, the test CA); each principal's user
and password file come from its command's environment (``CRM_PRODUCER_KAFKA__*``, ``CRM_MONITOR_KAFKA__*``).
``crm-producer produce``, ``tail``, ``replay-dlq``, ``outcomes`` and ``crm-scorer monitor`` each run with only
the ACLs ``crm-scorer acls --format json`` prints for their principal, and each ends with one line on stderr,
no traceback and a non-zero exit, when the password is wrong.
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
from tests.integration.faults.support import wait_until
from tests.integration.harness import ScorerProcess
from tests.integration.security.support import SecureLanes, create_topics

PRODUCER = [sys.executable, "-m", "producer_tools.commands.cli"]
MONITOR = [sys.executable, "-m", "consumer.commands.cli", "monitor"]
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


def commands(config: Path, secure_lanes: SecureLanes, outcomes: str, group: str) -> dict[str, list[str]]:
    lanes, store = secure_lanes.lanes, secure_lanes.folder / f"monitor-{time.monotonic_ns()}"
    world = ["--count", str(EVENTS), "--seed", str(SEED)]
    on, idle = ["--config", str(config)], ["--idle-exit", "3"]
    monitor = ["--outcomes-topic", outcomes, "--group-id", group, "--store-path", str(store), "--metrics-port", "0"]
    monitor += ["--until-idle", "3"]
    return {
        "produce": [*PRODUCER, "produce", *on, "--topic", lanes.input, *world, "--bad-ratio", "0.25"],
        "tail": [*PRODUCER, "tail", *on, "--topic", lanes.output, "--from-beginning", "--max", "3", "--timeout", "15"],
        "replay-dlq": [*PRODUCER, "replay-dlq", *on, "--from", lanes.dlq, "--to", lanes.input, "--timeout", "15"],
        "outcomes": [*PRODUCER, "outcomes", *on, "--scores-topic", lanes.output, "--topic", outcomes, *world, *idle],
        "monitor": [*MONITOR, "--connection", str(config), "--scores-topic", lanes.output, *monitor],
    }


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


def start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
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

    produced = run(argv["produce"], tools)
    sent, failed, bad = (int(produced.stdout.split(f"{k}=")[1].split()[0]) for k in ("sent", "failed", "bad"))
    assert produced.returncode == 0 and (sent + bad, failed) == (EVENTS, 0), produced.stdout + produced.stderr
    with ScorerProcess(lanes, secure_lanes.folder, "--config", str(config), env=secure_lanes.scorer_env()) as scorer:
        wait_until(lambda: secure_lanes.committed() >= EVENTS, 90, "every offset committed", scorer)
        scorer.stop()
    dead = len(secure_lanes.dead_letters())
    assert dead > 0, "the poison was dead-lettered"

    tail = run(argv["tail"], tools)
    assert tail.returncode == 0 and len(tail.stdout.splitlines()) == 3, tail.stderr
    replay = run(argv["replay-dlq"], tools)
    assert replay.returncode == 0 and f"replayed {dead} of {dead} to {lanes.input} failed=0" in replay.stdout, (
        replay.stdout + replay.stderr
    )
    answered = run(argv["outcomes"], tools)
    assert answered.returncode == 0 and "failed=0" in answered.stdout, answered.stdout + answered.stderr
    watched = run(argv["monitor"], monitor)
    assert watched.returncode == 0, watched.stderr[-3000:]
    joined = int(watched.stdout.split("joined=")[1].split()[0])
    assert joined > 0, watched.stdout


def test_a_wrong_password_ends_every_command_with_one_line(secure_lanes: SecureLanes) -> None:
    lanes, config = secure_lanes.lanes, connection_file(secure_lanes)
    outcomes, group = f"outcomes-{lanes.group}", f"monitor-{lanes.group}"
    tools = os.environ | credentials(secure_lanes, "CRM_PRODUCER_", "crm-producer", WRONG)
    monitor = os.environ | credentials(secure_lanes, "CRM_MONITOR_", "crm-monitor", WRONG)
    argv = commands(config, secure_lanes, outcomes, group)
    started = {  # side by side: each waits out its broker check
        name: start(command, monitor if name == "monitor" else tools) for name, command in argv.items()
    }
    assert set(started) == {"produce", "tail", "replay-dlq", "outcomes", "monitor"}
    for name, process in started.items():
        _out, err = process.communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        assert process.returncode != 0, f"{name} succeeded with a wrong password"
        assert len(lines) == 1 and "Traceback" not in err, f"{name}:\n{err}"
        assert "Authentication failed" in lines[0] and lanes.bootstrap in lines[0], f"{name}: {lines[0]}"
        assert WRONG not in err, f"{name} printed the password"
