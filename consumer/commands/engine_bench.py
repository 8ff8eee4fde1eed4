"""Measuring the scoring engine alone: the ceiling the streaming scorer is compared with.

``measure_engine`` runs framed message values through one engine, batch by batch, in this process and with no
Kafka (decode -> features -> every bank and the lead -> reasons -> encode) and reports events per second and
what each stage (and each model) cost per event. The messages come from a file of length-prefixed values
(``write_messages``), so the benchmark feeds the engine exactly the bytes it put on the input topic.

It reads files and the process's peak memory, so it sits beside ``crm-scorer bench``, not in the pure core.
"""

from __future__ import annotations

import resource
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from consumer.core.engine import STAGES, ScoringEngine, quiet_collector

_LENGTH = struct.Struct(">I")
_NONE = 0xFFFFFFFF  # the length that marks a message without a value (a tombstone)


def write_messages(path: Path, values: Iterable[bytes | None]) -> int:
    """Write message values as 4-byte big-endian length + bytes each; returns how many were written."""
    count = 0
    with path.open("wb") as out:
        for value in values:
            out.write(_LENGTH.pack(_NONE if value is None else len(value)))
            if value is not None:
                out.write(value)
            count += 1
    return count


def read_messages(path: Path) -> list[bytes | None]:
    """The message values ``write_messages`` wrote. Raises ValueError when the file is cut short."""
    data = path.read_bytes()
    values: list[bytes | None] = []
    offset, end = 0, len(data)
    while offset < end:
        if offset + 4 > end:
            raise ValueError(f"{path.name}: length prefix cut short at byte {offset}")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += 4
        if length == _NONE:
            values.append(None)
            continue
        if offset + length > end:
            raise ValueError(f"{path.name}: message of {length} bytes cut short at byte {offset}")
        values.append(data[offset : offset + length])
        offset += length
    return values


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (the kernel's high-water mark), in MiB.

    ``getrusage`` reports it in KiB on Linux; psutil has no peak resident size there, only the current one.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class EngineMeasurement:
    """What ``measure_engine`` saw. Costs are microseconds per consumed message."""

    events: int
    scored: int
    dead_letters: int
    duplicates: int
    seconds: float
    batch_size: int
    stage_us: dict[str, float] = field(default_factory=dict)
    model_us: dict[str, float] = field(default_factory=dict)
    trees: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    marks: list[str] = field(default_factory=list)  # with a marker: what each call marked, in order

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"events_per_s": self.events_per_s}


def measure_engine(
    make_engine: Callable[[], ScoringEngine],
    values: Sequence[bytes | None],
    batch_size: int = 1000,
    marker: Callable[[], object] | None = None,
) -> EngineMeasurement:
    """Score ``values`` in batches of ``batch_size`` with a fresh engine and time it.

    A first engine scores one batch to warm up the libraries, then a second one (with an empty cache of recent
    applications, so nothing is skipped that the streaming run would score) is timed over every value.

    ``marker`` (for the instruction count, ``producer_tools.bench.instructions``) is called before and after
    every timed batch and at the start and end of every stage; ``EngineMeasurement.marks`` names each call.
    """
    make_engine().score_batch(values[:batch_size])
    engine = make_engine()
    if marker is not None:
        engine.stage_clock = _marking(marker)
    quiet_collector()  # as the run loop does once its engine is built
    result = EngineMeasurement(0, 0, 0, 0, 0.0, batch_size, trees=trees_per_bank(engine))
    stage_seconds: dict[str, float] = {}
    model_seconds: dict[str, float] = {}
    started = time.perf_counter()
    for start in range(0, len(values), batch_size):
        if marker is not None:
            marker()
        outcome = engine.score_batch(values[start : start + batch_size])
        if marker is not None:
            marker()
            result.marks += _batch_marks(outcome.stage_seconds)
        result.scored += len(outcome.scored)
        result.dead_letters += len(outcome.rejected)
        result.duplicates += outcome.duplicates
        _add(stage_seconds, outcome.stage_seconds)
        _add(model_seconds, getattr(outcome, "model_seconds", {}))
    result.seconds = time.perf_counter() - started
    result.events = len(values)
    per_event = 1e6 / max(1, len(values))
    result.stage_us = {k: v * per_event for k, v in stage_seconds.items()}
    result.model_us = {k: v * per_event for k, v in model_seconds.items()}
    result.peak_rss_mb = peak_rss_mb()
    return result


def _marking(marker: Callable[[], object]) -> Callable[[], float]:
    def clock() -> float:
        marker()
        return time.perf_counter()

    return clock


def _batch_marks(stage_seconds: dict[str, float]) -> list[str]:
    """The marks of one batch: its start, the start and end of each stage it ran (in ``STAGES`` order, the order
    the engine runs them; a batch with nothing to score afresh skips features, predict and reasons), its end."""
    ran = [stage for stage in STAGES if stage_seconds.get(stage, 0.0) > 0.0]
    return ["batch", *[f"{edge}:{stage}" for stage in ran for edge in ("start", "end")], "batch-end"]


def trees_per_bank(engine: ScoringEngine) -> dict[str, int]:
    """How many boosting rounds each bank's model holds (its size, as the results table shows it)."""
    return {bank.name: int(bank.booster.num_boosted_rounds()) for bank in engine.models.banks}


def _add(total: dict[str, float], seconds: dict[str, float]) -> None:
    for key, value in seconds.items():
        total[key] = total.get(key, 0.0) + value
