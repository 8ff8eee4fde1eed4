"""The checks that need no broker: settings, artifacts, reason codes; and the schema registry's subject.

Each returns a ``Check``: its name, ``None`` or the problem in one line, and the exit code it ends the command
with when it is the first to fail (docs/exit-codes.md). No check raises: the problem is the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consumer.exit_codes import BAD_INPUT, OK, REGISTRY_UNAVAILABLE
from models.config import ModelsConfig
from models.reasons import reason_names, unexplained
from schemas.errors import ArtifactError, ConfigError


@dataclass(frozen=True)
class Check:
    """One line of ``crm-scorer check``."""

    name: str
    problem: str | None = None
    detail: str = ""
    code: int = OK
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        if self.skipped:
            return f"skip  {self.name}: {self.detail}"
        if self.problem is None:
            return f"ok    {self.name}" + (f": {self.detail}" if self.detail else "")
        return f"FAIL  {self.name}: {self.problem}"


def failed(name: str, problem: str, code: int) -> Check:
    return Check(name, " ".join(problem.split()), code=code)  # one line, whatever the error held


def settings_check(load: Callable[[], Any]) -> tuple[Check, Any]:
    """Load the settings with ``load``; the check and the settings (None when they are invalid)."""
    try:
        settings = load()
    except ConfigError as exc:
        return failed("settings", str(exc), BAD_INPUT), None
    if not hasattr(settings, "source"):
        return Check("settings", detail="valid"), settings
    source = settings.source
    return Check("settings", detail=f"from {source}" if source else "no config file: built-in defaults"), settings


def artifacts_check(models: ModelsConfig, load: Callable[[ModelsConfig], Any]) -> tuple[Check, Any]:
    """Verify (sha256) and load the model set the scorer would serve (the store's active set, or artifacts_dir)."""
    try:
        loaded = load(models)
    except ArtifactError as exc:
        return failed("artifacts", str(exc), BAD_INPUT), None
    versions = ", ".join(f"{bank.name} {bank.version}" for bank in loaded.banks)
    return Check("artifacts", detail=f"set {loaded.version} from {loaded.directory}: {versions}"), loaded


def reasons_check(models: ModelsConfig, loaded: Any) -> Check:
    """Every feature the loaded models explain has a reason code (the trained features, not only the configured)."""
    features = [*(bank.features for bank in loaded.banks), models.lead.features]
    names = sorted({name for listed in features for name in reason_names(tuple(listed))})
    missing = unexplained(names, models.reason_codes)
    if missing:
        return failed("reason codes", f"no entry for {missing} in models.reason_codes", BAD_INPUT)
    return Check("reason codes", detail=f"{len(names)} reasons, each with a code")


def registry_check(conf: dict[str, Any], subject: str | None, client: Callable[[dict[str, Any]], Any]) -> Check:
    """The registry answers (with the configured credentials) and names ``subject``'s compatibility level."""
    if not conf:
        return Check("schema registry", detail="not configured (single-object framing)")
    registry = client(conf)
    try:
        level = _compatibility(registry, subject)
    except Exception as exc:
        problem = f"{conf['url']} did not answer for {subject}: {_message(exc)} (check schema_registry.*)"
        return failed("schema registry", problem, REGISTRY_UNAVAILABLE)
    return Check("schema registry", detail=f"{conf['url']}: {subject} compatibility {level}")


def _compatibility(registry: Any, subject: str | None) -> str:
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    try:
        return str(registry.get_compatibility(subject))
    except SchemaRegistryError as exc:
        if exc.http_status_code != 404:  # a subject without its own level follows the registry's global one
            raise
    return f"{registry.get_compatibility()} (global)"


def _message(exc: Exception) -> str:
    text = getattr(exc, "error_message", None) or str(exc) or type(exc).__name__
    return str(text).splitlines()[0][:300]
