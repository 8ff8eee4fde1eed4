"""``crm-scorer bench --quick`` end to end on the session's broker: every phase runs and reports sane numbers.

A smoke test, not a gate: nothing here depends on how fast this machine is.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

HEADLINE_KEYS = (
    "ceiling_events_per_s",
    "one_worker_events_per_s",
    "two_workers_events_per_s",
    "ratio_one_worker_to_ceiling",
    "scaling_two_over_one",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "peak_rss_mb",
    "relay_events_per_s",
    "relay_latency_p50_ms",
    "relay_latency_p99_ms",
    "latency_subscriber_p50_ms",
    "latency_subscriber_p99_ms",
    "ratio_one_worker_to_relay",
)


@pytest.mark.bench
@pytest.mark.timeout(600)
def test_quick_bench_reports_every_measure(kafka_bootstrap: str, tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    command = [sys.executable, "-m", "consumer.commands.cli", "bench", "--quick"]
    command += ["--bootstrap-servers", kafka_bootstrap, "--json", str(report), "--workdir", str(tmp_path / "logs")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=540, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ceiling" in done.stdout and "two workers" in done.stdout and "us/event" in done.stdout

    data = json.loads(report.read_text())
    assert data["events"] == 10_000
    assert 0 < data["malformed"] < 500  # about 1%
    for key in HEADLINE_KEYS:
        assert isinstance(data[key], int | float) and math.isfinite(data[key]) and data[key] > 0, key
    assert data["latency_p50_ms"] <= data["latency_p95_ms"] <= data["latency_p99_ms"]
    assert data["trees_per_bank"].keys() == {"bank_a", "bank_b", "bank_c", "bank_d", "bank_e"}
    assert all(isinstance(t, int) and t > 0 for t in data["trees_per_bank"].values())
    stages = data["stage_us_per_event"]
    assert {"decode", "features", "reasons", "encode", "lead", *data["trees_per_bank"]} <= stages.keys()
    assert all(v is None or v >= 0 for v in stages.values())
    for run in ("one_worker", "two_workers"):
        assert data["runs"][run]["outputs"] >= data["events"]  # every message ended as a result or a dead letter
    assert len(data["peak_rss_mb_per_worker"]["two_workers"]) == 2
    # the relay relays every message (the malformed ones too); added latency is scorer minus relay, either sign
    assert data["relay"]["run"]["outputs"] >= data["events"]
    added = data["latency_subscriber_p50_ms"] - data["relay_latency_p50_ms"]
    assert math.isclose(data["added_latency_p50_ms"], added)
    assert data["broker"] == "external" and data["broker_version"], "the session broker, given by its address"
    assert data["curve"] == [], "--quick measures one point, not the curve"
