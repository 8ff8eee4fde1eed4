"""What a running mode needs of its deployment, as plain values: the checks read a ``Plan``, never the settings.

``scorer_plan`` and ``monitor_plan`` build one from each command's own settings; the ACLs are the list
``crm-scorer acls`` prints for that mode and principal (``consumer.commands.acls_cmd``), not a copy of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from consumer.commands.acls_cmd import DEFAULT_OUTCOMES_TOPIC, DEFAULT_PRINCIPALS, Acl, monitor_acls, scorer_acls
from consumer.settings import Settings, load_settings
from schemas.registry import value_subject

if TYPE_CHECKING:
    from consumer.monitor.settings import MonitorSettings
    from models.config import ModelsConfig


@dataclass(frozen=True)
class Plan:
    """One mode's needs: its Kafka client properties, topics (each pair co-partitioned), ACLs, registry subject."""

    mode: str
    conf: dict[str, Any]
    topics: tuple[str, ...]
    copartitioned: tuple[tuple[str, str], ...]
    acls: tuple[Acl, ...]
    registry: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None
    models: ModelsConfig | None = None


def principal_of(username: str | None, role: str) -> str:
    """``User:<sasl user>`` when the connection names one, else the role's default principal."""
    return f"User:{username}" if username else DEFAULT_PRINCIPALS[role]  # type: ignore[index]


def scorer_plan(settings: Settings, principal: str | None = None, outcomes: str | None = None) -> Plan:
    """The scorer's needs; ``outcomes`` (when given) must be co-partitioned with its results, as the monitor joins
    them by partition."""
    t = settings.topics
    acls = scorer_acls(settings, principal or principal_of(settings.kafka.sasl_username, "scorer"))
    pairs = ((t.output, outcomes),) if outcomes else ()
    return Plan(
        "scorer",
        settings.kafka.librdkafka(),
        tuple(dict.fromkeys((t.input, t.output, t.dlq, *([outcomes] if outcomes else [])))),
        pairs,
        tuple(acls),
        settings.schema_registry.client_config(),
        value_subject(t.output),
        settings.models,
    )


def monitor_plan(settings: MonitorSettings, principal: str | None = None) -> Plan:
    """The monitor's needs: scores and outcomes co-partitioned (and the applications, when it reads them)."""
    t = settings.topics
    scorer_view = load_settings(None, topics={"output": t.scores})  # the monitor's ACLs are named by the scores
    who = principal or principal_of(settings.kafka.sasl_username, "monitor")
    acls = monitor_acls(scorer_view, who, t.outcomes or DEFAULT_OUTCOMES_TOPIC, settings.kafka.group_id)
    topics = tuple(topic for topic in (t.scores, t.outcomes, t.applications) if topic)
    pairs = tuple((t.scores, other) for other in (t.outcomes, t.applications) if other)
    subject = value_subject(t.scores)
    return Plan(
        "monitor",
        settings.kafka.librdkafka(),
        topics,
        pairs,
        tuple(acls),
        settings.schema_registry.client_config(),
        subject,
    )
