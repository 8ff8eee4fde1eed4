"""One layering for every settings model: a YAML file, under the environment, under the command-line flags.

Built from pydantic-settings' own sources (``settings_customise_sources``): ``YamlConfigSettingsSource`` for the
file, ``EnvSettingsSource`` for ``<PREFIX>SECTION__KEY`` variables, the init kwargs for the flags; pydantic-settings
merges them section by section (a later source's key over an earlier one's, a list replaced whole).

A *connection file* is any YAML whose ``kafka:`` and ``schema_registry:`` sections are read with the shared
connection models (``consumer.connection``), every other section and a command's own ``kafka`` keys left alone:
the scorer's scorer.yaml, the monitor's monitor.yaml, or a file of just those two sections all connect
``crm-producer`` and ``crm-scorer monitor`` (``ConnectionSettings``, ``--config`` / ``--connection``).
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from consumer.connection import COMMAND_KEYS, KafkaConnection, RegistryConnection
from models.config_file import read_config_file
from schemas.errors import ConfigError

_YAML_FILE: ContextVar[Path | None] = ContextVar("yaml_file", default=None)
_CONNECTION_FILE: ContextVar[Path | None] = ContextVar("connection_file", default=None)
S = TypeVar("S", bound="LayeredSettings")
CONNECTION_ENV_PREFIX = "CRM_PRODUCER_"


class ConnectionFileSource(YamlConfigSettingsSource):
    """The ``kafka`` (without a command's own keys) and ``schema_registry`` sections of a YAML file."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        data = super()._read_file(file_path)
        sections: dict[str, Any] = {}
        kafka, registry = data.get("kafka"), data.get("schema_registry")
        if isinstance(kafka, dict):
            sections["kafka"] = {k: v for k, v in kafka.items() if k not in COMMAND_KEYS}
        if registry is not None:
            sections["schema_registry"] = registry
        return sections


class LayeredSettings(BaseSettings):
    """Settings read from the file named to :func:`load_layered`, the environment and init kwargs (the flags)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings]
        connection, path = _CONNECTION_FILE.get(), _YAML_FILE.get()
        if connection is not None:
            sources.append(ConnectionFileSource(settings_cls, yaml_file=connection))
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


def load_layered(model: type[S], path: Path | None, overrides: dict[str, Any], connection: Path | None = None) -> S:
    """``model`` from ``path`` (None: no file), the connection file ``connection`` over it (its ``kafka`` and
    ``schema_registry`` sections), the environment, and ``overrides`` (nested dicts as the YAML has them; None
    values are dropped, so an unset flag does not mask the file).

    Raises:
        ConfigError: the file cannot be read, is not YAML or not a mapping; every bad key as a dotted path with
            its environment variable.
    """
    for named in (path, connection):  # one clear line for a file that is no mapping of settings
        if named is not None and not named.is_file():
            raise ConfigError(f"config file {named} does not exist")
        read_config_file(named)
    tokens = _YAML_FILE.set(path), _CONNECTION_FILE.set(connection)
    try:
        return model(**pruned(overrides))
    except ValidationError as exc:
        files = ", ".join(str(f) for f in (path, connection) if f is not None) or None
        raise ConfigError(describe(exc, files, str(model.model_config.get("env_prefix", "")))) from exc
    finally:
        _YAML_FILE.reset(tokens[0])
        _CONNECTION_FILE.reset(tokens[1])


class ConnectionSettings(LayeredSettings):
    """What a ``crm-producer`` command reads to reach Kafka and the registry: a connection file's ``kafka`` and
    ``schema_registry`` sections, ``CRM_PRODUCER_KAFKA__*`` / ``CRM_PRODUCER_SCHEMA_REGISTRY__*`` variables,
    and the flags (``--bootstrap-servers``, ``--schema-registry-url``)."""

    model_config = SettingsConfigDict(env_prefix=CONNECTION_ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    kafka: KafkaConnection = Field(default_factory=KafkaConnection)
    schema_registry: RegistryConnection = Field(default_factory=RegistryConnection)


def load_connection(connection: Path | None = None, **overrides: Any) -> ConnectionSettings:
    """The connection of a tool: ``connection`` (a connection file, see the module), the environment, then
    ``overrides`` (None values ignored).

    Raises:
        ConfigError: the file does not exist or is no YAML mapping; a bad key, named with its variable.
    """
    return load_layered(ConnectionSettings, None, overrides, connection=connection)


def pruned(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` without None values and the sections left empty by dropping them."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, dict):
            value = pruned(value)
            if value:
                out[key] = value
        elif value is not None:
            out[key] = value
    return out


def describe(exc: ValidationError, path: Path | str | None, env_prefix: str) -> str:
    """Every problem of ``exc`` on a line: its dotted key and environment variable (never the value)."""
    source = f"{path}, {env_prefix}* environment or flags" if path else f"{env_prefix}* environment or flags"
    problems = []
    for err in exc.errors(include_input=False):
        if not err["loc"]:  # a check across sections: its message names the keys
            problems.append("  " + err["msg"].removeprefix("Value error, "))
            continue
        key = ".".join(str(part) for part in err["loc"])
        env = env_prefix + "__".join(str(p) for p in err["loc"] if not isinstance(p, int)).upper()
        problems.append(f"  {key}: {err['msg'].removeprefix('Value error, ')} (env {env})")
    return f"invalid settings ({source}):\n" + "\n".join(problems)
