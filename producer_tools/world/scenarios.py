"""The world's scenarios: the few knobs that differ between ``baseline`` and ``drift``.

Drift is pure covariate shift: the distributions of some inputs move, the banks' policies and the lead
conversion model (the oracle) stay exactly the same. See docs/world.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from models import vocabulary as vocab

SCENARIOS = ("baseline", "drift")

# Shares in vocabulary order (models.vocabulary.GOODS_CATEGORY).
GOODS_SHARES = (0.14, 0.20, 0.07, 0.08, 0.06, 0.04, 0.15, 0.12, 0.04, 0.05, 0.03, 0.02)
# Shares in vocabulary order (models.vocabulary.LEAD_SOURCE).
LEAD_SOURCE_SHARES = (0.31, 0.27, 0.19, 0.12, 0.058, 0.015, 0.014, 0.01, 0.007, 0.006)


@dataclass(frozen=True)
class Scenario:
    """What a scenario changes. ``jobstart_missing``: share of job start dates left blank among those who have one."""

    name: str
    income_factor: float
    goods_shares: tuple[float, ...]
    lead_source_shares: tuple[float, ...]
    jobstart_missing: float


def surge(shares: tuple[float, ...], index: int, share: float) -> tuple[float, ...]:
    """``shares`` with category ``index`` set to ``share`` and the others scaled to fill the rest."""
    total = sum(shares)
    rest = total - shares[index]
    scaled = [s / rest * (1.0 - share) for s in shares]
    scaled[index] = share
    return tuple(scaled)


BASELINE = Scenario(
    name="baseline",
    income_factor=1.0,
    goods_shares=GOODS_SHARES,
    lead_source_shares=LEAD_SOURCE_SHARES,
    jobstart_missing=0.10,
)

DRIFT = Scenario(
    name="drift",
    income_factor=0.65,
    goods_shares=surge(GOODS_SHARES, vocab.GOODS_CATEGORY.index("Travel"), 0.35),
    lead_source_shares=surge(LEAD_SOURCE_SHARES, vocab.LEAD_SOURCE.index("Olark Chat"), 0.50),
    jobstart_missing=0.38,
)

_BY_NAME = {s.name: s for s in (BASELINE, DRIFT)}


def scenario_named(name: str) -> Scenario:
    """The scenario called ``name``.

    Raises:
        ValueError: ``name`` is not one of ``SCENARIOS``.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"scenario: unknown {name!r}, expected one of {SCENARIOS}") from None
