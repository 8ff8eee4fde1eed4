"""The ground truth: each bank's approval probability and the lead's conversion probability.

Every probability is the logistic of a sum of smooth terms of the observed quantities
(``producer_tools.world.observed``). A missing quantity enters through its own explicit term, never
through the value hidden behind it. Thresholds are steep sigmoids, not steps, so a model can learn them.
The lead's log-odds are linear in the one-hot categories and in log1p of the web counters, so a logistic
regression on those features can reach the oracle. The terms are listed in docs/world.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from models import vocabulary as vocab
from producer_tools.world.observed import Observed, observe

BANKS = ("bank_a", "bank_b", "bank_c", "bank_d", "bank_e")


def oracle(events: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """True probabilities per event: ``{"lead": p, "bank_a": p, ...}``, from the observed fields only."""
    obs = observe(events)
    out = {"lead": _logistic(lead_logit(obs))}
    for bank, logit in BANK_LOGITS.items():
        out[bank] = _logistic(logit(obs))
    return out


def _logistic(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _sig(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """A steep but smooth step from 0 to 1 around ``center``."""
    with np.errstate(over="ignore", invalid="ignore"):
        return 1.0 / (1.0 + np.exp(-(x - center) / width))


def _term(x: np.ndarray, shape: Callable[[np.ndarray], np.ndarray], missing: float) -> np.ndarray:
    """``shape(x)`` where ``x`` is known, the constant ``missing`` where it is not."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isnan(x), missing, shape(x))


def _levels(codes: np.ndarray, vocabulary: tuple[str, ...], weights: Mapping[str, float], missing: float) -> np.ndarray:
    """Per-category weights (0 for unlisted categories) and ``missing`` for a missing category."""
    table = np.array([weights.get(v, 0.0) for v in vocabulary] + [missing])
    return table[np.where(np.isnan(codes), len(vocabulary), codes).astype(np.intp)]


def _log_income(obs: Observed) -> np.ndarray:
    return np.log(np.maximum(obs["income"], 1000.0))


def _income_term(obs: Observed, weight: float, center: float, width: float, missing: float) -> np.ndarray:
    """``weight * tanh((ln income - ln center) / width)``: zero income counts as 1,000."""
    return _term(_log_income(obs), lambda li: weight * np.tanh((li - np.log(center)) / width), missing)


def _bank_a(obs: Observed) -> np.ndarray:
    """Prime only: older, educated, high income, low payment-to-income, long tenure."""
    higher_ed = _sig(obs["education_rank"], 3.5, 0.3)
    rich = _sig(_log_income(obs), np.log(120_000.0), 0.3)
    return (
        -3.58
        + _income_term(obs, 1.6, 90_000.0, 0.5, missing=-1.5)
        + _term(higher_ed, lambda h: 1.4 * h, missing=-0.4)
        + _term(obs["age_years"], lambda a: 1.2 * _sig(a, 32.0, 4.0), missing=-1.0)
        + _term(obs["payment_to_income"], lambda r: -2.2 * _sig(r, 0.30, 0.05), missing=-1.0)
        + _term(obs["job_tenure_years"], lambda t: 1.0 * _sig(t, 3.0, 1.0), missing=-0.5)
        + _term(obs["tenure_rank"], lambda r: 0.08 * r, missing=0.0)
        + np.nan_to_num(0.8 * higher_ed * rich)
    )


def _bank_b(obs: Observed) -> np.ndarray:
    """Small subprime loans: likes small amounts, tolerates low income and youth, dislikes big loans."""
    return (
        0.75
        + _term(obs["loan_amount"], lambda x: -2.2 * np.tanh((np.log(x) - np.log(50_000.0)) / 0.7), missing=-0.5)
        + _income_term(obs, 0.5, 35_000.0, 0.6, missing=-0.3)
        + _term(obs["age_years"], lambda a: -0.8 * _sig(a, 60.0, 3.0), missing=-0.2)
        + _term(obs["payment_to_income"], lambda r: -1.8 * _sig(r, 0.5, 0.08), missing=-0.4)
        + _term(obs["childcount"], lambda c: -0.3 * _sig(c, 2.5, 0.5), missing=0.0)
        + _levels(obs["employment"], vocab.EMPLOYMENT_STATUS, {"Не работаю": -0.6}, missing=-0.2)
    )


BANK_C_GOODS = {
    "Mobile_devices": 1.6,
    "Electronics": 1.5,
    "Home_appliances": 1.4,
    "Furniture": 1.2,
    "Travel": -2.0,
    "Jewelry": -1.6,
}
FAMILY_C = {"Женат / замужем": 0.4, "Разведен(а)": -0.2}


def _bank_c(obs: Observed) -> np.ndarray:
    """Favours some goods (phones, electronics, appliances, furniture), dislikes Travel and Jewelry."""
    favoured = _levels(obs["goods_category"], vocab.GOODS_CATEGORY, dict.fromkeys(list(BANK_C_GOODS)[:4], 1.0), 0.0)
    return (
        -1.45
        + _levels(obs["goods_category"], vocab.GOODS_CATEGORY, BANK_C_GOODS, missing=-1.0)
        + _income_term(obs, 1.0, 50_000.0, 0.6, missing=-0.8)
        + _term(obs["payment_to_income"], lambda r: -1.4 * _sig(r, 0.4, 0.07), missing=-0.5)
        + _levels(obs["family_status"], vocab.FAMILY_STATUS, FAMILY_C, missing=-0.3)
        + favoured * _term(obs["loan_amount"], lambda x: 0.6 * (1.0 - _sig(np.log(x), np.log(150e3), 0.3)), 0.0)
    )


EMPLOYMENT_D = {
    "Работаю по найму полный рабочий день/служу": 1.0,
    "Работаю по найму неполный рабочий день": 0.2,
    "Собственное дело": 0.8,
    "Пенсионер": -0.8,
    "Студент": -1.4,
    "Не работаю": -2.0,
    "Декретный отпуск": -1.0,
}


def _bank_d(obs: Observed) -> np.ndarray:
    """Requires SNILS and employment with tenure; a missing job start date costs."""
    return (
        -3.13
        + _term(obs["snils"], lambda s: np.where(s == 1.0, 1.2, -1.2), missing=-1.5)
        + _levels(obs["employment"], vocab.EMPLOYMENT_STATUS, EMPLOYMENT_D, missing=-1.3)
        + _term(obs["job_tenure_years"], lambda t: 1.4 * _sig(t, 1.0, 0.3), missing=-1.0)
        + _income_term(obs, 0.6, 50_000.0, 0.6, missing=-0.6)
        + _term(obs["payment_to_income"], lambda r: -1.0 * _sig(r, 0.45, 0.08), missing=-0.3)
    )


def _bank_e(obs: Observed) -> np.ndarray:
    """High limits: large loans are fine when income and free income are high."""
    not_rich = _term(_log_income(obs), lambda li: 1.0 - _sig(li, np.log(150_000.0), 0.3), missing=1.0)
    big_loan = _term(obs["loan_amount"], lambda x: _sig(np.log(x), np.log(300_000.0), 0.4), missing=0.3)
    return (
        -1.24
        + _income_term(obs, 1.6, 100_000.0, 0.5, missing=-1.8)
        + _term(obs["free_income"], lambda f: 1.3 * np.tanh(f / 60_000.0), missing=-0.8)
        - 1.2 * big_loan * not_rich
        + _term(obs["age_years"], lambda a: 0.5 * _sig(a, 28.0, 3.0), missing=-0.3)
        + _term(obs["tenure_rank"], lambda r: 0.3 * _sig(r, 3.5, 0.5), missing=-0.2)
    )


BANK_LOGITS: dict[str, Callable[[Observed], np.ndarray]] = {
    "bank_a": _bank_a,
    "bank_b": _bank_b,
    "bank_c": _bank_c,
    "bank_d": _bank_d,
    "bank_e": _bank_e,
}

# Lead conversion: log-odds weights per category (0 for unlisted), per field; "" is the missing category.
LEAD_CATEGORY_WEIGHTS: dict[str, dict[str, float]] = {
    "lead_origin": {"Lead Add Form": 2.6, "Lead Import": -1.2, "API": -0.1, "": -0.2},
    "lead_source": {"Olark Chat": -0.7, "Reference": 1.0, "Welingak Website": 1.8, "Direct Traffic": -0.35, "": -0.1},
    "last_activity": {
        "SMS Sent": 1.3,
        "Email Opened": 0.35,
        "Olark Chat Conversation": -1.0,
        "Converted to Lead": -0.5,
        "Email Bounced": -0.8,
        "Had a Phone Conversation": 1.5,
        "": -0.3,
    },
    "last_notable_activity": {"Modified": -0.7, "SMS Sent": 0.7},
    "occupation": {"Working Professional": 2.5, "Unemployed": -0.25, "Student": -0.6, "Housewife": 1.0, "": -0.4},
    "specialization": {"": -0.6},
    "what_matters": {"Better Career Prospects": 0.5, "": -0.9},
}
_LEAD_VOCABULARY = {
    "lead_origin": vocab.LEAD_ORIGIN,
    "lead_source": vocab.LEAD_SOURCE,
    "last_activity": vocab.LAST_ACTIVITY,
    "last_notable_activity": vocab.LAST_NOTABLE_ACTIVITY,
    "occupation": vocab.OCCUPATION,
    "specialization": vocab.SPECIALIZATION,
    "what_matters": vocab.WHAT_MATTERS,
}
# Missing web counters count as their typical (baseline mean) value: a linear model imputing means agrees.
LEAD_INTERCEPT = -2.67
LEAD_TYPICAL = {"log_time_on_site": 1.42, "log_total_visits": 0.87, "page_views_per_visit": 1.44, "do_not_email": 0.08}


def lead_logit(obs: Observed) -> np.ndarray:
    """Log-odds that the lead converts."""
    z = (
        LEAD_INTERCEPT
        + _term(np.log1p(obs["time_on_site"] / 60.0), lambda x: 1.05 * x, 1.05 * LEAD_TYPICAL["log_time_on_site"])
        + _term(np.log1p(obs["total_visits"]), lambda x: 0.2 * x, 0.2 * LEAD_TYPICAL["log_total_visits"])
        + _term(obs["page_views_per_visit"], lambda x: -0.12 * x, -0.12 * LEAD_TYPICAL["page_views_per_visit"])
        + _term(obs["do_not_email"], lambda x: -1.3 * x, -1.3 * LEAD_TYPICAL["do_not_email"])
    )
    for field, weights in LEAD_CATEGORY_WEIGHTS.items():
        z = z + _levels(obs[field], _LEAD_VOCABULARY[field], weights, missing=weights.get("", 0.0))
    return z
