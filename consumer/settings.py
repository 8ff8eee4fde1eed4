"""The scorer's one settings model: scorer.yaml, overridden by ``CRM_SCORER_*`` environment variables,
overridden by command-line flags.

The three layers are pydantic-settings' own sources (``consumer.layering``). Nested sections map to environment
variables with ``__``: ``CRM_SCORER_KAFKA__BOOTSTRAP_SERVERS``, ``CRM_SCORER_CONSUMER__GROUP_ID``. Unknown keys
are errors. The ``kafka`` and ``schema_registry`` sections are the connection models every command shares
(``consumer.connection``); the other sections live in ``consumer.sections``. Credentials are ``SecretStr`` (or a
file path), and only ``Settings.librdkafka`` ever reveals them, to librdkafka itself: it is the one place a
client's librdkafka properties are assembled, for the consumer and for the producer of a worker (the loop adds
only its callbacks).

``kafka.extra`` (both clients), ``kafka.consumer_extra`` and ``kafka.producer_extra`` pass further properties,
in that order of precedence over each other and over the scorer's own defaults (prefetch, producer backlog,
reconnect backoff, auto-commit interval, statistics interval). A property a setting of its own sets
(``group.id``: ``consumer.group_id``), or one the delivery guarantee rests on (``enable.auto.offset.store``,
``isolation.level``, ``transactional.id``...), is set by the scorer only: an extra that contradicts it is an
error naming the setting.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from consumer.connection import Extra, Owned, RegistryConnection, check_extra
from consumer.layering import LayeredSettings, load_layered
from consumer.sections import (
    ConsumerSettings,
    DedupSettings,
    KafkaSettings,
    LogSettings,
    MetricsSettings,
    ProducerSettings,
    ResultSettings,
    TopicSettings,
)
from models.config import ModelsConfig
from models.config_file import DEFAULT_CONFIG_FILE, config_file

__all__ = [
    "CLASSIC_ONLY_PROPERTIES",
    "DEFAULT_CONFIG",
    "ENV_PREFIX",
    "KafkaSettings",
    "Settings",
    "load_settings",
]

ENV_PREFIX = "CRM_SCORER_"
DEFAULT_CONFIG = DEFAULT_CONFIG_FILE
Role = Literal["consumer", "producer"]
# What a crashed worker (or one whose session was lost) re-delivers is what it stored since the last commit:
# librdkafka's 5 s default would be 5 s of throughput in duplicates, 1 s was 10,000 after a backlog; an offset
# commit every 200 ms is one small request.
_COMMIT_INTERVAL_MS = 200
# Client properties of the classic group protocol that librdkafka refuses with group.protocol=consumer (KIP-848:
# the broker owns the session, the heartbeat and the assignor; group.remote.assignor picks a server assignor).
CLASSIC_ONLY_PROPERTIES = (
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "partition.assignment.strategy",
    "group.protocol.type",
)


class Settings(LayeredSettings):
    """Everything ``crm-scorer run`` needs. Build it once with ``load_settings`` and pass values down."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", populate_by_name=True
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    results: ResultSettings = Field(default_factory=ResultSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="at_least_once, or exactly_once: results, dead letters and offsets in one transaction",
    )
    workers: int = Field(1, ge=1, le=64, description="Worker processes in the consumer group on this host")
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    schema_registry: RegistryConnection = Field(default_factory=RegistryConnection)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    _source: Path | None = PrivateAttr(None)

    @property
    def source(self) -> Path | None:
        """The YAML file these settings were read from (None: defaults, environment and flags only)."""
        return self._source

    @field_validator("consumer")
    @classmethod
    def _group_protocol_fits_extra(cls, consumer: ConsumerSettings, info: ValidationInfo) -> ConsumerSettings:
        kafka = info.data.get("kafka")
        extra = (kafka.extra | kafka.consumer_extra) if isinstance(kafka, KafkaSettings) else {}
        refused = [key for key in CLASSIC_ONLY_PROPERTIES if key in extra]
        if consumer.group_protocol == "consumer" and refused:
            raise ValueError(
                f"kafka.extra sets {', '.join(refused)}, which librdkafka refuses with group_protocol=consumer "
                "(the broker decides them: its group.consumer.* settings, and group.remote.assignor picks the "
                "assignor): remove it, or use group_protocol=classic"
            )
        return consumer

    @model_validator(mode="after")
    def _extras_agree_with_the_settings(self) -> Settings:
        roles: tuple[Role, ...] = ("consumer", "producer")
        for role in roles:
            owned = self._owned(role, worker=0, reveal=False)
            for source, extra in self._extras(role):
                if "transactional.id" in extra:
                    raise ValueError(
                        f"{source} sets transactional.id: the scorer names one per worker under "
                        "guarantee=exactly_once (consumer.instance_id names the replica)"
                    )
                check_extra(source, extra, owned)
        return self

    def librdkafka(self, role: Role, worker: int = 0) -> dict[str, Any]:
        """Every librdkafka property of worker ``worker``'s consumer or producer (callbacks excepted).

        Precedence, lowest first: the scorer's defaults, ``kafka.extra``, ``kafka.<role>_extra``, then what a
        setting or the guarantee decides (the validators have refused an extra that contradicts one of those).
        """
        role_extra = self.kafka.consumer_extra if role == "consumer" else self.kafka.producer_extra
        return self.kafka.librdkafka(self._defaults(role), (role_extra,), self._role_owned(role, worker))

    def transactional_id(self, worker: int) -> str:
        """Unique per replica and worker, stable across restarts: a restarted worker fences its own zombie."""
        instance = self.consumer.instance_id or socket.gethostname()
        return f"{self.transactional_id_prefix()}{instance}-{worker}"

    def transactional_id_prefix(self) -> str:
        """What every replica's and worker's transactional id starts with: the exactly_once ACL's prefix."""
        return f"{self.consumer.group_id}-{self.topics.input}-"

    def _extras(self, role: Role) -> list[tuple[str, Extra]]:
        k = self.kafka
        return [
            ("kafka.extra", k.extra),
            (f"kafka.{role}_extra", k.consumer_extra if role == "consumer" else k.producer_extra),
        ]

    def _defaults(self, role: Role) -> dict[str, Any]:
        """What an extra may change: sizes of librdkafka's queues, backoffs, intervals."""
        # back off to 10 s between reconnects while a broker is away
        conf: dict[str, Any] = {"reconnect.backoff.ms": 500, "reconnect.backoff.max.ms": 10_000}
        batch = self.consumer.batch_size
        if role == "consumer":
            # librdkafka prefetches up to 100,000 messages / 64 MB by default: ten batches are plenty to keep a
            # worker busy, and the rest was resident memory.
            return conf | {
                "queued.min.messages": 10 * batch,
                "queued.max.messages.kbytes": 16_384,
                "auto.commit.interval.ms": _COMMIT_INTERVAL_MS,
                "statistics.interval.ms": 5000,
            }
        # Results waiting for acknowledgement: librdkafka allows 100,000 / 1 GB; ten batches bound a worker's
        # memory when the broker slows down (produce() then waits, which is the backpressure wanted).
        return conf | {"queue.buffering.max.messages": 10 * batch, "queue.buffering.max.kbytes": 32_768}

    def _owned(self, role: Role, worker: int, reveal: bool = True) -> Owned:
        """Property -> (the setting, or the guarantee, that decides it; its value); secrets masked unless
        ``reveal``."""
        return self.kafka.owned(reveal) | self._role_owned(role, worker)

    def _role_owned(self, role: Role, worker: int) -> Owned:
        return self._consumer_owned() if role == "consumer" else self._producer_owned(worker)

    def _consumer_owned(self) -> Owned:
        c = self.consumer
        exactly_once = self.guarantee == "exactly_once"
        owned: Owned = {
            "group.id": ("consumer.group_id", c.group_id),
            "fetch.wait.max.ms": ("consumer.fetch_wait_max_ms", c.fetch_wait_max_ms),
            "auto.offset.reset": ("consumer.auto_offset_reset", c.auto_offset_reset),
            # at_least_once commits what was *stored*, and offsets are stored only after delivery;
            # exactly_once commits them in each batch's transaction
            "enable.auto.commit": (f"guarantee={self.guarantee}", not exactly_once),
            "enable.auto.offset.store": (f"guarantee={self.guarantee}", False),
            "isolation.level": (f"guarantee={self.guarantee}", "read_committed"),
            "group.protocol": ("consumer.group_protocol", c.group_protocol),
        }
        if c.group_protocol == "classic":  # with `consumer` the broker owns it (group.consumer.session.timeout.ms)
            owned["session.timeout.ms"] = ("consumer.session_timeout_ms", c.session_timeout_ms)
        return owned

    def _producer_owned(self, worker: int) -> Owned:
        p = self.producer
        owned: Owned = {
            "enable.idempotence": (f"guarantee={self.guarantee}", True),
            "acks": (f"guarantee={self.guarantee}", "all"),
            "linger.ms": ("producer.linger_ms", p.linger_ms),
            "compression.type": ("producer.compression_type", p.compression_type),
            "delivery.timeout.ms": ("producer.delivery_timeout_ms", p.delivery_timeout_ms),
        }
        if self.guarantee == "exactly_once":
            # librdkafka refuses message.timeout.ms above transaction.timeout.ms
            timeout = p.delivery_timeout_ms + 10_000
            owned["transactional.id"] = ("consumer.instance_id", self.transactional_id(worker))
            owned["transaction.timeout.ms"] = ("producer.delivery_timeout_ms", timeout)
        return owned

    def safe_dump(self) -> dict[str, Any]:
        """The settings with every secret masked, for logs and the config hash."""
        return self.model_dump(mode="json", by_alias=True)

    def config_hash(self) -> str:
        """Short hash of what shapes a score (banks, features, thresholds), published with every result.

        Where the sets live and how activations travel are left out (they differ per machine and per deployment,
        not per score); the model versions are in every result.
        """
        models = self.models.model_dump(mode="json", exclude=_NOT_SHAPING_A_SCORE)
        content = json.dumps(models, sort_keys=True).encode()
        return hashlib.sha256(content).hexdigest()[:12]


_NOT_SHAPING_A_SCORE = {"artifacts_dir", "store_dir", "control_topic", "shadow_topic", "channel"}


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``config`` (YAML; unnamed: the project's configs/scorer.yaml if it exists), the environment
    and ``overrides``, each over the one before.

    ``overrides`` are nested dicts as the YAML has them (``{"kafka": {"bootstrap_servers": ...}}``); None values
    are ignored so unset command-line flags do not mask the file.

    Raises:
        ConfigError: a named file that does not exist or is not YAML; every bad key as a dotted path and the
            source it may come from.
    """
    path = config_file(config)
    settings = load_layered(Settings, path, overrides)
    settings._source = path
    return settings
