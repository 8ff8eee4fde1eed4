"""The model-loop demo's run: its topics, folders, settings file and model store, the scorer and the monitor it
starts, and what it reads from them while it waits (``producer_tools.demos.lifecycle`` tells the story)."""

from __future__ import annotations

import argparse
import getpass
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from models.config import DEFAULT_ARTIFACTS_DIR
from models.config_file import DEFAULT_CONFIG_FILE
from models.store import ModelStore
from producer_tools.demos.lifecycle_services import Results, Service, Timeline, monitor_figures
from producer_tools.publishing.outcomes import OutcomeTally
from producer_tools.servers.process import free_port
from producer_tools.world.outcomes import OutcomeDraws, PolicyChange

BANK = "bank_c"
MODELS = ["bank_a", "bank_b", "bank_c", "bank_d", "bank_e", "lead"]
EVALUATE_EVERY_S = 2  # the monitor's figures, the trigger and the paired verdict
SETTLE_S = 4.0  # a bank's outcomes are quiet this long: the last of them has arrived (delays are compressed)


@dataclass(frozen=True)
class Topics:
    """The demo's topics; a ``namespace`` keeps a run's apart from others' on a shared broker."""

    namespace: str = ""

    def name(self, topic: str) -> str:
        return f"{self.namespace}{topic}"

    @property
    def partitions(self) -> dict[str, int]:
        counts = {"crm.applications": 6, "crm.scores": 6, "crm.scores.shadow": 6, "crm.applications.dlq": 1}
        counts["crm.outcomes"] = 6
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
    tally: OutcomeTally = field(default_factory=OutcomeTally)  # the world's answers, counted as they go
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
        self.timeline.joined = int(figures.get(("crm_monitor_outcomes_joined_total", BANK), 0))
        self.timeline.outcomes_read = int(figures.get(("crm_monitor_messages_total", "outcomes"), 0))
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


def seed_store(run: Run) -> str:
    """The store with the committed set active, and the scorer.yaml every command of the run reads (the
    scorer, crm-train and crm-scorer models: one broker, the run's topics, store and control topic)."""
    store = run.store
    first = store.add(DEFAULT_ARTIFACTS_DIR)
    store.activate(first, MODELS, getpass.getuser(), "the committed set")
    name = run.topics.name
    config = yaml.safe_load(DEFAULT_CONFIG_FILE.read_text())
    config["kafka"]["bootstrap_servers"] = run.bootstrap
    config["topics"] = {"input": name("crm.applications"), "output": name("crm.scores")}
    config["topics"]["dlq"] = name("crm.applications.dlq")
    config["consumer"]["group_id"] = name("crm-scorer")
    config["models"]["store_dir"] = str(store.root)
    config["models"]["control_topic"] = name("crm.models")
    config["models"]["shadow_topic"] = name("crm.scores.shadow")
    run.config.write_text(yaml.safe_dump(config, sort_keys=False))
    return first


def start_services(run: Run) -> None:
    """The scorer (following the store's activations) and the monitor (capturing, every second's figures)."""
    name = run.topics.name
    run.scorer = Service(["run", "--config", str(run.config), "--metrics-port", "0"], {}, run.folder / "scorer.log")
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
    env = {
        "CRM_MONITOR_QUALITY__EVALUATE_EVERY_S": str(EVALUATE_EVERY_S),
        "CRM_MONITOR_CAPTURE_FLUSH_S": "2",
        "CRM_MONITOR_TOPICS__SHADOW": name("crm.scores.shadow"),
    }
    run.monitor = Service(["monitor", *argv_of(monitor)], env, run.folder / "monitor.log")
    wait_until(
        run,
        lambda: run.scorer is not None and run.scorer.find("follows model-set activations") is not None,
        "the scorer",
        120,
    )


def argv_of(flags: dict[str, object]) -> list[str]:
    return [word for flag, value in flags.items() for word in (flag, str(value))]


def outcome_args(run: Run) -> argparse.Namespace:
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


def wait_until(run: Run, done: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        run.check()
        if time.monotonic() > deadline:
            raise SystemExit(f"lifecycle-demo: gave up waiting for {what} after {timeout_s:.0f} s")
        time.sleep(0.5)
    run.check()
