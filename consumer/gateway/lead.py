"""Lead scoring in-process: the stream's engine, its models and its result bytes, for ``POST /api/v1/predict``.

The engine runs in one thread of its own (it is not thread-safe, and the event loop must go on reading
requests meanwhile); requests that arrive while a batch is being scored are scored together in the next one
(whatever arrived since the last batch, as the stream does): the engine's per-batch cost is paid once per
batch, not once per request. Each event goes through the engine as the bytes a CRM would publish, and its
answer is read back from the result bytes the stream would publish: the gateway has no scoring path of its own.

Model sets follow the stream's: ``follow`` hands it what the scorer's workers use
(``consumer.kafka.model_control.ModelFollower`` on the control topic), which verifies and loads an activated set
in its own thread; the engine thread takes it before a batch, so a batch is scored by one whole set and each
answer's ``model_version`` is the version that scored it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from consumer.core.engine import ScoringEngine
from models.artifacts import ModelSet

log = logging.getLogger(__name__)
MAX_BATCH = 1000  # requests per engine batch (the stream's default batch size)


@dataclass(frozen=True)
class LeadScore:
    score: int
    model_version: str


class ModelSource(Protocol):
    """Where newly activated model sets come from: ``take`` returns one once, already verified and loaded."""

    def take(self) -> ModelSet | None: ...


class LeadScorer:
    """Scores events with ``engine``; ``encode`` frames an event, ``decode`` reads a result back.

    ``serving`` hears of the set the engine scores with, at start and after every swap; ``refused(reason)`` of
    a set the engine would not take (its banks differ from the running set's)."""

    def __init__(
        self,
        engine: ScoringEngine,
        encode: Callable[[dict[str, Any]], bytes],
        decode: Callable[[bytes], dict[str, Any]],
        serving: Callable[[ModelSet], None] = lambda models: None,
        refused: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self._engine = engine
        self._encode = encode
        self._decode = decode
        self._serving, self._refused = serving, refused
        self._source: ModelSource | None = None
        serving(engine.models)
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[LeadScore]]] = []
        self._draining: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-lead-engine")

    async def score(self, event: dict[str, Any]) -> LeadScore:
        """The lead score of ``event``; raises ValueError with the engine's reason when it cannot be scored."""
        answer: asyncio.Future[LeadScore] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, answer))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await answer

    def follow(self, source: ModelSource | None) -> None:
        """Take the sets ``source`` loads, each before the next batch (None: keep the set scoring now)."""
        self._source = source

    @property
    def version(self) -> str:
        """The model set the next batch is scored with, unless a newer one is taken first."""
        return self._engine.models.version

    def close(self) -> None:
        self._thread.shutdown(wait=True)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            events = [event for event, _ in batch]
            try:
                answers = await loop.run_in_executor(self._thread, self.score_now, events)
            except Exception as exc:  # an engine failure fails this batch's requests, not the server
                answers = [exc] * len(batch)
            for (_, future), answer in zip(batch, answers, strict=True):
                if future.done():
                    continue
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

    def score_now(self, events: list[dict[str, Any]]) -> list[LeadScore | Exception]:
        """Score ``events`` in one engine batch, in order; an event the stream would dead-letter is a ValueError."""
        self._take_models()
        outcome = self._engine.score_batch([self._encode(event) for event in events])
        answers: list[LeadScore | Exception] = [ValueError("not scored")] * len(events)
        for scored in outcome.scored:
            lead = self._decode(scored.value)["lead"]
            answers[scored.index] = LeadScore(int(lead["score"]), str(lead["model_version"]))
        for rejected in outcome.rejected:
            answers[rejected.index] = ValueError(f"{rejected.error.reason}: {rejected.error}")
        return answers

    def _take_models(self) -> None:
        """Before a batch: score from now on with the set the source loaded, if there is one."""
        models = self._source.take() if self._source is not None else None
        if models is None:
            return
        previous = self._engine.models.version
        try:
            self._engine.swap_models(models)
        except ValueError as exc:
            log.error("%s; refused, predict still scores with model set %s", exc, previous)
            self._refused("load")
            return
        log.info("predict scores with model set %s from this batch on (was %s)", models.version, previous)
        self._serving(models)
