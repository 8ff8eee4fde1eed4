"""The lead's web activity, drawn column by column.

The lead source is drawn first (its shares are a scenario knob) and the origin follows it, as in the
lead-scoring dataset (Reference and Welingak leads come through the Lead Add Form, Olark Chat through the
API). A latent engagement drives visits, time on site and page views; visits are negative binomial with
many zeros, and a lead with no visits has zero time and zero page views. Occupation follows the
applicant's employment.
"""

from __future__ import annotations

import numpy as np

from models import vocabulary as vocab
from producer_tools.world.sampling import categorical, categorical_by_group, labels, negative_binomial
from producer_tools.world.scenarios import Scenario

Columns = dict[str, np.ndarray]

# Origin (Landing Page Submission, API, Lead Add Form, Lead Import) given the source, source vocabulary order.
ORIGIN_BY_SOURCE = (
    (0.60, 0.38, 0.01, 0.01),
    (0.62, 0.37, 0.005, 0.005),
    (0.02, 0.97, 0.005, 0.005),
    (0.60, 0.38, 0.01, 0.01),
    (0.02, 0.03, 0.95, 0.0),
    (0.0, 0.02, 0.98, 0.0),
    (0.55, 0.43, 0.01, 0.01),
    (0.15, 0.15, 0.0, 0.70),
    (0.50, 0.30, 0.0, 0.20),
    (0.50, 0.45, 0.05, 0.0),
)
# Share of leads that never browsed the site, by source: chat and form leads mostly did not.
NO_VISIT_BY_SOURCE = np.array([0.05, 0.05, 0.85, 0.05, 0.6, 0.9, 0.05, 0.3, 0.05, 0.3])
LAST_ACTIVITY_SHARES = (0.37, 0.30, 0.105, 0.07, 0.046, 0.035, 0.029, 0.013, 0.01, 0.007, 0.005)
LAST_NOTABLE_SHARES = (0.36, 0.31, 0.24, 0.035, 0.02, 0.019, 0.007, 0.005, 0.004, 0.002)
# Occupation (Unemployed, Working Professional, Student, Businessman, Housewife, Other) by employment code.
OCCUPATION_BY_EMPLOYMENT = (
    (0.70, 0.22, 0.01, 0.01, 0.0, 0.06),
    (0.78, 0.10, 0.05, 0.0, 0.02, 0.05),
    (0.60, 0.12, 0.0, 0.22, 0.0, 0.06),
    (0.85, 0.0, 0.0, 0.0, 0.0, 0.15),
    (0.30, 0.0, 0.70, 0.0, 0.0, 0.0),
    (0.88, 0.0, 0.02, 0.0, 0.10, 0.0),
    (0.50, 0.0, 0.0, 0.0, 0.50, 0.0),
)
SPECIALIZATION_SHARES = (
    0.13,
    0.115,
    0.115,
    0.07,
    0.055,
    0.05,
    0.047,
    0.046,
    0.028,
    0.027,
    0.02,
    0.021,
    0.015,
    0.015,
    0.013,
    0.01,
    0.0075,
    0.005,
)
WHAT_MATTERS_SHARES = (0.985, 0.01, 0.005)


def draw_activity(rng: np.random.Generator, scenario: Scenario, employment: np.ndarray) -> Columns:
    """The activity columns for applicants with the given employment codes."""
    n = len(employment)
    source = categorical(rng, n, scenario.lead_source_shares)
    origin = categorical_by_group(rng, source, ORIGIN_BY_SOURCE)
    engagement = rng.standard_normal(n)
    visits = _visits(rng, source, engagement)
    last = categorical(rng, n, LAST_ACTIVITY_SHARES)
    return {
        "lead_origin": labels(origin, vocab.LEAD_ORIGIN),
        "lead_source": labels(source, vocab.LEAD_SOURCE),
        "do_not_email": (rng.random(n) < 0.08).astype(np.float64),
        "total_visits": visits,
        "total_time_spent_on_website": _time_on_site(rng, visits, engagement),
        "page_views_per_visit": _page_views_per_visit(rng, visits),
        "last_activity": labels(last, vocab.LAST_ACTIVITY),
        "last_notable_activity": _last_notable(rng, last),
        "occupation": labels(categorical_by_group(rng, employment, OCCUPATION_BY_EMPLOYMENT), vocab.OCCUPATION),
        "specialization": labels(categorical(rng, n, SPECIALIZATION_SHARES), vocab.SPECIALIZATION),
        "what_matters_most_to_you_in_choosing_a_course": labels(
            categorical(rng, n, WHAT_MATTERS_SHARES), vocab.WHAT_MATTERS
        ),
    }


def _visits(rng: np.random.Generator, source: np.ndarray, engagement: np.ndarray) -> np.ndarray:
    mean = np.exp(1.1 + 0.5 * engagement)
    visits = negative_binomial(rng, mean, dispersion=1.5)
    no_visit = rng.random(len(source)) < NO_VISIT_BY_SOURCE[source]
    return np.where(no_visit, 0.0, np.minimum(visits, 250.0))


def _time_on_site(rng: np.random.Generator, visits: np.ndarray, engagement: np.ndarray) -> np.ndarray:
    """Seconds on the site: heavy-tailed, growing with visits, zero without a visit."""
    n = len(visits)
    seconds = np.exp(np.log(240.0) + 0.5 * np.log1p(visits) + 0.6 * engagement + 0.8 * rng.standard_normal(n))
    return np.where(visits > 0, np.round(np.minimum(seconds, 6 * 3600.0)), 0.0)


def _page_views_per_visit(rng: np.random.Generator, visits: np.ndarray) -> np.ndarray:
    extra = negative_binomial(rng, 1.4 * visits, dispersion=2.0)
    per_visit = (visits + extra) / np.maximum(visits, 1.0)
    return np.where(visits > 0, np.round(per_visit, 2), 0.0)


def _last_notable(rng: np.random.Generator, last: np.ndarray) -> np.ndarray:
    """Often the last activity itself (when it is a notable one), otherwise drawn on its own."""
    last_labels = labels(last, vocab.LAST_ACTIVITY)
    own = labels(categorical(rng, len(last), LAST_NOTABLE_SHARES), vocab.LAST_NOTABLE_ACTIVITY)
    notable = np.isin(last_labels, vocab.LAST_NOTABLE_ACTIVITY)
    copy = notable & (rng.random(len(last)) < 0.55)
    return np.where(copy, last_labels, own)
