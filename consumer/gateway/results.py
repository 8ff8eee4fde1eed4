"""What the view keeps of a score result or a dead letter, and the ``get_result`` answer built from it.

Pure: decoded records in, JSON-ready dicts out. The earlier service answered every bank's probability as a
string under the bank's name; that shape is kept, and the new keys (``best_offer``, ``reasons``) sit beside it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from models.reasons import statements_by_code
from schemas.dead_letter import DeadLetterInfo

TASK_ID = re.compile(r"[0-9a-f]{32}")  # an application hash (blake2b, 16 bytes, hex)
# Keys of the answer that are not banks: a bank by one of these names would be shadowed, so it is refused.
RESERVED_KEYS = frozenset({"task_id", "best_offer", "reasons"})


def result_record(result: dict[str, Any], statements: Mapping[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """The parts of a decoded score result the answers need. A reason that came without its statement (the
    scorer's default ``results.statement_languages``) gets it from ``statements`` by code (default: the shipped
    reason-code catalogue), so the gateway's answers keep their texts."""
    statements = statements if statements is not None else _shipped_statements()
    return {
        "banks": {bank["bank"]: bank["probability"] for bank in result["banks"]},
        "best_offer": result.get("best_offer"),
        "reasons": [
            {
                "feature": reason["feature"],
                "contribution": reason["contribution"],
                "code": reason.get("code", ""),
                "statement": dict(reason.get("statement") or statements.get(reason.get("code", ""), {})),
            }
            for reason in result.get("reasons") or ()
        ],
    }


@functools.cache
def _shipped_statements() -> dict[str, dict[str, str]]:
    return statements_by_code()


def dead_letter_record(info: DeadLetterInfo) -> dict[str, Any]:
    return {"reason": info.reason, "error": info.error, "field": info.field}


def task_of_key(key: bytes | None) -> str | None:
    """The task a dead letter belongs to: the gateway keys its events by their application hash."""
    if key is None or len(key) != 32:
        return None
    text = key.decode("ascii", "replace")
    return text if TASK_ID.fullmatch(text) else None


def result_answer(task_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """``get_result``'s answer: the earlier shape (bank -> probability as a string) plus the new keys."""
    answer: dict[str, Any] = {"task_id": task_id}
    for bank, probability in record["banks"].items():
        if bank not in RESERVED_KEYS:
            answer[bank] = repr(float(probability))
    answer["best_offer"] = record["best_offer"]
    answer["reasons"] = record["reasons"]
    return answer


def dead_letter_answer(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The dead letter as an entry of pydantic's error list: the reason code, where, and why."""
    field = record.get("field")
    loc = ["body", *field.removeprefix("applicant.").split(".")] if field else ["body"]
    return [{"type": record["reason"], "loc": loc, "msg": record["error"] or record["reason"], "input": None}]
