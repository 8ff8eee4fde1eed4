"""The checks against the brokers: reachable with the configured security, topics present and co-partitioned,
the mode's ACLs granted (as the brokers describe them with ``describe_acls``, not as assumed).

The broker is reached through a ``Brokers`` (``AdminBrokers`` in production, a fake in the unit tests).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from consumer.commands.acls_cmd import Acl
from consumer.exit_codes import ACLS, KAFKA_UNREACHABLE, TOPICS
from consumer.preflight.checks import Check, failed
from consumer.reachability import require_kafka
from schemas.errors import ConfigError

# Kafka's implications: Read, Write, Delete and Alter each allow Describe (and ALL allows every operation).
_IMPLIES_DESCRIBE = {"READ", "WRITE", "DELETE", "ALTER", "ALL"}


class Brokers(Protocol):
    def reach(self) -> None: ...  # raises ConfigError naming the address and why

    def partitions(self, topics: Iterable[str]) -> dict[str, int | None]: ...  # None: no such topic

    def granted(self, principal: str) -> list[Acl]: ...  # raises on a refusal to describe


def broker_check(brokers: Brokers, where: str) -> Check:
    try:
        brokers.reach()
    except ConfigError as exc:
        return failed("broker", str(exc), KAFKA_UNREACHABLE)
    return Check("broker", detail=f"{where} answered")


def topics_check(brokers: Brokers, topics: Iterable[str], pairs: Iterable[tuple[str, str]]) -> Check:
    """Every topic exists; each pair has as many partitions (a key lands in the same partition number in both)."""
    counts = brokers.partitions(topics)
    missing = [topic for topic, count in counts.items() if count is None]
    if missing:
        return failed("topics", f"missing: {', '.join(missing)} (create them, e.g. make topics)", TOPICS)
    for left, right in pairs:
        if counts[left] != counts[right]:
            problem = (
                f"{left} has {counts[left]} partitions but {right} has {counts[right]}: co-partitioned topics need "
                f"the same count (add partitions to the smaller one)"
            )
            return failed("topics", problem, TOPICS)
    return Check("topics", detail=", ".join(f"{topic} ({count})" for topic, count in counts.items()))


def acls_check(brokers: Brokers, needed: Iterable[Acl]) -> Check:
    """Every ACL the mode needs is covered by one the brokers describe for its principal."""
    needed = list(needed)
    principals = sorted({acl.principal for acl in needed})
    try:
        granted = [acl for principal in principals for acl in brokers.granted(principal)]
    except Exception as exc:
        problem = f"cannot describe the ACLs of {', '.join(principals)}: {exc} (pass --acl-connection FILE)"
        return failed("acls", problem, ACLS)
    missing = [acl for acl in needed if not any(covers(g, acl) for g in granted)]
    if missing:
        first = missing[0]
        problem = (
            f"{first.principal} lacks {first.operation} on {first.resource_type} {first.resource_name} "
            f"({first.pattern_type.lower()}){f' and {len(missing) - 1} more' if len(missing) > 1 else ''}: "
            "grant what `crm-scorer acls` prints"
        )
        return failed("acls", problem, ACLS)
    return Check("acls", detail=f"{len(needed)} needed by {', '.join(principals)}, all granted")


def covers(granted: Acl, needed: Acl) -> bool:
    """Whether the ALLOW ACL ``granted`` allows ``needed`` (a literal or ``*`` name, or a prefix of it)."""
    if granted.permission != "ALLOW" or granted.resource_type != needed.resource_type:
        return False
    if granted.principal not in (needed.principal, "User:*") or granted.host not in ("*", needed.host):
        return False
    if granted.operation not in (needed.operation, "ALL") and not (
        needed.operation == "DESCRIBE" and granted.operation in _IMPLIES_DESCRIBE
    ):
        return False
    if granted.pattern_type == "PREFIXED":
        return needed.resource_name.startswith(granted.resource_name)
    return granted.resource_name == "*" or (
        granted.resource_name == needed.resource_name and needed.pattern_type == "LITERAL"
    )


class AdminBrokers:
    """``Brokers`` through ``confluent_kafka``'s AdminClient; ACLs described with ``acl_conf`` (an admin's)."""

    def __init__(self, conf: dict[str, Any], acl_conf: dict[str, Any] | None, timeout_s: float) -> None:
        self._conf, self._acl_conf, self._timeout = conf, acl_conf or conf, timeout_s

    def _admin(self, conf: dict[str, Any]) -> AdminClient:
        keep = {k: v for k, v in conf.items() if not k.startswith(("transaction", "group.", "enable.auto"))}
        return AdminClient({k: v for k, v in keep.items() if not callable(v)} | {"allow.auto.create.topics": False})

    def reach(self) -> None:
        require_kafka(self._conf, timeout_s=self._timeout)

    def partitions(self, topics: Iterable[str]) -> dict[str, int | None]:
        known = self._admin(self._conf).list_topics(timeout=self._timeout).topics
        return {t: len(known[t].partitions) if t in known and known[t].error is None else None for t in topics}

    def granted(self, principal: str) -> list[Acl]:
        any_name: Any = None  # a filter's None matches every name and host (the stubs say str)
        wanted = AclBindingFilter(
            ResourceType.ANY,
            any_name,
            ResourcePatternType.ANY,
            principal,
            any_name,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        admin = self._admin(self._acl_conf)
        bindings = admin.describe_acls(wanted, request_timeout=self._timeout).result(self._timeout + 5)
        return [_acl(b) for b in bindings]


def _acl(binding: Any) -> Acl:
    resource = binding.restype.name
    return Acl(
        binding.principal,
        "CLUSTER" if resource == "BROKER" else resource,
        binding.name,
        binding.resource_pattern_type.name,
        binding.operation.name,
        binding.host,
        binding.permission_type.name,
    )
