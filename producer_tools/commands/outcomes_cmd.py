"""``crm-producer outcomes``: answer the scores on ``crm.scores`` with bank decisions and lead conversions.

The world behind the scores is drawn again from the same ``--count``, ``--seed`` and ``--scenario`` that
``crm-producer produce`` used (same arguments, same events), so each score finds its event's ground truth by
``event_id``; a score of an event that world does not hold (poison, another run) is counted as ``unknown``.
Outcomes are published keyed by ``application_id`` once their delay has passed: ``--time-scale`` divides the
world's delays (1000: a 20-minute bank decision arrives 1.2 s after its score), 0 publishes at once.
``decided_at`` is always world time: the score's ``scored_at`` plus the delay drawn. Ends with
``scores=N unknown=U outcomes=O duplicates=D failed=F`` once no score came for ``--idle-exit`` seconds (a minute
before the first) and every outcome is sent.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from consumer.cli_style import add_idle_timeout, add_log_options
from consumer.exit_codes import exit_code_of
from producer_tools.commands.arguments import (
    DEFAULT_COUNT,
    OUTCOMES_TOPIC,
    SCORES_TOPIC,
    add_bootstrap_argument,
    connect,
    registry_of,
    require_broker,
)
from producer_tools.errors import BrokerError
from producer_tools.publishing.outcomes import answer_scores
from producer_tools.publishing.topics import ensure_topics
from producer_tools.world import SCENARIOS
from producer_tools.world.outcomes import OutcomeDraws, PolicyChange
from schemas.errors import CrmScorerError

DEFAULT_TOPIC = OUTCOMES_TOPIC
DEFAULT_SCORES = SCORES_TOPIC


def register(subparsers: Any) -> None:
    """Add the ``outcomes`` subcommand to ``crm-producer``."""
    parser = subparsers.add_parser(
        "outcomes",
        help="publish bank decisions and lead conversions for the scores on a topic (synthetic world)",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    add = parser.add_argument
    add_bootstrap_argument(parser)
    add("--scores-topic", default=DEFAULT_SCORES, help=f"score results to answer (default {DEFAULT_SCORES})")
    add("--topic", default=DEFAULT_TOPIC, help=f"outcome topic (default {DEFAULT_TOPIC})")
    add("--partitions", type=int, default=None, help="create the topic with this many partitions if it is missing")
    add("--count", type=int, default=DEFAULT_COUNT, help="the world's size, as given to `produce`")
    add("--seed", type=int, default=42, help="the world's seed, as given to `produce` (also seeds the outcomes)")
    add("--scenario", choices=SCENARIOS, default="baseline", help="the world's scenario")
    add("--schema-version", choices=("v1", "v2", "mixed"), default="v1", help="as given to `produce`")
    add("--time-scale", type=float, default=0.0, help="divide the world's delays by this; 0 = publish at once")
    add("--lead-time-scale", type=float, default=None, help="the same for lead conversions (default --time-scale)")
    add("--missing", type=float, default=OutcomeDraws.missing, help="share of outcomes that never arrive")
    add("--duplicates", type=float, default=OutcomeDraws.duplicates, help="share of outcomes sent twice")
    add("--policy-change", type=PolicyChange.parse, default=None, help="BANK@N: BANK tightens from event N on")
    add_idle_timeout(parser, "--idle-exit", "idle_exit", 10.0, "stop after this many seconds without a new score")
    add("--max-scores", type=int, default=None, help="stop after answering this many scores")
    add_log_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Answer the scores as the arguments say; print the summary line on stdout."""
    try:
        connect(args)
        args.score_registry = registry_of(args)  # Confluent-framed scores name their writer schema there
        require_broker(args.bootstrap_servers, topics=[args.scores_topic])
        if args.partitions:
            ensure_topics(args.bootstrap_servers, {args.topic: args.partitions})
        tally = answer_scores(args)
    except (CrmScorerError, BrokerError, OSError, ValueError) as exc:
        print(f"crm-producer outcomes: {exc}", file=sys.stderr)
        return exit_code_of(exc)
    except KeyboardInterrupt:
        return 130
    print(tally.line(), flush=True)
    return 1 if tally.failed else 0
