"""The world's capture without a broker: the engine's scores, the world's outcomes, the monitor's own writer."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from consumer.monitor.capture import _schema
from models.capture_rows import read_capture
from producer_tools.retraining.world_capture import capture_world, world_of
from producer_tools.world.outcomes import ROUTING_RULE, OutcomeDraws, PolicyChange


def test_the_world_capture_is_the_monitors_capture_of_routed_decisions(tmp_path: Path) -> None:
    world = world_of(600, seed=3)

    run = capture_world(tmp_path, world, 3, PolicyChange("bank_c", 300), OutcomeDraws(0.0, 0.0), log=str)

    files = sorted(tmp_path.glob("date=*/*.parquet"))
    assert files
    assert {pq.read_schema(f).remove_metadata() for f in files} == {_schema()}
    rows = read_capture(tmp_path)
    assert run.rows == rows.summary.rows == run.outcomes  # nothing lost, nothing sent twice: every outcome joined
    assert rows.summary.without_event == 0
    banks = rows.model != "lead"
    assert set(rows.routing[banks].tolist()) == {ROUTING_RULE}
    assert len(rows.rows_of("lead")) == len(rows.events) == 600
    assert 600 <= banks.sum() <= 1_200  # one or two banks answer each application
