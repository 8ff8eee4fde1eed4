"""The fault suite's table: every scenario adds a row; the terminal summary prints them all at the end (but the
chaos runs', which ``test_chaos`` prints in its own table)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient

from producer_tools.publishing.topics import ensure_topics
from producer_tools.servers.apache_kafka import ApacheKafka
from tests.integration.conftest import broker_label
from tests.integration.faults import support
from tests.integration.faults.cluster import CHAOS_SCENARIO, OUTPUT_PARTITIONS, probe
from tests.integration.faults.support import INPUT_PARTITIONS, TABLE, format_table
from tests.integration.harness import Lanes

support.BROKER_LABEL = broker_label()
COMMAND = 'make test-faults  # pytest -q -m "faults or matrix" -s tests/integration'


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: long-running (minutes); deselect with -m 'not soak'")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``@pytest.mark.make_test_guarantee(g)``: of a scenario run per guarantee, ``make test`` runs only ``g``;
    the other run is marked ``matrix`` and belongs to the full matrix (``make test-faults``). Scenarios where
    the two guarantees take different paths through the code keep both in ``make test`` (no marker)."""
    for item in items:
        marker = item.get_closest_marker("make_test_guarantee")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None or "guarantee" not in callspec.params:
            continue
        if callspec.params["guarantee"] != marker.args[0]:
            item.add_marker(pytest.mark.matrix)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    scenarios = [row for row in TABLE if not row.scenario.startswith(CHAOS_SCENARIO)]
    if not scenarios:
        return
    terminalreporter.section("fault suite: every produced event scored or dead-lettered")
    terminalreporter.write_line(COMMAND)
    terminalreporter.write_line("")
    for line in format_table(sorted(scenarios, key=lambda row: row.scenario.split(" ")[0])):
        terminalreporter.write_line(line)


@pytest.fixture
def lanes(kafka_bootstrap: str, make_topic: Callable[..., str], unique_group: Callable[[], str]) -> Lanes:
    """Fresh topics for one scenario: 6 input partitions (room for a rebalance), 3 output, 1 dead-letter."""
    return Lanes(
        kafka_bootstrap, make_topic(INPUT_PARTITIONS, "in"), make_topic(3, "out"), make_topic(1, "dlq"), unique_group()
    )


@pytest.fixture
def cluster_lanes(kafka_cluster: ApacheKafka, unique_group: Callable[[], str]) -> Iterator[Lanes]:
    """Like ``lanes``, on the three-broker cluster: every topic has three replicas (min.insync.replicas 2).
    Deleted after the scenario, so the many chaos runs leave no partitions for a restarted broker to recover."""
    source, sink, dlq = (f"cluster-{lane}-{uuid.uuid4().hex[:12]}" for lane in ("in", "out", "dlq"))
    ensure_topics(kafka_cluster.bootstrap_servers, {source: INPUT_PARTITIONS, sink: OUTPUT_PARTITIONS, dlq: 1})
    yield Lanes(kafka_cluster.bootstrap_servers, source, sink, dlq, unique_group())
    admin = AdminClient(probe(kafka_cluster.bootstrap_servers))
    for deleted in admin.delete_topics([source, sink, dlq], operation_timeout=30).values():
        deleted.result(timeout=60)


@pytest.fixture(params=["at_least_once", "exactly_once"])
def guarantee(request: pytest.FixtureRequest) -> str:
    """Each scenario that takes it runs once per delivery guarantee."""
    return str(request.param)
