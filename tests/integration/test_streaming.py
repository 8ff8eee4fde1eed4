"""The streaming scorer on a real broker: every event scored or dead-lettered, offsets committed right."""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from producer_tools.world import generate
from schemas.dead_letter import DeadLetterInfo
from tests.integration.harness import (
    Lanes,
    ScorerProcess,
    dead_letters,
    encoded,
    produce,
    scored_event_ids,
)


@pytest.fixture
def lanes(kafka_bootstrap: str, make_topic: Callable[..., str], unique_group: Callable[[], str]) -> Lanes:
    return Lanes(kafka_bootstrap, make_topic(6, "in"), make_topic(3, "out"), make_topic(1, "dlq"), unique_group())


def test_every_event_is_scored_once_with_v1_and_v2_mixed(lanes: Lanes, tmp_path: Path) -> None:
    events = generate(3000, seed=101, schema_version="v2").events
    produce(lanes.bootstrap, lanes.input, encoded(events, mixed_versions=True))
    with ScorerProcess(lanes, tmp_path) as scorer:
        scorer.wait_for(lanes.output, len(events))
        scorer.stop()
    ids = scored_event_ids(lanes.bootstrap, lanes.output)
    assert sorted(ids) == sorted(e["event_id"] for e in events)
    assert dead_letters(lanes.bootstrap, lanes.dlq) == []


def test_malformed_messages_land_in_the_dlq_with_reason_and_original_bytes(lanes: Lanes, tmp_path: Path) -> None:
    events = generate(20, seed=102).events
    good = encoded(events)
    bad = [(b"k-garbage", b"\x42not avro at all"), (b"k-empty", b""), (b"k-cut", good[0][1][:-9]), (None, None)]
    produce(lanes.bootstrap, lanes.input, good[:10] + bad + good[10:])
    with ScorerProcess(lanes, tmp_path) as scorer:
        scorer.wait_for(lanes.dlq, len(bad))
        scorer.wait_for(lanes.output, len(good))
        scorer.stop()
    letters = dead_letters(lanes.bootstrap, lanes.dlq)
    by_key = {m.key: (m.value, DeadLetterInfo.from_headers(m.headers)) for m in letters}
    assert {k: info.reason for k, (_, info) in by_key.items()} == {
        b"k-garbage": "unknown_framing",
        b"k-empty": "empty_value",
        b"k-cut": "avro_decode_error",
        None: "empty_value",
    }
    assert by_key[b"k-garbage"][0] == b"\x42not avro at all"
    assert by_key[b"k-cut"][0] == good[0][1][:-9]
    info = by_key[b"k-cut"][1]
    assert info.topic == lanes.input and info.offset >= 0 and "ApplicationEvent" in info.error
    assert sorted(scored_event_ids(lanes.bootstrap, lanes.output)) == sorted(e["event_id"] for e in events)


def test_two_workers_share_the_partitions(lanes: Lanes, tmp_path: Path) -> None:
    events = generate(4000, seed=103).events
    produce(lanes.bootstrap, lanes.input, encoded(events))
    with ScorerProcess(lanes, tmp_path, "--workers", "2") as scorer:
        scorer.wait_for(lanes.output, len(events))
        scorer.wait_for_log("worker 1 assigned")
        scorer.wait_for_log("worker 0 assigned")
        scorer.stop()
    counts = collections.Counter(scored_event_ids(lanes.bootstrap, lanes.output))
    assert set(counts) == {e["event_id"] for e in events}


def test_a_restarted_scorer_resumes_from_committed_offsets(lanes: Lanes, tmp_path: Path) -> None:
    first, second = generate(1500, seed=104).events, generate(1500, seed=105).events
    produce(lanes.bootstrap, lanes.input, encoded(first))
    with ScorerProcess(lanes, tmp_path) as scorer:
        scorer.wait_for(lanes.output, len(first))
        scorer.stop()
    produce(lanes.bootstrap, lanes.input, encoded(second))
    with ScorerProcess(lanes, tmp_path) as scorer:
        scorer.wait_for(lanes.output, len(first) + len(second))
        scorer.stop()
    ids = scored_event_ids(lanes.bootstrap, lanes.output)
    assert sorted(ids) == sorted(e["event_id"] for e in first + second)  # no gap, no duplicate


def test_sigterm_mid_stream_loses_nothing(lanes: Lanes, tmp_path: Path) -> None:
    events = generate(30_000, seed=106).events
    produce(lanes.bootstrap, lanes.input, encoded(events))
    with ScorerProcess(lanes, tmp_path) as scorer:
        scorer.wait_for(lanes.output, 2000)
        took = scorer.stop()
    assert took < 10
    partial = scored_event_ids(lanes.bootstrap, lanes.output)
    assert len(partial) < len(events), "the stop came too late to test anything"
    with ScorerProcess(lanes, tmp_path) as scorer:
        scorer.wait_for(lanes.output, len(events))
        scorer.stop()
    counts = collections.Counter(scored_event_ids(lanes.bootstrap, lanes.output))
    assert set(counts) == {e["event_id"] for e in events}
    assert sum(counts.values()) - len(counts) == 0  # a graceful stop commits what it published: no re-scoring


def test_exactly_once_commits_results_and_offsets_together(lanes: Lanes, tmp_path: Path) -> None:
    events = generate(2000, seed=107).events
    produce(lanes.bootstrap, lanes.input, encoded(events))
    with ScorerProcess(lanes, tmp_path, "--guarantee", "exactly_once") as scorer:
        scorer.wait_for(lanes.output, len(events))
        scorer.stop()
    assert sorted(scored_event_ids(lanes.bootstrap, lanes.output)) == sorted(e["event_id"] for e in events)
    consumer = Consumer({"bootstrap.servers": lanes.bootstrap, "group.id": lanes.group})
    committed = consumer.committed([TopicPartition(lanes.input, p) for p in range(6)], timeout=10)
    consumer.close()
    assert sum(tp.offset for tp in committed if tp.offset >= 0) == len(events)
