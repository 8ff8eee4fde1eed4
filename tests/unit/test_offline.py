"""``crm-scorer score``: the streaming engine over JSONL; bad lines are reported by number and skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consumer.commands.cli import main
from producer_tools.world import generate
from schemas.json_view import to_json_view


def test_scores_every_valid_line_and_reports_the_rest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    events = generate(40, seed=21).events
    lines = [json.dumps(to_json_view(e), ensure_ascii=False) for e in events]
    broken = json.loads(lines[1])
    broken["applicant"]["monthprofit"] = "a lot"
    lines[1] = json.dumps(broken)
    lines.insert(5, "{not json")
    no_id = json.loads(lines[9])
    no_id["application_id"] = ""
    lines[9] = json.dumps(no_id)
    source, target = tmp_path / "events.jsonl", tmp_path / "results.jsonl"
    source.write_text("\n".join(lines) + "\n")

    assert main(["score", "--in", str(source), "--out", str(target)]) == 0

    results = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(results) == 38
    assert {r["event_id"] for r in results} == {e["event_id"] for e in events} - {
        events[1]["event_id"],
        events[8]["event_id"],
    }
    err = capsys.readouterr().err
    assert "line 2: invalid_field: applicant.monthprofit: does not match ApplicationEvent" in err
    assert "line 6: invalid_field: $: not JSON" in err
    assert "line 10: missing_id: application_id: is missing or empty" in err
    assert "scored 38 of 41 lines (3 invalid)" in err
    first = results[0]
    assert set(first) >= {"event_id", "application_hash", "lead", "banks", "best_offer", "reasons"}
    assert first["event_time"].endswith("Z")
