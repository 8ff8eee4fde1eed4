"""What several ``crm-producer`` commands share: the connection arguments, the broker check, value parsers.

Every command that talks to Kafka takes ``--config FILE``, a connection file whose ``kafka`` and
``schema_registry`` sections are read with the models every command shares (``consumer.connection``: the
scorer's scorer.yaml works), the ``CRM_PRODUCER_KAFKA__*`` / ``CRM_PRODUCER_SCHEMA_REGISTRY__*`` environment,
and ``--bootstrap-servers`` (``--schema-registry-url``) over both; ``$KAFKA_BOOTSTRAP_SERVERS`` when nothing else
names a broker.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from consumer.layering import load_connection
from consumer.reachability import require_kafka
from producer_tools.errors import BrokerError
from producer_tools.publishing.connection import Brokers, client_config
from producer_tools.publishing.publisher import registry_for
from producer_tools.servers.broker import BOOTSTRAP_ENV
from schemas.errors import ConfigError, KafkaRefusedError, KafkaUnreachableError
from schemas.registry import RegistrySchemaSource

# The topics' defaults (configs/scorer.yaml's) and the world's default size, shared by the commands.
APPLICATIONS_TOPIC = "crm.applications"
SCORES_TOPIC = "crm.scores"
OUTCOMES_TOPIC = "crm.outcomes"
DEFAULT_COUNT = 1000
# How long a command waits for a broker to answer before it says so and exits: a broker that is up answers a
# metadata request in milliseconds; librdkafka alone would retry the connection until each message times out.
BROKER_ANSWER_S = 5.0


def add_bootstrap_argument(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` (a connection file) and ``--bootstrap-servers`` over it; see the module."""
    parser.add_argument(
        "--config",
        "--connection",
        dest="connection",
        type=Path,
        default=None,
        help="a connection file: its kafka and schema_registry sections (scorer.yaml works)",
    )
    parser.add_argument(
        "--bootstrap-servers",
        default=None,
        help=f"HOST:PORT[,...], over the file (default: the file's, else ${BOOTSTRAP_ENV})",
    )


def connect(args: argparse.Namespace) -> Brokers:
    """The broker connection the arguments, the connection file and the environment name, put back in
    ``args.bootstrap_servers`` (what the commands hand down); ``args.registry`` is the registry connection.

    Raises:
        ConfigError: a bad connection file or variable, or nothing names a broker (one line naming the key).
    """
    settings = load_connection(
        args.connection,
        kafka={"bootstrap_servers": args.bootstrap_servers},
        schema_registry={"url": getattr(args, "schema_registry_url", None)},
    )
    if "bootstrap_servers" not in settings.kafka.model_fields_set:
        fallback = os.environ.get(BOOTSTRAP_ENV, "").strip()
        if not fallback:
            raise ConfigError(f"no broker named: give --bootstrap-servers, --config FILE or ${BOOTSTRAP_ENV}")
        settings.kafka.bootstrap_servers = fallback
    args.bootstrap_servers = Brokers(settings.kafka.librdkafka())
    args.registry = settings.schema_registry
    return args.bootstrap_servers


def registry_of(args: argparse.Namespace) -> RegistrySchemaSource | None:
    """The Schema Registry of the connection ``connect`` read (None: no URL; ``mock://NAME``: the mock)."""
    conf = args.registry.client_config()
    if not conf:
        return None
    return registry_for(conf["url"]) if conf["url"].startswith("mock://") else RegistrySchemaSource.from_url(**conf)


def require_broker(bootstrap_servers: str, timeout_s: float | None = None, topics: Iterable[str] = ()) -> None:
    """Return once a broker at ``bootstrap_servers`` answers a metadata request (with the connection's
    credentials when it is a ``Brokers``) and the principal may describe each of ``topics``.

    Raises:
        KafkaUnreachableError: none answered within ``timeout_s`` (default ``BROKER_ANSWER_S``), or the
            credentials were refused; one line naming the address, librdkafka's reason and what to check.
        KafkaRefusedError: a topic may not be described.
    """
    hint = (
        f"--bootstrap-servers / ${BOOTSTRAP_ENV} / --config (and its credentials) and that the broker runs "
        "(`crm-producer broker` starts one)"
    )
    timeout_s = BROKER_ANSWER_S if timeout_s is None else timeout_s
    try:
        require_kafka(client_config(bootstrap_servers), topics, timeout_s, hint)
    except (KafkaUnreachableError, KafkaRefusedError):
        raise  # ended with their own codes (5, 7), as crm-scorer's commands are
    except ConfigError as exc:
        raise BrokerError(str(exc)) from exc


def non_negative(kind: type[int] | type[float]) -> Any:
    """An argparse type: ``kind`` of the text, refused when below zero."""

    def parse(text: str) -> int | float:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value

    return parse


def ratio(text: str) -> float:
    """An argparse type: a float within 0..1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {text}")
    return value
