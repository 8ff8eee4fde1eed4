"""The lead-scoring service's one-hot payload, mapped onto the application event's activity fields.

``ONE_HOT_ACTIVITY`` is the one table: each payload key the earlier service took names an activity field and
the category it stands for (``None``: the ``_unknown`` column, the field missing). It is derived from the
categories the lead model itself one-hot encodes (``models.features.ONE_HOT_FIELDS``, the lead-scoring dataset's
column naming), so a key the model does not know cannot be accepted. Numeric keys map to the field of the same
name. A key in neither table is a 422 naming it (pydantic's ``extra_forbidden``); two categories of one field
are a 422 naming both keys.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, model_validator

from consumer.core.dedup import ACTIVITY_FIELDS
from models.features import ONE_HOT_FIELDS, slug

ONE_HOT_ACTIVITY: dict[str, tuple[str, str | None]] = {
    **{f"{field}_{slug(value)}": (field, value) for field, values in ONE_HOT_FIELDS for value in values},
    **{f"{field}_unknown": (field, None) for field, _values in ONE_HOT_FIELDS},
}
# numeric key -> (its bounds, the event field's type)
NUMERIC_ACTIVITY: dict[str, tuple[float, float, type]] = {
    "total_visits": (0, 1e6, int),
    "total_time_spent_on_website": (0, 1e7, int),  # seconds
    "page_views_per_visit": (0, 1e4, float),
    "do_not_email": (0, 1, bool),
}


def _zero_or_one(value: float | None) -> float | None:
    if value is not None and value not in (0.0, 1.0):
        raise ValueError("should be 0 or 1 (a one-hot column)")
    return value


_ONE_HOT = Annotated[float | None, Field(None, allow_inf_nan=False), AfterValidator(_zero_or_one)]


def _numeric(low: float, high: float, kind: type) -> Any:
    if kind is bool:
        return _ONE_HOT
    return Annotated[float | None, Field(None, ge=low, le=high, allow_inf_nan=False)]


class _OneValuePerField(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _one_category_per_field(self) -> _OneValuePerField:
        chosen: dict[str, list[str]] = {}
        for key, value in self:
            if value == 1.0 and key in ONE_HOT_ACTIVITY:
                chosen.setdefault(ONE_HOT_ACTIVITY[key][0], []).append(key)
        for field, keys in chosen.items():
            if len(keys) > 1:
                raise ValueError(f"{' and '.join(sorted(keys))} are both 1, but {field} has one value")
        return self


ActivityPayload: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "ActivityPayload",
    __base__=_OneValuePerField,
    __doc__="The lead's activity as the lead-scoring service took it: numeric fields and one-hot columns.",
    **{key: (_numeric(*bounds), None) for key, bounds in NUMERIC_ACTIVITY.items()},
    **{key: (_ONE_HOT, None) for key in ONE_HOT_ACTIVITY},
)


def activity_fields(payload: dict[str, float | None]) -> dict[str, Any]:
    """The event's ``activity`` section from a validated payload (keys absent or 0 for a field: missing)."""
    activity: dict[str, Any] = dict.fromkeys(ACTIVITY_FIELDS)
    for key, value in payload.items():
        if value is None:
            continue
        if key in NUMERIC_ACTIVITY:
            kind = NUMERIC_ACTIVITY[key][2]
            activity[key] = round(value) if kind is int else kind(value)
        elif value == 1.0:
            field, category = ONE_HOT_ACTIVITY[key]
            activity[field] = category
    return activity
