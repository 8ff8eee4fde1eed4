"""Offers: the approved banks' loan products the application fits, ranked for the customer.

An application fits a product when its requested amount and term (the validated ``loan_amount`` and
``loan_term`` features) lie in the product's ranges. A bank with no products configured offers the requested
loan at a price the scorer does not know (no rate, no payment): that is how every bank behaved before
products existed, so with no products anywhere ``best_offer`` is what it always was.

Ranking policies (``models.offer_ranking``):

- ``customer_cost`` (default): the lowest monthly payment for the requested amount and term first (the
  annuity at the product's rate, to the kopeck; for the same amount and term it is also the lowest total
  cost), then the highest approval probability; unpriced offers follow the priced ones, by probability.
- ``approval_probability``: the highest approval probability first, then the lowest payment.

Equal keys keep the configured order of banks and products. Ranking by what a bank pays the marketplace is
deliberately not a policy: steering a customer by the platform's own compensation is what regulators call
abusive (CFPB circular 2024-01).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.config import ModelsConfig, ProductConfig

POLICIES = ("customer_cost", "approval_probability")


@dataclass(frozen=True)
class Product:
    """One offerable product; ``name`` and ``annual_rate`` None: a bank's requested loan, unpriced."""

    bank: int
    name: str | None
    amount: tuple[float, float]
    term: tuple[float, float]
    annual_rate: float | None


@dataclass
class OfferColumns:
    """A batch's offers: row ``r``'s offers are ``order[r, :count[r]]`` (indices into ``OfferBook.products``)."""

    order: np.ndarray  # (rows, products) intp, eligible ones first in rank order
    count: np.ndarray  # (rows,) how many offers each row has
    payment: np.ndarray  # (rows, products) float64 monthly payment, NaN when unpriced

    def best_bank(self, products: Sequence[Product]) -> np.ndarray:
        """(rows,) the first offer's bank index, -1 when a row has no offer."""
        banks = np.array([p.bank for p in products] + [-1], dtype=np.intp)
        first = np.where(self.count > 0, self.order[:, 0] if self.order.shape[1] else -1, -1)
        return banks[first]


class OfferBook:
    """Every bank's products, flattened in configured order, and the ranking policy."""

    def __init__(
        self, banks: Sequence[str], products: Mapping[str, Sequence[ProductConfig]], policy: str = "customer_cost"
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"offer ranking {policy!r}: one of {POLICIES}")
        self.policy = policy
        self.banks = tuple(banks)
        flat: list[Product] = []
        for j, bank in enumerate(banks):
            configured = products.get(bank) or ()
            flat += [
                Product(j, p.name, (p.amount_min, p.amount_max), (p.term_min, p.term_max), p.annual_rate)
                for p in configured
            ] or [Product(j, None, (-np.inf, np.inf), (-np.inf, np.inf), None)]
        self.products = tuple(flat)
        self._bank = np.array([p.bank for p in flat], dtype=np.intp)
        self._priced = np.array([p.annual_rate is not None for p in flat])
        self._low = np.array([[p.amount[0], p.term[0]] for p in flat]).T
        self._high = np.array([[p.amount[1], p.term[1]] for p in flat]).T
        self._monthly = np.array([(p.annual_rate or 0.0) / 12 for p in flat])

    @classmethod
    def of(cls, config: ModelsConfig) -> OfferBook:
        """The book of the ``models:`` section: its banks' products and its ranking policy."""
        return cls([b.name for b in config.banks], {b.name: b.products for b in config.banks}, config.offer_ranking)

    def offers(self, amount: np.ndarray, term: np.ndarray, bank_p: np.ndarray, approved: np.ndarray) -> OfferColumns:
        """Rank each row's eligible offers: ``amount``, ``term`` (rows,) as requested (NaN: not stated)."""
        a, t = amount[:, None], term[:, None]
        with np.errstate(invalid="ignore"):
            fits = (a >= self._low[0]) & (a <= self._high[0]) & (t >= self._low[1]) & (t <= self._high[1])
        eligible = approved[:, self._bank] & (fits | ~self._priced)
        payment = np.where(self._priced, np.round(annuity(a, t, self._monthly), 2), np.nan)
        payment = np.where(eligible, payment, np.nan)
        probability = bank_p[:, self._bank]
        cost = np.where(np.isnan(payment), np.inf, payment)
        primary, secondary = (cost, -probability) if self.policy == "customer_cost" else (-probability, cost)
        # np.lexsort: the last key is the primary one; ties fall back to the configured order
        position = np.broadcast_to(np.arange(len(self.products)), payment.shape)
        order = np.lexsort((position, secondary, primary, ~eligible), axis=-1)
        return OfferColumns(order, eligible.sum(axis=1), payment)


def annuity(amount: np.ndarray, term: np.ndarray, monthly_rate: np.ndarray) -> np.ndarray:
    """The monthly payment of an annuity loan: ``amount * r / (1 - (1 + r) ** -term)``, ``amount / term`` at r = 0."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        r = np.broadcast_to(monthly_rate, np.broadcast_shapes(np.shape(amount), np.shape(monthly_rate)))
        growth = (1.0 + r) ** -term
        priced = amount * r / (1.0 - growth)
        return np.where(r > 0, priced, amount / term)
