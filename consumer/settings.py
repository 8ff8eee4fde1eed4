"""The scorer's one settings model: scorer.yaml, overridden by ``CRM_SCORER_*`` environment variables,
overridden by command-line flags.

Nested sections map to environment variables with ``__``: ``CRM_SCORER_KAFKA__BOOTSTRAP_SERVERS``,
``CRM_SCORER_CONSUMER__GROUP_ID``. Unknown keys are errors. Credentials are ``SecretStr`` (or a file path), and
only ``Settings.librdkafka`` ever reveals them, to librdkafka itself: it is the one place a client's librdkafka
properties are assembled, for the consumer and for the producer of a worker (the loop adds only its callbacks).

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
import logging
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from models.config import ModelsConfig
from models.config_file import DEFAULT_CONFIG_FILE, config_file, read_config_file
from schemas.errors import ConfigError

ENV_PREFIX = "CRM_SCORER_"
DEFAULT_CONFIG = DEFAULT_CONFIG_FILE
Role = Literal["consumer", "producer"]
Extra = dict[str, str | int | bool]
# What a crashed worker re-delivers is what it stored since the last commit: librdkafka's 5 s default would be
# 5 s of throughput in duplicates.
_COMMIT_INTERVAL_MS = 1000
# Client properties of the classic group protocol that librdkafka refuses with group.protocol=consumer (KIP-848:
# the broker owns the session, the heartbeat and the assignor; group.remote.assignor picks a server assignor).
CLASSIC_ONLY_PROPERTIES = ("session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy",
                           "group.protocol.type")  # fmt: skip


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port]")
    client_id: str = Field("crm-scorer", description="client.id the brokers see in their logs and quotas")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="librdkafka security.protocol"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism; set together with sasl_username and a password"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="Prefer sasl_password_file or the environment")
    sasl_password_file: Path | None = Field(None, description="A file holding the SASL password (a mounted secret)")
    ssl_ca_location: Path | None = Field(None, description="CA certificate file for SSL / SASL_SSL")
    ssl_verify: bool = Field(
        True,
        description="Verify the broker's certificate and host name (SSL / SASL_SSL); false turns both off, logs a "
        "warning at start, and is for a test cluster only",
    )
    extra: Extra = Field(
        default_factory=dict,
        description="More librdkafka properties for both clients, over the scorer's defaults; a property a "
        "setting (or the guarantee) sets is refused unless it agrees",
    )
    consumer_extra: Extra = Field(
        default_factory=dict, description="More librdkafka properties for the consumer only, over `kafka.extra`"
    )
    producer_extra: Extra = Field(
        default_factory=dict, description="More librdkafka properties for the producers only, over `kafka.extra`"
    )

    def password(self) -> str | None:
        if self.sasl_password_file is not None:
            try:
                return self.sasl_password_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"kafka.sasl_password_file: cannot read {self.sasl_password_file}: {exc}") from exc
        return self.sasl_password.get_secret_value() if self.sasl_password else None


class TopicSettings(_Section):
    input: str = Field("crm.applications", description="application events are consumed from here")
    output: str = Field("crm.scores", description="score results are published here, keyed by application_id")
    dlq: str = Field(
        "crm.applications.dlq", description="dead letters: the original key and value, the reason in dlq.* headers"
    )


class ConsumerSettings(_Section):
    group_id: str = Field(
        "crm-scorer", description="consumer group; every worker and replica with the same id shares the partitions"
    )
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
    session_timeout_ms: int = Field(
        10_000,
        ge=1000,
        description="a member silent this long is dropped from the group and its partitions move (classic "
        "protocol; with `consumer` the broker's group.consumer.session.timeout.ms rules)",
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="where a group with no committed offset starts"
    )
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
        "other, and a worker fenced three times within a minute stops, saying so",
    )


class ProducerSettings(_Section):
    linger_ms: int = Field(5, ge=0, le=1000, description="how long the producer waits to fill a batch")
    compression_type: Literal["none", "lz4", "zstd", "snappy", "gzip"] = Field(
        "lz4", description="compression of results and dead letters"
    )
    delivery_timeout_ms: int = Field(
        120_000, ge=1000, description="an unacknowledged result is retried until this, then the worker fails it"
    )


class MetricsSettings(_Section):
    enabled: bool = Field(True, description="serve /metrics, /healthz and /readyz")
    host: str = Field("0.0.0.0", description="Bind address of /metrics, /healthz and /readyz")
    port: int = Field(9400, ge=0, le=65535, description="0 picks a free port")
    drift: bool = Field(True, description="count events into the models' reference profiles and export PSI")
    drift_interval_s: float = Field(5.0, gt=0, description="seconds between PSI evaluations")
    drift_short_window: int = Field(1000, ge=100, description="events in the short drift window")
    drift_long_window: int = Field(50_000, ge=1000, description="events in the long drift window")


class SchemaRegistrySettings(_Section):
    url: str | None = Field(None, description="Confluent Schema Registry; unset = single-object framing")
    basic_auth_user_info: SecretStr | None = Field(None, description="USER:PASSWORD for the Schema Registry")


class DedupSettings(_Section):
    enabled: bool = Field(True, description="skip re-scoring an application whose content was scored recently")
    capacity: int = Field(100_000, ge=0, description="Recent application hashes kept per worker")


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")
    json_format: bool = Field(False, alias="json", description="one JSON object per log line")


class Settings(BaseSettings):
    """Everything ``crm-scorer run`` needs. Build it once with ``load_settings`` and pass values down."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", populate_by_name=True
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="at_least_once, or exactly_once: results, dead letters and offsets in one transaction",
    )
    workers: int = Field(1, ge=1, le=64, description="Worker processes in the consumer group on this host")
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    schema_registry: SchemaRegistrySettings = Field(default_factory=SchemaRegistrySettings)
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
                    raise ValueError(f"{source} sets transactional.id: the scorer names one per worker under "
                                     "guarantee=exactly_once (consumer.instance_id names the replica)")  # fmt: skip
                for key, value in extra.items():
                    if key in owned and _text(value) != _text(owned[key][1]):
                        raise ValueError(_contradiction(source, key, value, *owned[key]))
        return self

    def librdkafka(self, role: Role, worker: int = 0) -> dict[str, Any]:
        """Every librdkafka property of worker ``worker``'s consumer or producer (callbacks excepted).

        Precedence, lowest first: the scorer's defaults, ``kafka.extra``, ``kafka.<role>_extra``, then what a
        setting or the guarantee decides (the validator has refused an extra that contradicts one of those).
        """
        conf = self._defaults(role)
        for _source, extra in self._extras(role):
            conf |= extra
        return conf | {key: value for key, (_setting, value) in self._owned(role, worker).items()}

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
            return conf | {"queued.min.messages": 10 * batch, "queued.max.messages.kbytes": 16_384,
                           "auto.commit.interval.ms": _COMMIT_INTERVAL_MS, "statistics.interval.ms": 5000}  # fmt: skip
        # Results waiting for acknowledgement: librdkafka allows 100,000 / 1 GB; ten batches bound a worker's
        # memory when the broker slows down (produce() then waits, which is the backpressure wanted).
        return conf | {"queue.buffering.max.messages": 10 * batch, "queue.buffering.max.kbytes": 32_768}

    def _owned(self, role: Role, worker: int, reveal: bool = True) -> dict[str, tuple[str, Any]]:
        """Property -> (the setting, or the guarantee, that decides it; its value).

        The only place a secret is revealed (``reveal``; else masked, and a password file is not read).
        """
        k = self.kafka
        owned: dict[str, tuple[str, Any]] = {
            "bootstrap.servers": ("kafka.bootstrap_servers", k.bootstrap_servers),
            "client.id": ("kafka.client_id", k.client_id),
            "security.protocol": ("kafka.security_protocol", k.security_protocol),
        }
        if k.sasl_mechanism:
            owned |= {"sasl.mechanism": ("kafka.sasl_mechanism", k.sasl_mechanism),
                      "sasl.username": ("kafka.sasl_username", k.sasl_username or ""),
                      "sasl.password": ("kafka.sasl_password", (k.password() or "") if reveal else "***")}  # fmt: skip
        if k.ssl_ca_location:
            owned["ssl.ca.location"] = ("kafka.ssl_ca_location", str(k.ssl_ca_location))
        # librdkafka verifies both by default; owned, so an extra cannot turn them off behind kafka.ssl_verify
        owned |= {
            "enable.ssl.certificate.verification": ("kafka.ssl_verify", k.ssl_verify),
            "ssl.endpoint.identification.algorithm": ("kafka.ssl_verify", "https" if k.ssl_verify else "none"),
        }
        if not k.ssl_verify and reveal and k.security_protocol in ("SSL", "SASL_SSL"):
            _warn_once("kafka.ssl_verify is false: the broker's certificate and host name are not verified, so "
                       "anyone on the network path can pose as the broker and read the credentials and the data; "
                       "for a test cluster only")  # fmt: skip
        return owned | (self._consumer_owned() if role == "consumer" else self._producer_owned(worker))

    def _consumer_owned(self) -> dict[str, tuple[str, Any]]:
        c = self.consumer
        exactly_once = self.guarantee == "exactly_once"
        owned: dict[str, tuple[str, Any]] = {
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

    def _producer_owned(self, worker: int) -> dict[str, tuple[str, Any]]:
        p = self.producer
        owned: dict[str, tuple[str, Any]] = {
            "enable.idempotence": (f"guarantee={self.guarantee}", True),
            "acks": (f"guarantee={self.guarantee}", "all"),
            "linger.ms": ("producer.linger_ms", p.linger_ms),
            "compression.type": ("producer.compression_type", p.compression_type),
            "delivery.timeout.ms": ("producer.delivery_timeout_ms", p.delivery_timeout_ms),
        }
        if self.guarantee == "exactly_once":
            # librdkafka refuses message.timeout.ms above transaction.timeout.ms
            timeout = p.delivery_timeout_ms + 10_000
            owned |= {"transactional.id": ("consumer.instance_id", self.transactional_id(worker)),
                      "transaction.timeout.ms": ("producer.delivery_timeout_ms", timeout)}  # fmt: skip
        return owned

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
    """Settings from ``config`` (YAML; unnamed: the project's configs/scorer.yaml if it exists), the environment
    and ``overrides``, each over the one before.

    ``overrides`` are nested dicts as the YAML has them (``{"kafka": {"bootstrap_servers": ...}}``); None values
    are ignored so unset command-line flags do not mask the file.

    Raises:
        ConfigError: a named file that does not exist or is not YAML; every bad key as a dotted path and the
            source it may come from.
    """
    path = config_file(config)
    layers = [read_config_file(path), EnvSettingsSource(Settings)(), _prune(overrides)]
    try:
        settings = Settings.model_validate(_merged(layers))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from exc
    settings._source = path
    return settings


def _merged(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Nested mappings merged key by key, a later layer over an earlier one (a list is replaced whole)."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = _merged([out[key], value])
            else:
                out[key] = value
    return out


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
        if not err["loc"]:  # a check across sections: its message names the keys
            problems.append("  " + err["msg"].removeprefix("Value error, "))
            continue
        key = ".".join(str(part) for part in err["loc"])
        env = ENV_PREFIX + "__".join(str(p) for p in err["loc"] if not isinstance(p, int)).upper()
        problems.append(f"  {key}: {err['msg']} (env {env})")
    return f"invalid settings ({source}):\n" + "\n".join(problems)


def _contradiction(source: str, key: str, value: object, setting: str, wanted: object) -> str:
    shown = "***" if "password" in key else _text(value)
    if setting.startswith("guarantee="):
        return f"{source} sets {key}={shown}, but {setting} rests on {key}={_text(wanted)}: remove it"
    return f"{source} sets {key}={shown} but {setting} is {_text(wanted)}: choose it with {setting} only"


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Log ``message`` once per process (the clients' properties are assembled once per client)."""
    if message not in _warned:
        _warned.add(message)
        logging.getLogger(__name__).warning("%s", message)


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
