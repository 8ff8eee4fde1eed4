"""The KIP-848 consumer group protocol (``consumer.group_protocol=consumer``) on Apache Kafka: two scorer
processes share the input partitions while events flow, and every event is scored (nothing lost)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupType
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import is_tansu
from tests.integration.faults.producing import Feeder
from tests.integration.faults.support import (
    INPUT_PARTITIONS,
    Expected,
    committed_total,
    conservation,
    count_topic,
    http_get,
    pairs,
    read_outcomes,
    telemetry_url,
    valid_messages,
    wait_until,
)
from tests.integration.harness import Lanes, ScorerProcess

CONSUMER_PROTOCOL = {"CRM_SCORER_CONSUMER__GROUP_PROTOCOL": "consumer"}
pytestmark = pytest.mark.skipif(
    is_tansu(),
    reason="Tansu does not serve the KIP-848 consumer group protocol (a group.protocol=consumer member is never "
    "assigned): run the suite on Apache Kafka 4.x",
)


@pytest.fixture
def lanes(kafka_bootstrap: str, make_topic: Callable[..., str], unique_group: Callable[[], str]) -> Lanes:
    return Lanes(
        kafka_bootstrap, make_topic(INPUT_PARTITIONS, "in"), make_topic(3, "out"), make_topic(1, "dlq"), unique_group()
    )


def group_assignment(admin: AdminClient, group: str) -> tuple[ConsumerGroupType, list[int]]:
    """The group's type as the broker reports it, and each member's partition count (sorted)."""
    description = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    return description.type, sorted(len(m.assignment.topic_partitions) for m in description.members)


def results_published(url: str) -> float:
    """The scorer's ``crm_scorer_results_published_total`` (0 while its metrics do not answer)."""
    status, body = http_get(f"{url}/metrics")
    if status != 200:
        return 0.0
    families = text_string_to_metric_families(body)
    return sum(s.value for f in families for s in f.samples if s.name == "crm_scorer_results_published_total")


@pytest.mark.matrix  # 45 s: make test-faults (make test checks the protocol's settings in unit tests)
def test_two_scorers_on_the_consumer_protocol_share_the_partitions_and_lose_nothing(
    lanes: Lanes, tmp_path: Path
) -> None:
    started = time.monotonic()
    admin = AdminClient({"bootstrap.servers": lanes.bootstrap})
    messages = valid_messages(40_000, seed=848)  # 40 s at 1,000 events/s: the join and the leave happen under load
    with (
        ScorerProcess(lanes, tmp_path, env=CONSUMER_PROTOCOL) as first,
        Feeder(lanes.bootstrap, lanes.input, pairs(messages), rate=1000) as feeder,
    ):
        first.wait_for_log(f"worker 0 assigned {INPUT_PARTITIONS}")
        wait_until(lambda: count_topic(lanes.bootstrap, lanes.output) > 2000, 60, "2,000 results", first)
        with ScorerProcess(lanes, tmp_path, env=CONSUMER_PROTOCOL) as second:  # 1 -> 2 members
            url = telemetry_url(second)
            wait_until(lambda: group_assignment(admin, lanes.group)[1] == [3, 3], 30, "a 3 + 3 split", second)
            kind, _ = group_assignment(admin, lanes.group)
            wait_until(lambda: results_published(url) >= 500, 30, "the second scorer publishing", second)
            second.stop()  # 2 -> 1: its partitions go back to the first
        feeder.join()
        wait_until(lambda: committed_total(lanes) >= len(messages), 120, "every offset committed", first)
        first.stop()
    assert kind == ConsumerGroupType.CONSUMER, f"the broker runs the group as {kind}, not a KIP-848 group"
    assert first.log.count("assigned") >= 2, f"the first member never took the partitions back:\n{first.log}"
    outcomes = read_outcomes(lanes)
    row = conservation(
        "KIP-848 consumer protocol: 1 -> 2 -> 1 scorers under load",
        Expected(frozenset(m[2] for m in messages)),
        outcomes,
        time.monotonic() - started,
        "group.protocol=consumer",
    )
    assert row.lost == 0
