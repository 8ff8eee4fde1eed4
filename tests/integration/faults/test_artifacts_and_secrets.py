"""Scenario 8 of the fault suite, and security basics: bad model artifacts are refused at start; a bank added
in config (with its artifact) is scored without code changes; credentials never reach logs or /metrics; the
metrics listener binds where it is told.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from models.artifacts import MANIFEST, sha256_of
from models.config import DEFAULT_ARTIFACTS_DIR
from producer_tools.publishing.topics import read_all
from producer_tools.world import generate
from schemas import ResultDecoder
from tests.integration.faults.producing import produce_tracked
from tests.integration.faults.support import (
    Expected,
    Row,
    committed_total,
    conservation,
    http_get,
    pairs,
    read_outcomes,
    record,
    telemetry_url,
    valid_messages,
    wait_until,
)
from tests.integration.harness import CATALOG, SCORER, Lanes, ScorerProcess, encoded, scored_event_ids

pytestmark = pytest.mark.faults
ARTIFACTS_ENV = "CRM_SCORER_MODELS__ARTIFACTS_DIR"


def _copy_artifacts(tmp_path: Path) -> Path:
    target = tmp_path / "artifacts"
    shutil.copytree(DEFAULT_ARTIFACTS_DIR, target)
    return target


def _edit_manifest(artifacts: Path, edit: Callable[[dict], None]) -> None:
    path = artifacts / MANIFEST
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest, indent=1))


def _tampered(artifacts: Path) -> str:
    path = artifacts / "bank_c.ubj"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return "'bank_c': bank_c.ubj sha256"


def _missing(artifacts: Path) -> str:
    (artifacts / "bank_d.ubj").unlink()
    return "'bank_d': artifact"


def _unknown_feature(artifacts: Path) -> str:
    _edit_manifest(artifacts, lambda m: m["models"]["bank_b"]["features"].append("shoe_size"))
    return "'bank_b': manifest names feature(s) ['shoe_size']"


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    "damage", [_tampered, _missing, _unknown_feature], ids=["tampered", "missing", "unknown-feature"]
)
def test_bad_artifacts_are_refused_at_start_with_a_clear_message(
    damage: Callable[[Path], str], workers: str, tmp_path: Path
) -> None:
    artifacts = _copy_artifacts(tmp_path)
    expected = damage(artifacts)
    # Nothing is listening on this address: a scorer that did not refuse would sit waiting for a broker.
    args = [*SCORER, "--bootstrap-servers", "127.0.0.1:9", "--metrics-port", "0", "--workers", workers]
    env = os.environ | {ARTIFACTS_ENV: str(artifacts)}
    started = time.monotonic()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, f"exit {done.returncode}:\n{done.stderr[-2000:]}"
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("crm-scorer: model ") and expected in last_line, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    name = f"8. {damage.__name__[1:].replace('_', ' ')} artifact, {workers} worker(s)"
    print(f"\n[{name}] refused: {last_line}")
    record(Row(name, 0, 0, 0, 0, 0, time.monotonic() - started, "refused at start, exit 2, message names the model"))


def test_a_bank_added_in_config_with_its_artifact_is_scored_without_code_changes(lanes: Lanes, tmp_path: Path) -> None:
    started = time.monotonic()
    artifacts = _copy_artifacts(tmp_path)
    shutil.copy(artifacts / "bank_a.ubj", artifacts / "bank_f.ubj")  # a stand-in model: only the wiring is new

    def add_bank_f(manifest: dict) -> None:
        entry = dict(manifest["models"]["bank_a"])
        entry |= {"file": "bank_f.ubj", "version": "bank_f-" + sha256_of(artifacts / "bank_f.ubj")[:10]}
        manifest["models"]["bank_f"] = entry

    _edit_manifest(artifacts, add_bank_f)
    config = tmp_path / "scorer.yaml"
    banks = [{"name": f"bank_{c}"} for c in "abcdef"]
    config.write_text(yaml.safe_dump({"models": {"artifacts_dir": str(artifacts), "banks": banks}}))
    messages = valid_messages(500, seed=208)
    produce_tracked(lanes.bootstrap, lanes.input, pairs(messages))
    with ScorerProcess(lanes, tmp_path, "--config", str(config)) as scorer:
        wait_until(lambda: committed_total(lanes) >= len(messages), 60, "every offset committed", scorer)
        scorer.stop()
    decoder = ResultDecoder(CATALOG)
    results = [decoder.decode(m.value) for m in read_all(lanes.bootstrap, lanes.output, idle=1.0)]
    assert results and all([b["bank"] for b in r["banks"]] == [f"bank_{c}" for c in "abcdef"] for r in results)
    assert all(r["banks"][5]["model_version"].startswith("bank_f-") for r in results)
    conservation(
        "8. a sixth bank added in config",
        Expected(frozenset(m[2] for m in messages)),
        read_outcomes(lanes),
        time.monotonic() - started,
        "every result has 6 banks",
    )


def test_credentials_never_reach_logs_or_metrics_and_metrics_bind_where_configured(
    lanes: Lanes, tmp_path: Path
) -> None:
    password, file_password = f"pw-{uuid.uuid4().hex}", f"file-pw-{uuid.uuid4().hex}"
    secret_file = tmp_path / "sasl_password"
    secret_file.write_text(file_password + "\n")
    events = generate(300, seed=209).events
    produce_tracked(lanes.bootstrap, lanes.input, [*encoded(events), (b"bad", b"\x42not avro")])
    sasl = {
        "CRM_SCORER_KAFKA__SASL_MECHANISM": "PLAIN",
        "CRM_SCORER_KAFKA__SASL_USERNAME": "scorer",
        "CRM_SCORER_LOG__LEVEL": "DEBUG",
        "CRM_SCORER_METRICS__HOST": "127.0.0.1",
    }
    seen = []
    for secret_env in (
        {"CRM_SCORER_KAFKA__SASL_PASSWORD": password},
        {"CRM_SCORER_KAFKA__SASL_PASSWORD_FILE": str(secret_file)},
    ):
        with ScorerProcess(lanes, tmp_path, "--log-json", env=sasl | secret_env) as scorer:
            url = telemetry_url(scorer)
            assert url.startswith("http://127.0.0.1:")
            assert _listening_addresses(int(url.rsplit(":", 1)[1])) == {"127.0.0.1"}
            scorer.wait_for_log("assigned")
            if not seen:
                wait_until(
                    lambda: len(scored_event_ids(lanes.bootstrap, lanes.output)) >= len(events),
                    60,
                    "every event scored",
                    scorer,
                )
            status, metrics = http_get(url + "/metrics")
            assert status == 200
            scorer.stop()
        seen.append(scorer.log + metrics)
    for text in seen:
        assert password not in text and file_password not in text
    # A settings error must not echo the credential either (pydantic's errors carry the input value).
    bad = os.environ | {"CRM_SCORER_KAFKA__SASL_PASSWORD": password, "CRM_SCORER_KAFKA__SECURITY_PROTOCOL": "SASL_X"}
    done = subprocess.run([*SCORER, "--metrics-port", "0"], env=bad, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "kafka.security_protocol" in done.stderr
    assert password not in done.stderr + done.stdout


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp, IPv4)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
    return found
