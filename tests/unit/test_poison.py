"""Every poison kind gives the outcome it declares when the scorer's decoder and checks read it."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import Counter
from typing import Any

import pytest

from consumer.core.validation import check_event
from models.features import build_features
from producer_tools.publishing.poison import CATALOGUE, DEAD_LETTER_REASONS, SCORED, PoisonKind, poison_kinds
from producer_tools.publishing.publisher import PublishSummary, event_encoders, event_messages, registry_for
from producer_tools.world import generate
from schemas import EventDecoder, load_catalog
from schemas.errors import InvalidEventError
from schemas.framing import framing_of

EVENTS = generate(20, seed=11, schema_version="v2").events
KINDS = list(CATALOGUE.values())


def outcome_of(value: bytes, decoder: EventDecoder) -> tuple[str, dict[str, Any] | None]:
    """What the scorer does with ``value``: its dead-letter reason, or ``scored`` and the decoded event."""
    try:
        event = decoder.decode(value)
        check_event(event)
    except InvalidEventError as exc:
        return exc.reason, None
    return SCORED, event


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_single_object_poison_gets_its_declared_outcome(kind: PoisonKind, version: str) -> None:
    encode = event_encoders(version)[0]
    assert len(EVENTS) >= 5
    for i, event in enumerate(EVENTS[:5]):
        message = kind.make(event, encode, random.Random(i))
        outcome, decoded = outcome_of(message.value, EventDecoder())
        assert outcome == kind.outcome, f"{kind.name} #{i}"
        if decoded is not None:
            anomalies = build_features([decoded]).anomalies
            assert set(kind.anomalies) <= set(anomalies), f"{kind.name}: {anomalies}"
            assert message.event_id == str(event["event_id"])


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_confluent_poison_gets_its_declared_outcome_with_the_registry(kind: PoisonKind) -> None:
    registry = registry_for(f"mock://poison-{uuid.uuid4().hex}")
    encode = event_encoders("v2", "confluent", topic="crm.applications", registry=registry)[0]
    message = kind.make(EVENTS[0], encode, random.Random(3))
    assert outcome_of(message.value, EventDecoder(registry=registry))[0] == kind.outcome


def test_builders_are_deterministic_and_leave_the_event_alone() -> None:
    encode = event_encoders("v1")[0]
    before = repr(EVENTS[1])
    for kind in KINDS:
        first = kind.make(EVENTS[1], encode, random.Random(5))
        assert first == kind.make(EVENTS[1], encode, random.Random(5)), kind.name
    assert repr(EVENTS[1]) == before


def test_keys_follow_the_poison() -> None:
    encode = event_encoders("v1")[0]
    event = EVENTS[2]
    key = event["application_id"].encode()
    assert CATALOGUE["null_key"].make(event, encode, random.Random(0)).key is None
    assert CATALOGUE["missing_ids"].make(event, encode, random.Random(0)).key == b""
    assert CATALOGUE["unknown_category"].make(event, encode, random.Random(0)).key == key
    assert CATALOGUE["unsafe_id"].make(event, encode, random.Random(0)).key != key


def test_catalogue_covers_every_dead_letter_reason_of_the_decoder_and_checks() -> None:
    expected = {"unknown_framing", "empty_value", "unknown_schema", "avro_decode_error", "missing_id", "invalid_field"}
    assert expected == DEAD_LETTER_REASONS
    assert {k.outcome for k in KINDS} == expected | {SCORED}


def test_poison_kinds_selects_by_name_and_refuses_unknown_names() -> None:
    assert [k.name for k in poison_kinds("empty_value, null_key")] == ["empty_value", "null_key"]
    assert poison_kinds(None) == tuple(KINDS)
    with pytest.raises(KeyError, match="nonsense"):
        poison_kinds("empty_value,nonsense")


def test_event_messages_without_poison_are_the_events_keyed_by_application_id() -> None:
    messages = list(event_messages(EVENTS, event_encoders("v1")))
    assert [m.key for m in messages] == [e["application_id"].encode() for e in EVENTS]
    assert [m.event_id for m in messages] == [str(e["event_id"]) for e in EVENTS]
    assert all(m.poison is None for m in messages)
    decoded = [EventDecoder().decode(m.value) for m in messages]
    assert [d["occurred_at"] for d in decoded] == [e["occurred_at"] for e in EVENTS]


def test_mixed_writers_alternate_v1_and_v2() -> None:
    catalog = load_catalog()
    messages = list(event_messages(EVENTS[:4], event_encoders("mixed")))
    fingerprints = [m.value[2:10] for m in messages if m.value is not None]
    v1, v2 = catalog.fingerprint_of("application_event.v1"), catalog.fingerprint_of("application_event.v2")
    assert fingerprints == [v1, v2, v1, v2]
    assert {framing_of(m.value) for m in messages} == {"single-object"}


def test_bad_ratio_replaces_that_share_of_events_with_seeded_poison() -> None:
    events = generate(2000, seed=2).events
    encoders = event_encoders("v1")
    messages = list(event_messages(events, encoders, bad_ratio=0.1, seed=9))
    again = list(event_messages(events, encoders, bad_ratio=0.1, seed=9))
    poison = Counter(m.poison for m in messages if m.poison)
    assert len(messages) == 2000
    assert 150 <= poison.total() <= 250
    assert len(poison) == len(KINDS)  # every kind drawn at least once in ~200 draws of 16 kinds
    assert messages == again


def test_bad_ratio_one_with_chosen_kinds() -> None:
    kinds = poison_kinds("empty_value,null_key")
    messages = list(event_messages(EVENTS, event_encoders("v1"), bad_ratio=1.0, kinds=kinds))
    assert {m.poison for m in messages} == {"empty_value", "null_key"}
    assert all((m.event_id is None) == (m.poison == "empty_value") for m in messages)


def test_live_timestamps_stamp_occurred_at_except_where_the_poison_sets_it() -> None:
    now = dt.datetime(2031, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)
    encoders = event_encoders("v1")
    messages = list(event_messages(EVENTS[:3], encoders, clock=lambda: now))
    assert {EventDecoder().decode(m.value)["occurred_at"] for m in messages} == {now}
    ancient = poison_kinds("ancient_event_time")
    poisoned = list(event_messages(EVENTS[:3], encoders, bad_ratio=1.0, kinds=ancient, clock=lambda: now))
    assert {EventDecoder().decode(m.value)["occurred_at"].year for m in poisoned} == {1971}


def test_event_messages_refuse_a_ratio_outside_zero_to_one() -> None:
    with pytest.raises(ValueError, match="bad_ratio"):
        list(event_messages(EVENTS, event_encoders("v1"), bad_ratio=1.5))


def test_summary_expected_outcomes_and_line() -> None:
    summary = PublishSummary(sent=90, failed=1, bad=9, seconds=2.0)
    summary.poison.update({"empty_value": 2, "null_key": 3, "unsafe_id": 4})
    assert summary.expected_outcomes() == Counter({"scored": 93, "empty_value": 2, "invalid_field": 4})
    assert summary.line() == "sent=90 failed=1 bad=9 events/s=50"
