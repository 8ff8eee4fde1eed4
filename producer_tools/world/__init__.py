"""The synthetic CRM world: seeded, realistic application events with their ground truth.

``generate(count, seed)`` draws a batch of Avro-native events and, per event, the oracle's true
probabilities (lead conversion, each bank's approval) with outcomes drawn from them. ``oracle(events)``
recomputes those probabilities from the observed event fields alone. The generative model, each bank's
policy and the drift scenario are documented in docs/world.md.
"""

from __future__ import annotations

from producer_tools.world.batch import DEFAULT_START, SCHEMA_VERSIONS, WorldBatch, generate
from producer_tools.world.ground_truth import BANKS, oracle
from producer_tools.world.scenarios import SCENARIOS

__all__ = ["BANKS", "DEFAULT_START", "SCENARIOS", "SCHEMA_VERSIONS", "WorldBatch", "generate", "oracle"]
