"""Which models the scorer serves and which features each uses: the ``models:`` section of scorer.yaml.

Adding a bank is adding an entry here (and its artifact in the manifest); no code changes. A bank's loan
products (amount and term ranges, annual rate) are optional: a bank with none offers what the applicant asked
for at a price the scorer does not know. The reason-code table is the shipped ``models/reason_codes.yaml``
with ``reason_codes`` replacing entries feature by feature; every feature a configured model explains must
have one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.features import BANK_FEATURES, FEATURE_NAMES, LEAD_FEATURES
from models.reasons import MAX_REASONS, FeatureReasons, merged_reason_codes, reason_names, unexplained

DEFAULT_ARTIFACTS_DIR = Path(__file__).parent / "artifacts"
_KNOWN = set(FEATURE_NAMES)


def _check_features(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in _KNOWN]
    if unknown:
        raise ValueError(f"{unknown} not produced by the feature pipeline (see models.features.FEATURE_NAMES)")
    if len(set(names)) != len(names):
        raise ValueError("a feature is listed twice")
    return names


class ProductConfig(BaseModel):
    """One loan product of a bank: an application fits it when its amount and term lie in the ranges."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="the product's name in offers")
    amount_min: float = Field(gt=0, description="smallest loan amount, in the application's currency")
    amount_max: float = Field(gt=0, description="largest loan amount")
    term_min: int = Field(ge=1, description="shortest term, in months")
    term_max: int = Field(ge=1, description="longest term, in months")
    annual_rate: float = Field(
        ge=0, lt=5, description="nominal annual rate as a fraction (0.189 = 18.9%), monthly annuity"
    )

    @model_validator(mode="after")
    def _ranges(self) -> ProductConfig:
        if self.amount_min > self.amount_max or self.term_min > self.term_max:
            raise ValueError(f"product {self.name!r}: a range's minimum exceeds its maximum")
        return self


class BankConfig(BaseModel):
    """One partner bank: its approval model's name in the manifest, the features it uses, its products."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="the bank's name in results and in the manifest")
    features: list[str] = Field(
        default_factory=lambda: list(BANK_FEATURES),
        min_length=1,
        description="features this bank's model uses (default: every questionnaire feature)",
    )
    threshold: float | None = Field(default=None, gt=0, lt=1, description="Overrides the manifest's threshold.")
    products: list[ProductConfig] = Field(
        default_factory=list, description="loan products offered when the bank approves (none: the requested loan)"
    )

    _valid_features = field_validator("features")(_check_features)

    @field_validator("products")
    @classmethod
    def _unique_products(cls, products: list[ProductConfig]) -> list[ProductConfig]:
        names = [p.name for p in products]
        if len(set(names)) != len(names):
            raise ValueError(f"product names must be unique within a bank, got {names}")
        return products


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
        DEFAULT_ARTIFACTS_DIR,
        description="directory holding manifest.json and the model files (verified by sha256); "
        "used when no store_dir is set",
    )
    store_dir: Path | None = Field(
        None,
        description="model store: one sub-directory per model-set version and the record of the active one "
        "(crm-scorer models); when set, the scorer serves the active set and follows activations",
    )
    control_topic: str = Field(
        "crm.models",
        min_length=1,
        description="compacted topic carrying activations (key: channel); every worker of every replica follows it",
    )
    shadow_topic: str = Field(
        "crm.scores.shadow",
        min_length=1,
        description="a challenger's scores (key: application id, co-partitioned with the results; "
        "crm-scorer models shadow creates it), read by the monitor beside the results",
    )
    channel: str = Field(
        "default",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="this scorer's key on the control topic: deployments sharing a topic follow their own channel",
    )
    banks: list[BankConfig] = Field(
        default_factory=_default_banks,
        min_length=1,
        description="one entry per partner bank, each with an artifact of the same name in the manifest",
    )
    lead: LeadConfig = Field(default_factory=LeadConfig)
    reasons: int = Field(
        default=3, ge=0, le=MAX_REASONS, description="reasons per bank and for the lead (at most four, Regulation B)"
    )
    offer_ranking: Literal["customer_cost", "approval_probability"] = Field(
        "customer_cost",
        description="how offers are ranked: lowest monthly payment first, or highest approval probability first",
    )
    reason_codes: dict[str, FeatureReasons] = Field(
        default_factory=dict,  # the shipped table: merged in by the validator below
        validate_default=True,
        description="per feature: down/up/missing reason code with ru and en statements; replaces that "
        "feature's entry of the shipped models/reason_codes.yaml",
    )

    @field_validator("reason_codes", mode="before")
    @classmethod
    def _over_shipped(cls, table: Any) -> Any:
        return merged_reason_codes(table) if isinstance(table, dict) else table

    @field_validator("banks")
    @classmethod
    def _unique_banks(cls, banks: list[BankConfig]) -> list[BankConfig]:
        names = [b.name for b in banks]
        if len(set(names)) != len(names):
            raise ValueError(f"bank names must be unique, got {names}")
        return banks

    @model_validator(mode="after")
    def _every_reason_has_a_code(self) -> ModelsConfig:
        names = {n for b in self.banks for n in reason_names(b.features)} | set(reason_names(self.lead.features))
        missing = unexplained(sorted(names), self.reason_codes)
        if missing:
            raise ValueError(f"reason_codes has no entry for {missing}: each needs down and up statements")
        return self
