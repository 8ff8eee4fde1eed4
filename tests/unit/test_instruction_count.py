"""The instruction count's bookkeeping: marks named per batch and stage, dumps assigned to them."""

from __future__ import annotations

import pytest

from consumer.commands.engine_bench import _batch_marks
from producer_tools.bench.instructions import per_event
from producer_tools.errors import InstructionCountError


def test_a_batch_is_marked_at_its_edges_and_each_stage_it_ran() -> None:
    ran = {"decode": 0.1, "dedup": 0.1, "features": 0.0, "predict": 0.0, "reasons": 0.0, "encode": 0.2}
    edges = [f"{edge}:{stage}" for stage in ("decode", "dedup", "encode") for edge in ("start", "end")]
    assert _batch_marks(ran) == ["batch", *edges, "batch-end"]


def test_each_dump_counts_for_the_stage_it_ends_and_the_engine_counts_the_batch() -> None:
    marks = ["batch", "start:decode", "end:decode", "start:encode", "end:encode", "batch-end"]
    totals = [10_000, 5, 700, 3, 300, 2]  # before the batch: imports and loading, not the engine's
    count = per_event(marks, totals, events=10, batch_size=10)
    assert count.stages["decode"] == 70 and count.stages["encode"] == 30 and count.stages["predict"] == 0
    assert count.engine == (5 + 700 + 3 + 300 + 2) / 10


def test_missing_dumps_are_an_error_not_a_smaller_figure() -> None:
    with pytest.raises(InstructionCountError, match="3 marks but 2"):
        per_event(["batch", "start:decode", "end:decode"], [1, 2], events=1, batch_size=1)
