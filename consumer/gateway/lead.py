"""Lead scoring in-process: the stream's engine, its models and its result bytes, for ``POST /api/v1/predict``.

Requests that arrive while a batch is being scored wait for the next one and are scored together (whatever
arrived since the last batch, as the stream does): the engine's per-batch cost is paid once per batch, not
once per request. Each event goes through the engine as the bytes a CRM would publish, and its answer is
read back from the result bytes the stream would publish: the gateway has no scoring path of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consumer.core.engine import ScoringEngine


@dataclass(frozen=True)
class LeadScore:
    score: int
    model_version: str


class LeadScorer:
    """Scores events with ``engine``; ``encode`` frames an event, ``decode`` reads a result back."""

    def __init__(
        self,
        engine: ScoringEngine,
        encode: Callable[[dict[str, Any]], bytes],
        decode: Callable[[bytes], dict[str, Any]],
    ) -> None:
        self._engine = engine
        self._encode = encode
        self._decode = decode
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[LeadScore]]] = []
        self._scoring = False

    async def score(self, event: dict[str, Any]) -> LeadScore:
        """The lead score of ``event``; raises ValueError with the engine's reason when it cannot be scored."""
        answer: asyncio.Future[LeadScore] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, answer))
        if not self._scoring:
            self._scoring = True
            asyncio.get_running_loop().call_soon(self._score_waiting)
        return await answer

    def _score_waiting(self) -> None:
        batch, self._waiting, self._scoring = self._waiting, [], False
        try:
            answers = self.score_now([event for event, _ in batch])
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
        outcome = self._engine.score_batch([self._encode(event) for event in events])
        answers: list[LeadScore | Exception] = [ValueError("not scored")] * len(events)
        for scored in outcome.scored:
            lead = self._decode(scored.value)["lead"]
            answers[scored.index] = LeadScore(int(lead["score"]), str(lead["model_version"]))
        for rejected in outcome.rejected:
            answers[rejected.index] = ValueError(f"{rejected.error.reason}: {rejected.error}")
        return answers
