"""`make demo` on its embedded default, Tansu: the one path that still runs on it, kept honest end to end.

The same run is compared with the output README.md shows for `make demo`: every line of either must be of a
kind below, in the same order of kinds, so the README cannot show a view the demo no longer prints.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from producer_tools.servers.broker import BOOTSTRAP_ENV, BROKER_ENV, free_port

EVENTS = 1500
README = Path(__file__).resolve().parents[2] / "README.md"

# What the demo prints on stdout, line by line (stderr holds the scorer's log).
LINE_KINDS = {
    "broker": r"broker\s+127\.0\.0\.1:\d+\s+\(\w+ .+\)",
    "metrics": r"metrics\s+http://127\.0\.0\.1:\d+/metrics",
    "progress": r"scored\s+[\d,]+\s+dead-lettered\s+[\d,]+\s+[\d,]+ events/s\s+\(\s*[\d.]+ s\)",
    "result": r"[0-9a-f-]{36}  app-[0-9a-f]+\s+best_offer=(\w+|-)  lead=\d+",
    "bank": r"  bank_\w+\s+\d\.\d\d (approved|declined)  \S.*",
    "lead": r"  lead\s+\d\.\d\d\s+\S.*",
    "offers": r"  offers\s+1\. \S.*",
    "blank": r"",
    "producer": r"producer  sent=\d+ failed=\d+ bad=\d+ events/s=\d+",
    "summary": r"summary   consumed=\d+ scored=\d+ dead-lettered=\d+ events/s=[\d,]+ \(scorer exit 0\)",
}
# Lines whose presence depends on timing or on the sampled results, left out of the comparison of shapes.
VARIABLE = {"progress", "offers", "blank"}


def kind_of(line: str) -> str:
    for kind, pattern in LINE_KINDS.items():
        if re.fullmatch(pattern, line):
            return kind
    raise AssertionError(f"a demo line of no known kind: {line!r}")


def shape(output: str) -> list[str]:
    """The kinds of the lines, timing-dependent ones dropped and repeats collapsed."""
    kinds = [kind_of(line) for line in output.splitlines()]
    kept = [kind for kind in kinds if kind not in VARIABLE]
    return [kind for i, kind in enumerate(kept) if i == 0 or kept[i - 1] != kind]


def readme_demo_output() -> str:
    """The text block README.md shows as `make demo`'s output: the first that starts with the broker line."""
    blocks = re.findall(r"^```text\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    shown = [block for block in blocks if block.startswith("broker ")]
    assert shown, "README.md shows no output of make demo"
    return shown[0]


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
    assert shape(done.stdout).count("result") == 3, "the demo shows three results as tail tables"
    assert '"lead": {' not in done.stdout, "the full JSON record is for --json only"
    assert shape(readme_demo_output()) == shape(done.stdout), "README.md shows another output than make demo's"


def test_the_readme_shows_the_demos_lines_as_a_run_prints_them() -> None:
    shown = readme_demo_output()
    kinds = {kind_of(line) for line in shown.splitlines()}  # every line of a known kind
    assert {"broker", "metrics", "result", "bank", "lead", "producer", "summary"} <= kinds
