"""The scorer's sections of settings beside the connection: topics, results, consumer, producer, metrics, dedup,
log."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from consumer.connection import Extra, KafkaConnection, masked
from models.reasons import LANGUAGES


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(KafkaConnection):
    """The shared connection, plus the scorer's client id and its extras per client."""

    client_id: str = Field("crm-scorer", description="client.id the brokers see in their logs and quotas")
    consumer_extra: Extra = Field(
        default_factory=dict, description="More librdkafka properties for the consumer only, over `kafka.extra`"
    )
    producer_extra: Extra = Field(
        default_factory=dict, description="More librdkafka properties for the producers only, over `kafka.extra`"
    )

    @field_serializer("consumer_extra", "producer_extra")
    def _masked_extras(self, extra: Extra) -> Extra:
        return masked(extra)


class TopicSettings(_Section):
    input: str = Field("crm.applications", description="application events are consumed from here")
    output: str = Field("crm.scores", description="score results are published here, keyed by application_id")
    dlq: str = Field(
        "crm.applications.dlq", description="dead letters: the original key and value, the reason in dlq.* headers"
    )


class ResultSettings(_Section):
    statement_languages: list[Literal["ru", "en"]] = Field(
        default_factory=list,
        description=f"languages of the reason statements written into every result ({', '.join(LANGUAGES)}; "
        "default none: results carry reason codes, and subscribers render statements from the reason-code "
        "catalogue that `crm-scorer schemas export` writes)",
    )

    @field_validator("statement_languages")
    @classmethod
    def _once_each(cls, languages: list[str]) -> list[str]:
        if len(set(languages)) != len(languages):
            raise ValueError(f"a language is named twice: {', '.join(languages)}")
        return languages


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
    max_unacknowledged_batches: int = Field(
        4,
        ge=1,
        le=100,
        description="at_least_once: batches scored whose results the broker has not acknowledged yet, at most; "
        "past it the worker waits for acknowledgements before consuming more, and pauses its partitions while "
        "the broker does not answer. What a crash or a lost session can score twice is this many batches plus "
        "200 ms (the commit interval) of acknowledged results. See docs/reliability.md",
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
        "other, and a worker fenced four times within a minute stops, saying so",
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


class DedupSettings(_Section):
    enabled: bool = Field(True, description="skip re-scoring an application whose content was scored recently")
    capacity: int = Field(100_000, ge=0, description="Recent application hashes kept per worker")


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")
    json_format: bool = Field(False, alias="json", description="one JSON object per log line")
