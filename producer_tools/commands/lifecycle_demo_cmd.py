"""``crm-producer lifecycle-demo``: the model loop on one machine, in one command.

bank_c changes its policy, the monitor's trigger fires, bank_c is retrained from the capture and activated in
the running scorer without a restart; one timeline and a PNG of its realised AUC and ECE. What it starts and
when it ends: :mod:`producer_tools.demos.lifecycle`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from producer_tools.demos.lifecycle import run_lifecycle_demo
from producer_tools.servers.broker import KINDS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lifecycle-demo", help="policy change, trigger, retrain from the capture, hot activation, recovery"
    )
    add = parser.add_argument
    add("--change", type=int, default=2000, help="world events before bank_c tightens its policy")
    add("--training", type=int, default=5000, help="events under the new policy before the retrain")
    add(
        "--challenge",
        type=int,
        default=6000,
        help="events scored with the retrained set as a challenger before its promotion (0: activate it directly)",
    )
    add(
        "--after-events",
        "--after",
        dest="after",
        type=int,
        default=26000,
        help="events sent once the retrained set is active (26,000: about 5,000 bank_c outcomes to judge its ECE by)",
    )
    add("--policy-size", type=float, default=0.5, help="how far bank_c tightens (1: the full change of the world)")
    add("--seed", type=int, default=2026, help="the synthetic world's seed")
    add("--rate", type=float, default=1000.0, help="events/s offered by the synthetic CRM")
    add("--time-scale", type=float, default=3000.0, help="divide the world's bank decision delays by this")
    add("--plot", type=Path, default=Path("lifecycle-demo.png"), help="where the PNG of bank_c's quality goes")
    add("--namespace", default="", help="prefix of every topic and group (runs sharing a broker)")
    add("--broker", choices=KINDS, default=None, help="local broker (as `demo`)")
    parser.set_defaults(handler=run_lifecycle_demo)
