"""The application hash and a bounded cache of recent scores, so identical applications are scored once."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from operator import itemgetter
from typing import Any, Generic, TypeVar

from schemas import load_catalog

V = TypeVar("V")

# The hashed fields are the reader schema's (every decoded event carries all of them), in schema order.
_READER = load_catalog().application_event_latest
APPLICANT_FIELDS: tuple[str, ...] = tuple(_READER.fields("applicant"))
ACTIVITY_FIELDS: tuple[str, ...] = tuple(_READER.fields("activity"))

_applicant_values = itemgetter(*APPLICANT_FIELDS)
_activity_values = itemgetter(*ACTIVITY_FIELDS)


def application_hash(event: dict[str, Any]) -> str:
    """Hash of everything the scores depend on: questionnaire, activity, and the event's date (ages use it).

    Ids, event type and the time of day do not enter it, so a resubmitted application hashes the same.
    Fields are read in a fixed order, so the writer schema's version does not matter.
    """
    applicant, activity = event["applicant"], event["activity"]
    try:  # a decoded event carries every field: one C call per section instead of a generator
        content = (_applicant_values(applicant), _activity_values(activity), event["occurred_at"].date())
    except KeyError:  # a hand-built event may leave optional fields out: they hash as missing (None)
        content = (
            tuple(applicant.get(f) for f in APPLICANT_FIELDS),
            tuple(activity.get(f) for f in ACTIVITY_FIELDS),
            event["occurred_at"].date(),
        )
    return hashlib.blake2b(repr(content).encode(), digest_size=16).hexdigest()


class RecentScores(Generic[V]):
    """A least-recently-used map from application hash to its scores, holding at most ``capacity`` entries."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, V] = OrderedDict()

    def get(self, key: str) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: V) -> None:
        if self.capacity <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
