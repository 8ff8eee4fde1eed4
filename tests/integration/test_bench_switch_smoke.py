"""``crm-scorer bench --switch`` end to end on the session's broker, small and exactly-once only: an activation
and a rollback reach the results, and nothing is lost, duplicated, mixed or scored by a set not active.

A smoke test of the tool, not a gate on timings: the figures are taken on a quiet machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.bench
@pytest.mark.timeout(400)
def test_switch_bench_checks_an_activation_and_a_rollback(kafka_bootstrap: str, tmp_path: Path) -> None:
    report = tmp_path / "switch.json"
    command = [sys.executable, "-m", "consumer.commands.cli", "bench", "--switch", "--switch-rate", "300"]
    command += ["--switch-seconds", "16", "--train-events", "2000", "--bootstrap-servers", kafka_bootstrap]
    command += ["--switch-guarantee", "exactly_once"]  # the stricter one; make bench-switch runs both
    command += ["--json", str(report), "--workdir", str(tmp_path / "logs")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=360, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "exactly_once:" in done.stdout and "lost 0, duplicates 0" in done.stdout

    data = json.loads(report.read_text())["switch"]
    first, second = data["sets"]
    assert "at_least_once" not in data
    g = data["exactly_once"]
    assert g["results"] >= 1000 + 16 * 300 * 0.95  # the warm-up and the paced events (about 1% dead-lettered)
    assert (g["lost"], g["duplicates"], g["mixed_sets"], g["misplaced"], g["unexpected"]) == (0, 0, 0, 0, 0)
    assert [(s["action"], s["version"]) for s in g["switches"]] == [("activate", second), ("rollback", first)]
    assert [(s["to"], s["from"]) for s in g["swap_ms"]] == [(second, first), (first, second)]
    assert all(s["first_result_ms"] >= s["issued_ms"] for s in g["switches"]), "each set reached the results"
    assert g["around"][0]["lowest_per_s"] > 0 and g["around"][0]["after_p99_ms"] > 0
    assert g["outside_cpu_percent"] >= 0
