"""The feedback-loop demo: scorer, outcomes and monitor on one machine (``crm-producer outcomes-demo`` runs it).

Starts the local broker (or uses ``KAFKA_BOOTSTRAP_SERVERS``), ``crm-scorer run`` and ``crm-scorer monitor`` as
subprocesses (the tools never import the service), sends ``--events`` world events, answers each score with
the world's outcomes, their delays compressed by ``--time-scale`` (3000: bank decisions in about a second),
prints the monitor's figures as they come, and ends with the monitor's summary once every bank decision is in.
Lead conversions take days of world time (a minute and more here): the demo leaves them, and the monitor
reports a lead's figures only for scores whose 5-day conversion horizon has closed. ``--policy-change bank_c@N``
shows a bank changing its policy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from producer_tools.publishing.outcomes import OutcomeTally, answer_scores
from producer_tools.publishing.publisher import event_encoders, publish_events
from producer_tools.publishing.topics import ensure_topics
from producer_tools.servers.broker import broker_from_env
from producer_tools.world import generate
from producer_tools.world.outcomes import OutcomeDraws, Truth

TOPICS = {"crm.applications": 6, "crm.scores": 6, "crm.applications.dlq": 1, "crm.outcomes": 6}
MONITOR_PORT = 9410


def run_outcomes_demo(args: argparse.Namespace) -> int:
    batch = generate(args.events, args.seed)
    truths = {
        str(e["event_id"]): Truth(i, t, e) for i, (e, t) in enumerate(zip(batch.events, batch.truth, strict=True))
    }
    with broker_from_env(kind=args.broker) as broker, tempfile.TemporaryDirectory() as store:
        bootstrap = broker.bootstrap_servers
        print(f"broker    {bootstrap}  ({broker.kind} {broker.version})", flush=True)
        ensure_topics(bootstrap, TOPICS)
        scorer = _service(["run", "--bootstrap-servers", bootstrap, "--metrics-port", "0"], {})
        monitor = _start_monitor(bootstrap, Path(store) / "state")
        print(f"monitor   http://127.0.0.1:{MONITOR_PORT}/metrics", flush=True)
        tally: list[OutcomeTally] = []
        stop = threading.Event()
        answering = threading.Thread(
            target=lambda: tally.append(answer_scores(_outcome_args(args, bootstrap), truths, stop))
        )
        try:
            answering.start()  # answering while the events flow, so a policy change happens in time, as in life
            sent = publish_events(
                bootstrap, "crm.applications", iter(batch.events), encoders=event_encoders("v1"), rate=args.rate
            )
            print(f"producer  {sent.line()}", flush=True)
            _watch(answering, monitor)
        except KeyboardInterrupt:
            print("\nstopping", flush=True)
        stop.set()
        if answering.is_alive():
            answering.join(30)
        print(f"outcomes  {tally[0].line() if tally else 'stopped'}", flush=True)
        summary = _stop(monitor)
        _stop(scorer)
        print(f"monitor   {summary}", flush=True)
        return 0


def _start_monitor(bootstrap: str, store_path: Path) -> subprocess.Popen[bytes]:
    """``crm-scorer monitor`` evaluating every second from 50 outcomes on, so figures show within the demo."""
    command = ["monitor", "--bootstrap-servers", bootstrap, "--store-path", str(store_path)]
    env = {"CRM_MONITOR_QUALITY__EVALUATE_EVERY_S": "1", "CRM_MONITOR_QUALITY__MIN_OUTCOMES": "50"}
    return _service([*command, "--metrics-port", str(MONITOR_PORT)], env)


def _outcome_args(args: argparse.Namespace, bootstrap: str) -> argparse.Namespace:
    return argparse.Namespace(
        bootstrap_servers=bootstrap,
        scores_topic="crm.scores",
        topic="crm.outcomes",
        time_scale=args.time_scale,
        banks_only=True,
        missing=OutcomeDraws.missing,
        duplicates=OutcomeDraws.duplicates,
        policy_change=args.policy_change,
        idle_exit=5.0,
        max_scores=None,
        seed=args.seed,
    )


def _service(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    environment = (
        os.environ
        | {"CRM_SCORER_CONSUMER__SESSION_TIMEOUT_MS": "6000", "CRM_MONITOR_KAFKA__SESSION_TIMEOUT_MS": "6000"}
        | env
    )
    return subprocess.Popen(
        [sys.executable, "-m", "consumer.commands.cli", *command],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _watch(answering: threading.Thread, monitor: subprocess.Popen[bytes]) -> None:
    """A line of the monitor's figures every 2 s until every outcome due within the demo is sent."""
    while answering.is_alive():
        time.sleep(2.0)
        if monitor.poll() is not None:
            raise SystemExit(f"the monitor exited with code {monitor.returncode}")
        print(f"quality   {_figures()}", flush=True)


def _figures() -> str:
    """Joined outcomes and each bank's count-window AUC / ECE, read from the monitor's /metrics."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urlopen(f"http://127.0.0.1:{MONITOR_PORT}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return "(monitor not answering yet)"
    values: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            model = sample.labels.get("model", "")
            if sample.labels.get("window", "count") == "count":
                values[(sample.name, model)] = sample.value
    joined = sum(v for (name, _), v in values.items() if name == "crm_monitor_outcomes_joined_total")
    banks = sorted({m for (name, m) in values if name == "crm_monitor_auc"})
    parts = [f"joined={joined:,.0f}"]
    for bank in banks:
        drift = "  DRIFT" if values.get(("crm_monitor_concept_drift_detected", bank)) == 1.0 else ""
        drift += "  RETRAIN" if values.get(("crm_monitor_retrain_recommended", bank)) == 1.0 else ""
        parts.append(f"{bank} auc={values[('crm_monitor_auc', bank)]:.2f} ece={_get(values, 'ece', bank)}{drift}")
    return "  ".join(parts)


def _get(values: dict[tuple[str, str], Any], name: str, model: str) -> str:
    value = values.get((f"crm_monitor_{name}", model))
    return "-" if value is None else f"{value:.3f}"


def _stop(process: subprocess.Popen[bytes]) -> str:
    """SIGTERM, wait; the last line it printed (the monitor's summary)."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    lines = out.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"(exit {process.returncode})"
