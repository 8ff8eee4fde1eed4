"""The stack's banks and leads: the outcomes of every world ``make stack`` produces, published on ``crm.outcomes``.

The stack's producer draws a new world for each run (the next seed); before a run starts, its world's ground truth
is added here, so each score finds its truth by event id whatever run it came from. One reader answers the scores
from the beginning of ``crm.scores`` (Confluent-framed: their writer schema comes from the registry), 1000 times
faster than the world's delays. Worlds older than the last few are dropped: their scores were answered long ago.
"""

from __future__ import annotations

import argparse
import threading

from producer_tools.publishing.outcomes import OutcomeTally, answer_scores, world_truth
from producer_tools.world.outcomes import OutcomeDraws, Truth
from schemas.registry import RegistrySchemaSource

TIME_SCALE = 1000.0  # a 20-minute bank decision 1.2 s after its score, a 5-day conversion after 7 minutes
_KEPT_WORLDS = 3


class StackOutcomes:
    """Answers the stack's scores in a thread of this process until ``stop``."""

    def __init__(self, bootstrap_servers: str, registry_url: str, scores: str, outcomes: str) -> None:
        self.tally = OutcomeTally()
        self._truths: dict[str, Truth] = {}
        self._worlds: list[list[str]] = []
        self._stop = threading.Event()
        self._registry = RegistrySchemaSource.from_url(url=registry_url)
        self._args = argparse.Namespace(
            bootstrap_servers=bootstrap_servers,
            score_registry=self._registry,
            scores_topic=scores,
            topic=outcomes,
            time_scale=TIME_SCALE,
            missing=OutcomeDraws.missing,
            duplicates=OutcomeDraws.duplicates,
            policy_change=None,
            idle_exit=float("inf"),  # the stack stops it
            max_scores=None,
            seed=0,
        )
        self._thread = threading.Thread(target=self._answer, name="stack-outcomes", daemon=True)

    def add_world(self, count: int, seed: int, schema_version: str) -> None:
        """The truth of the world ``crm-producer produce --count COUNT --seed SEED`` is about to send."""
        world = world_truth(count, seed, "baseline", schema_version)
        self._truths.update(world)
        self._worlds.append(list(world))
        while len(self._worlds) > _KEPT_WORLDS:
            for event_id in self._worlds.pop(0):
                self._truths.pop(event_id, None)

    def start(self) -> None:
        self._thread.start()

    def is_running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self._registry.close()

    def _answer(self) -> None:
        answer_scores(self._args, self._truths, self._stop, self.tally)
