"""Which models the scorer serves and which features each uses: the ``models:`` section of scorer.yaml.

Adding a bank is adding an entry here (and its artifact in the manifest); no code changes.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.features import BANK_FEATURES, FEATURE_NAMES, LEAD_FEATURES

DEFAULT_ARTIFACTS_DIR = Path(__file__).parent / "artifacts"
_KNOWN = set(FEATURE_NAMES)


def _check_features(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in _KNOWN]
    if unknown:
        raise ValueError(f"{unknown} not produced by the feature pipeline (see models.features.FEATURE_NAMES)")
    if len(set(names)) != len(names):
        raise ValueError("a feature is listed twice")
    return names


class BankConfig(BaseModel):
    """One partner bank: its approval model's name in the manifest and the features it uses."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="the bank's name in results and in the manifest")
    features: list[str] = Field(
        default_factory=lambda: list(BANK_FEATURES),
        min_length=1,
        description="features this bank's model uses (default: every questionnaire feature)",
    )
    threshold: float | None = Field(default=None, gt=0, lt=1, description="Overrides the manifest's threshold.")

    _valid_features = field_validator("features")(_check_features)


class LeadConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: list[str] = Field(
        default_factory=lambda: list(LEAD_FEATURES), min_length=1, description="features of the lead-conversion model"
    )

    _valid_features = field_validator("features")(_check_features)


def _default_banks() -> list[BankConfig]:
    return [BankConfig(name=f"bank_{c}") for c in "abcde"]


class ModelsConfig(BaseModel):
    """The models section: where artifacts live, the banks, the lead model, how many reasons to give."""

    model_config = ConfigDict(extra="forbid")

    artifacts_dir: Path = Field(
        DEFAULT_ARTIFACTS_DIR, description="directory holding manifest.json and the model files (verified by sha256)"
    )
    banks: list[BankConfig] = Field(
        default_factory=_default_banks,
        min_length=1,
        description="one entry per partner bank, each with an artifact of the same name in the manifest",
    )
    lead: LeadConfig = Field(default_factory=LeadConfig)
    reasons: int = Field(default=3, ge=0, le=10, description="Top contributions published per result.")

    @field_validator("banks")
    @classmethod
    def _unique_banks(cls, banks: list[BankConfig]) -> list[BankConfig]:
        names = [b.name for b in banks]
        if len(set(names)) != len(names):
            raise ValueError(f"bank names must be unique, got {names}")
        return banks
