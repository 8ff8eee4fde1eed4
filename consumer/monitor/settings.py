"""The monitor's one settings model: configs/monitor.yaml, overridden by ``CRM_MONITOR_*`` environment
variables (``CRM_MONITOR_KAFKA__BOOTSTRAP_SERVERS``), overridden by command-line flags, in the one layering of
``consumer.layering``. Unknown keys are errors.

Separate from the scorer's settings on purpose: the monitor is its own consumer group and process, and shares
no setting, client or code with the scoring path, only the connection models (``consumer.connection``): its
``kafka`` section is the shared Kafka connection plus its group, its ``schema_registry`` section the shared
registry connection (through which it reads Confluent-framed scores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict

from consumer.connection import KafkaConnection, RegistryConnection, check_extra
from consumer.layering import LayeredSettings, load_layered
from schemas.errors import ConfigError

ENV_PREFIX = "CRM_MONITOR_"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "monitor.yaml"
DAY_S = 86_400.0


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MonitorKafka(KafkaConnection):
    """The shared Kafka connection, plus the monitor's own group."""

    client_id: str | None = Field("crm-scorer-monitor", description="client.id the brokers see")

    group_id: str = Field("crm-scorer-monitor", description="The monitor's own consumer group")
    session_timeout_ms: int = Field(10_000, ge=1000, description="Group session timeout")


class MonitorTopics(_Section):
    scores: str = Field("crm.scores", description="Score results (the scorer's output topic)")
    outcomes: str = Field("crm.outcomes", description="Bank decisions and lead conversions")
    applications: str | None = Field(
        None, description="The scorer's input topic: when set, captured rows carry the event as it was scored"
    )
    shadow: str | None = Field(
        None,
        description="A challenger's scores (the scorer's models.shadow_topic, crm.scores.shadow): when set, they join "
        "like a second model, <model>:challenger",
    )


class StoreSettings(_Section):
    path: Path = Field(Path("monitor-state"), description="Folder of the local RocksDB state store")
    ttl_s: float = Field(7 * DAY_S, gt=0, description="A score waits this long (event time) for its outcomes")


class QualitySettings(_Section):
    count_window: int = Field(5000, ge=100, description="Outcomes per model in the count window")
    time_window_s: float = Field(DAY_S, gt=0, description="Event-time window (by decided_at) per model")
    calibration_bins: int = Field(10, ge=2, le=50, description="Equal-width bins of the ECE")
    evaluate_every_s: float = Field(5.0, gt=0, description="How often the gauges are recomputed")
    min_outcomes: int = Field(200, ge=1, description="Fewer joined outcomes than this: no quality figure yet")
    lead_horizon_s: float = Field(
        5 * DAY_S,
        ge=0,
        description="Lead figures count scores at least this old (event time): a lead not yet "
        "converted is no negative before its conversion horizon closes",
    )


class DetectorSettings(_Section):
    """ADWIN (river) over each model's squared errors: fires when the mean error of a recent sub-window is higher
    than the older part's with confidence ``1 - delta``. Checked on the world: quiet over 95k baseline outcomes,
    fires within a few hundred outcomes of a bank tightening its policy (docs/outcomes.md)."""

    min_instances: int = Field(300, ge=1, description="Outcomes of a model before its detector may fire")
    delta: float = Field(0.002, gt=0, lt=1, description="ADWIN's confidence parameter: lower fires later and rarer")


class TriggerSettings(_Section):
    """The retraining trigger (``consumer.monitor.trigger``); bounds chosen on the world, docs/retraining-trigger.md."""

    window: int = Field(1000, ge=50, description="Latest outcomes per model the trigger's signals are computed over")
    odds_ratio: float = Field(2.0, gt=1, description="The CUSUM tests for the odds of a positive moved by this factor")
    cusum: float = Field(12.0, gt=0, description="CUSUM threshold: past it, retraining is recommended on its own")
    auc_gap: float = Field(0.05, gt=0, description="Expected minus realised AUC that counts as one weak signal")
    ece_excess: float = Field(0.03, gt=0, description="ECE above sampling noise that counts as one weak signal")


class LifecycleSettings(_Section):
    """Promotion and the rollback rule (``consumer.monitor.rollback``, docs/model-lifecycle.md)."""

    store_dir: Path | None = Field(
        None, description="The scorer's model store: when set, a promoted model that does worse is rolled back"
    )
    control_topic: str = Field("crm.models", description="The scorer's models.control_topic")
    channel: str = Field("default", description="The scorer's models.channel")
    promote_min_outcomes: int = Field(
        500, ge=10, description="Paired outcomes (champion and challenger, same applications) before a challenger wins"
    )
    rollback_min_outcomes: int = Field(
        500, ge=10, description="Outcomes of a promoted model before the rollback rule may judge it"
    )
    rollback_margin: float = Field(
        0.02, gt=0, lt=1, description="Realised AUC below the predecessor's by more than this: rolled back"
    )


class MonitorSettings(LayeredSettings):
    """Everything ``crm-scorer monitor`` needs. Build it once with ``load_monitor_settings``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    kafka: MonitorKafka = Field(default_factory=MonitorKafka)
    schema_registry: RegistryConnection = Field(default_factory=RegistryConnection)
    topics: MonitorTopics = Field(default_factory=MonitorTopics)
    store: StoreSettings = Field(default_factory=StoreSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    trigger: TriggerSettings = Field(default_factory=TriggerSettings)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    capture_dir: Path | None = Field(None, description="Append every joined row to Parquet here (None: off)")
    capture_flush_s: float | None = Field(
        300.0, gt=0, description="Also write the captured rows every this many seconds (None: every 20,000 rows)"
    )
    single_writer: bool = Field(
        True,
        description="Join the group only while no other monitor is in it, and wait as a standby meanwhile: one "
        "member computes every figure over all partitions (docs/reliability.md)",
    )
    metrics_host: str = Field("0.0.0.0", description="Where /metrics listens")
    metrics_port: int = Field(9410, ge=0, le=65535, description="0 picks a free port")

    def librdkafka(self) -> dict[str, Any]:
        """The consumer's properties: range assignment keeps partition N of both topics on one member.

        Raises:
            ValueError: ``kafka.extra`` contradicts one of them (checked when the settings are read).
        """
        return self.kafka.librdkafka(extras=(), owned=self._owned())

    def _owned(self) -> dict[str, tuple[str, Any]]:
        return {
            "group.id": ("kafka.group_id", self.kafka.group_id),
            "partition.assignment.strategy": ("the monitor's co-partitioned join", "range"),
            "session.timeout.ms": ("kafka.session_timeout_ms", self.kafka.session_timeout_ms),
            "enable.auto.commit": ("the monitor's state store", False),
            "auto.offset.reset": ("the monitor's state store", "earliest"),
            "isolation.level": ("the monitor's state store", "read_committed"),
        }

    @model_validator(mode="after")
    def _extra_agrees_with_the_monitor(self) -> MonitorSettings:
        check_extra("kafka.extra", self.kafka.extra, self._owned())
        return self


def load_monitor_settings(
    config: Path | None = None, connection: Path | None = None, **overrides: Any
) -> MonitorSettings:
    """Settings from ``config`` (default configs/monitor.yaml when it exists), the ``kafka`` and
    ``schema_registry`` sections of the connection file ``connection`` (scorer.yaml, say) over it, the
    environment, ``overrides``.

    Raises:
        ConfigError: a named file that does not exist or is not YAML, or a bad key (named with its path).
    """
    if config is not None and not config.is_file():
        raise ConfigError(f"config file {config} does not exist")
    path = config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    return load_layered(MonitorSettings, path, overrides, connection=connection)
