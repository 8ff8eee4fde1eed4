"""Apache Kafka on loopback, from its Maven Central jars: one node, or a three-broker cluster for broker faults.

Each node is a KRaft combined broker + controller JVM (``kafka.Kafka server.properties``) with its own data
folder and log file, formatted first with ``kafka.tools.StorageTool format``. One node runs with replication
factor 1 everywhere; three nodes form a three-voter controller quorum with replication factor 3 and
``min.insync.replicas=2``. Ready means: every node listens, the metadata lists every broker, and the internal
offsets and transaction topics exist (a fresh broker otherwise answers the first group or transactional request
with a retriable "coordinator not available", which every test would have to absorb).

With ``security=KafkaSecurity(folder)`` (:mod:`producer_tools.servers.kafka_security`) clients meet a ``SASL_SSL``
listener with SCRAM-SHA-512 users and the ``StandardAuthorizer``; :meth:`ApacheKafka.client_config` gives a
client's properties for either kind.

Nothing starts in ``__init__``; ``with ApacheKafka() as kafka:`` starts it and removes its files on exit.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from producer_tools.servers.kafka_jars import LOG4J_CONFIG, kafka_libs
from producer_tools.servers.process import (
    HOST,
    BrokerError,
    LocalServer,
    ServerProcess,
    accepts_connections,
    free_port,
)

if TYPE_CHECKING:  # its certificates need the `cryptography` package, which only a secured broker needs
    from producer_tools.servers.kafka_security import KafkaSecurity

KAFKA_VERSION = "4.1.1"  # the version pinned in producer_tools/servers/jvm/pom.xml
# What Kafka's own kafka-run-class.sh passes, and an exit (not a limp) on running out of heap.
_JVM_FLAGS = [
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
]


@dataclass
class KafkaNode:
    """One broker + controller JVM of the cluster."""

    node_id: int
    broker_port: int
    controller_port: int
    folder: Path
    server: ServerProcess

    @property
    def address(self) -> str:
        return f"{HOST}:{self.broker_port}"


def node_settings(node: KafkaNode, voters: str, replication: int) -> dict[str, str]:
    """The ``server.properties`` of one node. ``replication`` is 1 (one node) or 3 (the cluster)."""
    min_isr = str(min(2, replication))
    rf = str(replication)
    return {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{node.address},CONTROLLER://{HOST}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{node.address}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(node.folder / "data"),
        "num.partitions": "1",
        "default.replication.factor": rf,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": rf,
        "offsets.topic.num.partitions": "10",  # Kafka's 50 only slow a test broker's first group request down
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",  # as on a production cluster: a missing topic is an error
    }


class ApacheKafka(LocalServer):
    """A local Apache Kafka of ``nodes`` brokers (1 or 3); a context manager that stops it on exit."""

    kind = "kafka"
    version = KAFKA_VERSION
    name = "Apache Kafka"
    stop_timeout = 20.0

    def __init__(
        self,
        nodes: int = 1,
        *,
        startup_timeout: float = 90.0,
        heap: str | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        if nodes not in (1, 3):
            raise BrokerError(f"an Apache Kafka test cluster has 1 or 3 nodes, not {nodes}")
        self.security = security
        self._size = nodes
        self._startup_timeout = startup_timeout
        self._heap = heap or ("1g" if nodes == 1 else "512m")
        self._folder: Path | None = None
        self._nodes: list[KafkaNode] = []

    @property
    def nodes(self) -> list[KafkaNode]:
        return list(self._nodes)

    @property
    def bootstrap_servers(self) -> str:
        """Every node's ``127.0.0.1:PORT``, comma-separated. Raises BrokerError if not started."""
        if not self._nodes:
            raise BrokerError(f"{self.name} is not running: call start() or use it as a context manager")
        return ",".join(node.address for node in self._nodes)

    @property
    def settings(self) -> dict[str, str]:
        """The settings that matter for a reader of test and benchmark figures."""
        replication = "1" if self._size == 1 else "3"
        return {
            "nodes": str(self._size),
            "mode": "KRaft combined",
            "replication.factor": replication,
            "min.insync.replicas": str(min(2, self._size)),
            "heap": self._heap,
            "listener": "SASL_SSL (SCRAM-SHA-512), ACLs" if self.security else "PLAINTEXT",
        }

    def client_config(self, user: str = "admin", **overrides: Any) -> dict[str, Any]:
        """librdkafka properties of a client of this broker: the bootstrap servers and, when secured, TLS and
        ``user``'s SCRAM credentials (the admin super-user by default), then ``overrides``."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        if self.security is not None:
            conf |= self.security.client_config(user)
        return conf | overrides

    @property
    def log_path(self) -> Path | None:
        return self._nodes[0].server.log_path if self._nodes else None

    def node(self, node_id: int) -> KafkaNode:
        for node in self._nodes:
            if node.node_id == node_id:
                return node
        raise BrokerError(f"Apache Kafka has no node {node_id} (nodes: {[n.node_id for n in self._nodes]})")

    def processes(self) -> list[ServerProcess]:
        return [node.server for node in self._nodes]

    def start(self) -> Self:
        """Resolve the jars, format every node's storage, start the JVMs and wait until the cluster is ready.

        Raises:
            BrokerError: java or mvn is missing, formatting failed, or a node did not come up; the message
                names the node's log file and carries its tail.
        """
        if self._nodes:
            return self
        libs = kafka_libs()
        self._folder = Path(tempfile.mkdtemp(prefix="apache-kafka-"))
        try:
            if self.security is not None:
                self.security.write()
            self._nodes = self._plan(libs)
            self._format(libs)
            for node in self._nodes:
                node.server.start()
            for node in self._nodes:
                self._wait_for_node(node)
            self._wait_for_brokers(self._startup_timeout)
            self._warm_up()
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, node_id: int, *, graceful: bool = False) -> None:
        """Start a stopped or killed node again (``graceful``: SIGTERM it first) and wait until it rejoins."""
        node = self.node(node_id)
        if graceful:
            node.server.stop(timeout=30)
        node.server.start()
        self._wait_for_node(node)
        self._wait_for_brokers(self._startup_timeout)

    def leaders(self, topics: list[str]) -> Counter[int]:
        """How many partitions of ``topics`` each node leads."""
        metadata = AdminClient(self.client_config()).list_topics(timeout=10)
        counts: Counter[int] = Counter()
        for name in topics:
            for partition in metadata.topics[name].partitions.values():
                counts[partition.leader] += 1
        return counts

    def _stopped(self) -> None:
        """Forget the nodes and remove their data and logs."""
        self._nodes = []
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def _chosen(self, node_id: int | None) -> list[ServerProcess]:
        if node_id is None:
            return super()._chosen(None)
        return [self.node(node_id).server]

    def _plan(self, libs: Path) -> list[KafkaNode]:
        assert self._folder is not None
        nodes = []
        for node_id in range(1, self._size + 1):
            folder = self._folder / f"node-{node_id}"
            folder.mkdir()
            command = [
                "java",
                "-Xms256m",
                f"-Xmx{self._heap}",
                *_JVM_FLAGS,
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                "-cp",
                f"{libs}/*",
                "kafka.Kafka",
                str(folder / "server.properties"),
            ]
            server = ServerProcess(f"Apache Kafka node {node_id}", command, folder / "kafka.log")
            nodes.append(KafkaNode(node_id, free_port(), free_port(), folder, server))
        voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in nodes)
        replication = 1 if self._size == 1 else 3
        for node in nodes:
            properties = node_settings(node, voters, replication)
            if self.security is not None:
                properties |= self.security.server_settings(node.address, f"{HOST}:{node.controller_port}")
            lines = [f"{key}={value}" for key, value in properties.items()]
            (node.folder / "server.properties").write_text("\n".join(lines) + "\n")
        return nodes

    def _format(self, libs: Path) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        runs = []
        for node in self._nodes:
            command = [
                "java",
                "-Xmx256m",
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                "-cp",
                f"{libs}/*",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(node.folder / "server.properties"),
            ]
            if self.security is not None:
                command += self.security.scram_arguments()
            runs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for node, run in zip(self._nodes, runs, strict=True):
            output, _ = run.communicate(timeout=120)
            if run.returncode != 0:
                raise BrokerError(f"formatting Apache Kafka node {node.node_id}'s storage failed:\n{output[-3000:]}")

    def _wait_for_node(self, node: KafkaNode) -> None:
        node.server.wait_until(
            lambda: accepts_connections(node.broker_port), self._startup_timeout, f"listen on {node.address}"
        )

    def _wait_for_brokers(self, timeout: float) -> None:
        admin = AdminClient(self.client_config())
        deadline = time.monotonic() + timeout
        seen: set[int] = set()
        while time.monotonic() < deadline:
            for node in self._nodes:
                node.server.fail_if_exited()
            with contextlib.suppress(KafkaException):
                seen = set(admin.list_topics(timeout=5).brokers)
                if seen == {node.node_id for node in self._nodes}:
                    return
            time.sleep(0.2)
        self._nodes[0].server.fail(f"listed brokers {sorted(seen)} instead of all {self._size} within {timeout:.0f}s")

    def _warm_up(self) -> None:
        """Create the offsets and transaction topics now, so the first test's group and transaction find them."""
        consumer = Consumer(self.client_config(**{"group.id": "crm-scorer-warm-up"}))
        deadline = time.monotonic() + self._startup_timeout
        try:
            while True:
                try:
                    consumer.committed([TopicPartition("__warm_up", 0)], timeout=10)
                    break
                except KafkaException:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        finally:
            consumer.close()
        producer = Producer(self.client_config(**{"transactional.id": "crm-scorer-warm-up"}))
        try:
            producer.init_transactions(self._startup_timeout)
        except KafkaException as exc:
            self._nodes[0].server.fail(f"could not start a transaction ({exc})")
