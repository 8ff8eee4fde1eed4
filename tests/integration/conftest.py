"""Shared broker fixtures for the integration tests.

One broker per session: ``KAFKA_BOOTSTRAP_SERVERS`` when set, else a local Apache Kafka node (``CRM_BROKER=tansu``
runs the suite on Tansu instead; without java or mvn the suite says so in one line and falls back to Tansu, unless
``CRM_BROKER=kafka`` demands Apache Kafka, as CI does). Every test gets its own topics and consumer groups
(uuid-suffixed names), so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from producer_tools.publishing.topics import ensure_topics
from producer_tools.servers.apache_kafka import ApacheKafka
from producer_tools.servers.apicurio import APICURIO_VERSION, ApicurioRegistry, registry_unavailable_reason
from producer_tools.servers.broker import (
    BOOTSTRAP_ENV,
    BROKER_ENV,
    LocalBroker,
    TansuBroker,
    kafka_unavailable_reason,
    resolve_kind,
)

_HERE = Path(__file__).parent
# CRM_BROKER=container: the same suites on Apache Kafka in a container (testcontainers; needs a Docker engine,
# so it has not run on the machines without one). testcontainers' KafkaContainer drives Confluent's image;
# Confluent Platform 8.1 ships Apache Kafka 4.1. KAFKA_TEST_IMAGE pins another.
CONTAINER = "container"
_TESTCONTAINERS_IMAGE = os.environ.get("KAFKA_TEST_IMAGE", "confluentinc/cp-kafka:8.1.0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items, so mark only the ones under this directory.
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.integration)
        if "kafka_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)  # three JVMs: make test-faults runs these, make test does not


def _external_bootstrap() -> str | None:
    return os.environ.get(BOOTSTRAP_ENV, "").strip() or None


def session_broker_kind() -> str:
    """``kafka``, ``tansu`` or ``container``: what the session's broker is (see the module docstring)."""
    requested = os.environ.get(BROKER_ENV, "").strip() or None
    if requested == CONTAINER:
        return CONTAINER
    kind = resolve_kind(requested, "kafka")
    if kind == "kafka" and requested is None and kafka_unavailable_reason():
        return "tansu"
    return kind


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [_broker_header(), _registry_header()]


def _broker_header() -> str:
    external = _external_bootstrap()
    if external:
        return f"broker: external cluster at {external} ({BOOTSTRAP_ENV})"
    if session_broker_kind() == CONTAINER:
        return f"broker: Apache Kafka in a container ({_TESTCONTAINERS_IMAGE}, testcontainers)"
    if session_broker_kind() == "kafka":
        return f"broker: Apache Kafka {ApacheKafka.version} (local, KRaft, one node; three for cluster faults)"
    reason = kafka_unavailable_reason()
    fallback = f"; {reason}, so the suite falls back to Tansu" if reason else ""
    return f"broker: Tansu {TansuBroker.version} (local, in memory){fallback}"


def _registry_header() -> str:
    reason = registry_unavailable_reason()
    if reason is None:
        return f"schema registry: Apicurio Registry {APICURIO_VERSION} (local, ccompat API)"
    strict = " (CRM_REGISTRY=apicurio: its tests fail)" if _registry_required() else " (its tests are skipped)"
    return f"schema registry: {reason}{strict}"


def _registry_required() -> bool:
    """CI sets CRM_REGISTRY=apicurio: the real-registry tests must run there, never be skipped."""
    return os.environ.get("CRM_REGISTRY", "").strip() == "apicurio"


def require_registry() -> None:
    """Skip the test when Apicurio Registry cannot start here (fail instead under CRM_REGISTRY=apicurio)."""
    reason = registry_unavailable_reason()
    if reason is not None:
        if _registry_required():
            pytest.fail(f"CRM_REGISTRY=apicurio, but {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def _session_registry() -> Iterator[ApicurioRegistry]:
    require_registry()
    with ApicurioRegistry() as registry:
        print(f"\nApicurio Registry {APICURIO_VERSION} answered after {registry.start_seconds:.1f} s")
        yield registry


@pytest.fixture
def apicurio(_session_registry: ApicurioRegistry) -> ApicurioRegistry:
    """The session's Apicurio Registry, running (a fault scenario that killed it is undone here)."""
    if not _session_registry.is_running():
        _session_registry.start()
    return _session_registry


def broker_label() -> str:
    """The session's broker as the fault table names it."""
    if _external_bootstrap():
        return "external"
    if session_broker_kind() == CONTAINER:
        return f"container {_TESTCONTAINERS_IMAGE}"
    return f"Apache Kafka {ApacheKafka.version}" if session_broker_kind() == "kafka" else "Tansu"


def is_tansu() -> bool:
    """True when the session runs on Tansu, whose known quirks some tests must allow for."""
    return _external_bootstrap() is None and session_broker_kind() == "tansu"


@pytest.fixture(scope="session")
def _session_local_broker() -> Iterator[LocalBroker]:
    broker: LocalBroker = ApacheKafka() if session_broker_kind() == "kafka" else TansuBroker()
    with broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """Bootstrap servers of the session's broker: the external cluster if configured, else the local one."""
    external = _external_bootstrap()
    if external:
        return external
    if session_broker_kind() == CONTAINER:
        return str(request.getfixturevalue("testcontainers_kafka"))
    broker: LocalBroker = request.getfixturevalue("_session_local_broker")
    return broker.bootstrap_servers


@pytest.fixture(scope="session")
def local_broker(request: pytest.FixtureRequest) -> LocalBroker:
    """The session's local broker itself, for tests that pause it. Skipped against an external cluster."""
    if _external_bootstrap():
        pytest.skip(f"needs the local broker (pause/resume); {BOOTSTRAP_ENV} points at an external cluster")
    if session_broker_kind() == CONTAINER:
        pytest.skip("needs the local broker (pause/resume); the session runs on a container")
    broker: LocalBroker = request.getfixturevalue("_session_local_broker")
    return broker


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[ApacheKafka]:
    """A three-broker Apache Kafka cluster (replication factor 3, min.insync.replicas 2), for broker faults."""
    reason = kafka_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with ApacheKafka(nodes=3) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def tansu_broker() -> Iterator[TansuBroker]:
    """The embedded Tansu broker of ``make demo``, for its smoke tests."""
    with TansuBroker() as broker:
        yield broker


@pytest.fixture
def make_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Factory: ``make_topic(partitions=1, prefix=None)`` creates a uniquely named topic and returns its name."""
    default_prefix = request.node.name.split("[")[0].removeprefix("test_").replace("_", "-")

    def make(partitions: int = 1, prefix: str | None = None) -> str:
        name = f"{prefix or default_prefix}-{uuid.uuid4().hex[:12]}"
        ensure_topics(kafka_bootstrap, {name: partitions})
        return name

    return make


@pytest.fixture
def unique_group() -> Callable[[], str]:
    """Factory: ``unique_group()`` returns a consumer group id no other test uses."""
    return lambda: f"group-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def testcontainers_kafka() -> Iterator[str]:
    """Bootstrap servers of an Apache Kafka container; skipped without testcontainers or a Docker engine."""
    try:
        import docker
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        pytest.skip("testcontainers is not installed (pip install 'testcontainers[kafka]')")
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        pytest.skip("no Docker engine: DOCKER_HOST is unset and /var/run/docker.sock does not exist")
    client = docker.from_env()
    try:
        client.ping()
    except Exception as exc:  # docker raises several unrelated types when no engine answers
        pytest.skip(f"no Docker engine answers: {exc}")
    finally:
        client.close()
    with KafkaContainer(_TESTCONTAINERS_IMAGE).with_kraft() as container:
        yield container.get_bootstrap_server()
