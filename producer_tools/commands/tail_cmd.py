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
import operator
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Message, TopicPartition

from producer_tools.broker import BrokerError
from producer_tools.produce_cmd import add_bootstrap_argument, require_broker
from producer_tools.publisher import registry_for
from producer_tools.topics import RecordedMessage
from schemas import ResultDecoder
from schemas.dead_letter import DeadLetterInfo
from schemas.errors import CrmScorerError, InvalidEventError
from schemas.json_view import to_json_view

DEFAULT_TOPIC = "crm.scores"
_POLL_SECONDS = 0.2
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    "=": operator.eq,
}


@dataclass(frozen=True)
class Filter:
    """``path op value``: ``best_offer=bank_c``, ``lead.score>=700``; a dotted path reaches nested fields."""

    path: tuple[str, ...]
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Filter:
        """Parse ``field<op>value`` with op one of = != >= <= > <. Raises ValueError on anything else."""
        for op in _OPERATORS:  # two-character operators are listed first, so '>=' is never read as '>'
            name, found, value = text.partition(op)
            if found and name.strip():
                return cls(tuple(name.strip().split(".")), op, value.strip())
        raise ValueError(f"filter {text!r}: expected FIELD=VALUE (or !=, >=, <=, >, <)")

    def matches(self, view: dict[str, Any]) -> bool:
        """True when ``view`` has the field and it compares as asked (numerically when both sides are numbers)."""
        found: Any = view
        for part in self.path:
            if not isinstance(found, dict) or part not in found:
                return False
            found = found[part]
        left, right = _comparable(found, self.value)
        try:
            return _OPERATORS[self.op](left, right)
        except TypeError:  # ordering a number against text: no match rather than a crash
            return False


def _comparable(found: Any, wanted: str) -> tuple[Any, Any]:
    if isinstance(found, int | float) and not isinstance(found, bool):
        try:
            return float(found), float(wanted)
        except ValueError:
            return str(found), wanted
    if found is None:
        return "null", wanted
    if isinstance(found, bool):
        return str(found).lower(), wanted.lower()
    return str(found), wanted


def score_view(record: dict[str, Any]) -> dict[str, Any]:
    """The JSON view of a decoded score result (ids as strings)."""
    view = to_json_view(record)
    view["event_id"] = str(view["event_id"])  # the uuid logical type decodes to uuid.UUID
    return view


def dead_letter_view(info: DeadLetterInfo, message: RecordedMessage) -> dict[str, Any]:
    """A dead letter as a flat JSON-ready dict: reason, error, source and the original key."""
    key = None if message.key is None else message.key.decode("utf-8", "replace")
    return {
        "reason": info.reason,
        "error": info.error,
        "field": info.field,
        "source": f"{info.topic}[{info.partition}]@{info.offset}",
        "failed_at": to_json_view(info.failed_at),
        "key": key,
        "value_bytes": len(message.value or b""),
    }


def score_row(view: dict[str, Any]) -> str:
    """A result as a small table: ids, best offer and lead score; then each bank's probability, decision and
    reasons (code and contribution), the lead's reasons, and the offers in rank order."""
    ids = f"{view['event_id']}  {view['application_id']:<22}"
    lines = [f"{ids} best_offer={view['best_offer'] or '-'}  lead={view['lead']['score']}"]
    width = max([len(b["bank"]) for b in view["banks"]] + [6])
    for bank in view["banks"]:
        decision = "approved" if bank["approved"] else "declined"
        lines.append(
            f"  {bank['bank']:<{width}} {bank['probability']:.2f} {decision}  {_reasons(bank.get('reasons', []))}"
        )
    if view["lead"].get("reasons"):
        lines.append(
            f"  {'lead':<{width}} {view['lead']['probability']:.2f} {'':8}  {_reasons(view['lead']['reasons'])}"
        )
    if not any(b.get("reasons") for b in view["banks"]):  # a v1 result: only the explained bank's reasons
        lines.append(f"  {'reasons':<{width}} {_reasons(view['reasons'])}")
    if view.get("offers"):
        lines.append(f"  {'offers':<{width}} " + " | ".join(_offer(o) for o in view["offers"]))
    return "\n".join(lines)


def _reasons(reasons: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r.get('code') or r['feature']}({r['contribution']:+.2f})" for r in reasons) or "-"


def _offer(offer: dict[str, Any]) -> str:
    if offer["monthly_payment"] is None:
        return f"{offer['rank']}. {offer['bank']} (requested loan, unpriced)"
    return (f"{offer['rank']}. {offer['bank']} {offer['product']} {offer['monthly_payment']:,.2f}/month "
            f"at {100 * offer['annual_rate']:.1f}%")  # fmt: skip


def dead_letter_row(view: dict[str, Any]) -> str:
    return f"DLQ {view['reason']:<18} {view['source']:<32} key={view['key']}  {view['error'][:120]}"


def render(message: RecordedMessage, decoder: ResultDecoder) -> tuple[dict[str, Any], bool]:
    """The view of ``message`` and whether it is a dead letter.

    Raises:
        InvalidEventError: not a dead letter and not a decodable score result.
    """
    try:
        return dead_letter_view(DeadLetterInfo.from_headers(message.headers), message), True
    except (KeyError, ValueError):
        return score_view(decoder.decode(message.value)), False


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
    parser.add_argument("--format", choices=("json", "table"), default="json")
    parser.add_argument("--max", type=int, default=None, help="stop after printing this many records")
    parser.add_argument("--timeout", type=float, default=None, help="stop after this many seconds with nothing new")
    parser.add_argument("--schema-registry-url", default=None, help="for Confluent-framed results")
    parser.set_defaults(handler=run)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Print matching records on stdout until --max or --timeout. Messages that are neither score results nor
    dead letters are counted per reason on stderr (the first of each reason in full)."""
    registry = registry_for(args.schema_registry_url) if args.schema_registry_url else None
    decoder = ResultDecoder(registry=registry)
    printed, skipped = 0, Counter[str]()
    try:
        require_broker(args.bootstrap_servers)
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
            if all(f.matches(view) for f in args.filter):
                print(_line(view, is_dead_letter, args.format), flush=True)
                printed += 1
                if args.max is not None and printed >= args.max:
                    break
    except KeyboardInterrupt:
        pass
    except CrmScorerError as exc:
        print(f"crm-producer tail: {exc}", file=sys.stderr)
        return 2
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


def follow(
    bootstrap_servers: str, topic: str, from_beginning: bool, idle_timeout: float | None
) -> Iterator[RecordedMessage]:
    """Messages of every partition of ``topic`` as they arrive; ends after ``idle_timeout`` seconds of silence
    (never when None).

    Raises:
        BrokerError: the topic does not exist or a fetch fails.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            # assign() never joins the group: a unique id shares nothing and costs no rebalance.
            "group.id": f"crm-tail-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "fetch.wait.max.ms": 100,
        }
    )
    try:
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in _partitions(consumer, topic, bootstrap_servers)])
        last_seen = time.monotonic()
        while idle_timeout is None or time.monotonic() - last_seen < idle_timeout:
            for message in consumer.consume(500, timeout=_POLL_SECONDS):
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise BrokerError(f"reading {topic!r} on {bootstrap_servers}: {error}")
                if error is None:
                    last_seen = time.monotonic()
                    yield _recorded(message)
    finally:
        consumer.close()


def _recorded(message: Message) -> RecordedMessage:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = tuple((name, value.encode() if isinstance(value, str) else value) for name, value in pairs)
    return RecordedMessage(message.key(), message.value(), headers, message.partition() or 0, message.offset() or 0)


def _partitions(consumer: Consumer, topic: str, bootstrap_servers: str) -> Sequence[int]:
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    except KafkaException as exc:  # the broker answered a moment ago (require_broker) and went away
        raise BrokerError(f"topic {topic!r} on {bootstrap_servers}: no metadata: {exc.args[0].str()}") from exc
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise BrokerError(f"topic {topic!r} on {bootstrap_servers}: cannot read it: {metadata and metadata.error}")
    return sorted(metadata.partitions)
