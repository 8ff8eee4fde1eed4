"""scorer.yaml, read one way by the scorer (``consumer.settings``) and by training (``crm-train``).

With no file named, the one found is the project's ``configs/scorer.yaml`` beside the code, never one relative
to the working directory: a service started from another directory reads the same file (or, installed
without it, runs on the defaults, and says so in its settings). A file that is named must exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from schemas.errors import ConfigError

DEFAULT_CONFIG_FILE = Path(__file__).resolve().parents[1] / "configs" / "scorer.yaml"


def config_file(named: Path | None) -> Path | None:
    """The file to read: ``named``, or the project's default when it exists (None: no file at all).

    Raises:
        ConfigError: ``named`` does not exist.
    """
    if named is None:
        return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None
    if not named.is_file():
        raise ConfigError(f"config file {named} does not exist")
    return named


def read_config_file(path: Path | None) -> dict[str, Any]:
    """The mapping in ``path`` (an empty file is an empty mapping; None: no file, no values).

    Raises:
        ConfigError: the file cannot be read, is not YAML, or does not hold a mapping.
    """
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} holds a {type(loaded).__name__}, not a mapping of settings")
    return loaded
