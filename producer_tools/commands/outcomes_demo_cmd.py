"""``crm-producer outcomes-demo``: the feedback loop on one machine, in one command.

Scorer, outcomes and monitor with live quality figures; ``--policy-change bank_c@N`` shows a bank changing its
policy. What it starts and when it ends: :mod:`producer_tools.demos.outcomes`.
"""

from __future__ import annotations

import argparse
import os

from producer_tools.demos.outcomes import run_outcomes_demo
from producer_tools.servers.broker import KINDS
from producer_tools.world.outcomes import PolicyChange


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("outcomes-demo", help="scorer + outcomes + monitor, with live quality figures")
    add = parser.add_argument
    add("--events", type=int, default=int(os.environ.get("EVENTS", "10000")), help="world events to send")
    add("--seed", type=int, default=2026, help="the synthetic world's seed")
    add("--rate", type=float, default=1000.0, help="events/s offered by the synthetic CRM")
    add("--time-scale", type=float, default=3000.0, help="divide the world's bank decision delays by this")
    add("--policy-change", type=PolicyChange.parse, default=None, help="BANK@N: BANK tightens from event N on")
    add("--broker", choices=KINDS, default=None, help="local broker (as `demo`)")
    parser.set_defaults(handler=run_outcomes_demo)
