"""What became of scored applications, drawn from the world's ground truth: bank decisions and lead conversions.

Pure: a score result (as decoded) and the truth of the event it scored in, the outcome records out. Every draw
for one score comes from a generator seeded by ``(seed, score event_id)``, so the same score always gets the
same outcomes, whichever order scores are read in and however often one is read (at-least-once duplicates).

- **Routing** (``ROUTING_RULE``): an application is sent to the bank with the highest approval probability
  (the best offer when that bank approves) and to the second one when it approves too. Only those banks
  answer: the labels are selected, as in real life.
- **Delays**: a bank decides after a log-normal delay (median ``BANK_MEDIAN_S`` per bank, minutes to hours);
  a lead converts after a log-normal delay (median 1.5 days) within the ``LEAD_HORIZON_S`` horizon, and a lead
  that does not convert gets a ``positive: false`` outcome when the horizon closes.
- **Imperfections**: a share of outcomes never arrives (``missing``); a few are sent twice (``duplicates``)
  with the same ``event_id``.
- **Policy change** (``PolicyChange``): from a given event of the world on, one bank tightens its policy: its
  approval probability follows ``tightened_logit`` (the young and the newly employed are turned down), the
  applicants do not change. Its ``size`` scales how far the bank tightens (1: the full change, 0.5: half the
  penalty on the log-odds).
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from producer_tools.world.ground_truth import BANK_LOGITS
from producer_tools.world.observed import Observed, observe

ROUTING_RULE = "top2-approved.v1"
# Median seconds from the score to each bank's decision (log-normal, sigma BANK_SIGMA): minutes to hours.
BANK_MEDIAN_S = {"bank_a": 2700.0, "bank_b": 600.0, "bank_c": 1200.0, "bank_d": 1800.0, "bank_e": 900.0}
DEFAULT_BANK_MEDIAN_S = 1200.0
BANK_SIGMA = 1.0
LEAD_MEDIAN_S = 1.5 * 86_400.0
LEAD_SIGMA = 0.6
LEAD_HORIZON_S = 5 * 86_400.0
# Approved loans: the amount and term asked for, the amount cut for a fifth of them.
AMOUNT_CUT_SHARE = 0.2
AMOUNT_CUT = 0.8


@dataclass(frozen=True)
class PolicyChange:
    """``bank`` tightens its policy for the world's events from index ``from_event`` on, by ``size`` (1: the
    full change of ``tightened_logit``)."""

    bank: str
    from_event: int
    size: float = 1.0

    @classmethod
    def parse(cls, text: str) -> PolicyChange:
        """``"bank_c@5000"``, or ``"bank_c@5000:0.5"`` for half the change.

        Raises:
            ValueError: not ``BANK@INDEX[:SIZE]`` with a bank of the world, a non-negative index and a size
                above 0.
        """
        bank, sep, rest = text.partition("@")
        index, colon, size = rest.partition(":")
        expected = f"expected BANK@EVENT_INDEX[:SIZE], BANK one of {sorted(BANK_LOGITS)}, SIZE above 0"
        if not sep or bank not in BANK_LOGITS or not index.isdigit():
            raise ValueError(f"policy change {text!r}: {expected}")
        try:
            scale = float(size) if colon else 1.0
        except ValueError:
            raise ValueError(f"policy change {text!r}: {expected}") from None
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"policy change {text!r}: {expected}")
        return cls(bank, int(index), scale)


@dataclass(frozen=True)
class OutcomeDraws:
    """The imperfections of the outcome stream: shares of outcomes that never arrive and that arrive twice."""

    missing: float = 0.03
    duplicates: float = 0.01


@dataclass(frozen=True)
class Truth:
    """What the world knows about one event: its index, its truth (``WorldBatch.truth[i]``) and the event."""

    index: int
    truth: Mapping[str, Any]
    event: Mapping[str, Any]


@dataclass(frozen=True)
class PlannedOutcome:
    """One outcome record and the world-time delay after its score (``decided_at`` - ``scored_at``)."""

    record: dict[str, Any]
    delay_s: float
    duplicate: bool = False


def route(banks: Sequence[Mapping[str, Any]]) -> list[str]:
    """The banks an application is sent to under ``ROUTING_RULE``, best first."""
    ranked = sorted(banks, key=lambda b: -float(b["probability"]))
    sent = [str(ranked[0]["bank"])] if ranked else []
    if len(ranked) > 1 and ranked[1]["approved"]:
        sent.append(str(ranked[1]["bank"]))
    return sent


def tightened_logit(bank: str, obs: Observed, size: float = 1.0) -> np.ndarray:
    """``bank``'s log-odds after it tightens: it now also turns down the young and the newly employed (the
    penalty times ``size``).

    Age and job tenure are terms the old policy gave no weight (for most banks), so the change does not only
    lower the approval rate: it reorders applicants in a way the old model cannot see, and its ranking degrades.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        young = np.where(np.isnan(obs["age_years"]), 0.5, 1.0 / (1.0 + np.exp((obs["age_years"] - 30.0) / 3.0)))
        tenure = obs["job_tenure_years"]
        new_job = np.where(np.isnan(tenure), 0.7, 1.0 / (1.0 + np.exp((tenure - 1.0) / 0.3)))
    return BANK_LOGITS[bank](obs) - size * (0.3 + 2.5 * young + 1.5 * new_job)


def plan_outcomes(
    score: Mapping[str, Any],
    truth: Truth,
    seed: int,
    draws: OutcomeDraws = OutcomeDraws(),
    policy: PolicyChange | None = None,
    *,
    with_lead: bool = True,
) -> list[PlannedOutcome]:
    """The outcomes of one score result: a decision of each routed bank, and the lead's (when ``with_lead``).

    ``score`` is a decoded score result; ``decided_at`` is ``scored_at`` plus the drawn delay, in world time.
    """
    rng = np.random.default_rng(_seed_of(seed, str(score["event_id"])))
    scored_at = int(score["scored_at"].timestamp() * 1000) if hasattr(score["scored_at"], "timestamp") else 0
    planned: list[PlannedOutcome] = []
    for bank in route(score["banks"]):
        approved = _approved(bank, truth, rng, policy)
        delay = float(rng.lognormal(np.log(BANK_MEDIAN_S.get(bank, DEFAULT_BANK_MEDIAN_S)), BANK_SIGMA))
        record = _record(seed, score, "bank_decision", bank, approved, scored_at + int(delay * 1000))
        cut = AMOUNT_CUT if rng.random() < AMOUNT_CUT_SHARE else 1.0  # drawn either way: no draw moves another
        if approved:
            applicant = truth.event.get("applicant") or {}
            amount = applicant.get("loan_amount")
            record["amount"] = None if amount is None else round(float(amount) * cut, 2)
            record["term_months"] = applicant.get("loan_term")
        planned += _imperfect(PlannedOutcome(record, delay), rng, draws)
    if with_lead:
        converted = bool(truth.truth["lead"]["converted"])
        delay = float(min(rng.lognormal(np.log(LEAD_MEDIAN_S), LEAD_SIGMA), LEAD_HORIZON_S - 60.0))
        delay = delay if converted else LEAD_HORIZON_S
        record = _record(seed, score, "lead_conversion", None, converted, scored_at + int(delay * 1000))
        planned += _imperfect(PlannedOutcome(record, delay), rng, draws)
    return planned


def _approved(bank: str, truth: Truth, rng: np.random.Generator, policy: PolicyChange | None) -> bool:
    u = rng.random()  # drawn whatever the policy, so a policy change moves no other draw
    if policy is None or policy.bank != bank or truth.index < policy.from_event:
        return bool(truth.truth["banks"][bank]["approved"])
    p = 1.0 / (1.0 + np.exp(-tightened_logit(bank, observe([dict(truth.event)]), policy.size)[0]))
    return bool(u < p)


def _imperfect(planned: PlannedOutcome, rng: np.random.Generator, draws: OutcomeDraws) -> list[PlannedOutcome]:
    """Nothing (lost), the outcome, or the outcome and a re-send of it a little later."""
    lost, twice, resend_after = rng.random(), rng.random(), rng.exponential(60.0)
    if lost < draws.missing:
        return []
    if twice < draws.duplicates:
        again = PlannedOutcome(dict(planned.record), planned.delay_s + resend_after, duplicate=True)
        return [planned, again]
    return [planned]


def _record(
    seed: int, score: Mapping[str, Any], kind: str, bank: str | None, positive: bool, decided_at_ms: int
) -> dict[str, Any]:
    event_id = str(score["event_id"])
    return {
        "event_id": str(uuid.UUID(bytes=_digest(seed, event_id, kind, bank or "")[:16], version=4)),
        "application_id": score["application_id"],
        "kind": kind,
        "bank": bank,
        "positive": positive,
        "decided_at": decided_at_ms,
        "score_event_id": event_id,
        "routing": ROUTING_RULE if bank is not None else None,
        "amount": None,
        "term_months": None,
    }


def _digest(*parts: object) -> bytes:
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).digest()


def _seed_of(seed: int, event_id: str) -> int:
    return int.from_bytes(_digest(seed, event_id)[:8], "little")
