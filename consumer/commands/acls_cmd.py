"""``crm-scorer acls``: the least-privilege ACLs of the scorer, the producer tools and the monitor, for a config.

The list is derived from the settings (topic names, group, guarantee), so it cannot drift from what the scorer
does; the secured integration suite grants exactly this list and nothing more. Printed as Apache Kafka's
``kafka-acls.sh`` commands (default) or as JSON, one object per ACL in the Admin API's terms (``AclBinding``:
resource type, name, pattern type, principal, host, operation, permission).

What each principal may do, and why:

- the scorer: Read and Describe the input topic, Read its consumer group (join, commit offsets, and, with
  exactly_once, commit them inside a transaction), Write and Describe the output and dead-letter topics; with
  exactly_once also Write and Describe every transactional id starting with ``<group_id>-<input topic>-`` (one
  per replica and worker). Idempotent producing needs no cluster ACL since Kafka 3.0 (KIP-679: Write on a topic
  is enough).
- the producer tools: Write and Describe the input topic (``produce``, ``replay-dlq``) and the outcomes topic
  (``outcomes``); Read and Describe the dead-letter topic (``replay-dlq``) and the output topic (``tail``,
  ``outcomes``); Read on the groups each run names for itself by prefix (``crm-tail-``, ``crm-reader-``:
  ``tail`` and ``replay-dlq`` assign partitions and commit nothing, but librdkafka still asks for the group's
  coordinator; ``crm-producer-outcomes-``: ``outcomes`` reads the scores in a group of its own).
- the monitor: Read and Describe the output and outcomes topics, Read its own group; Read and Describe the
  shadow topic (a challenger's scores), and Write and Describe the model control topic (the rollback rule
  publishes a rollback like ``crm-scorer models rollback``).
- the model sets: the scorer reads the control topic (``models.control_topic``) with a consumer that assigns its
  one partition and commits nothing, named ``<group_id>.models`` (librdkafka still asks for that group's
  coordinator), and writes a challenger's scores to ``models.shadow_topic``. ``crm-scorer models`` runs as the
  operator's admin principal (it creates the control and shadow topics), so it has no role here.
- the gateway: Write and Describe the input topic (uploads), Read and Describe the output and dead-letter topics
  (its view of the scores) and the control topic (predict follows activations), Read its view's group and that
  group's ``.models`` follower.
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from consumer.settings import Settings, load_settings

Resource = Literal["TOPIC", "GROUP", "TRANSACTIONAL_ID", "CLUSTER"]
Pattern = Literal["LITERAL", "PREFIXED"]
Operation = Literal["READ", "WRITE", "DESCRIBE", "IDEMPOTENT_WRITE"]
Role = Literal["scorer", "producer", "monitor", "gateway"]
ROLES: tuple[Role, ...] = ("scorer", "producer", "monitor", "gateway")
DEFAULT_PRINCIPALS: dict[Role, str] = {
    "scorer": "User:crm-scorer",
    "producer": "User:crm-producer",
    "monitor": "User:crm-monitor",
    "gateway": "User:crm-gateway",
}
DEFAULT_OUTCOMES_TOPIC = "crm.outcomes"
DEFAULT_MONITOR_GROUP = "crm-scorer-monitor"  # the monitor's default kafka.group_id
DEFAULT_GATEWAY_GROUP = "crm-gateway-view"  # the gateway's default view_group_id
# The groups crm-producer names per run (tail, replay-dlq's reader, outcomes): a unique id behind each prefix.
TOOL_GROUP_PREFIXES = ("crm-tail-", "crm-reader-", "crm-producer-outcomes-")
_FLAG = {"TOPIC": "--topic", "GROUP": "--group", "TRANSACTIONAL_ID": "--transactional-id"}


@dataclass(frozen=True)
class Acl:
    """One ALLOW ACL, as Kafka's Admin API spells it."""

    principal: str
    resource_type: Resource
    resource_name: str
    pattern_type: Pattern
    operation: Operation
    host: str = "*"
    permission: str = "ALLOW"


def scorer_acls(settings: Settings, principal: str = DEFAULT_PRINCIPALS["scorer"]) -> list[Acl]:
    """Everything the scorer's principal needs for ``settings``, and nothing more."""
    t = settings.topics

    def acl(resource: Resource, name: str, op: Operation, pattern: Pattern = "LITERAL") -> Acl:
        return Acl(principal, resource, name, pattern, op)

    models = settings.models
    acls = [
        acl("TOPIC", t.input, "READ"),
        acl("TOPIC", t.input, "DESCRIBE"),
        acl("GROUP", settings.consumer.group_id, "READ"),
        acl("TOPIC", models.control_topic, "READ"),
        acl("TOPIC", models.control_topic, "DESCRIBE"),
        acl("GROUP", f"{settings.consumer.group_id}.models", "READ"),
    ]
    for topic in (t.output, t.dlq, models.shadow_topic):
        acls += [acl("TOPIC", topic, "WRITE"), acl("TOPIC", topic, "DESCRIBE")]
    if settings.guarantee == "exactly_once":
        prefix = settings.transactional_id_prefix()
        acls += [
            acl("TRANSACTIONAL_ID", prefix, "WRITE", "PREFIXED"),
            acl("TRANSACTIONAL_ID", prefix, "DESCRIBE", "PREFIXED"),
        ]
    return acls


def producer_acls(
    settings: Settings,
    principal: str = DEFAULT_PRINCIPALS["producer"],
    outcomes_topic: str = DEFAULT_OUTCOMES_TOPIC,
) -> list[Acl]:
    """The producer tools: produce and replay to the input topic, read the dead letters and the scores, answer
    the scores with outcomes (reading them in a group of its own per run)."""
    t = settings.topics
    acls = []
    for topic in (t.input, outcomes_topic):
        acls += [
            Acl(principal, "TOPIC", topic, "LITERAL", "WRITE"),
            Acl(principal, "TOPIC", topic, "LITERAL", "DESCRIBE"),
        ]
    for topic in (t.dlq, t.output):
        acls += [
            Acl(principal, "TOPIC", topic, "LITERAL", "READ"),
            Acl(principal, "TOPIC", topic, "LITERAL", "DESCRIBE"),
        ]
    return acls + [Acl(principal, "GROUP", prefix, "PREFIXED", "READ") for prefix in TOOL_GROUP_PREFIXES]


def monitor_acls(
    settings: Settings,
    principal: str = DEFAULT_PRINCIPALS["monitor"],
    outcomes_topic: str = DEFAULT_OUTCOMES_TOPIC,
    group: str = DEFAULT_MONITOR_GROUP,
) -> list[Acl]:
    """The monitor: read the scores, a challenger's scores and the outcomes in its own group; publish a rollback."""
    acls = []
    for topic in (settings.topics.output, settings.models.shadow_topic, outcomes_topic):
        acls += [
            Acl(principal, "TOPIC", topic, "LITERAL", "READ"),
            Acl(principal, "TOPIC", topic, "LITERAL", "DESCRIBE"),
        ]
    control = settings.models.control_topic
    acls += [Acl(principal, "TOPIC", control, "LITERAL", op) for op in ("WRITE", "DESCRIBE")]
    return [*acls, Acl(principal, "GROUP", group, "LITERAL", "READ")]


def gateway_acls(
    settings: Settings, principal: str = DEFAULT_PRINCIPALS["gateway"], group: str = DEFAULT_GATEWAY_GROUP
) -> list[Acl]:
    """The gateway: publish uploads, read its view of the scores and dead letters, follow model activations."""
    t = settings.topics
    acls = [Acl(principal, "TOPIC", t.input, "LITERAL", op) for op in ("WRITE", "DESCRIBE")]
    for topic in (t.output, t.dlq, settings.models.control_topic):
        acls += [Acl(principal, "TOPIC", topic, "LITERAL", op) for op in ("READ", "DESCRIBE")]
    return acls + [Acl(principal, "GROUP", name, "LITERAL", "READ") for name in (group, f"{group}.models")]


def kafka_acls_commands(acls: list[Acl], bootstrap: str, command_config: str) -> list[str]:
    """One ``kafka-acls.sh --add`` per principal and resource, with every operation it needs."""
    grouped: dict[tuple[str, str, str, str], list[str]] = {}
    for a in acls:
        grouped.setdefault((a.principal, a.resource_type, a.resource_name, a.pattern_type), []).append(a.operation)
    lines = []
    for (principal, resource, name, pattern), operations in grouped.items():
        words = ["kafka-acls.sh", "--bootstrap-server", bootstrap, "--command-config", command_config]
        words += ["--add", "--allow-principal", principal]
        for op in operations:
            words += ["--operation", _camel(op)]
        words += ["--cluster"] if resource == "CLUSTER" else [_FLAG[resource], name]
        if pattern == "PREFIXED":
            words += ["--resource-pattern-type", "prefixed"]
        lines.append(shlex.join(words))
    return lines


def _camel(operation: str) -> str:
    return "".join(part.capitalize() for part in operation.split("_"))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "acls", help="print the least-privilege ACLs of the scorer, producer tools, monitor and gateway for a config"
    )
    parser.add_argument("--config", type=Path, default=None, help="scorer.yaml (default: configs/scorer.yaml)")
    parser.add_argument("--role", choices=[*ROLES, "all"], default="all", help="whose ACLs (default: all)")
    for role in ROLES:
        parser.add_argument(f"--{role}-principal", default=DEFAULT_PRINCIPALS[role], help=f"the {role}'s principal")
    parser.add_argument("--guarantee", choices=["at_least_once", "exactly_once"], help="guarantee (default: config's)")
    parser.add_argument("--outcomes-topic", default=DEFAULT_OUTCOMES_TOPIC, help="the outcomes topic")
    parser.add_argument("--monitor-group", default=DEFAULT_MONITOR_GROUP, help="the monitor's consumer group")
    parser.add_argument("--gateway-group", default=DEFAULT_GATEWAY_GROUP, help="the gateway's view_group_id")
    parser.add_argument("--format", choices=["kafka-acls", "json"], default="kafka-acls", help="output format")
    parser.add_argument("--bootstrap-server", default="BROKER:9093", help="for the kafka-acls.sh commands")
    parser.add_argument("--command-config", default="admin.properties", help="the admin client's properties file")
    parser.set_defaults(handler=run)


def acls_for(args: argparse.Namespace, settings: Settings) -> list[Acl]:
    roles = ROLES if args.role == "all" else (args.role,)
    acls: list[Acl] = []
    if "scorer" in roles:
        acls += scorer_acls(settings, args.scorer_principal)
    if "producer" in roles:
        acls += producer_acls(settings, args.producer_principal, args.outcomes_topic)
    if "monitor" in roles:
        acls += monitor_acls(settings, args.monitor_principal, args.outcomes_topic, args.monitor_group)
    if "gateway" in roles:
        acls += gateway_acls(settings, args.gateway_principal, args.gateway_group)
    return acls


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, guarantee=args.guarantee)
    acls = acls_for(args, settings)
    if args.format == "json":
        print(json.dumps([asdict(a) for a in acls], indent=1))
        return 0
    t = settings.topics
    print(f"# {settings.guarantee}; topics {t.input} -> {t.output}, {t.dlq}; group {settings.consumer.group_id}")
    for line in kafka_acls_commands(acls, args.bootstrap_server, args.command_config):
        print(line)
    return 0
