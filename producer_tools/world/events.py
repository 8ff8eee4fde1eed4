"""The event stream around the questionnaires: timestamps, ids, updates, exact resubmissions, v2 fields.

About 4% of events update an earlier application (same application and lead ids, event type
``APPLICATION_UPDATED``, a few fields changed); about 2% resubmit an earlier application exactly (same ids,
identical applicant and activity, same UTC day, a new event id), which is what the scorer's dedup cache is for.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import numpy as np

from producer_tools.world.applicants import LOAN_TERMS
from producer_tools.world.sampling import blank_out, categorical, labels

Columns = dict[str, np.ndarray]

UPDATE_RATE = 0.04
RESUBMIT_RATE = 0.02
FRESH, UPDATED, RESUBMITTED = 0, 1, 2
MEAN_REPLAY_LAG = 300  # events back to the application being updated or resubmitted, on average

CHANNELS = ("pos", "web", "mobile_app", "call_center")
CHANNEL_SHARES = (0.55, 0.25, 0.15, 0.05)
REGIONS = (
    "RU-MOW",
    "RU-SPE",
    "RU-MOS",
    "RU-SVE",
    "RU-TAT",
    "RU-NVS",
    "RU-KDA",
    "RU-BA",
    "RU-ROS",
    "RU-NIZ",
    "RU-SAM",
    "RU-CHE",
    "RU-KYA",
    "RU-PER",
    "RU-VOR",
)
REGION_SHARES = (0.24, 0.11, 0.08, 0.06, 0.05, 0.05, 0.06, 0.04, 0.05, 0.04, 0.04, 0.04, 0.04, 0.03, 0.03)
# Each merchant sits in one region: a fixed table, the same in every world.
MERCHANT_REGION = categorical(np.random.default_rng(20260302), 402, REGION_SHARES)

_MS_PER_DAY = 86_400_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def timeline(
    rng: np.random.Generator, count: int, start: dt.datetime, events_per_second: float
) -> tuple[list[dt.datetime], np.ndarray]:
    """Monotonic millisecond UTC timestamps ``start + i / rate`` (+ jitter) and their UTC day ordinals."""
    start_ms = (start - _EPOCH) // dt.timedelta(milliseconds=1)
    jitter = 0.9 * rng.random(count)  # under one gap, so the order never flips
    offsets = np.floor((np.arange(count) + jitter) / events_per_second * 1000.0).astype(np.int64)
    base = _EPOCH + dt.timedelta(milliseconds=int(start_ms))
    occurred_at = [base + dt.timedelta(milliseconds=m) for m in offsets.tolist()]
    day = (start_ms + offsets) // _MS_PER_DAY + _EPOCH.toordinal()
    return occurred_at, day.astype(np.float64)


def draw_ids(rng: np.random.Generator, count: int) -> Columns:
    """A UUID event id, an ``app-`` + 16 hex application id and a ``lead-`` + 12 hex lead id per row."""
    raw = rng.bytes(16 * count)
    apps, leads = rng.bytes(8 * count).hex(), rng.bytes(6 * count).hex()
    return {
        "event_id": np.array(
            [str(uuid.UUID(bytes=raw[16 * i : 16 * i + 16], version=4)) for i in range(count)], dtype=object
        ),
        "application_id": np.array([f"app-{apps[16 * i : 16 * i + 16]}" for i in range(count)], dtype=object),
        "lead_id": np.array([f"lead-{leads[12 * i : 12 * i + 12]}" for i in range(count)], dtype=object),
    }


def v2_fields(rng: np.random.Generator, merch_code: np.ndarray) -> Columns:
    """Sales channel and merchant region (the region follows the merchant); 2% blank each."""
    n = len(merch_code)
    region = np.where(
        np.isnan(merch_code), categorical(rng, n, REGION_SHARES), MERCHANT_REGION[np.nan_to_num(merch_code).astype(int)]
    )
    return {
        "channel": blank_out(rng, labels(categorical(rng, n, CHANNEL_SHARES), CHANNELS), 0.02),
        "merchant_region": blank_out(rng, labels(region, REGIONS), 0.02),
    }


@dataclass(frozen=True)
class Replays:
    """Per event: ``kind`` (FRESH, UPDATED, RESUBMITTED) and ``source``, the row it repeats (itself if fresh)."""

    kind: np.ndarray
    source: np.ndarray


def plan_replays(rng: np.random.Generator, day: np.ndarray) -> Replays:
    """Pick the updates and exact resubmissions, each repeating an earlier fresh application."""
    n = len(day)
    rows = np.arange(n)
    u = rng.random(n)
    kind = np.where(u < UPDATE_RATE, UPDATED, np.where(u < UPDATE_RATE + RESUBMIT_RATE, RESUBMITTED, FRESH))
    if n:
        kind[0] = FRESH
    fresh = np.flatnonzero(kind == FRESH)
    last_fresh = np.searchsorted(fresh, rows, side="left") - 1  # position in `fresh` of the last earlier one
    back = np.minimum(rng.geometric(1.0 / MEAN_REPLAY_LAG, n) - 1, np.maximum(last_fresh, 0))
    source = np.where(kind == FRESH, rows, fresh[np.maximum(last_fresh - back, 0)])
    # an exact resubmission comes the same day; one that would not stays a fresh application
    kind = np.where((kind == RESUBMITTED) & (day[source] != day), FRESH, kind)
    return Replays(kind, np.where(kind == FRESH, rows, source))


def apply_replays(rng: np.random.Generator, plan: Replays, *tables: Columns) -> None:
    """Copy each repeated row from its source in every table, then change the updated ones a little."""
    for table in tables:
        for name, col in table.items():
            table[name] = col[plan.source]
    applicant, activity = tables[0], tables[1]
    _change_a_little(rng, plan.kind == UPDATED, applicant, activity)


def _change_a_little(rng: np.random.Generator, updated: np.ndarray, applicant: Columns, activity: Columns) -> None:
    """An update changes the loan amount, sometimes also the term, the income, and adds a site visit."""
    n = len(updated)
    old_amount = applicant["loan_amount"]
    amount = np.round(np.nan_to_num(old_amount, nan=50_000.0) * rng.uniform(0.6, 1.4, n) / 1000.0) * 1000.0
    amount = np.where(amount == old_amount, amount + 1000.0, amount)  # an update always changes something
    applicant["loan_amount"] = np.where(updated, amount, old_amount)
    new_term = updated & (rng.random(n) < 0.3)
    applicant["loan_term"] = np.where(new_term, LOAN_TERMS[rng.integers(0, 8, n)], applicant["loan_term"])
    new_income = updated & (rng.random(n) < 0.3)
    raised = np.round(applicant["monthprofit"] * rng.uniform(0.9, 1.3, n) / 1000.0) * 1000.0
    applicant["monthprofit"] = np.where(new_income, raised, applicant["monthprofit"])
    visits = activity["total_visits"]
    revisit = updated & (rng.random(n) < 0.5) & (visits >= 0)
    pages = activity["page_views_per_visit"] * visits + rng.integers(1, 4, n)
    activity["total_visits"] = np.where(revisit, visits + 1.0, visits)
    activity["total_time_spent_on_website"] = np.where(
        revisit,
        activity["total_time_spent_on_website"] + rng.integers(30, 600, n),
        activity["total_time_spent_on_website"],
    )
    activity["page_views_per_visit"] = np.where(
        revisit, np.round(pages / np.maximum(visits + 1.0, 1.0), 2), activity["page_views_per_visit"]
    )
