"""``crm-scorer bench --switch``: an activation and a rollback under steady load, for each guarantee.

For each guarantee: one ``crm-scorer run`` worker follows a model store (the committed set, active, and a second
set trained for the run by ``crm-train``) through a control topic of the run's own; a producer offers a steady
rate with live event times; a quarter of the way in ``crm-scorer models activate`` names the second set, half way
(once the swap is logged) ``crm-scorer models rollback`` returns to the first: the command takes seconds to start,
and the rollback's own 5 s after need load. Then every result is read back (``read_committed``)
and checked (``producer_tools.bench.switch_figures``), and the throughput and latency around each switch, the
swap's own milliseconds (from the scorer's log) and the CPU other processes took are reported.

The tools drive the service only through its command line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.config import DEFAULT_ARTIFACTS_DIR
from models.store import ModelStore
from producer_tools.bench.cpu import CpuWatch
from producer_tools.bench.latency import _millis
from producer_tools.bench.offer import live_stamped, offer
from producer_tools.bench.phases import (
    BENCH_POISON,
    BenchPlan,
    Say,
    fresh_lanes,
    preload,
    wait_until_done,
    workload,
    world_events,
)
from producer_tools.bench.probe import Lanes, ScorerProcess, read_back
from producer_tools.bench.switch_figures import (
    WINDOW_MS,
    ScoredResult,
    Switch,
    Versions,
    around,
    check_results,
    result_versions,
)
from producer_tools.publishing.publisher import OutboundMessage, event_encoders, event_messages
from producer_tools.publishing.topics import ensure_topics
from producer_tools.servers.broker import BrokerError, free_port
from schemas import ResultDecoder

GUARANTEES = ("at_least_once", "exactly_once")
_SWAP = re.compile(r"scores with model set (\S+) from this batch on \(was (\S+); swapped in ([0-9.]+) ms\)")
_WARMUP = 1000


@dataclass(frozen=True)
class SwitchPlan:
    rate: float  # offered events/s
    seconds: float  # of offered load per guarantee
    train_events: int = 20_000  # the second set's training events (crm-train --count)
    train_seed: int = 8
    guarantees: tuple[str, ...] = GUARANTEES


def prepare_store(workdir: Path, plan: SwitchPlan, say: Say) -> tuple[Path, str, str]:
    """A store holding the committed set (active) and a set ``crm-train`` trains for the run; the two versions.

    Raises:
        BrokerError: the training failed (its output is in the message).
    """
    root, trained = workdir / "store", workdir / "second-set"
    say(f"training the second set: crm-train --count {plan.train_events:,} --seed {plan.train_seed}")
    _command(
        "producer_tools.commands.train_cmd",
        "--count",
        str(plan.train_events),
        "--seed",
        str(plan.train_seed),
        "--out",
        str(trained),
    )
    store = ModelStore(root)
    first, second = store.add(DEFAULT_ARTIFACTS_DIR), store.add(trained)
    store.activate(first, list(store.manifest(first).models), "crm-scorer bench", "bench --switch: the start")
    return root, first, second


def run_switches(
    bootstrap: str, run_id: str, bench: BenchPlan, plan: SwitchPlan, workdir: Path, say: Say
) -> dict[str, Any]:
    """Both guarantees, one after the other; the report's ``switch`` section."""
    store, first, second = prepare_store(workdir, plan, say)
    sets = {first: _set_versions(store, first), second: _set_versions(store, second)}
    out: dict[str, Any] = {"offered_events_per_s": plan.rate, "seconds": plan.seconds, "sets": [first, second]}
    for guarantee in plan.guarantees:
        say(f"switch ({guarantee}): {plan.rate:,.0f} events/s for {plan.seconds:.0f} s, activate then roll back")
        with CpuWatch() as watch:
            figures = _one_guarantee(bootstrap, run_id, guarantee, bench, plan, workdir, store, (first, second), sets)
        out[guarantee] = figures | {
            "outside_cpu_percent": watch.other_percent,
            "kernel_cpu_percent": watch.kernel_percent,
        }
    return out


def _one_guarantee(
    bootstrap: str,
    run_id: str,
    guarantee: str,
    bench: BenchPlan,
    plan: SwitchPlan,
    workdir: Path,
    store: Path,
    versions: tuple[str, str],
    sets: dict[str, Versions],
) -> dict[str, Any]:
    lanes = fresh_lanes(run_id, f"switch-{guarantee.replace('_', '-')}")
    control = f"{lanes.group}-models"
    ensure_topics(bootstrap, {lanes.input: bench.partitions, lanes.output: bench.partitions, lanes.dlq: 1})
    env = {"CRM_SCORER_MODELS__STORE_DIR": str(store), "CRM_SCORER_MODELS__CONTROL_TOPIC": control}
    log = workdir / f"{lanes.group}.log"
    scorer = ScorerProcess(bootstrap, lanes, 1, log, bench.config, free_port(), ["--guarantee", guarantee], env)
    # twice the planned load: the load goes on until the rollback has had its 5 s (``_Load``)
    templates = list(_paced_workload(max(1, int(2 * plan.rate * plan.seconds)), bench.seed + 31337, bench.bad_ratio))
    warm = list(workload(_WARMUP, bench.seed + 7919, 0.0))
    try:
        preload(bootstrap, lanes.input, warm)
        wait_until_done(bootstrap, lanes, _WARMUP, bench.partitions, scorer)
        switches, templates = _offer_and_switch(bootstrap, lanes, templates, plan, store, control, versions, log)
        wait_until_done(bootstrap, lanes, _WARMUP + len(templates), bench.partitions, scorer)
    finally:
        scorer.stop()
    expected = {m.event_id for m in warm + templates if m.poison is None and m.event_id}
    known = {m.event_id for m in warm + templates if m.event_id}
    results = _read_results(bootstrap, lanes, len(expected))
    checked = check_results(results, expected, sets, switches, known)
    paced = [r for r in results if r.timestamp_ms >= switches[0].issued_ms - plan.seconds * 1000 / 4]
    dips = [around(paced, s["first_result_ms"]) if s["first_result_ms"] else {} for s in checked["switches"]]
    return checked | {"around": dips, "swap_ms": swap_ms(log), "log": str(log)}


def _paced_workload(count: int, seed: int, bad_ratio: float) -> Iterator[OutboundMessage]:
    """The bench's workload less the poison the live time stamp would heal (an ancient ``occurred_at``, which
    ``live_stamped`` replaces with the wall clock): every message's fate is then known before it is sent."""
    kinds = tuple(k for k in BENCH_POISON if k.name != "ancient_event_time")
    return event_messages(
        world_events(count, seed), event_encoders("mixed"), bad_ratio=bad_ratio, seed=seed, kinds=kinds
    )


def _offer_and_switch(
    bootstrap: str,
    lanes: Lanes,
    templates: list[OutboundMessage],
    plan: SwitchPlan,
    store: Path,
    control: str,
    versions: tuple[str, str],
    log: Path,
) -> tuple[list[Switch], list[OutboundMessage]]:
    """Offer ``templates`` at the plan's rate in a thread; activate the second set a quarter of the way in and
    roll back half way; the load ends after ``plan.seconds`` and at least ``WINDOW_MS`` after the rollback's
    swap. Returns the switches with the time each command was issued, and the messages sent."""
    failure: list[BaseException] = []
    load = _Load(templates, time.monotonic() + plan.seconds)

    def send() -> None:
        try:
            offer(bootstrap, lanes.input, iter(load), plan.rate)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    sender = threading.Thread(target=send, name="switch-offer")
    sender.start()
    started, switches = time.monotonic(), []
    for share, (action, version, *extra) in (
        (1 / 4, ("activate", versions[1], versions[1])),
        (1 / 2, ("rollback", versions[0])),
    ):
        time.sleep(max(0.0, started + share * plan.seconds - time.monotonic()))
        issued_ms = int(time.time() * 1000)
        _models(store, bootstrap, control, action, *extra, "--reason", "bench --switch")
        switches.append(Switch(action, version, issued_ms))
        _wait_for_swaps(log, len(switches))  # the rollback follows an activation that took effect
    load.until = max(load.until, time.monotonic() + WINDOW_MS / 1000 + 1)
    sender.join()
    if failure:
        raise BrokerError(f"offering to {lanes.input}: {failure[0]}")
    return switches, templates[: load.sent]


class _Load:
    """The messages to offer, stamped live, until the monotonic time ``until`` (which may be moved later)."""

    def __init__(self, templates: list[OutboundMessage], until: float) -> None:
        self.templates, self.until, self.sent = templates, until, 0

    def __iter__(self) -> Iterator[OutboundMessage]:
        for message in live_stamped(self.templates):
            if time.monotonic() >= self.until:
                return
            self.sent += 1
            yield message


def _read_results(bootstrap: str, lanes: Lanes, expected: int) -> list[ScoredResult]:
    decoder = ResultDecoder()

    def decode(value: bytes) -> dict[str, Any]:
        return dict(decoder.decode(value))

    back = read_back(bootstrap, [lanes.output], expected, decode=decode, timeout=300)  # ~3k results/s decoded
    return [
        ScoredResult(ts, str(r["event_id"]), _millis(r["event_time"]), result_versions(r))
        for ts, r in zip(back.timestamps_ms, back.values, strict=True)
    ]


def _wait_for_swaps(log: Path, count: int, timeout_s: float = 60.0) -> None:
    """Until the scorer's log shows ``count`` swaps. Raises BrokerError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while len(swap_ms(log)) < count:
        if time.monotonic() > deadline:
            raise BrokerError(f"the scorer logged no swap {count} within {timeout_s:.0f} s; log: {log}")
        time.sleep(0.1)


def swap_ms(log: Path) -> list[dict[str, Any]]:
    """Every swap the scorer logged: the set it took, the one it left, and how long the swap took (ms)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return [{"to": m[1], "from": m[2], "ms": float(m[3])} for m in _SWAP.finditer(text)]


def _set_versions(store: Path, version: str) -> Versions:
    manifest = ModelStore(store).manifest(version)
    return (
        ("lead", manifest.models["lead"].version),
        *sorted((b, m.version) for b, m in manifest.models.items() if b != "lead"),
    )


def _models(store: Path, bootstrap: str, control: str, *args: str) -> str:
    """``crm-scorer models`` on the run's store and control topic; its standard output."""
    env = {"CRM_SCORER_MODELS__CONTROL_TOPIC": control}
    common = ["models", "--store", str(store), "--bootstrap-servers", bootstrap]
    return _command("consumer.commands.cli", *common, *args, env=env)


def _command(module: str, *args: str, env: dict[str, str] | None = None) -> str:
    """``python -m module args``; its standard output. Raises BrokerError when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | (env or {}),
    )
    if done.returncode != 0:
        raise BrokerError(f"{module} {' '.join(args[:1])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout.strip()


def switch_table(d: dict[str, Any]) -> str:
    """The printed summary of ``run_switches``' report: per guarantee, the checks, then each switch."""
    lines = [
        f"switch: {d['offered_events_per_s']:,.0f} events/s offered for {d['seconds']:.0f} s per guarantee, "
        f"sets {d['sets'][0]} (active at start) and {d['sets'][1]}"
    ]
    for guarantee in (g for g in GUARANTEES if g in d):
        g = d[guarantee]
        lines.append(
            f"{guarantee}: {g['results']:,} results, lost {g['lost']}, duplicates {g['duplicates']}, "
            f"unexpected {g['unexpected']}, "
            f"mixed sets {g['mixed_sets']}, scored by a set not active {g['misplaced']}, "
            f"CPU taken by other processes {g['outside_cpu_percent']:.0f}%"
            + (f" (kernel {g['kernel_cpu_percent']:.0f}%)" if "kernel_cpu_percent" in g else "")
        )
        swaps = g["swap_ms"]
        for i, (switch, near) in enumerate(zip(g["switches"], g["around"], strict=True)):
            swap = f"{swaps[i]['ms']:.1f} ms" if i < len(swaps) else "n/a"
            reached = switch["first_result_ms"]
            after = (
                ""
                if reached is None
                else f", first result {(reached - switch['issued_ms']) / 1000:.1f} s after the command"
            )
            lines.append(f"  {switch['action']} {switch['version']}: swap {swap}{after}; " + _around_line(near))
    return "\n".join(lines)


def _around_line(near: dict[str, Any]) -> str:
    if not near:
        return "no result of this set after the command (the load ended first: a longer --switch-seconds)"
    f = lambda v: "n/a" if v is None else f"{v:,.1f}"  # noqa: E731
    return (
        f"lowest 1 s {f(near['lowest_per_s'])}/s vs steady median {f(near['steady_median_per_s'])}/s; "
        f"p50 {f(near['before_p50_ms'])} -> {f(near['after_p50_ms'])} ms, "
        f"p99 {f(near['before_p99_ms'])} -> {f(near['after_p99_ms'])} ms (5 s before -> after)"
    )
