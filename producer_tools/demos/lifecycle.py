"""The model loop as a demo (``crm-producer lifecycle-demo`` runs it): a bank changes its policy, the monitor's
trigger fires, the bank is retrained from the monitor's capture and activated in the running scorer, and its
realised quality recovers.

One process tree on the local broker (or ``KAFKA_BOOTSTRAP_SERVERS``): ``crm-scorer run`` serving a model store
in a temporary folder seeded with the committed set and following the control topic; ``crm-scorer monitor``
with capture on; the world's traffic and outcomes, bank_c tightening its policy at ``--change``. The demo then
does what the trigger's alert asks a person to do: ``crm-train --from-capture DIR --bank bank_c --since T``
(T: when the first application under the new policy was scored), then ``deploy`` (``crm-scorer models
activate``), and sends ``--after`` more applications. It prints one timeline, bank_c's realised AUC / ECE
before and after, the targets of docs/model-lifecycle.md, and writes a PNG of the realised figures over time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from models.config import DEFAULT_ARTIFACTS_DIR
from models.config_file import DEFAULT_CONFIG_FILE
from models.store import ModelStore
from models.train_cli import models_config
from producer_tools.demos import lifecycle_figures as figures
from producer_tools.demos.lifecycle_services import (
    Results,
    Service,
    Timeline,
    monitor_figures,
    run_command,
    watch_results,
)
from producer_tools.publishing.outcomes import OutcomeTally, answer_scores
from producer_tools.publishing.publisher import event_encoders, publish_events
from producer_tools.publishing.topics import ensure_topics
from producer_tools.servers.broker import broker_from_env
from producer_tools.servers.process import free_port
from producer_tools.world import generate
from producer_tools.world.outcomes import OutcomeDraws, PolicyChange, Truth

BANK = "bank_c"
MODELS = ["bank_a", "bank_b", "bank_c", "bank_d", "bank_e", "lead"]
SETTLE_S = 4.0  # a bank's outcomes are quiet this long: the last of them has arrived (delays are compressed)


@dataclass(frozen=True)
class Topics:
    """The demo's topics; a ``namespace`` keeps a run's apart from others' on a shared broker."""

    namespace: str = ""

    def name(self, topic: str) -> str:
        return f"{self.namespace}{topic}"

    @property
    def partitions(self) -> dict[str, int]:
        counts = {"crm.applications": 6, "crm.scores": 6, "crm.applications.dlq": 1, "crm.outcomes": 6}
        return {self.name(t): n for t, n in counts.items()}


@dataclass
class Run:
    """One run's broker, folders, services, world and timeline."""

    args: argparse.Namespace
    bootstrap: str
    folder: Path
    topics: Topics
    events: Sequence[dict[str, Any]]
    timeline: Timeline
    results: Results
    stop: threading.Event
    scorer: Service | None = None
    monitor: Service | None = None
    monitor_port: int = 0
    trigger_seen: int = 0  # checks that found the trigger's log line

    @property
    def config(self) -> Path:
        return self.folder / "scorer.yaml"

    @property
    def store(self) -> ModelStore:
        return ModelStore(self.folder / "store")

    @property
    def capture(self) -> Path:
        return self.folder / "capture"

    @property
    def policy(self) -> PolicyChange:
        return PolicyChange(BANK, self.args.change, self.args.policy_size)

    def bank_version(self, model_set: str) -> str:
        return self.store.manifest(model_set).models[BANK].version

    def check(self) -> bool:
        """Both services still run; the timeline's counts and the trigger from the monitor (False: its /metrics
        did not answer)."""
        for service in (self.scorer, self.monitor):
            if service is not None:
                service.check()
        figures = monitor_figures(self.monitor_port)
        if figures is None:
            return False
        joined = {m: int(v) for (name, m), v in figures.items() if name == "crm_monitor_outcomes_joined_total"}
        self.timeline.joined, self.timeline.joined_all = joined.get(BANK, 0), sum(joined.values())
        if self.monitor is not None and self.timeline.at("trigger") is None:
            found = self.monitor.find(rf"retraining recommended for {BANK}: (.*?); run:")
            since = figures.get(("crm_monitor_outcomes_since_change_detected", BANK))
            self.trigger_seen += found is not None
            if found and (since is not None or self.trigger_seen > 4):
                # the outcomes joined when it fired, from one scrape of both (else the count now)
                since = since or 0.0
                self.timeline.add(
                    "trigger", f"trigger fired for {BANK}: {found.group(1)}", self.timeline.joined - int(since)
                )
        return True


def run_lifecycle_demo(args: argparse.Namespace) -> int:
    total = args.change + args.training + args.after
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
        first = _seed_store(run)
        tally: list[OutcomeTally] = []
        threads = [
            threading.Thread(target=lambda: tally.append(answer_scores(_outcome_args(run), truths, run.stop))),
            threading.Thread(
                target=watch_results, args=(run.bootstrap, run.topics.name("crm.scores"), BANK, run.results, run.stop)
            ),
        ]
        try:
            _start_services(run)
            for thread in threads:
                thread.start()
            second = _loop(run, first)
        finally:
            run.stop.set()
            for thread in threads:
                if thread.is_alive():
                    thread.join(30)
            summary = [s.stop() for s in (run.monitor, run.scorer) if s is not None]
        print(f"outcomes  {tally[0].line() if tally else 'stopped'}", flush=True)
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
    _wait(run, lambda: run.results.read >= args.change, "the scores before the change", 600)
    _publish(run, args.change, args.change + args.training)
    _wait(run, lambda: run.results.read >= args.change + args.training, "the scores after the change", 600)
    _wait(run, lambda: run.timeline.at("trigger") is not None, "the retraining trigger", 120)
    _settle(run)
    second = _retrain(run)
    deploy(run, second)
    _publish(run, args.change + args.training, len(run.events))
    _wait(run, lambda: run.results.read >= len(run.events), "the scores of the last events", 600)
    _settle(run)
    return second


def _first_result(run: Run, old: str, version: str, event_id: str) -> None:
    if version != old:
        index = next(i for i, e in enumerate(run.events) if str(e["event_id"]) == event_id)
        run.timeline.add("first", f"first result scored by {BANK} {version}: event {index:,}")


def _seed_store(run: Run) -> str:
    """The store with the committed set active, and the scorer.yaml every command of the run reads."""
    store = run.store
    first = store.add(DEFAULT_ARTIFACTS_DIR)
    store.activate(first, MODELS, getpass.getuser(), "the committed set")
    config = yaml.safe_load(DEFAULT_CONFIG_FILE.read_text())
    config["kafka"]["bootstrap_servers"] = run.bootstrap
    config["models"]["store_dir"] = str(store.root)
    config["models"]["control_topic"] = run.topics.name("crm.models")
    run.config.write_text(yaml.safe_dump(config, sort_keys=False))
    return first


def _start_services(run: Run) -> None:
    """The scorer (following the store's activations) and the monitor (capturing, every second's figures)."""
    name = run.topics.name
    scorer = {
        "--config": run.config,
        "--metrics-port": 0,
        "--input-topic": name("crm.applications"),
        "--output-topic": name("crm.scores"),
        "--dlq-topic": name("crm.applications.dlq"),
        "--group-id": name("crm-scorer"),
    }
    run.scorer = Service(["run", *_argv(scorer)], {}, run.folder / "scorer.log")
    run.monitor_port = free_port()
    monitor = {
        "--bootstrap-servers": run.bootstrap,
        "--store-path": run.folder / "monitor-state",
        "--metrics-port": run.monitor_port,
        "--group-id": name("crm-scorer-monitor"),
        "--scores-topic": name("crm.scores"),
        "--outcomes-topic": name("crm.outcomes"),
        "--applications-topic": name("crm.applications"),
        "--capture-dir": run.capture,
    }
    env = {"CRM_MONITOR_QUALITY__EVALUATE_EVERY_S": "2", "CRM_MONITOR_CAPTURE_FLUSH_S": "2"}
    run.monitor = Service(["monitor", *_argv(monitor)], env, run.folder / "monitor.log")
    _wait(
        run,
        lambda: run.scorer is not None and run.scorer.find("follows model-set activations") is not None,
        "the scorer",
        120,
    )


def _argv(flags: dict[str, object]) -> list[str]:
    return [word for flag, value in flags.items() for word in (flag, str(value))]


def _outcome_args(run: Run) -> argparse.Namespace:
    return argparse.Namespace(
        bootstrap_servers=run.bootstrap,
        scores_topic=run.topics.name("crm.scores"),
        topic=run.topics.name("crm.outcomes"),
        time_scale=run.args.time_scale,
        banks_only=True,
        missing=OutcomeDraws.missing,
        duplicates=OutcomeDraws.duplicates,
        policy_change=run.policy,
        idle_exit=3600.0,  # the demo stops it: training and deploying leave minutes without a score
        max_scores=None,
        seed=run.args.seed,
    )


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
    _wait(run, lambda: not thread.is_alive(), "the producer", 600)


def _wait(run: Run, done: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        run.check()
        if time.monotonic() > deadline:
            raise SystemExit(f"lifecycle-demo: gave up waiting for {what} after {timeout_s:.0f} s")
        time.sleep(0.5)
    run.check()


def _settle(run: Run) -> None:
    """Until the monitor's joined outcomes (every model's) have not moved for ``SETTLE_S``: every due outcome
    is in."""
    last, since = -1, time.monotonic()
    while time.monotonic() - since < SETTLE_S:
        if not run.check() or run.timeline.joined_all != last:  # no answer is no sign of being done
            last, since = run.timeline.joined_all, time.monotonic()
        time.sleep(0.5)


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
    """Put the retrained set live: where a challenger step belongs (``crm-scorer models shadow VERSION``, the
    side-by-side comparison, then ``promote``) once the scorer has it; today the set is activated directly."""
    argv = ["consumer.commands.cli", "models", "--config", str(run.config), "activate", version]
    run_command([*argv, "--reason", f"{BANK} retrained after its policy change"], run.folder / "models.log")
    run.timeline.add("activate", f"crm-scorer models activate {version}: published on the control topic")
    pattern = f"scores with model set {version} from this batch on"
    _wait(run, lambda: run.scorer is not None and run.scorer.find(pattern) is not None, "the swap", 120)
    run.timeline.add("swapped", f"the scorer swapped to {version} between two batches, no restart")


def _report(run: Run, first: str, second: str, truths: dict[str, Truth]) -> int:
    """Before / after, the targets and the PNG, from the capture the monitor wrote on its way out."""
    index_of = {event_id: truth.index for event_id, truth in truths.items()}
    rows = figures.read_bank_rows(run.capture, BANK, index_of, run.args.time_scale)
    old, new = run.bank_version(first), run.bank_version(second)
    phase = figures.phases(rows, run.args.change, old, new)
    run.timeline.add("before", f"realised {BANK} before the change ({old}): {phase.baseline.text()}")
    run.timeline.add("degraded", f"realised {BANK} after the change ({old}): {phase.degraded.text()}")
    run.timeline.add("after", f"realised {BANK} once retrained ({new}): {phase.retrained.text()}")
    config = models_config(run.config, None)
    after = run.events[run.args.change + run.args.training :]
    dirs = (run.store.directory(first), run.store.directory(second))
    targets = figures.measure_targets(config, dirs, after, run.policy, run.args.seed, rows, new)
    for line in targets.lines():
        print(f"target    {line}", flush=True)
    marks = figures.Marks.of(rows, run.args.change, run.timeline.at("trigger"), new)
    figures.plot(rows, marks, BANK, run.args.plot)
    print(f"plot      {run.args.plot}", flush=True)
    return 0
