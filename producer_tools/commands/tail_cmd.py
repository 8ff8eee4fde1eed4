"""``crm-producer tail``: print the score results (or dead letters) arriving on a topic.

Score records are decoded and printed as JSON lines (the JSON view) or a table (a result's header line, then
one line per bank with its decision and reasons, the lead's reasons and the ranked offers). Messages that carry
``dlq.*`` headers are dead letters: their reason, error and source are printed instead of their bytes.
The reader assigns every partition itself (no group, nothing committed) and stops after ``--max`` records
or ``--timeout`` seconds of silence.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

from consumer.cli_style import add_idle_timeout
from consumer.exit_codes import exit_code_of
from models.reasons import LANGUAGES, statements_by_code
from producer_tools.commands.arguments import SCORES_TOPIC, add_bootstrap_argument, connect, registry_of, require_broker
from producer_tools.publishing.topics import follow
from producer_tools.publishing.views import Filter, dead_letter_row, render, score_row, with_statements
from schemas import ResultDecoder
from schemas.errors import CrmScorerError, InvalidEventError

DEFAULT_TOPIC = SCORES_TOPIC


def register(subparsers: Any) -> None:
    """Add the ``tail`` subcommand to ``crm-producer``."""
    parser = subparsers.add_parser(
        "tail",
        help="print score results (or dead letters) from a topic",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    add_bootstrap_argument(parser)
    parser.add_argument("--topic", default=DEFAULT_TOPIC, help=f"topic to read (default {DEFAULT_TOPIC})")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest message, not the newest")
    parser.add_argument(
        "--filter",
        action="append",
        type=Filter.parse,
        default=[],
        help="FIELD=VALUE, FIELD>=N, ... (repeatable, all must hold)",
    )
    parser.add_argument("--format", choices=("json", "table"), default="json", help="one JSON per line or a table")
    parser.add_argument("--max", type=int, default=None, help="stop after printing this many records")
    add_idle_timeout(parser, "--timeout", "timeout", None, "stop after this many seconds with nothing new")
    parser.add_argument(
        "--schema-registry-url", default=None, help="for Confluent-framed results, over the connection file's"
    )
    parser.add_argument(
        "--statements",
        choices=LANGUAGES,
        default=None,
        help="show every reason's statement in this language, from the result or else the reason-code catalogue "
        "(default: codes only)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print matching records on stdout until --max or --timeout. Messages that are neither score results nor
    dead letters are counted per reason on stderr (the first of each reason in full)."""
    printed, skipped = 0, Counter[str]()
    statements = statements_by_code() if args.statements else {}
    try:
        connect(args)
        decoder = ResultDecoder(registry=registry_of(args))
        require_broker(args.bootstrap_servers, topics=[args.topic])
        for message in follow(args.bootstrap_servers, args.topic, args.from_beginning, args.timeout):
            try:
                view, is_dead_letter = render(message, decoder)
            except InvalidEventError as exc:
                if not skipped[exc.reason]:
                    print(
                        f"partition {message.partition} offset {message.offset}: {exc.reason}: {exc}", file=sys.stderr
                    )
                skipped[exc.reason] += 1
                continue
            if args.statements and not is_dead_letter:
                view = with_statements(view, args.statements, statements)
            if all(f.matches(view) for f in args.filter):
                print(_line(view, is_dead_letter, args.format), flush=True)
                printed += 1
                if args.max is not None and printed >= args.max:
                    break
    except KeyboardInterrupt:
        pass
    except CrmScorerError as exc:
        print(f"crm-producer tail: {exc}", file=sys.stderr)
        return exit_code_of(exc)
    finally:
        if skipped:
            tally = " ".join(f"{reason}={count}" for reason, count in sorted(skipped.items()))
            print(
                f"skipped {skipped.total()} messages that are neither score results nor dead letters: {tally}",
                file=sys.stderr,
            )
    return 0


def _line(view: dict[str, Any], is_dead_letter: bool, fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"dead_letter": view} if is_dead_letter else view, ensure_ascii=False)
    return dead_letter_row(view) if is_dead_letter else score_row(view)
