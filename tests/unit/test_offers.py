"""Offers: the approved banks' products the request fits, ranked for the customer."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pydantic import ValidationError

from consumer.core.offers import OfferBook, annuity
from consumer.service import build_engine
from consumer.settings import load_settings
from models.config import BankConfig, ProductConfig
from producer_tools.world import generate
from schemas import ResultDecoder, SingleObjectEncoder, load_catalog

CATALOG = load_catalog()
ENCODE = SingleObjectEncoder(CATALOG.application_event_latest)
RESULTS = ResultDecoder(CATALOG)
BANKS = ["bank_a", "bank_b", "bank_c"]


def product(name: str, amount: tuple[float, float], term: tuple[int, int], rate: float) -> ProductConfig:
    return ProductConfig(
        name=name, amount_min=amount[0], amount_max=amount[1], term_min=term[0], term_max=term[1], annual_rate=rate
    )


PRODUCTS = {
    "bank_a": [product("small", (5_000, 100_000), (3, 12), 0.30), product("big", (50_000, 1_000_000), (6, 36), 0.20)],
    "bank_b": [product("classic", (10_000, 500_000), (6, 24), 0.25)],
}  # bank_c has none: it offers the requested loan, unpriced


def offers_of(book: OfferBook, amount: float, term: float, p: list[float], approved: list[bool]) -> list[tuple]:
    columns = book.offers(np.array([amount]), np.array([term]), np.array([p]), np.array([approved]))
    chosen = columns.order[0, : columns.count[0]].tolist()
    return [(book.banks[book.products[i].bank], book.products[i].name, columns.payment[0, i]) for i in chosen]


def test_the_annuity_is_the_textbook_payment() -> None:
    assert annuity(np.array(100_000.0), np.array(12.0), np.array(0.12 / 12)) == pytest.approx(8_884.88, abs=0.01)
    assert annuity(np.array(90_000.0), np.array(6.0), np.array(0.0)) == pytest.approx(15_000.0)


def test_eligible_offers_fit_amount_and_term_of_approved_banks_and_rank_cheapest_first() -> None:
    book = OfferBook(BANKS, PRODUCTS)
    offers = offers_of(book, 80_000, 12, [0.6, 0.9, 0.7], [True, True, True])
    assert [(bank, name) for bank, name, _ in offers] == [
        ("bank_a", "big"),
        ("bank_b", "classic"),
        ("bank_a", "small"),
        ("bank_c", None),
    ]
    payments = [payment for _, _, payment in offers]
    assert payments[:3] == sorted(payments[:3]) and np.isnan(payments[3])  # the unpriced offer comes last
    assert payments[0] == pytest.approx(7_410.76, abs=0.01)  # 80,000 over 12 months at 20% a year
    # a declined bank offers nothing; a request outside every range of a bank leaves only the others
    assert [o[:2] for o in offers_of(book, 80_000, 12, [0.6, 0.2, 0.7], [True, False, True])] == [
        ("bank_a", "big"),
        ("bank_a", "small"),
        ("bank_c", None),
    ]
    assert [o[:2] for o in offers_of(book, 2_000_000, 12, [0.6, 0.9, 0.7], [True, True, True])] == [("bank_c", None)]
    assert [o[:2] for o in offers_of(book, 80_000, 48, [0.6, 0.9, 0.7], [True, True, True])] == [("bank_c", None)]


def test_a_request_without_amount_or_term_gets_only_unpriced_offers() -> None:
    book = OfferBook(BANKS, PRODUCTS)
    assert [o[:2] for o in offers_of(book, np.nan, 12, [0.6, 0.9, 0.7], [True, True, True])] == [("bank_c", None)]
    assert offers_of(book, 80_000, np.nan, [0.6, 0.9, 0.2], [True, True, False]) == []


def test_equal_payments_go_to_the_likelier_approval_and_the_probability_policy_ranks_by_probability() -> None:
    same = {
        "bank_a": [product("p", (1_000, 10**6), (1, 60), 0.2)],
        "bank_b": [product("q", (1_000, 10**6), (1, 60), 0.2)],
    }
    assert [o[0] for o in offers_of(OfferBook(BANKS, same), 50_000, 10, [0.5, 0.8, 0.9], [True] * 3)] == [
        "bank_b",
        "bank_a",
        "bank_c",
    ]
    book = OfferBook(BANKS, PRODUCTS, "approval_probability")
    offers = offers_of(book, 80_000, 12, [0.6, 0.9, 0.7], [True, True, True])
    assert [(bank, name) for bank, name, _ in offers] == [
        ("bank_b", "classic"),
        ("bank_c", None),
        ("bank_a", "big"),
        ("bank_a", "small"),
    ]
    with pytest.raises(ValueError, match="offer ranking"):
        OfferBook(BANKS, PRODUCTS, "marketplace_commission")


def test_with_no_products_the_best_offer_is_the_likeliest_approved_bank_as_in_v1() -> None:
    book = OfferBook(BANKS, {})
    p = np.array([[0.6, 0.9, 0.7], [0.8, 0.8, 0.1], [0.1, 0.2, 0.3]])
    approved = p >= 0.5
    columns = book.offers(np.full(3, 50_000.0), np.full(3, 12.0), p, approved)
    assert columns.best_bank(book.products).tolist() == [1, 0, -1]  # equal maxima: the first bank, as v1


def test_the_service_publishes_the_offers_of_configured_products() -> None:
    settings = load_settings(None, dedup={"enabled": False})
    engine = build_engine(settings)
    events = generate(200, seed=11).events
    results = [RESULTS.decode(s.value) for s in engine.score_batch([ENCODE(e) for e in events]).scored]
    products = {(b.name, p.name): p for b in settings.models.banks for p in b.products}
    priced = 0
    for event, result in zip(events, results, strict=True):
        assert result["best_offer"] == (result["offers"][0]["bank"] if result["offers"] else None)
        amount, term = event["applicant"]["loan_amount"], event["applicant"]["loan_term"]
        for offer in result["offers"]:
            if offer["product"] is None:
                continue
            config = products[(offer["bank"], offer["product"])]
            assert config.amount_min <= amount <= config.amount_max and config.term_min <= term <= config.term_max
            assert offer["annual_rate"] == config.annual_rate
            priced += 1
    assert priced > 100


def test_products_are_validated() -> None:
    with pytest.raises(ValidationError, match="minimum exceeds its maximum"):
        product("bad", (100_000, 50_000), (3, 12), 0.2)
    with pytest.raises(ValidationError, match="unique within a bank"):
        BankConfig(name="bank_a", products=[product("p", (1, 2), (1, 2), 0.1), product("p", (1, 2), (1, 2), 0.1)])
    changed = copy.deepcopy(load_settings(None).models.model_dump())
    changed["banks"][0]["products"][0]["annual_rate"] = 0.5
    assert load_settings(None, models=changed).config_hash() != load_settings(None).config_hash()
