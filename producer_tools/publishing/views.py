"""How a score result or a dead letter reads: its JSON view, a table row, and ``FIELD op VALUE`` filters."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from producer_tools.publishing.topics import RecordedMessage
from schemas import ResultDecoder
from schemas.dead_letter import DeadLetterInfo
from schemas.json_view import to_json_view

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


def with_statements(view: dict[str, Any], language: str, statements: Mapping[str, dict[str, str]]) -> dict[str, Any]:
    """``view`` with every reason's statement in ``language``: the result's own when it carries one, else the
    reason-code catalogue's (``statements``: code -> language -> text; results carry codes alone by default)."""
    reason_lists = [b.get("reasons") or [] for b in view["banks"]]
    reason_lists += [view["lead"].get("reasons") or [], view.get("reasons") or []]
    for reasons in reason_lists:
        for reason in reasons:
            text = (reason.get("statement") or {}).get(language) or statements.get(reason.get("code", ""), {}).get(
                language
            )
            reason["statement"] = {language: text} if text else {}
    return view


def score_row(view: dict[str, Any]) -> str:
    """A result as a small table: ids, best offer and lead score; then each bank's probability, decision and
    reasons (code and contribution, and the statement when the view has one: ``with_statements``), the lead's
    reasons, and the offers in rank order."""
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
    return ", ".join(_reason(r) for r in reasons) or "-"


def _reason(reason: dict[str, Any]) -> str:
    shown = f"{reason.get('code') or reason['feature']}({reason['contribution']:+.2f})"
    statement = reason.get("statement") or {}
    return f'{shown} "{next(iter(statement.values()))}"' if len(statement) == 1 else shown


def _offer(offer: dict[str, Any]) -> str:
    if offer["monthly_payment"] is None:
        return f"{offer['rank']}. {offer['bank']} (requested loan, unpriced)"
    return (
        f"{offer['rank']}. {offer['bank']} {offer['product']} {offer['monthly_payment']:,.2f}/month "
        f"at {100 * offer['annual_rate']:.1f}%"
    )


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
