"""The earlier services' calls: upload_features, check_task, get_result, and /api/v1/predict.

Each handler validates, hands the work to the stream (an event on the input topic) or to the engine
(in-process), and answers in the earlier service's shape. ``Gateway`` holds what they use; the app builds it.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from consumer.core.validation import SAFE_ID
from consumer.gateway.activity import ActivityPayload, activity_fields
from consumer.gateway.examples import LEAD_REQUEST
from consumer.gateway.forms import FeaturesStructure, application_event, empty_activity, empty_applicant
from consumer.gateway.lead import LeadScorer
from consumer.gateway.middleware import GatewayMetrics
from consumer.gateway.publisher import EventPublisher
from consumer.gateway.results import TASK_ID, dead_letter_answer, result_answer
from consumer.gateway.store import Task

TASK_NOT_FOUND = "Task not found"


class TaskLookup(Protocol):
    def task(self, task_id: str) -> Task | None: ...

    def accept(self, task_id: str, at_ms: int) -> None: ...


class Readiness(Protocol):
    def ready(self) -> bool: ...


@dataclass
class Gateway:
    """What the handlers use: the producer, the view's store and readiness, the lead scorer, the metrics."""

    publisher: EventPublisher
    tasks: Callable[[], TaskLookup | None]  # None while the state store is unavailable
    view: Readiness
    leads: LeadScorer
    encode: Callable[[dict[str, Any]], bytes]
    metrics: GatewayMetrics
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    def ready(self) -> bool:
        return self.publisher.broker_ready() and self.tasks() is not None and self.view.ready()


async def gateway(request: Request) -> Gateway:
    found: Gateway = request.app.state.gateway
    return found


class UploadAnswer(BaseModel):
    task_id: str = Field(description="the scorer's application hash of the form: the same form, the same id")
    is_complete: bool = Field(description="true when this content was already scored (go to get_result)")


class Prediction(BaseModel):
    lead_score: int = Field(ge=0, le=1000, description="round(1000 * probability that the lead converts)")
    model_version: str = Field(description="the lead model that scored it (the stream's own)")


class PredictAnswer(BaseModel):
    request_id: str
    lead_id: str
    prediction: Prediction


class PredictRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [LEAD_REQUEST]})

    lead_id: str = Field(max_length=64, pattern=f"^{SAFE_ID.pattern}$", description="1-64 of [A-Za-z0-9._:-]")
    payload: ActivityPayload


class Detail(BaseModel):
    detail: str


TaskId = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[0-9A-Fa-f]+$", description="from upload")]
router = APIRouter()


@router.post("/upload_features", response_model=UploadAnswer, responses={503: {"model": Detail}})
async def upload_features(form: FeaturesStructure, gw: Annotated[Gateway, Depends(gateway)]) -> UploadAnswer:
    """Publish the form as an application event; answers once the broker acknowledged it."""
    tasks = gw.tasks()
    if tasks is None or not gw.ready():
        gw.metrics.refused.inc()
        raise HTTPException(503, "not ready: the broker or the state store is unavailable; nothing was accepted")
    event = application_event(form.applicant(), empty_activity(), gw.clock())
    task_id = event["application_id"]
    known = tasks.task(task_id)
    if known is not None and known.state != "pending":
        return UploadAnswer(task_id=task_id, is_complete=True)
    try:
        await gw.publisher.publish(task_id.encode(), gw.encode(event))
    except ConnectionError as exc:
        gw.metrics.refused.inc()
        raise HTTPException(503, f"not accepted: {exc}") from None
    gw.metrics.published.inc()
    tasks.accept(task_id, int(time.time() * 1000))
    return UploadAnswer(task_id=task_id, is_complete=False)


def _task(gw: Gateway, task_id: str) -> Task:
    tasks = gw.tasks()
    if tasks is None:
        raise HTTPException(503, "not ready: the state store is unavailable")
    task = tasks.task(task_id.lower()) if TASK_ID.fullmatch(task_id.lower()) else None
    if task is None:
        raise HTTPException(404, TASK_NOT_FOUND)
    return task


@router.get("/check_task", response_model=bool, responses={404: {"model": Detail}})
async def check_task(task_id: TaskId, gw: Annotated[Gateway, Depends(gateway)]) -> bool:
    """True once the task has an answer (a result, or the reason it could not be scored)."""
    return _task(gw, task_id).state != "pending"


@router.get("/get_result", responses={404: {"model": Detail}, 409: {"model": Detail}})
async def get_result(task_id: TaskId, gw: Annotated[Gateway, Depends(gateway)]) -> JSONResponse:
    """Every bank's approval probability (as the earlier service: a string under the bank's name), the best
    offer and its reasons; 422 with the reason when the stream could not score the form."""
    task = _task(gw, task_id)
    if task.state == "pending":
        raise HTTPException(409, "Task not complete")
    assert task.record is not None
    if task.state == "dead_letter":
        return JSONResponse({"detail": dead_letter_answer(task.record)}, status_code=422)
    return JSONResponse(result_answer(task_id.lower(), task.record))


@router.post("/api/v1/predict", response_model=PredictAnswer)
async def predict(body: PredictRequest, gw: Annotated[Gateway, Depends(gateway)]) -> PredictAnswer:
    """The lead score 0..1000, by the stream's own engine and lead model, in-process."""
    payload = body.payload.model_dump(exclude_none=True)
    event = application_event(empty_applicant(), activity_fields(payload), gw.clock(), lead_id=body.lead_id)
    try:
        lead = await gw.leads.score(event)
    except ValueError as exc:
        raise HTTPException(422, f"payload: {exc}") from None
    return PredictAnswer(
        request_id=str(uuid.uuid4()),
        lead_id=body.lead_id,
        prediction=Prediction(lead_score=lead.score, model_version=lead.model_version),
    )
