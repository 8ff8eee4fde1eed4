"""The gateway's own settings: where it listens, its state store, its key and its limits.

What it shares with the scorer (the broker and its credentials, the topics, the models, the schema registry) is
the scorer's own settings (``consumer.settings``, configs/scorer.yaml), read once and passed in: the gateway has
no second copy of them, so it cannot drift from the stream it fronts.

Environment variables ``CRM_GATEWAY_*`` (``CRM_GATEWAY_API_KEY_SHA256``) override the defaults; command-line
flags override both. Unknown keys are errors.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.errors import ConfigError

ENV_PREFIX = "CRM_GATEWAY_"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class GatewaySettings(BaseSettings):
    """Everything ``crm-scorer gateway`` needs besides the scorer's settings."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    host: str = Field("127.0.0.1", description="address uvicorn listens on")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port (0 = pick a free one)")
    store_path: Path = Field(
        Path("gateway-state"),
        description="the scores view's RocksDB folder; rebuilt from the scores and dead-letter topics when missing",
    )
    view_group_id: str = Field(
        "crm-gateway-view",
        description="group.id of the scores view's consumer (it assigns partitions itself and commits nothing)",
    )
    api_key_sha256: SecretStr | None = Field(
        None,
        description="sha256 (hex) of the API key clients send in X-API-Key; unset: no key is asked for",
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024, description="larger requests get 413")
    publish_timeout_s: float = Field(
        10.0, gt=0, le=300, description="longest an upload waits for the broker's acknowledgement before 503"
    )
    readiness_interval_s: float = Field(2.0, gt=0, le=60, description="how often the broker is asked for metadata")

    @field_validator("api_key_sha256")
    @classmethod
    def _is_sha256_hex(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _SHA256_HEX.fullmatch(value.get_secret_value().lower()):
            raise ValueError("must be 64 hex characters: the sha256 of the key, never the key itself")
        return value

    def key_matches(self, presented: str | None) -> bool:
        """True when no key is configured, or ``presented`` hashes to the configured sha256."""
        if self.api_key_sha256 is None:
            return True
        if not presented:
            return False
        digest = hashlib.sha256(presented.encode("utf-8", "replace")).hexdigest()
        return hmac.compare_digest(digest, self.api_key_sha256.get_secret_value().lower())


def load_gateway_settings(**overrides: Any) -> GatewaySettings:
    """Defaults, then ``CRM_GATEWAY_*`` variables, then ``overrides`` (None values are ignored).

    Raises:
        ConfigError: one line per bad key, naming it.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return GatewaySettings(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"gateway settings: {problems}") from exc
