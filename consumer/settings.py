"""The scorer's one settings model: scorer.yaml, overridden by ``CRM_SCORER_*`` environment variables,
overridden by command-line flags.

Nested sections map to environment variables with ``__``: ``CRM_SCORER_KAFKA__BOOTSTRAP_SERVERS``,
``CRM_SCORER_CONSUMER__GROUP_ID``. Unknown keys are errors. Credentials are ``SecretStr`` (or a file path), and
only ``as_librdkafka_dict`` ever reveals them, to librdkafka itself.
"""

from __future__ import annotations

import hashlib
import json
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from models.config import ModelsConfig
from schemas.errors import ConfigError

ENV_PREFIX = "CRM_SCORER_"
DEFAULT_CONFIG = Path("configs/scorer.yaml")
_yaml_file: ContextVar[Path | None] = ContextVar("scorer_yaml_file", default=None)
# Client properties of the classic group protocol that librdkafka refuses with group.protocol=consumer (KIP-848:
# the broker owns the session, the heartbeat and the assignor; group.remote.assignor picks a server assignor).
CLASSIC_ONLY_PROPERTIES = ("session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy",
                           "group.protocol.type")  # fmt: skip


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port]")
    client_id: str = "crm-scorer"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = Field(None, description="Prefer sasl_password_file or the environment")
    sasl_password_file: Path | None = Field(None, description="A file holding the SASL password (a mounted secret)")
    ssl_ca_location: Path | None = None
    extra: dict[str, str | int | bool] = Field(default_factory=dict, description="More librdkafka properties")

    def password(self) -> str | None:
        if self.sasl_password_file is not None:
            try:
                return self.sasl_password_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"kafka.sasl_password_file: cannot read {self.sasl_password_file}: {exc}") from exc
        return self.sasl_password.get_secret_value() if self.sasl_password else None


class TopicSettings(_Section):
    input: str = "crm.applications"
    output: str = "crm.scores"
    dlq: str = "crm.applications.dlq"


class ConsumerSettings(_Section):
    group_id: str = "crm-scorer"
    batch_size: int = Field(1000, ge=1, le=100_000, description="Messages per consume() call and engine batch")
    batch_timeout_s: float = Field(
        0.002,
        gt=0,
        le=10,
        description="Longest wait for a batch to fill: under load a batch fills at once, when traffic is light "
        "this is what waiting adds to a message's latency",
    )
    fetch_wait_max_ms: int = Field(
        5,
        ge=0,
        le=10_000,
        description="Longest the broker holds a fetch while no new data arrives (Kafka answers as soon as data "
        "comes; Tansu always waits this long): the latency floor when traffic is light",
    )
    session_timeout_ms: int = Field(10_000, ge=1000)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    group_protocol: Literal["classic", "consumer"] = Field(
        "classic",
        description="Consumer group protocol: `classic` (join and sync: every member stops briefly at each "
        "rebalance) or `consumer` (KIP-848, Kafka 4.0+: the broker assigns incrementally, only moved partitions "
        "stop, for up to its heartbeat interval; session timeout, heartbeat and assignor are broker settings, so "
        "session_timeout_ms is not sent). See docs/group-protocols.md",
    )
    instance_id: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="Names this replica in its workers' transactional ids (exactly_once: "
        "`<group_id>-<input topic>-<instance_id>-<worker>`): unique per live replica, stable across its restarts, "
        "so a restart fences its own zombie; unset = the host name. Two live replicas with one id fence each "
        "other, and a worker fenced twice within a minute stops, saying so",
    )


class ProducerSettings(_Section):
    linger_ms: int = Field(5, ge=0, le=1000)
    compression_type: Literal["none", "lz4", "zstd", "snappy", "gzip"] = "lz4"
    delivery_timeout_ms: int = Field(120_000, ge=1000)


class MetricsSettings(_Section):
    enabled: bool = True
    host: str = Field("0.0.0.0", description="Bind address of /metrics, /healthz and /readyz")
    port: int = Field(9400, ge=0, le=65535, description="0 picks a free port")
    drift: bool = True
    drift_interval_s: float = Field(5.0, gt=0)
    drift_short_window: int = Field(1000, ge=100)
    drift_long_window: int = Field(50_000, ge=1000)


class SchemaRegistrySettings(_Section):
    url: str | None = Field(None, description="Confluent Schema Registry; unset = single-object framing")
    basic_auth_user_info: SecretStr | None = None


class DedupSettings(_Section):
    enabled: bool = True
    capacity: int = Field(100_000, ge=0, description="Recent application hashes kept per worker")


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = Field(False, alias="json")


class Settings(BaseSettings):
    """Everything ``crm-scorer run`` needs. Build it once with ``load_settings`` and pass values down."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", populate_by_name=True
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    workers: int = Field(1, ge=1, le=64, description="Worker processes in the consumer group on this host")
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    schema_registry: SchemaRegistrySettings = Field(default_factory=SchemaRegistrySettings)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_file = _yaml_file.get()
        if yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)

    @field_validator("consumer")
    @classmethod
    def _group_protocol_fits_extra(cls, consumer: ConsumerSettings, info: ValidationInfo) -> ConsumerSettings:
        kafka = info.data.get("kafka")
        extra = kafka.extra if isinstance(kafka, KafkaSettings) else {}
        protocol = consumer.group_protocol
        if extra.get("group.protocol", protocol) != protocol:
            raise ValueError(
                f"kafka.extra sets group.protocol={extra['group.protocol']} but consumer.group_protocol is "
                f"{protocol}: choose the protocol with consumer.group_protocol only"
            )
        refused = [key for key in CLASSIC_ONLY_PROPERTIES if key in extra]
        if protocol == "consumer" and refused:
            raise ValueError(
                f"kafka.extra sets {', '.join(refused)}, which librdkafka refuses with group_protocol=consumer "
                "(the broker decides them: its group.consumer.* settings, and group.remote.assignor picks the "
                "assignor): remove it, or use group_protocol=classic"
            )
        return consumer

    def as_librdkafka_dict(self) -> dict[str, Any]:
        """Connection properties shared by every client (the only place secrets are revealed)."""
        k = self.kafka
        conf: dict[str, Any] = {"bootstrap.servers": k.bootstrap_servers, "client.id": k.client_id,
                                "security.protocol": k.security_protocol,
                                # back off to 10 s between reconnects while a broker is away
                                "reconnect.backoff.ms": 500, "reconnect.backoff.max.ms": 10_000}  # fmt: skip
        if k.sasl_mechanism:
            conf |= {"sasl.mechanism": k.sasl_mechanism, "sasl.username": k.sasl_username or ""}
            conf["sasl.password"] = k.password() or ""
        if k.ssl_ca_location:
            conf["ssl.ca.location"] = str(k.ssl_ca_location)
        return conf | dict(k.extra)

    def consumer_config(self) -> dict[str, Any]:
        c = self.consumer
        # librdkafka prefetches up to 100,000 messages / 64 MB by default: ten batches are plenty to keep a
        # worker busy, and the rest was resident memory. ``kafka.extra`` may still raise them.
        prefetch = {"queued.min.messages": 10 * c.batch_size, "queued.max.messages.kbytes": 16_384}
        return (
            prefetch
            | self.as_librdkafka_dict()
            | {
                "group.id": c.group_id,
                "fetch.wait.max.ms": c.fetch_wait_max_ms,
                "enable.auto.commit": True,  # commits what we *stored*: offsets are stored only after delivery
                "enable.auto.offset.store": False,
                "auto.offset.reset": c.auto_offset_reset,
                "isolation.level": "read_committed",
                "statistics.interval.ms": 5000,
            }
            | self._group_protocol_config()
        )

    def _group_protocol_config(self) -> dict[str, Any]:
        c = self.consumer
        if c.group_protocol == "consumer":  # the broker owns the session timeout (group.consumer.session.timeout.ms)
            return {"group.protocol": "consumer"}
        return {"group.protocol": "classic", "session.timeout.ms": c.session_timeout_ms}

    def producer_config(self, transactional_id: str | None = None) -> dict[str, Any]:
        p = self.producer
        # Results waiting for acknowledgement: librdkafka allows 100,000 / 1 GB; ten batches bound a worker's
        # memory when the broker slows down (produce() then waits, which is the backpressure wanted).
        backlog = {"queue.buffering.max.messages": 10 * self.consumer.batch_size, "queue.buffering.max.kbytes": 32_768}
        conf = (
            backlog
            | self.as_librdkafka_dict()
            | {
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": p.linger_ms,
                "compression.type": p.compression_type,
                "delivery.timeout.ms": p.delivery_timeout_ms,
            }
        )
        if transactional_id:
            # librdkafka refuses message.timeout.ms above transaction.timeout.ms
            conf |= {"transactional.id": transactional_id, "transaction.timeout.ms": p.delivery_timeout_ms + 10_000}
        return conf

    def safe_dump(self) -> dict[str, Any]:
        """The settings with every secret masked, for logs and the config hash."""
        return self.model_dump(mode="json", by_alias=True)

    def config_hash(self) -> str:
        """Short hash of what shapes a score (banks, features, thresholds), published with every result.

        The artifacts' location is left out (it differs per machine); their versions are in every result.
        """
        models = self.models.model_dump(mode="json", exclude={"artifacts_dir"})
        content = json.dumps(models, sort_keys=True).encode()
        return hashlib.sha256(content).hexdigest()[:12]


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``config`` (YAML; the default path only if it exists), the environment and ``overrides``.

    ``overrides`` are nested dicts as the YAML has them (``{"kafka": {"bootstrap_servers": ...}}``); None values
    are ignored so unset command-line flags do not mask the file.

    Raises:
        ConfigError: naming every bad key as a dotted path and the source it may come from.
    """
    path = config if config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    token = _yaml_file.set(path)
    try:
        return Settings(**_prune(overrides))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from exc
    finally:
        _yaml_file.reset(token)


def _prune(overrides: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, dict):
            value = _prune(value)
            if value:
                out[key] = value
        elif value is not None:
            out[key] = value
    return out


def _describe(exc: ValidationError, path: Path | None) -> str:
    source = f"{path}, {ENV_PREFIX}* environment or flags" if path else f"{ENV_PREFIX}* environment or flags"
    problems = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        env = ENV_PREFIX + "__".join(str(p) for p in err["loc"] if not isinstance(p, int)).upper()
        problems.append(f"  {key}: {err['msg']} (env {env})")
    return f"invalid settings ({source}):\n" + "\n".join(problems)
