"""The model loop as a demo (``crm-producer lifecycle-demo`` runs it): a bank changes its policy, the monitor's
trigger fires, the bank is retrained from the monitor's capture and activated in the running scorer, and its
realised quality recovers.

One process tree on the local broker (or ``KAFKA_BOOTSTRAP_SERVERS``): ``crm-scorer run`` serving a model store
in a temporary folder seeded with the committed set and following the control topic; ``crm-scorer monitor``
with capture on; the world's traffic and outcomes, bank_c tightening its policy at ``--change``. The demo then
does what the trigger's alert asks a person to do: ``crm-train --from-capture DIR --bank bank_c --since T``
(T: when the first application under the new policy was scored), then ``deploy`` (``crm-scorer models
activate``), and sends ``--after-events`` more applications. It prints one timeline, bank_c's realised AUC / ECE
before and after, the targets of docs/model-lifecycle.md, and writes a PNG of the realised figures over time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from models.train_cli import models_config
from producer_tools.demos import lifecycle_figures as figures
from producer_tools.demos.lifecycle_run import (
    BANK,
    EVALUATE_EVERY_S,
    SETTLE_S,
    Run,
    Topics,
    outcome_args,
    seed_store,
    start_services,
    wait_until,
)
from producer_tools.demos.lifecycle_services import (
    Results,
    Timeline,
    run_command,
    watch_results,
)
from producer_tools.publishing.outcomes import answer_scores
from producer_tools.publishing.publisher import event_encoders, publish_events
from producer_tools.publishing.topics import ensure_topics, read_all
from producer_tools.servers.broker import broker_from_env
from producer_tools.world import generate
from producer_tools.world.outcomes import Truth


def run_lifecycle_demo(args: argparse.Namespace) -> int:
    total = args.change + args.training + args.challenge + args.after
    batch = generate(total, args.seed)
    truths = {
        str(e["event_id"]): Truth(i, t, e) for i, (e, t) in enumerate(zip(batch.events, batch.truth, strict=True))
    }
    with broker_from_env(kind=args.broker) as broker, tempfile.TemporaryDirectory(prefix="crm-lifecycle-") as tmp:
        print(f"broker    {broker.bootstrap_servers}  ({broker.kind} {broker.version})", flush=True)
        run = Run(
            args,
            broker.bootstrap_servers,
            Path(tmp),
            Topics(args.namespace),
            batch.events,
            Timeline(BANK),
            Results(),
            threading.Event(),
        )
        ensure_topics(run.bootstrap, run.topics.partitions)
        first = seed_store(run)
        threads = [
            threading.Thread(target=answer_scores, args=(outcome_args(run), truths, run.stop, run.tally)),
            threading.Thread(
                target=watch_results, args=(run.bootstrap, run.topics.name("crm.scores"), BANK, run.results, run.stop)
            ),
        ]
        try:
            start_services(run)
            for thread in threads:
                thread.start()
            second = _loop(run, first)
        finally:
            run.stop.set()
            for thread in threads:
                if thread.is_alive():
                    thread.join(30)
            summary = [s.stop() for s in (run.monitor, run.scorer) if s is not None]
        print(f"outcomes  {run.tally.line()}", flush=True)
        print(f"monitor   {summary[0] if summary else '-'}", flush=True)
        return _report(run, first, second, truths)


def _loop(run: Run, first: str) -> str:
    """The story: traffic through the change, the trigger, the retrain, the deploy, traffic after it."""
    args = run.args
    old = run.bank_version(first)
    run.results.on_first = lambda version, event: _first_result(run, old, version, event)
    run.timeline.add("start", f"scorer serving model set {first} ({BANK} {old}); monitor capturing")
    # Every application before the change is scored before the first one after it is sent, so --since T
    # (the first score under the new policy) cuts the capture at the change exactly.
    _publish(run, 0, args.change)
    wait_until(run, lambda: run.results.read >= args.change, "the scores before the change", 600)
    _publish(run, args.change, args.change + args.training)
    wait_until(run, lambda: run.results.read >= args.change + args.training, "the scores after the change", 600)
    wait_until(run, lambda: run.timeline.at("trigger") is not None, "the retraining trigger", 300)
    _settle(run, args.change + args.training)
    second = _retrain(run)
    deploy(run, second)
    _publish(run, args.change + args.training + args.challenge, len(run.events))
    wait_until(run, lambda: run.results.read >= len(run.events), "the scores of the last events", 600)
    _settle(run, len(run.events))
    return second


def _first_result(run: Run, old: str, version: str, event_id: str) -> None:
    if version != old:
        index = next(i for i, e in enumerate(run.events) if str(e["event_id"]) == event_id)
        run.timeline.add("first", f"first result scored by {BANK} {version}: event {index:,}")


def _publish(run: Run, start: int, end: int) -> None:
    """World events ``start``..``end`` at the demo's rate, the timeline told when the policy change begins."""

    def events() -> Iterator[dict[str, Any]]:
        for index in range(start, end):
            if index == run.args.change:
                run.timeline.add("change", f"{BANK} tightens its policy from this event on (size {run.policy.size})")
            run.timeline.sent = index + 1
            yield dict(run.events[index])

    thread = threading.Thread(
        target=publish_events,
        args=(run.bootstrap, run.topics.name("crm.applications"), events()),
        kwargs={"encoders": event_encoders("v1"), "rate": run.args.rate},
        daemon=True,
    )
    thread.start()
    wait_until(run, lambda: not thread.is_alive(), "the producer", 600)


def _settle(run: Run, scores: int) -> None:
    """Until the world has read ``scores`` scores, ``SETTLE_S`` has passed since (their bank decisions are due)
    and the monitor has read every outcome sent."""
    deadline, read_at = time.monotonic() + 600, None
    while time.monotonic() < deadline:
        sent = run.tally.outcomes - run.tally.failed
        fresh = run.check()
        read_at = None if run.tally.scores < scores else read_at or time.monotonic()
        due = read_at is not None and time.monotonic() - read_at >= SETTLE_S
        if fresh and due and run.timeline.outcomes_read >= sent:
            return
        time.sleep(0.5)
    raise SystemExit(f"lifecycle-demo: the monitor did not catch up with the outcomes ({run.tally.line()})")


def _retrain(run: Run) -> str:
    """``crm-train --from-capture``: bank_c on its rows scored since the first application under the new policy,
    continuing the parent's booster (``--warm-start``: the selection report's correction that measurably helps,
    docs/retraining.md)."""
    after = (str(e["event_id"]) for e in run.events[run.args.change : run.args.change + run.args.training])
    since_ms = min(run.results.scored_at[event_id] for event_id in after)
    since = dt.datetime.fromtimestamp(since_ms / 1000, dt.UTC).isoformat(timespec="milliseconds")
    run.timeline.add(
        "retrain", f"retrain started: crm-train --from-capture CAPTURE --bank {BANK} --since {since} --warm-start"
    )
    argv = ["producer_tools.commands.train_cmd", "--config", str(run.config), "--from-capture", str(run.capture)]
    done = run_command([*argv, "--bank", BANK, "--since", since, "--warm-start"], run.folder / "train.log")
    version = done.stdout.split("model set ", 1)[1].split()[0]
    metrics = run.store.manifest(version).models[BANK].metrics
    rows = (run.store.manifest(version).lineage or {}).get("rows", {}).get(BANK, "?")
    run.timeline.add(
        "retrained",
        f"retrain finished: model set {version}, {BANK} {run.bank_version(version)} on {rows} rows, offline AUC "
        f"{metrics.auc:.3f} (holdout of its routed rows)",
    )
    return version


def deploy(run: Run, version: str) -> None:
    """Put the retrained set live. With ``--challenge N`` as a challenger first (``crm-scorer models shadow``: N
    applications scored beside the champion, never the decision), promoted on the monitor's paired verdict
    (``crm-scorer models promote``); with 0, activated directly (``crm-scorer models activate``)."""
    if run.args.challenge > 0:
        _challenge(run, version)
    else:
        _models(run, "activate", version, "--reason", f"{BANK} retrained after its policy change")
        run.timeline.add("activate", f"crm-scorer models activate {version}: published on the control topic")
    pattern = f"scores with model set {version} from this batch on"
    wait_until(run, lambda: run.scorer is not None and run.scorer.find(pattern) is not None, "the swap", 120)
    run.timeline.add("swapped", f"the scorer swapped to {version} between two batches, no restart")


def _challenge(run: Run, version: str) -> None:
    _models(run, "shadow", version, "--reason", f"{BANK} retrained after its policy change")
    run.timeline.add("shadow", f"crm-scorer models shadow {version}: {BANK}'s retrained model beside the champion")
    pattern = f"scores with challenger set {version}"
    wait_until(run, lambda: run.scorer is not None and run.scorer.find(pattern) is not None, "the challenger", 120)
    start = run.args.change + run.args.training
    _publish(run, start, start + run.args.challenge)
    wait_until(run, lambda: run.results.read >= start + run.args.challenge, "the scores beside the challenger", 600)
    _settle(run, start + run.args.challenge)
    monitor = f"http://127.0.0.1:{run.monitor_port}/metrics"
    for _ in range(3):  # the monitor's figures are a few seconds old: the last outcomes may tip it
        time.sleep(2 * EVALUATE_EVERY_S)
        done = _models(run, "promote", BANK, "--monitor", monitor, check=False)
        verdict = done.stdout.strip().splitlines()[0] if done.stdout.strip() else done.stderr.strip()
        if done.returncode == 0:
            run.timeline.add("activate", f"crm-scorer models promote {BANK}: {verdict}")
            return
    raise SystemExit(f"lifecycle-demo: the retrained {BANK} was not promoted: {verdict}")


def _models(run: Run, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["consumer.commands.cli", "models", "--config", str(run.config), *args]
    return run_command(argv, run.folder / "models.log", check=check)


def _report(run: Run, first: str, second: str, truths: dict[str, Truth]) -> int:
    """Before / after, the targets and the PNG, from the capture the monitor wrote on its way out."""
    index_of = {event_id: truth.index for event_id, truth in truths.items()}
    rows = figures.read_bank_rows(run.capture, BANK, index_of, run.args.time_scale)
    challenger = figures.challenger_rows(rows, _shadowed(run))
    old, new = run.bank_version(first), run.bank_version(second)
    phase = figures.phases(rows, challenger, run.args.change, old, new)
    run.timeline.add("before", f"realised {BANK} before the change ({old}): {phase.baseline.text()}")
    run.timeline.add("degraded", f"realised {BANK} after the change ({old}): {phase.degraded.text()}")
    if phase.shadow_challenger.outcomes:
        run.timeline.add("paired", f"shadowed: champion {old} {phase.shadow_champion.text()}")
        run.timeline.add("paired", f"shadowed: challenger {new} {phase.shadow_challenger.text()}")
    run.timeline.add("after", f"realised {BANK} once retrained ({new}): {phase.retrained.text()}")
    config = models_config(run.config, None)
    after = run.events[run.args.change + run.args.training + run.args.challenge :]
    dirs = (run.store.directory(first), run.store.directory(second))
    targets = figures.measure_targets(config, dirs, after, run.policy, run.args.seed, rows, new)
    for line in targets.lines():
        print(f"target    {line}", flush=True)
    marks = figures.Marks.of(rows, challenger, run.args.change, run.timeline.at("trigger"), new)
    figures.plot(rows, challenger, marks, BANK, run.args.plot)
    print(f"plot      {run.args.plot}", flush=True)
    return 0


def _shadowed(run: Run) -> dict[str, tuple[float, str]]:
    """The challenger's bank probability and model version per scored event, from the shadow topic (JSON)."""
    out = {}
    for message in read_all(run.bootstrap, run.topics.name("crm.scores.shadow"), idle=1.0):
        record = json.loads(message.value or b"{}")
        challenged = record.get("models", {}).get(BANK)
        if challenged is not None:
            out[str(record["event_id"])] = (float(challenged[0]), str(challenged[2]))
    return out
