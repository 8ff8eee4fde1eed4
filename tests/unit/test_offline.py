"""``crm-scorer score``: the streaming engine over JSONL; bad lines are reported by number and skipped."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from consumer.commands.cli import main
from consumer.commands.offline import result_line
from consumer.core.engine import ScoringEngine
from consumer.core.offers import OfferBook
from consumer.service import result_header
from consumer.settings import load_settings
from models.artifacts import load_models
from producer_tools.world import generate
from schemas import EventDecoder, ResultDecoder, SingleObjectEncoder, load_catalog
from schemas.json_view import to_json_view

CATALOG = load_catalog()


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


def test_the_output_is_the_json_view_of_the_streaming_bytes(tmp_path: Path) -> None:
    """Byte for byte: each output line is the JSON view of the result the streaming engine writes for the event."""
    events = generate(60, seed=23).events
    events.append(events[7] | {"event_id": "9b1e5c1a-0f7d-4a8e-b2c4-3d5e6f708192", "application_id": "app-twin"})
    source, target = tmp_path / "events.jsonl", tmp_path / "results.jsonl"
    source.write_text("".join(json.dumps(to_json_view(e), ensure_ascii=False) + "\n" for e in events))

    assert main(["score", "--in", str(source), "--out", str(target)]) == 0

    lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
    scored_at = dt.datetime.fromisoformat(json.loads(lines[0])["scored_at"])  # one batch: one scoring time
    settings = load_settings(None)
    streaming = ScoringEngine(
        load_models(settings.models),
        EventDecoder(CATALOG),
        result_header(settings, None),
        config_hash=settings.config_hash(),
        reasons=settings.models.reasons,
        clock=scored_at.timestamp,
        offers=OfferBook.of(settings.models),
        reason_codes=settings.models.reason_codes,
    )
    outcome = streaming.score_batch([SingleObjectEncoder(CATALOG.application_event_latest)(e) for e in events])
    assert len(outcome.scored) == len(events)
    assert lines == [result_line(ResultDecoder(CATALOG).decode(s.value)) for s in outcome.scored]


def test_the_offline_command_never_contacts_the_schema_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_SCORER_SCHEMA_REGISTRY__URL", "http://127.0.0.1:9")

    def no_registry(*args: object, **kwargs: object) -> None:
        raise AssertionError("the offline command reached for the Schema Registry")

    monkeypatch.setattr("schemas.registry.RegistrySchemaSource.from_url", no_registry)
    source, target = tmp_path / "events.jsonl", tmp_path / "results.jsonl"
    source.write_text(json.dumps(to_json_view(generate(3, seed=4).events[0])) + "\n")

    assert main(["score", "--in", str(source), "--out", str(target)]) == 0
    assert len(target.read_text().splitlines()) == 1


def test_a_line_the_stream_dead_letters_is_reported_and_skipped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = to_json_view(generate(2, seed=8).events[0])
    source, target = tmp_path / "events.jsonl", tmp_path / "results.jsonl"
    source.write_text(json.dumps(good | {"event_id": "not-a-uuid"}) + "\n" + json.dumps(good) + "\n")

    assert main(["score", "--in", str(source), "--out", str(target)]) == 0

    assert [json.loads(line)["event_id"] for line in target.read_text().splitlines()] == [good["event_id"]]
    err = capsys.readouterr().err
    assert "line 1: avro_decode_error: " in err and "scored 1 of 2 lines (1 invalid)" in err
