"""The secured Apache Kafka of the security suite: SASL_SSL with SCRAM-SHA-512 users, TLS from a throwaway CA, and
the StandardAuthorizer refusing whatever no ACL allows.

One broker for the whole session (its own, beside the session's plain one); ACLs are granted and revoked through
the Admin API, never by restarting it. Every test gets its own topics, group and therefore transactional ids.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from producer_tools.servers.apache_kafka import ApacheKafka
from producer_tools.servers.broker import kafka_unavailable_reason
from tests.integration.faults.support import format_table
from tests.integration.harness import Lanes
from tests.integration.security.support import ROWS, SecureLanes, create_topics

STARTED_IN: list[float] = []  # seconds the secured broker took to be ready, for the summary
COMMAND = "make test-security  # pytest -q tests/integration/security"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    terminalreporter.section("security suite: refusals on the secured broker, every produced event scored")
    terminalreporter.write_line(COMMAND)
    if STARTED_IN:
        terminalreporter.write_line(f"secured broker ready in {STARTED_IN[0]:.1f} s (SASL_SSL, SCRAM-SHA-512, ACLs)")
    terminalreporter.write_line("")
    for line in format_table(sorted(ROWS, key=lambda row: (row.scenario, row.guarantee))):
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    reason = kafka_unavailable_reason()
    if reason:
        pytest.skip(reason)
    from producer_tools.servers.kafka_security import KafkaSecurity

    started = time.monotonic()
    with ApacheKafka(security=KafkaSecurity(tmp_path_factory.mktemp("tls"))) as kafka:
        STARTED_IN.append(time.monotonic() - started)
        yield kafka


@pytest.fixture(scope="session")
def admin(secured_kafka: ApacheKafka) -> AdminClient:
    """An Admin client authenticated as the super-user (creates topics, grants and revokes ACLs)."""
    return AdminClient(secured_kafka.client_config())


@pytest.fixture
def secure_lanes(secured_kafka: ApacheKafka, admin: AdminClient, tmp_path: Path) -> SecureLanes:
    """Fresh topics (3 input partitions, 3 output, 1 dead-letter) and group on the secured broker, with no ACL."""
    tag = uuid.uuid4().hex[:10]
    lanes = Lanes(secured_kafka.bootstrap_servers, f"in-{tag}", f"out-{tag}", f"dlq-{tag}", f"group-{tag}")
    create_topics(admin, {lanes.input: 3, lanes.output: 3, lanes.dlq: 1})
    return SecureLanes(lanes, secured_kafka, admin, tmp_path)
