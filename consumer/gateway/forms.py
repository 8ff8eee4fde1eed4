"""The pre-scoring form as the earlier service took it, and the application event it becomes.

Field names and types are the earlier service's (``FeaturesStructure``): a field left out is scored as missing,
a value of the wrong type is a 422 naming the field in pydantic's error shape. The event carries the form's
questionnaire unchanged; the scorer's own pipeline decides what the values mean (no rule of the gateway's own).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from consumer.core.dedup import ACTIVITY_FIELDS, APPLICANT_FIELDS, application_hash
from consumer.gateway.examples import PRESCORING_FORM

MAX_TEXT = 200  # characters of any free-text or category field
_INT32 = {"ge": -(2**31), "le": 2**31 - 1}  # the event's Avro int
_AMOUNT = {"ge": -1e12, "le": 1e12, "allow_inf_nan": False}
# The earlier clients send '1988-07-21 00:00:00.0000000'; the date is what the event carries.
_DATE_PREFIX = re.compile(r"(\d{4}-\d{2}-\d{2})(?:[ T][0-9:.]*)?")

Text = Annotated[str | None, Field(None, max_length=MAX_TEXT)]
Int32 = Annotated[int | None, Field(None, **_INT32)]
Amount = Annotated[float | None, Field(None, **_AMOUNT)]


class FeaturesStructure(BaseModel):
    """The pre-scoring questionnaire (every field optional: a missing field is scored as missing)."""

    model_config = ConfigDict(
        extra="ignore",  # as the earlier service: clients that send more columns keep working
        json_schema_extra={"examples": [PRESCORING_FORM]},
    )

    birthdate: Annotated[str | None, Field(None, max_length=40, description="YYYY-MM-DD[ time]")]
    education: Text
    employment_status: Text
    value: Annotated[str | None, Field(None, max_length=MAX_TEXT, description="job tenure bucket")]
    jobstartdate: Annotated[str | None, Field(None, max_length=40, description="YYYY-MM-DD[ time]")]
    position: Text
    monthprofit: Amount
    monthexpense: Amount
    gender: Int32
    family_status: Text
    childcount: Int32
    snils: Int32
    merch_code: Int32
    loan_amount: Amount
    loan_term: Annotated[float | None, Field(None, ge=0, le=1200, allow_inf_nan=False, description="months")]
    goods_category: Text

    @field_validator("birthdate", "jobstartdate")
    @classmethod
    def _a_date(cls, text: str | None) -> str | None:
        if text is None:
            return None
        match = _DATE_PREFIX.fullmatch(text.strip())
        if match is None:
            raise ValueError("should be a date, YYYY-MM-DD optionally followed by a time")
        try:
            dt.date.fromisoformat(match.group(1))
        except ValueError as exc:
            raise ValueError(f"is not a calendar date ({exc})") from None
        return match.group(1)

    @field_validator("loan_term")
    @classmethod
    def _whole_months(cls, months: float | None) -> float | None:
        if months is not None and months != int(months):
            raise ValueError("should be a whole number of months")
        return months

    def applicant(self) -> dict[str, Any]:
        """The event's ``applicant`` section: the form's values, dates as dates, the term as whole months."""
        values = self.model_dump()
        for name in ("birthdate", "jobstartdate"):
            if values[name] is not None:
                values[name] = dt.date.fromisoformat(values[name])
        if values["loan_term"] is not None:
            values["loan_term"] = int(values["loan_term"])
        return values


def application_event(
    applicant: dict[str, Any], activity: dict[str, Any], now: dt.datetime, *, lead_id: str | None = None
) -> dict[str, Any]:
    """An application event as a CRM would publish it; its ``application_id`` is its application hash.

    Keying the event by its content makes a resubmitted form the same application on the same partition, and
    lets a dead letter (keyed by the original key) name the task it belongs to.
    """
    event: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "application_id": "",
        "lead_id": "",
        "event_type": "APPLICATION_SUBMITTED",
        "occurred_at": now,
        "channel": "web",
        "merchant_region": None,
        "applicant": applicant,
        "activity": activity,
    }
    task_id = application_hash(event)
    event["application_id"] = task_id
    event["lead_id"] = lead_id or task_id
    return event


def empty_activity() -> dict[str, Any]:
    """The activity section of a form that carries none: every field missing."""
    return dict.fromkeys(ACTIVITY_FIELDS)


def empty_applicant() -> dict[str, Any]:
    """The questionnaire of a lead that has none (a predict call): every field missing."""
    return dict.fromkeys(APPLICANT_FIELDS)
