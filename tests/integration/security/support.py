"""What the security scenarios share: one test's lanes on the secured broker, ACL grants through the Admin API,
the scorer's credentials as an operator would give them (a password file, never a flag), and read-back as the
super-user."""

from __future__ import annotations

import collections
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from consumer.commands.acls_cmd import Acl, producer_acls, scorer_acls
from consumer.settings import Settings, load_settings
from producer_tools.servers.apache_kafka import ApacheKafka
from tests.integration.faults.support import Row, http_get, pairs, read_event_id, valid_messages
from tests.integration.harness import Lanes

_RESOURCE = {
    "TOPIC": ResourceType.TOPIC,
    "GROUP": ResourceType.GROUP,
    "CLUSTER": ResourceType.BROKER,
    "TRANSACTIONAL_ID": ResourceType.TRANSACTIONAL_ID,
}
# `make test` keeps the security suite near two minutes; `make test-security` (CRM_SECURITY_FULL=1) adds these.
FULL = os.environ.get("CRM_SECURITY_FULL") == "1"
full_only = pytest.mark.skipif(not FULL, reason="run by make test-security (CRM_SECURITY_FULL=1)")
ROWS: list[Row] = []  # the security rows of the reliability table, printed at the end of the session
_ANY = AclBindingFilter(
    ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY
)


def create_topics(admin: AdminClient, topics: dict[str, int]) -> None:
    new = [NewTopic(name, num_partitions=n, replication_factor=1) for name, n in topics.items()]
    for future in admin.create_topics(new, request_timeout=15).values():
        future.result(20)


def binding(acl: Acl) -> AclBinding:
    """The Admin API's form of one ACL ``crm-scorer acls`` prints."""
    pattern = ResourcePatternType.PREFIXED if acl.pattern_type == "PREFIXED" else ResourcePatternType.LITERAL
    name = "kafka-cluster" if acl.resource_type == "CLUSTER" else acl.resource_name
    return AclBinding(
        _RESOURCE[acl.resource_type],
        name,
        pattern,
        acl.principal,
        acl.host,
        AclOperation[acl.operation],
        AclPermissionType.ALLOW,
    )


@dataclass
class SecureLanes:
    """One test's topics and group on the secured broker, and what the test does to them."""

    lanes: Lanes
    kafka: ApacheKafka
    admin: AdminClient
    folder: Path

    def settings(self, guarantee: str = "at_least_once") -> Settings:
        """The scorer's settings for these lanes (what ``crm-scorer acls`` would be given)."""
        lanes = self.lanes
        return load_settings(
            None,
            topics={"input": lanes.input, "output": lanes.output, "dlq": lanes.dlq},
            consumer={"group_id": lanes.group},
            guarantee=guarantee,
        )

    def scorer_acls(self, guarantee: str) -> list[Acl]:
        return scorer_acls(self.settings(guarantee))

    def grant(self, acls: Iterable[Acl]) -> None:
        """Create the ACLs and wait until the broker's authorizer holds them (it applies them from the metadata
        log a moment after the controller committed them)."""
        bindings = [binding(a) for a in acls]
        for future in self.admin.create_acls(bindings, request_timeout=15).values():
            future.result(20)
        self._await(bindings, present=True)

    def revoke(self, acls: Iterable[Acl]) -> None:
        bindings = [binding(a) for a in acls]
        for future in self.admin.delete_acls(bindings, request_timeout=15).values():
            future.result(20)
        self._await(bindings, present=False)

    def _await(self, bindings: list[AclBinding], present: bool) -> None:
        deadline = time.monotonic() + 20
        while True:
            held = set(self.admin.describe_acls(_ANY, request_timeout=10).result(15))
            if all((b in held) == present for b in bindings):
                return
            assert time.monotonic() < deadline, f"the broker's authorizer did not apply {bindings} within 20 s"
            time.sleep(0.1)

    def scorer_env(
        self, user: str = "crm-scorer", password: str | None = None, ca: Path | None = None, **more: str
    ) -> dict[str, str]:
        """``CRM_SCORER_KAFKA__*`` for a scorer authenticating as ``user``; the password in a 0600 file."""
        assert self.kafka.security is not None
        secret = self.folder / f"{user}-{uuid.uuid4().hex[:6]}.password"
        secret.write_text(self.kafka.security.password(user) if password is None else password)
        secret.chmod(0o600)
        env = {
            "CRM_SCORER_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "CRM_SCORER_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            "CRM_SCORER_KAFKA__SASL_USERNAME": user,
            "CRM_SCORER_KAFKA__SASL_PASSWORD_FILE": str(secret),
            "CRM_SCORER_KAFKA__SSL_CA_LOCATION": str(ca or self.kafka.security.ca_path),
        }
        return env | {f"CRM_SCORER_{key.upper()}": value for key, value in more.items()}

    def feed(self, count: int, seed: int) -> set[str]:
        """Produce ``count`` valid events as the producer tools' principal (granted its ACLs); their event ids."""
        settings = self.settings()
        self.grant(producer_acls(settings))
        messages = valid_messages(count, seed)
        conf = self.kafka.client_config("crm-producer", **{"enable.idempotence": True, "linger.ms": 10})
        producer = Producer(conf)
        failed: list[KafkaError] = []
        for key, value in pairs(messages):
            producer.produce(
                self.lanes.input, value, key, on_delivery=lambda err, _m: failed.append(err) if err else None
            )
            producer.poll(0)
        assert producer.flush(30) == 0 and not failed, f"the producer tools' principal could not deliver: {failed[:1]}"
        return {event_id for _key, _value, event_id in messages}

    def scored(self) -> collections.Counter[str]:
        """Every result's event id on the output topic (read_committed, as the super-user)."""
        return collections.Counter(read_event_id(m.value() or b"") for m in self.read(self.lanes.output))

    def dead_letters(self) -> list[Message]:
        return self.read(self.lanes.dlq)

    def read(self, topic: str) -> list[Message]:
        conf = self.kafka.client_config(
            **{
                "group.id": f"reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 50,
            }
        )
        consumer = Consumer(conf)
        try:
            partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
            consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
            pending, out, last = set(partitions), [], time.monotonic()
            while pending and time.monotonic() - last < 30:
                for m in consumer.consume(500, 0.2):
                    err = m.error()
                    if err is not None and err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(m.partition() or 0)
                    elif err is None:
                        out.append(m)
                        last = time.monotonic()
            return out
        finally:
            consumer.close()

    def committed(self) -> int:
        """The sum of the group's committed input offsets, read by the super-user without joining the group."""
        conf = self.kafka.client_config(**{"group.id": self.lanes.group, "enable.auto.commit": False})
        consumer = Consumer(conf)
        try:
            parts = [TopicPartition(self.lanes.input, p) for p in range(3)]
            for _ in range(20):
                try:
                    return sum(tp.offset for tp in consumer.committed(parts, timeout=10) if tp.offset >= 0)
                except KafkaException as exc:
                    if not exc.args[0].retriable():
                        raise
                    time.sleep(0.5)
            raise AssertionError("the group's committed offsets could not be read")
        finally:
            consumer.close()


def readyz(url: str, timeout: float = 20.0) -> tuple[int, str]:
    """``/readyz``'s (status, body), asking again while the endpoint does not answer at all (a loaded machine)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = http_get(f"{url}/readyz", timeout=5.0)
        if status or time.monotonic() > deadline:
            return status, body
        time.sleep(0.5)
