"""`make demo` on its embedded default, Tansu: the one path that still runs on it, kept honest end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from producer_tools.servers.broker import BOOTSTRAP_ENV, BROKER_ENV, free_port

EVENTS = 1500


def test_the_demo_on_tansu_scores_or_dead_letters_every_event() -> None:
    env = {k: v for k, v in os.environ.items() if k not in (BOOTSTRAP_ENV, BROKER_ENV)}
    command = [
        *(sys.executable, "-m", "producer_tools.commands.cli", "demo"),
        *("--events", str(EVENTS), "--broker", "tansu", "--metrics-port", str(free_port())),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert re.search(r"^broker\s+127\.0\.0\.1:\d+\s+\(tansu ", done.stdout, re.M), done.stdout[:500]
    summary = re.search(r"summary\s+consumed=(\d+) scored=(\d+) dead-lettered=(\d+)", done.stdout)
    assert summary, done.stdout[-2000:]
    consumed, scored, dead = map(int, summary.groups())
    assert consumed == EVENTS == scored + dead
    assert dead > 0, "the demo's malformed traffic produced no dead letter"
    assert '"lead": {' in done.stdout or '"lead":' in done.stdout, "no score record was shown"
