"""Reason codes: what a feature's contribution means to the applicant, per direction, in Russian and English.

The table (``models/reason_codes.yaml``, overridable per feature by scorer.yaml's ``models.reason_codes``) gives
each feature a statement for ``down`` (it pulled the score down: a decline's reasons), ``up`` (it pushed the score
up: an approval's reasons) and, optionally, ``missing`` (the value was left out or impossible, either direction).
A reason is then a feature, its contribution to the model's log-odds, a code and the statement in each language.

The lead model's one-hot activity columns are explained per source field: ``lead_source`` is the sum of the
``lead_source_*`` columns' contributions (the effect of the lead's source relative to the average lead), which
is what an operator asks about, rather than "not from Google".
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from models.features import ONE_HOT_FIELDS, slug

DEFAULT_REASON_CODES = Path(__file__).resolve().parent / "reason_codes.yaml"
MAX_REASONS = 4  # Regulation B (12 CFR 1002.9): more than four principal reasons is "not likely to be helpful"
LANGUAGES = ("ru", "en")
Kind = Literal["down", "up", "missing"]
KINDS: tuple[Kind, ...] = ("down", "up", "missing")


class Statement(BaseModel):
    """One reason code with its statement in every language."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]{1,47}$", description="stable code a letter template keys on")
    ru: str = Field(min_length=1, max_length=200)
    en: str = Field(min_length=1, max_length=200)


class FeatureReasons(BaseModel):
    """The statements of one feature: pulled down, pushed up, and (optionally) the value was missing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    down: Statement
    up: Statement
    missing: Statement | None = None

    def statement(self, kind: Kind) -> Statement:
        if kind == "missing":
            return self.missing or self.down
        return self.down if kind == "down" else self.up


@functools.cache
def shipped_reason_codes() -> dict[str, FeatureReasons]:
    """The table shipped beside this module."""
    raw = yaml.safe_load(DEFAULT_REASON_CODES.read_text(encoding="utf-8"))
    return {name: FeatureReasons.model_validate(entry) for name, entry in raw.items()}


def statements_by_code(table: Mapping[str, FeatureReasons] | None = None) -> dict[str, dict[str, str]]:
    """Every reason code of ``table`` (default: the shipped one) with its statement per language: how a
    subscriber renders the codes a result carries without statements (``results.statement_languages``)."""
    out: dict[str, dict[str, str]] = {}
    for entry in (table if table is not None else shipped_reason_codes()).values():
        for kind in KINDS:
            statement = entry.statement(kind)
            out[statement.code] = {lang: getattr(statement, lang) for lang in LANGUAGES}
    return out


def merged_reason_codes(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The shipped table with ``overrides`` replacing (or adding) whole features' entries."""
    merged: dict[str, Any] = {
        name: entry.model_dump(exclude_none=True) for name, entry in shipped_reason_codes().items()
    }
    for name, entry in (overrides or {}).items():
        merged[name] = entry.model_dump(exclude_none=True) if isinstance(entry, BaseModel) else entry
    return merged


def _one_hot_groups() -> dict[str, str]:
    """``lead_source_google`` -> ``lead_source``: each one-hot column's source field (as features.py names them)."""
    groups = {f"{field}_{slug(value)}": field for field, values in ONE_HOT_FIELDS for value in values}
    return groups | {f"{field}_unknown": field for field, _ in ONE_HOT_FIELDS}


_GROUPS = _one_hot_groups()


def reason_name(feature: str) -> str:
    """The name a feature's reasons are given under: its source field for a one-hot column, else itself."""
    return _GROUPS.get(feature, feature)


@dataclass(frozen=True)
class ReasonInputs:
    """How a model's features map onto the names its reasons speak of.

    ``names`` are what reasons are given for; ``columns[i]`` is the reason name of model feature ``i``;
    ``missing_feature[j]`` is the model feature whose missing value makes reason ``j`` a ``missing`` one
    (NaN for a plain feature, 1 for a one-hot field's ``_unknown`` column), or -1.
    """

    names: tuple[str, ...]
    columns: np.ndarray  # (model features,) intp
    missing_feature: np.ndarray  # (names,) intp
    missing_is_flag: np.ndarray  # (names,) bool: the missing feature is an `_unknown` flag, not a NaN

    @classmethod
    def of(cls, features: Sequence[str]) -> ReasonInputs:
        names: list[str] = []
        columns = []
        for feature in features:
            name = reason_name(feature)
            if name not in names:
                names.append(name)
            columns.append(names.index(name))
        missing = []
        flags = []
        for name in names:
            flag = f"{name}_unknown"
            if name in features:
                missing.append(list(features).index(name))
                flags.append(False)
            elif flag in features:
                missing.append(list(features).index(flag))
                flags.append(True)
            else:
                missing.append(-1)
                flags.append(False)
        return cls(tuple(names), np.asarray(columns, np.intp), np.asarray(missing, np.intp), np.asarray(flags))

    @property
    def grouped(self) -> bool:
        return len(self.names) != len(self.columns)

    def summed(self, contributions: np.ndarray) -> np.ndarray:
        """(rows, model features) contributions -> (rows, names): the one-hot columns of a field summed."""
        if not self.grouped:
            return contributions
        out = np.zeros((contributions.shape[0], len(self.names)), dtype=contributions.dtype)
        for j in range(len(self.names)):
            out[:, j] = contributions[:, self.columns == j].sum(axis=1)
        return out

    def missing(self, x: np.ndarray, reasons: np.ndarray) -> np.ndarray:
        """(rows, k) bool: the input of each chosen reason (``reasons``, -1: none) was missing in its row of
        ``x`` (model features)."""
        chosen = np.maximum(reasons, 0)
        feature = self.missing_feature[chosen]
        value = np.take_along_axis(x, np.maximum(feature, 0), axis=1)
        flag = self.missing_is_flag[chosen]
        return (reasons >= 0) & (feature >= 0) & np.where(flag, value == 1, np.isnan(value))


def unexplained(names: Sequence[str], table: Mapping[str, FeatureReasons]) -> list[str]:
    """The reason names ``table`` has no entry for."""
    return [n for n in names if n not in table]


def reason_names(features: Sequence[str]) -> tuple[str, ...]:
    """The names a model with ``features`` gives reasons for (one-hot fields grouped)."""
    return ReasonInputs.of(features).names


def top_reasons(contributions: np.ndarray, pushed_up: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's up-to-``k`` reasons: the largest positive contributions where ``pushed_up``, else the most
    negative ones, strongest first; equal ones in feature order. Returns (indices (rows, k), -1 where a row has
    fewer contributions of that sign; their contributions, 0 there)."""
    rows = np.arange(len(contributions))
    signed = np.where(pushed_up[:, None], contributions, -contributions).astype(np.float64)
    k = min(k, contributions.shape[1])
    top = np.empty((len(contributions), k), dtype=np.intp)
    strength = np.empty((len(contributions), k), dtype=np.float64)
    for i in range(k):  # k argmax passes: cheaper than sorting every row, and argmax takes the first of equals
        top[:, i] = signed.argmax(axis=1)
        strength[:, i] = signed[rows, top[:, i]]
        signed[rows, top[:, i]] = -np.inf
    values = np.take_along_axis(contributions, top, axis=1)
    chosen = strength > 0
    return np.where(chosen, top, -1), np.where(chosen, values, 0)


@functools.cache
def reason_inputs(features: tuple[str, ...]) -> ReasonInputs:
    """``ReasonInputs.of(features)``, built once per feature list."""
    return ReasonInputs.of(features)
