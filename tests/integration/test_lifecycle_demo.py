"""`make demo-lifecycle` in small, on the session broker: the model loop's timeline happens in order (change,
trigger, retrain, the retrained model shadowed then promoted on the monitor's verdict, its first result, the
figures) and the PNG is written. The full change (size 1) makes the challenger's win clear on a small run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from producer_tools.servers.broker import BOOTSTRAP_ENV

STORY = [
    r"bank_c tightens its policy from this event on",
    r"trigger fired for bank_c: cusum [\d.]+",
    r"retrain started: crm-train --from-capture CAPTURE --bank bank_c --since \S+ --warm-start",
    r"retrain finished: model set \w+, bank_c \S+ on \d+ rows, offline AUC 0\.\d+",
    r"crm-scorer models shadow \w+: bank_c's retrained model beside the champion",
    r"crm-scorer models promote bank_c: bank_c: challenger AUC minus champion [-+][\d.]+ .*: wins",
    r"the scorer swapped to \w+ between two batches, no restart",
    r"first result scored by bank_c \S+: event [\d,]+",
    r"realised bank_c after the change \(\S+\): AUC 0\.\d+, ECE 0\.\d+",
    r"shadowed: challenger \S+ AUC 0\.\d+, ECE 0\.\d+",
    r"realised bank_c once retrained \(\S+\): AUC 0\.\d+, ECE 0\.\d+",
]


def test_the_lifecycle_demo_tells_the_model_loop_in_order(kafka_bootstrap: str, tmp_path: Path) -> None:
    plot = tmp_path / "lifecycle.png"
    command = [
        *(sys.executable, "-m", "producer_tools.commands.cli", "lifecycle-demo"),
        *("--change", "1000", "--training", "2000", "--challenge", "2000", "--after-events", "1500"),
        *("--policy-size", "1.0", "--rate", "2000"),
        *("--namespace", f"lifecycle-{uuid.uuid4().hex[:8]}-", "--plot", str(plot)),
    ]
    env = os.environ | {BOOTSTRAP_ENV: kafka_bootstrap}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    timeline = [line for line in done.stdout.splitlines() if line.startswith("timeline")]
    assert timeline, done.stdout[-3000:]
    positions = []
    for step in STORY:
        found = [i for i, line in enumerate(timeline) if re.search(step, line)]
        assert found, f"no timeline line matches {step!r}:\n" + "\n".join(timeline)
        positions.append(found[0])
    assert positions == sorted(positions), "\n".join(timeline)
    assert re.search(r"^target\s+whole post-change population", done.stdout, re.M), done.stdout[-2000:]
    noise = r"realised ECE 0\.\d+ .*shows 0\.\d+ median, 0\.\d+ at the 95th percentile"
    assert re.search(noise, done.stdout), done.stdout[-2000:]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
