"""The monitor's one settings model: configs/monitor.yaml, overridden by ``CRM_MONITOR_*`` environment
variables (``CRM_MONITOR_KAFKA__BOOTSTRAP_SERVERS``), overridden by command-line flags. Unknown keys are errors.

Separate from the scorer's settings on purpose: the monitor is its own consumer group and process, and shares
no setting, client or code with the scoring path. TLS/SASL properties go through ``kafka.extra``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from models.config_file import read_config_file
from schemas.errors import ConfigError

ENV_PREFIX = "CRM_MONITOR_"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "monitor.yaml"
DAY_S = 86_400.0


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MonitorKafka(_Section):
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    group_id: str = Field("crm-scorer-monitor", description="The monitor's own consumer group")
    session_timeout_ms: int = Field(10_000, ge=1000, description="Group session timeout")
    extra: dict[str, str | int | bool] = Field(default_factory=dict, description="More librdkafka properties")


class MonitorTopics(_Section):
    scores: str = Field("crm.scores", description="Score results (the scorer's output topic)")
    outcomes: str = Field("crm.outcomes", description="Bank decisions and lead conversions")
    applications: str | None = Field(
        None, description="The scorer's input topic: when set, captured rows carry the event as it was scored"
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


class MonitorSettings(BaseSettings):
    """Everything ``crm-scorer monitor`` needs. Build it once with ``load_monitor_settings``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    kafka: MonitorKafka = Field(default_factory=MonitorKafka)
    topics: MonitorTopics = Field(default_factory=MonitorTopics)
    store: StoreSettings = Field(default_factory=StoreSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    capture_dir: Path | None = Field(None, description="Append every joined row to Parquet here (None: off)")
    metrics_host: str = Field("0.0.0.0", description="Where /metrics listens")
    metrics_port: int = Field(9410, ge=0, le=65535, description="0 picks a free port")

    def librdkafka(self) -> dict[str, Any]:
        """The consumer's properties: range assignment keeps partition N of both topics on one member."""
        return {
            "bootstrap.servers": self.kafka.bootstrap_servers,
            "group.id": self.kafka.group_id,
            "partition.assignment.strategy": "range",
            "session.timeout.ms": self.kafka.session_timeout_ms,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            **self.kafka.extra,
        }


def load_monitor_settings(config: Path | None = None, **overrides: Any) -> MonitorSettings:
    """Settings from ``config`` (default configs/monitor.yaml when it exists), the environment, ``overrides``.

    Raises:
        ConfigError: a named file that does not exist or is not YAML, or a bad key (named with its path).
    """
    if config is not None and not config.is_file():
        raise ConfigError(f"config file {config} does not exist")
    path = config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    layers = [read_config_file(path), EnvSettingsSource(MonitorSettings)(), _pruned(overrides)]
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            merged[key] = {**merged[key], **value} if isinstance(value, dict) and key in merged else value
    try:
        return MonitorSettings.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(".".join(map(str, e["loc"])) + ": " + e["msg"] for e in exc.errors())
        raise ConfigError(f"monitor settings ({path or 'defaults'}, {ENV_PREFIX}*): {problems}") from exc


def _pruned(overrides: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, dict):
            value = _pruned(value)
        if value not in (None, {}):
            out[key] = value
    return out
