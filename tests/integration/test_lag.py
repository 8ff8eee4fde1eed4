"""``crm_scorer_consumer_lag`` against the Admin API while a backlog drains, on Apache Kafka.

The Admin API's lag of a partition is its log-end offset (``list_offsets`` latest; read_committed, as the scorer
consumes, so the last stable offset) minus the group's committed offset (``list_consumer_group_offsets``): what
``kafka-consumer-groups --describe`` prints. The backlog is produced before the scorer starts and nothing is
produced while it drains, so the log-end offsets stand still and each partition's Admin lag only falls, in steps,
one step per commit the scorer makes (every ``auto.commit.interval.ms``, set to 1 s here).

How a sample is bounded: read the Admin lag (``before``), wait ``SETTLE_S``, scrape the gauge, read the Admin lag
again (``after``). The gauge may not yet show a commit the broker acknowledged a moment ago (the worker hears of
it on its next turn of the loop, one batch later), and it must never show a commit that did not happen. So
``after - batch <= gauge <= before + batch`` for every partition of every sample: what the scorer consumed between
the two reads widens the window by exactly what it committed in between. And where a partition's ``before ==
after``, no commit moved it inside the window, the last one that did landed at least ``SETTLE_S`` before the
scrape, and the gauge must equal the Admin lag within one batch: those "settled" readings are the sharp test, and
the test wants several of them while the backlog is still there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import is_tansu
from tests.integration.faults.support import http_get, pairs, telemetry_url, valid_messages
from tests.integration.harness import Lanes, ScorerProcess, produce

pytestmark = pytest.mark.skipif(
    is_tansu(), reason="Tansu answers ListOffsets with the last batch's base offset + 1, so its Admin lag is wrong"
)

PARTITIONS = 3
BACKLOG = 60_000
BATCH = 250  # the scorer's consumer.batch_size in this test (--batch-size)
SETTLE_S = 0.5  # longer than a turn of the scorer's loop: 250 events take ~20 ms, ~150 ms on a busy 2-core host
SETTLED_READINGS = 5  # (sample, partition) pairs no commit moved inside the window, with a backlog left


@dataclass(frozen=True)
class Sample:
    at_s: float
    before: dict[int, int]  # partition -> Admin lag
    gauge: dict[int, int]  # partition -> crm_scorer_consumer_lag
    after: dict[int, int]

    def settled(self) -> dict[int, int]:
        """Partitions with a backlog that no commit moved between the two reads -> their Admin lag."""
        return {p: lag for p, lag in self.before.items() if lag > 0 and self.after[p] == lag}

    def describe(self) -> str:
        marks = {p: "=" if p in self.settled() else " " for p in range(PARTITIONS)}
        parts = [
            f"p{p}{marks[p]}{self.before.get(p)}/{self.gauge.get(p)}/{self.after.get(p)}" for p in range(PARTITIONS)
        ]
        return f"{self.at_s:5.1f}s " + "  ".join(parts)


def admin_lag(admin: AdminClient, lanes: Lanes) -> dict[int, int]:
    """Log-end offset minus committed offset per partition the group committed, from the Admin API."""
    tps = [TopicPartition(lanes.input, p) for p in range(PARTITIONS)]
    request = [ConsumerGroupTopicPartitions(lanes.group, tps)]
    listed = admin.list_consumer_group_offsets(request, request_timeout=10)[lanes.group].result()
    committed = {tp.partition: tp.offset for tp in listed.topic_partitions if tp.offset >= 0}
    ends = admin.list_offsets(
        {tp: OffsetSpec.latest() for tp in tps}, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=10
    )
    return {
        tp.partition: future.result().offset - committed[tp.partition]
        for tp, future in ends.items()
        if tp.partition in committed
    }


def gauge(url: str, topic: str) -> dict[int, int]:
    status, text = http_get(f"{url}/metrics")
    assert status == 200, f"/metrics answered {status}"
    return {
        int(s.labels["partition"]): int(s.value)
        for family in text_string_to_metric_families(text)
        if family.name == "crm_scorer_consumer_lag"
        for s in family.samples
        if s.labels.get("topic") == topic
    }


def sample_while_draining(admin: AdminClient, lanes: Lanes, url: str, scorer: ScorerProcess) -> list[Sample]:
    started = time.monotonic()
    samples: list[Sample] = []
    while True:
        assert scorer.process and scorer.process.poll() is None, f"scorer exited:\n{scorer.log[-3000:]}"
        assert time.monotonic() - started < 180, "the backlog did not drain in 180 s:\n" + "\n".join(
            s.describe() for s in samples
        )
        before = admin_lag(admin, lanes)
        time.sleep(SETTLE_S)
        seen = gauge(url, lanes.input)
        after = admin_lag(admin, lanes)
        if before:  # the group committed something: the gauge has something to agree with
            samples.append(Sample(time.monotonic() - started, before, seen, after))
        if len(after) == PARTITIONS and not any(after.values()):
            return samples


def disagreements(sample: Sample) -> list[str]:
    wrong = []
    for partition, before in sample.before.items():
        after, seen = sample.after[partition], sample.gauge.get(partition)
        if seen is None:
            wrong.append(f"p{partition}: committed {SETTLE_S} s before the scrape, yet no gauge")
        elif not after - BATCH <= seen <= before + BATCH:
            wrong.append(f"p{partition}: gauge {seen} outside [{after - BATCH}, {before + BATCH}]")
    return wrong


def summary(guarantee: str, samples: list[Sample]) -> tuple[str, int]:
    """The samples as a table (Admin lag before / gauge / Admin lag after per partition, ``=``: settled) and how
    many settled readings they hold."""
    settled = [(s.gauge.get(p), lag) for s in samples for p, lag in s.settled().items()]
    worst = max((abs(seen - lag) for seen, lag in settled if seen is not None), default=None)
    head = (
        f"{guarantee}: {len(samples)} samples, {len(settled)} settled readings, largest settled difference "
        f"{worst}; per partition: Admin lag before / gauge / Admin lag after ('=': settled)"
    )
    return "\n".join([head, *(s.describe() for s in samples)]), len(settled)


def drained_gauge(url: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while (seen := gauge(url, topic)) != dict.fromkeys(range(PARTITIONS), 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    return seen


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
@pytest.mark.make_test_guarantee("at_least_once")
def test_lag_gauge_agrees_with_the_admin_api_while_a_backlog_drains(
    kafka_bootstrap: str,
    make_topic: Callable[..., str],
    unique_group: Callable[[], str],
    tmp_path: Path,
    guarantee: str,
) -> None:
    lanes = Lanes(
        kafka_bootstrap,
        make_topic(PARTITIONS, "in"),
        make_topic(PARTITIONS, "out"),
        make_topic(1, "dlq"),
        unique_group(),
    )
    produce(kafka_bootstrap, lanes.input, pairs(valid_messages(BACKLOG, seed=61)))
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})

    # One commit a second, not every 200 ms: the settled readings need partitions no commit moved for SETTLE_S.
    env = {"CRM_SCORER_KAFKA__CONSUMER_EXTRA": '{"auto.commit.interval.ms": 1000}'}
    with ScorerProcess(lanes, tmp_path, "--batch-size", str(BATCH), "--guarantee", guarantee, env=env) as scorer:
        url = telemetry_url(scorer)
        samples = sample_while_draining(admin, lanes, url, scorer)
        final = drained_gauge(url, lanes.input)
        scorer.stop()

    table, settled = summary(guarantee, samples)
    print(f"\n{table}")
    wrong = {s.describe(): d for s in samples if (d := disagreements(s))}
    assert not wrong, f"the gauge disagreed with the Admin API beyond one batch: {wrong}\n{table}"
    assert settled >= SETTLED_READINGS, f"too few settled readings to judge the gauge by:\n{table}"
    assert final == dict.fromkeys(range(PARTITIONS), 0), f"drained, yet the gauge says {final}"
