"""``crm-producer produce``, ``replay-dlq`` and ``tail`` against a real broker, through the CLI entry point."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from confluent_kafka import Producer

from producer_tools.commands import produce_cmd
from producer_tools.commands.cli import main
from producer_tools.publishing.publisher import event_encoders, event_messages, registry_for
from producer_tools.publishing.topics import count_messages, read_all
from producer_tools.servers.broker import free_port
from producer_tools.world import generate
from schemas import EventDecoder, SingleObjectEncoder, load_catalog
from schemas.dead_letter import DeadLetterInfo
from schemas.framing import framing_of

SUMMARY = re.compile(r"sent=(\d+) failed=(\d+) bad=(\d+) events/s=\d+")


def produce(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, int, int]:
    """Run ``crm-producer produce``; its (sent, failed, bad)."""
    assert main(["produce", *args]) == 0
    found = SUMMARY.search(capsys.readouterr().out)
    assert found, "no summary line"
    sent, failed, bad = (int(g) for g in found.groups())
    return sent, failed, bad


def send(bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value, headers in messages:
        pairs: list[tuple[str, str | bytes | None]] = list(headers)
        producer.produce(topic, value=value, key=key, headers=pairs)
    assert producer.flush(10) == 0


def test_produce_with_poison_sends_exactly_the_planned_messages(
    kafka_bootstrap: str, make_topic: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    topic = make_topic(3)
    args = ["--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--count", "2000", "--seed", "5"]
    sent, failed, bad = produce(capsys, *args, "--bad-ratio", "0.05")
    assert (failed, sent + bad) == (0, 2000)
    assert 50 <= bad <= 150
    assert count_messages(kafka_bootstrap, topic) == sent + bad

    # The plan is pure and seeded: what arrived is exactly what event_messages builds for the same arguments.
    planned = list(event_messages(generate(2000, 5).events, event_encoders("v1"), bad_ratio=0.05, seed=5))
    arrived = read_all(kafka_bootstrap, topic)
    assert Counter((m.key, m.value or b"") for m in arrived) == Counter((p.key, p.value or b"") for p in planned)
    decoder = EventDecoder()
    valid = {p.value: p.event_id for p in planned if p.poison is None}
    sample = [m for m in arrived if m.value in valid][:200]
    assert [str(decoder.decode(m.value)["event_id"]) for m in sample] == [valid[m.value] for m in sample]


def test_mixed_schema_versions_both_decode(
    kafka_bootstrap: str, make_topic: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    topic = make_topic()
    produce(
        capsys, "--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--count", "40", "--schema-version", "mixed"
    )
    catalog, decoder = load_catalog(), EventDecoder()
    messages = read_all(kafka_bootstrap, topic)
    writers = Counter(catalog.by_fingerprint(m.value[2:10]).label for m in messages if m.value)  # type: ignore[union-attr]
    assert writers == {"application_event.v1": 20, "application_event.v2": 20}
    decoded = [decoder.decode(m.value) for m in messages]
    assert sum(e["channel"] is not None for e in decoded) > 0  # v2 writers carry the new fields
    assert all(e["application_id"].encode() == m.key for e, m in zip(decoded, messages, strict=True))


def test_confluent_framing_round_trips_through_a_mock_registry(
    kafka_bootstrap: str, make_topic: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    topic, url = make_topic(), f"mock://producer-tools-{uuid.uuid4().hex}"
    args = ["--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--count", "30", "--schema-version", "mixed"]
    sent, _, _ = produce(capsys, *args, "--framing", "confluent", "--schema-registry-url", url, "--live-timestamps")
    messages = read_all(kafka_bootstrap, topic)
    assert sent == len(messages) == 30
    assert {framing_of(m.value) for m in messages} == {"confluent"}
    assert len({m.value[:5] for m in messages if m.value}) == 2  # one registry id per writer version
    decoded = [EventDecoder(registry=registry_for(url)).decode(m.value) for m in messages]
    now = dt.datetime.now(dt.UTC)
    assert all(now - e["occurred_at"] < dt.timedelta(minutes=5) for e in decoded)


def dead_letter(reason: str, offset: int) -> list[tuple[str, bytes]]:
    info = DeadLetterInfo(reason, f"{reason} at {offset}", None, "crm.applications", 0, offset, dt.datetime.now(dt.UTC))
    return info.headers()


def test_replay_dlq_re_produces_one_reason_with_original_keys(
    kafka_bootstrap: str, make_topic: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    dlq, target = make_topic(prefix="replay-dlq"), make_topic(prefix="replay-target")
    letters = [
        (b"app-1", b"\xc3\x01truncated", dead_letter("avro_decode_error", 1)),
        (b"app-2", b"\x00\x00\x00\x00\x07body", dead_letter("missing_id", 2)),
        (None, b"\xc3\x01cut", dead_letter("avro_decode_error", 3)),
    ]
    send(kafka_bootstrap, dlq, letters)
    common = ["replay-dlq", "--bootstrap-servers", kafka_bootstrap, "--from", dlq, "--to", target]

    assert main([*common, "--reason", "avro_decode_error", "--dry-run"]) == 0
    assert "would replay reason=avro_decode_error count=2" in capsys.readouterr().out
    assert main([*common, "--reason", "avro_decode_error"]) == 0
    out = capsys.readouterr().out
    assert "replayed reason=avro_decode_error count=2" in out
    assert "skipped reason=missing_id count=1" in out

    replayed = read_all(kafka_bootstrap, target)
    assert sorted((m.key or b"", m.value) for m in replayed) == [
        (b"", b"\xc3\x01cut"),
        (b"app-1", b"\xc3\x01truncated"),
    ]
    assert all(m.headers == () for m in replayed)  # the dlq.* headers stay behind


def score_result(i: int, best_offer: str | None) -> dict[str, Any]:
    now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    return {
        "event_id": str(uuid.uuid4()),
        "application_id": f"app-{i}",
        "lead_id": f"lead-{i}",
        "application_hash": f"{i:016x}",
        "event_time": now,
        "scored_at": now + dt.timedelta(milliseconds=40),
        "lead": {"score": 100 * i, "probability": i / 10, "model_version": "lead-1"},
        "banks": [
            {
                "bank": "bank_a",
                "probability": 0.3,
                "approved": False,
                "model_version": "a-1",
                "reasons": [{"feature": "income", "contribution": -0.61, "code": "INCOME_LOW", "statement": {}}],
            },
            {"bank": "bank_c", "probability": 0.8, "approved": best_offer == "bank_c", "model_version": "c-1"},
        ],
        "best_offer": best_offer,
        "offers": []
        if best_offer is None
        else [
            {
                "bank": "bank_c",
                "product": "express",
                "approval_probability": 0.8,
                "annual_rate": 0.299,
                "monthly_payment": 7697.6,
                "rank": 1,
            }
        ],
        "reasons": [{"feature": "income", "contribution": 0.42}],
        "config_hash": "cfg",
    }


def test_tail_prints_score_results_and_dead_letters(
    kafka_bootstrap: str, make_topic: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    scores, dlq = make_topic(prefix="tail-scores"), make_topic(prefix="tail-dlq")
    encode = SingleObjectEncoder(load_catalog().score_result)
    records = [score_result(i, "bank_c" if i % 2 else None) for i in range(5)]
    send(kafka_bootstrap, scores, [(r["application_id"].encode(), encode(r), []) for r in records])
    send(kafka_bootstrap, dlq, [(b"app-9", b"junk", dead_letter("unknown_framing", 9))])
    common = ["tail", "--bootstrap-servers", kafka_bootstrap, "--from-beginning"]

    assert main([*common, "--topic", scores, "--timeout", "1.5"]) == 0  # stops on silence
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["application_id"] for line in lines] == [r["application_id"] for r in records]
    assert lines[0]["event_time"] == "2026-03-02T09:00:00.000Z"

    assert (
        main([*common, "--topic", scores, "--filter", "best_offer=bank_c", "--filter", "lead.score>=300", "--max", "1"])
        == 0
    )
    assert [json.loads(line)["application_id"] for line in capsys.readouterr().out.splitlines()] == ["app-3"]

    assert main([*common, "--topic", scores, "--format", "table", "--max", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 7  # per result: a header, one line per bank, the offers when there are some
    assert table[0].endswith("best_offer=-  lead=0") and table[3].endswith("best_offer=bank_c  lead=100")
    assert "bank_a 0.30 declined  INCOME_LOW(-0.61)" in table[1] and "bank_c 0.80 approved  -" in table[5]
    assert "1. bank_c express 7,697.60/month at 29.9%" in table[6]

    assert main([*common, "--topic", dlq, "--max", "1"]) == 0
    letter = json.loads(capsys.readouterr().out)["dead_letter"]
    assert (letter["reason"], letter["source"], letter["key"]) == ("unknown_framing", "crm.applications[0]@9", "app-9")


def test_produce_exits_non_zero_when_deliveries_fail(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the check that a broker answers (which turns an unreachable one into one line and exit 2, see
    # tests/unit/test_first_mistakes.py), every delivery fails and the summary says so.
    monkeypatch.setattr(produce_cmd, "require_broker", lambda *_: None)
    nobody = f"127.0.0.1:{free_port()}"
    args = ["produce", "--bootstrap-servers", nobody, "--topic", "t", "--count", "5", "--delivery-timeout", "1"]
    assert main(args) == 1
    assert "sent=0 failed=5 bad=0" in capsys.readouterr().out
