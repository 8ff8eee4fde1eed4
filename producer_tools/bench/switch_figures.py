"""What a switch run's results say: nothing lost, no duplicate, every result scored by one whole set and by the
set active when its batch was scored, and the throughput and latency around each switch.

Pure: it takes the results as read back (broker timestamp, event id, event time, the versions that scored it)
and the switches as the bench made them, and returns plain numbers.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Versions = tuple[tuple[str, str], ...]
WINDOW_MS = 5000  # the dip is looked for within this much of a switch; latency compared over this much each side


@dataclass(frozen=True)
class ScoredResult:
    """One result read back: when the broker has it (ms), its event, the event's time (ms), its versions."""

    timestamp_ms: int
    event_id: str
    event_time_ms: int
    versions: Versions


@dataclass(frozen=True)
class Switch:
    """One activation (or rollback) as the bench made it: the set it names, when the command was issued."""

    action: str
    version: str
    issued_ms: int


def result_versions(result: dict[str, object]) -> Versions:
    """The versions a decoded score result names: the lead's, then each bank's, sorted by bank."""
    lead = result["lead"]
    banks = result["banks"]
    assert isinstance(lead, dict) and isinstance(banks, list)
    return (("lead", str(lead["model_version"])), *sorted((str(b["bank"]), str(b["model_version"])) for b in banks))


def check_results(
    results: Sequence[ScoredResult],
    expected_ids: set[str],
    sets: dict[str, Versions],
    switches: Sequence[Switch],
    known_ids: set[str] | None = None,
) -> dict[str, Any]:
    """Lost, duplicated, mixed and misplaced results; when each switch reached the results.

    ``expected_ids`` are the events that must have a result; ``known_ids`` every event sent (a malformed
    message may still carry an event the scorer scores, e.g. with a soft anomaly): a result of any other is
    ``unexpected``.

    ``sets`` maps each set's version to the versions a result scored by it names; the run starts on the set
    that ``switches`` leave active last (activate B, then roll back to A). A result is misplaced when its set is
    not the one the results show active at its time: a switch takes effect at the first result of its set
    published after the command was issued; a result of the old set later than that one, or one of the new
    set before it, was scored by a set that was not active for its batch.
    """
    counts = Counter(r.event_id for r in results)
    by_versions = {v: k for k, v in sets.items()}
    mixed = sum(1 for r in results if r.versions not in by_versions)
    ordered = sorted((r for r in results if r.versions in by_versions), key=lambda r: r.timestamp_ms)
    active, reached, misplaced, start = switches[-1].version, [], 0, 0
    for switch in switches:
        at = next((i for i in range(start, len(ordered)) if _took(ordered[i], switch, by_versions)), len(ordered))
        at_ms = ordered[at].timestamp_ms if at < len(ordered) else None
        misplaced += sum(1 for r in ordered[start:at] if by_versions[r.versions] != active)
        reached.append(
            {
                "action": switch.action,
                "version": switch.version,
                "issued_ms": switch.issued_ms,
                "first_result_ms": at_ms,
            }
        )
        active, start = switch.version, at
    misplaced += sum(1 for r in ordered[start:] if by_versions[r.versions] != active)
    return {
        "results": len(results),
        "lost": len(expected_ids - counts.keys()),
        "duplicates": sum(n - 1 for n in counts.values()),
        "unexpected": len(counts.keys() - (expected_ids if known_ids is None else known_ids)),
        "mixed_sets": mixed,
        "misplaced": misplaced,
        "switches": reached,
    }


def _took(result: ScoredResult, switch: Switch, by_versions: dict[Versions, str]) -> bool:
    """``result`` is of the set ``switch`` names and was published after the command was issued."""
    return by_versions[result.versions] == switch.version and result.timestamp_ms >= switch.issued_ms


def around(results: Sequence[ScoredResult], at_ms: int, window_ms: int = WINDOW_MS) -> dict[str, float | None]:
    """Throughput and latency around a switch at ``at_ms``: the lowest 1 s throughput within ``window_ms`` of
    it against the run's steady median, and p50/p99 latency (broker timestamp - event time) before and after."""
    stamps = np.array([r.timestamp_ms for r in results], dtype=np.int64)
    latency = np.array([r.timestamp_ms - r.event_time_ms for r in results], dtype=np.float64)
    per_second = per_second_counts(stamps)
    first = int(stamps.min()) // 1000 if len(stamps) else 0
    near = [n for s, n in per_second.items() if abs((first + s) * 1000 + 500 - at_ms) <= window_ms]
    steady = [n for s, n in per_second.items() if abs((first + s) * 1000 + 500 - at_ms) > window_ms]
    before = latency[(stamps >= at_ms - window_ms) & (stamps < at_ms)]
    after = latency[(stamps >= at_ms) & (stamps < at_ms + window_ms)]
    median = statistics.median(steady or list(per_second.values()) or [0])
    dip = min(near) if near else None
    return {
        "steady_median_per_s": float(median),
        "lowest_per_s": None if dip is None else float(dip),
        "dip_share": None if dip is None or not median else 1 - dip / median,
        "before_p50_ms": _pct(before, 50),
        "before_p99_ms": _pct(before, 99),
        "after_p50_ms": _pct(after, 50),
        "after_p99_ms": _pct(after, 99),
    }


def per_second_counts(stamps: np.ndarray) -> dict[int, int]:
    """Results per whole second of broker time, from the first result's second; the first and last seconds are
    left out (partial), every second between them is present (0 when nothing came)."""
    if len(stamps) == 0:
        return {}
    seconds = stamps // 1000 - int(stamps.min()) // 1000
    counts = np.bincount(seconds)
    return {s: int(counts[s]) for s in range(1, len(counts) - 1)}


def _pct(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None
