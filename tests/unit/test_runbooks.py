"""Every alert rule has a runbook: its ``runbook_url`` names a section of docs/runbook.md, and every section is used."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = "docs/runbook.md"


def alert_rules() -> list[tuple[Path, dict[str, Any]]]:
    """(file, rule) for every alerting rule of every Prometheus rule file under configs/."""
    rules = []
    for path in sorted((ROOT / "configs").rglob("*.y*ml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or not isinstance(document.get("groups"), list):
            continue
        for group in document["groups"]:
            rules += [(path, rule) for rule in group.get("rules", []) if "alert" in rule]
    return rules


def heading_anchors(markdown: Path) -> list[str]:
    """The anchors a Markdown renderer gives the headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return [re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings]


def test_the_rule_files_hold_the_scorers_and_the_monitors_alerts() -> None:
    names = {rule["alert"] for _, rule in alert_rules()}
    assert {"ScorerDown", "DeadLetterRateHigh", "ConceptDriftDetected", "JoinCoverageLow"} <= names


def test_every_rule_links_to_a_runbook_section() -> None:
    anchors = set(heading_anchors(ROOT / RUNBOOK))
    rules = alert_rules()
    assert len(rules) >= 10  # the scorer's and the monitor's rule files were found
    for path, rule in rules:
        url = rule.get("annotations", {}).get("runbook_url", "")
        document, _, anchor = url.partition("#")
        assert document == RUNBOOK, f"{path.name}: {rule['alert']} has runbook_url {url!r}, not into {RUNBOOK}"
        assert anchor in anchors, f"{path.name}: {rule['alert']} points to #{anchor}, no heading of {RUNBOOK}"


def test_every_runbook_section_belongs_to_a_rule() -> None:
    used = {rule["annotations"]["runbook_url"].partition("#")[2] for _, rule in alert_rules()}
    sections = heading_anchors(ROOT / RUNBOOK)[1:]  # the first heading is the page's title
    assert len(sections) == len(set(sections)), "two runbook sections share an anchor"
    assert set(sections) == used, f"sections no rule uses: {sorted(set(sections) - used)}"


def test_every_section_says_what_it_means_what_to_look_at_and_what_to_do() -> None:
    text = (ROOT / RUNBOOK).read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    assert len(sections) >= 10
    for section in sections:
        name = section.splitlines()[0]
        for part in ("**Means.**", "**Look at.**", "**Do.**"):
            assert part in section, f"{RUNBOOK}, {name}: no {part}"
