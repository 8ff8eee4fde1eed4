"""The engine's cost in instructions: per event and per stage, counted by valgrind's callgrind.

Time per event moves with whatever else the machine runs; the number of instructions executed does not. The
engine scores the bench's events under callgrind in ``crm-scorer bench-engine --markers``, which calls
``os.getpgrp()`` before and after every batch and at the start and end of every stage (a C call nothing else
makes while scoring); callgrind, told ``--dump-before=os_getpgrp``, writes its counters at each of those calls,
so each dump holds exactly the instructions since the previous mark. A stage's count is the dump at its end; the
engine's is everything between a batch's start and its end, glue between stages included. The warm-up batch,
the imports and the model loading are outside every mark.

The figures are instructions, not time: a cache miss or a mispredicted branch costs cycles callgrind does not
show. They say whether a change does less work, whatever else runs beside it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from consumer.core.engine import STAGES
from producer_tools.bench.phases import bench_engine_argv, workload
from producer_tools.errors import InstructionCountError

_MARKER = "os_getpgrp*"
_TOTALS = re.compile(rb"^totals:\s+(\d+)", re.MULTILINE)


@dataclass
class InstructionCount:
    """Instructions per consumed event, for the engine and each stage."""

    events: int
    batch_size: int
    engine: float
    stages: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_instructions(
    workdir: Path, events: int, seed: int, bad_ratio: float, batch_size: int, config: Path | None = None
) -> InstructionCount:
    """Score ``events`` of the bench's workload under callgrind and count (see the module docstring).

    Raises:
        InstructionCountError: valgrind is not installed, or the run under it failed.
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise InstructionCountError("valgrind is not installed (Debian: apt-get install valgrind)")
    from consumer.commands.engine_bench import write_messages

    messages, out = workdir / "instructions-messages.bin", workdir / "instructions.json"
    write_messages(messages, (m.value for m in workload(events, seed, bad_ratio)))
    dumps = workdir / "callgrind"
    shutil.rmtree(dumps, ignore_errors=True)
    dumps.mkdir(parents=True)
    command = [valgrind, "--tool=callgrind", f"--dump-before={_MARKER}", f"--callgrind-out-file={dumps / 'cg.out'}"]
    command += bench_engine_argv(messages, out, config, "--batch-size", str(batch_size), "--markers")
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env=os.environ | {"PYTHONHASHSEED": "0"}
    )
    if done.returncode != 0:
        raise InstructionCountError(f"bench-engine under callgrind failed ({done.returncode}): {done.stderr[-2000:]}")
    marks = json.loads(out.read_text())["marks"]
    return per_event(marks, _dump_totals(dumps), events, batch_size)


def per_event(marks: list[str], totals: list[int], events: int, batch_size: int) -> InstructionCount:
    """Instructions per event from the marks' names and callgrind's dumps (``totals[i]``: the instructions
    before mark ``i`` since the previous one).

    Raises:
        InstructionCountError: there are fewer dumps than marks (valgrind did not dump at every mark).
    """
    if len(totals) < len(marks):
        raise InstructionCountError(f"{len(marks)} marks but {len(totals)} callgrind dumps")
    stages = dict.fromkeys(STAGES, 0)
    engine = 0
    for name, count in zip(marks, totals, strict=False):
        if name.startswith("end:"):
            stages[name.removeprefix("end:")] += count
        if name != "batch":  # everything from a batch's start to its end is the engine's
            engine += count
    return InstructionCount(
        events, batch_size, engine / events, {stage: count / events for stage, count in stages.items()}
    )


def _dump_totals(directory: Path) -> list[int]:
    """The instruction total of each numbered dump, in order (``cg.out.1`` is written at the first mark)."""
    numbered = sorted(
        (p for p in directory.iterdir() if re.fullmatch(r"cg\.out\.\d+", p.name)),
        key=lambda p: int(p.name.rsplit(".", 1)[1]),
    )
    totals = []
    for path in numbered:
        found = _TOTALS.search(path.read_bytes())
        totals.append(int(found.group(1)) if found else 0)
    return totals


def instruction_table(count: InstructionCount) -> str:
    lines = [
        f"engine instructions per event ({count.events:,} events, batches of {count.batch_size}, callgrind)",
        f"  engine   {count.engine:>12,.0f}",
    ]
    lines += [f"  {stage:<8} {value:>12,.0f}" for stage, value in count.stages.items()]
    return "\n".join(lines)
