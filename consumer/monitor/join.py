"""The keyed join of outcomes with the scores they answer, one input partition at a time.

Plain values in (decoded score results and outcomes), joined rows out; the state lives in a ``Transaction``
of the state store. Keys of one partition (all under its prefix):

- ``score/<application_id>``: the application's scores (JSON list; one per scored submission).
- ``pend/<application_id>``: outcomes that came before any score of their application.
- ``rid/<outcome event_id>``: the outcome was joined (its row key): a re-sent outcome is a duplicate.
- ``row/<model>/<scored_at>/<outcome event_id>``: a joined row, read back by the quality windows.
- ``exp/``, ``pexp/``, ``rexp/`` + ``<event time>/...``: what to expire when the partition's event time passes
  its TTL (the latest ``scored_at`` or ``decided_at`` seen: replaying the topics expires the same entries).
- ``evt/<event_id>``: the application event's bytes, kept only when the input topic is joined too (capture);
  ``eearly/<event_id>``: one read before the partition's first score or outcome, its TTL not started yet.
- ``stat/<counter>``: the counters the metrics export, in the same write as the state they count.
- ``shad/<application_id>``: a challenger's scores (the shadow topic) that came before the score they shadow.

A challenger's scores join like a second model: merged into the snapshot of the score they shadow as
``<model>:challenger``, so an outcome of ``bank_c`` gives a ``bank_c`` row and a ``bank_c:challenger`` row (its
``rid`` key suffixed ``:challenger``), on the same application (``consumer.monitor.paired``).

Every outcome is counted once: its ``event_id`` is looked up before it is joined or parked, and the lookup
and the join are written in the same batch as the input offsets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

LEAD = "lead"
LEAD_DECISION = 0.5  # the lead model has no threshold of its own: a lead is called likely at p >= 0.5
CHALLENGER = ":challenger"


class Changes(Protocol):
    """What the join needs of a batch's transaction (``consumer.monitor.store.Transaction``, or a dict fake)."""

    def get(self, key: bytes) -> bytes | None: ...
    def get_json(self, key: bytes) -> Any: ...
    def put(self, key: bytes, value: bytes) -> None: ...
    def put_json(self, key: bytes, value: Any) -> None: ...
    def delete(self, key: bytes) -> None: ...
    def add(self, key: bytes, amount: int = 1) -> None: ...


class Scan(Protocol):
    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]: ...


@dataclass(frozen=True)
class JoinedRow:
    """One outcome with the score it answers: what the quality windows and the training capture read."""

    outcome_id: str
    application_id: str
    score_event_id: str
    model: str
    model_version: str
    probability: float
    decided: bool
    positive: bool
    scored_at: int  # ms
    decided_at: int  # ms
    routing: str | None
    amount: float | None

    @property
    def delay_s(self) -> float:
        return (self.decided_at - self.scored_at) / 1000.0

    @property
    def error(self) -> float:
        """Squared error of the prediction: the stream the concept-drift detector watches."""
        return (self.probability - float(self.positive)) ** 2


def score_snapshot(result: Mapping[str, Any]) -> dict[str, Any]:
    """What the join keeps of a decoded score result (any version): ids, time, each model's figures."""
    models = {
        str(b["bank"]): [float(b["probability"]), bool(b["approved"]), str(b["model_version"])] for b in result["banks"]
    }
    lead = result["lead"]
    models[LEAD] = [float(lead["probability"]), float(lead["probability"]) >= LEAD_DECISION, str(lead["model_version"])]
    return {
        "event_id": str(result["event_id"]),
        "scored_at": _ms(result["scored_at"]),
        "models": models,
        "answered": False,
    }


def outcome_fields(outcome: Mapping[str, Any]) -> dict[str, Any]:
    """A decoded outcome as the join keeps it (times in ms)."""
    return {
        "event_id": str(outcome["event_id"]),
        "application_id": str(outcome["application_id"]),
        "model": LEAD if outcome["kind"] == "lead_conversion" else str(outcome["bank"]),
        "positive": bool(outcome["positive"]),
        "decided_at": _ms(outcome["decided_at"]),
        "score_event_id": None if outcome.get("score_event_id") is None else str(outcome["score_event_id"]),
        "routing": outcome.get("routing"),
        "amount": outcome.get("amount"),
    }


class PartitionJoin:
    """The join on one input partition, inside one batch's transaction."""

    def __init__(self, changes: Changes, partition_prefix: bytes) -> None:
        self._tx = changes
        self._p = partition_prefix

    def add_score(self, application_id: str, snapshot: dict[str, Any]) -> list[JoinedRow]:
        """Keep ``snapshot``; join the application's parked outcomes now that it has a score."""
        key = self._key("score", application_id)
        scores = self._tx.get_json(key) or []
        if any(s["event_id"] == snapshot["event_id"] for s in scores):
            self._tx.add(self._key("stat", "scores_duplicate"))
            return []
        scores.append(snapshot)
        self._merge_parked_shadow(application_id, snapshot)
        self._tx.put_json(key, scores)
        self._tx.put_json(self._key("exp", _ts(snapshot["scored_at"]), snapshot["event_id"]), application_id)
        self._tx.add(self._key("stat", "scores"))
        self._advance(snapshot["scored_at"])
        parked = self._tx.get_json(self._key("pend", application_id)) or []
        ready = [o for o in parked if _joinable(o, scores)]
        if not ready:
            return []
        still = [o for o in parked if not _joinable(o, scores)]
        if still:
            self._tx.put_json(self._key("pend", application_id), still)
        else:
            self._tx.delete(self._key("pend", application_id))
        rows = []
        for outcome in ready:
            self._tx.delete(self._key("pexp", _ts(outcome["decided_at"]), outcome["event_id"]))
            rows += self._join(outcome, scores)
        return rows

    def add_shadow(self, record: dict[str, Any]) -> None:
        """Merge a challenger's scores (a shadow topic record) into the score it shadows, or park them until
        that score comes."""
        app, figures = str(record["application_id"]), _challenger_figures(record)
        scores = self._tx.get_json(self._key("score", app)) or []
        for score in scores:
            if score["event_id"] == str(record["event_id"]):
                score["models"].update(figures)
                self._tx.put_json(self._key("score", app), scores)
                self._tx.add(self._key("stat", "shadow_scores"))
                return
        parked = self._tx.get_json(self._key("shad", app)) or []
        self._tx.put_json(self._key("shad", app), [*parked, {"event_id": str(record["event_id"]), "models": figures}])

    def _merge_parked_shadow(self, application_id: str, snapshot: dict[str, Any]) -> None:
        parked = self._tx.get_json(self._key("shad", application_id))
        if not parked:
            return
        mine = [p for p in parked if p["event_id"] == snapshot["event_id"]]
        for shadow in mine:
            snapshot["models"].update(shadow["models"])
            self._tx.add(self._key("stat", "shadow_scores"))
        rest = [p for p in parked if p["event_id"] != snapshot["event_id"]]
        if rest:
            self._tx.put_json(self._key("shad", application_id), rest)
        else:
            self._tx.delete(self._key("shad", application_id))

    def add_event(self, event_id: str, occurred_at_ms: int, value: bytes) -> None:
        """Keep an application event's bytes (for the training capture) until its TTL passes."""
        self._tx.put(self._key("evt", event_id), value)
        # Its TTL runs from the partition's event time when it came (the scores' and outcomes' clock), or from
        # when it occurred if later: a replayed or back-dated event would otherwise expire before its score.
        # Before the partition's first score or outcome there is no such time yet: the TTL waits for it.
        watermark = int(self._tx.get(self._key("wm")) or 0)
        if watermark == 0:
            self._tx.put(self._key("eearly", event_id), b"")
            return
        self._tx.put(self._key("eexp", _ts(max(occurred_at_ms, watermark)), event_id), b"")

    def add_outcome(self, outcome: dict[str, Any]) -> list[JoinedRow]:
        """Join ``outcome`` with its score, park it until one comes, or count it as a duplicate."""
        app = outcome["application_id"]
        parked = self._tx.get_json(self._key("pend", app)) or []
        if self._tx.get(self._key("rid", outcome["event_id"])) is not None or any(
            o["event_id"] == outcome["event_id"] for o in parked
        ):
            self._tx.add(self._key("stat", "outcomes_duplicate"))
            return []
        self._tx.add(self._key("stat", "outcomes"))
        self._advance(outcome["decided_at"])
        scores = self._tx.get_json(self._key("score", app)) or []
        if not _joinable(outcome, scores):
            self._tx.put_json(self._key("pend", app), [*parked, outcome])
            self._tx.put_json(self._key("pexp", _ts(outcome["decided_at"]), outcome["event_id"]), app)
            return []
        return self._join(outcome, scores)

    def _join(self, outcome: dict[str, Any], scores: list[dict[str, Any]]) -> list[JoinedRow]:
        score = _answered_score(outcome, scores)
        figures = score["models"].get(outcome["model"])
        if figures is None:  # an outcome of a model the score does not hold (a bank removed or not yet added)
            self._tx.add(self._key("stat", "outcomes_unknown_model"))
            return []
        rows = [self._row(outcome, score, outcome["model"], figures, "")]
        challenger = score["models"].get(outcome["model"] + CHALLENGER)
        if challenger is not None:
            rows.append(self._row(outcome, score, outcome["model"] + CHALLENGER, challenger, CHALLENGER))
        if not score["answered"]:
            score["answered"] = True
            self._tx.put_json(self._key("score", outcome["application_id"]), scores)
        return rows

    def _row(
        self, outcome: dict[str, Any], score: dict[str, Any], model: str, figures: list[Any], suffix: str
    ) -> JoinedRow:
        row = JoinedRow(
            outcome["event_id"],
            outcome["application_id"],
            score["event_id"],
            model,
            figures[2],
            figures[0],
            figures[1],
            outcome["positive"],
            score["scored_at"],
            outcome["decided_at"],
            outcome["routing"],
            outcome["amount"],
        )
        row_key = self._key("row", row.model, _ts(row.scored_at), row.outcome_id)
        self._tx.put_json(row_key, asdict(row))
        self._tx.put(self._key("rid", row.outcome_id + suffix), row_key)
        self._tx.put(self._key("rexp", _ts(row.decided_at), row.outcome_id + suffix), b"")
        self._tx.add(self._key("stat", f"joined/{row.model}"))
        return row

    def _advance(self, event_time_ms: int) -> None:
        key = self._key("wm")
        if event_time_ms > int(self._tx.get(key) or 0):
            self._tx.put(key, str(event_time_ms).encode())

    def expire(self, committed: Scan, ttl_ms: int) -> None:
        """Drop what the partition's event time has carried past ``ttl_ms`` (entries already committed)."""
        watermark = int(self._tx.get(self._key("wm")) or 0)
        if watermark > 0:
            self._start_event_ttls(committed, watermark)
        cutoff = watermark - ttl_ms
        if cutoff <= 0:
            return
        stop = _ts(cutoff).encode()
        for key, value in committed.scan(self._key("exp", ""), self._key("exp", "") + stop):
            self._expire_score(json.loads(value), key.rsplit(b"/", 1)[1].decode())
            self._tx.delete(key)
        for key, value in committed.scan(self._key("pexp", ""), self._key("pexp", "") + stop):
            self._expire_parked(json.loads(value), key.rsplit(b"/", 1)[1].decode())
            self._tx.delete(key)
        for key, _ in committed.scan(self._key("eexp", ""), self._key("eexp", "") + stop):
            self._tx.delete(self._key("evt", key.rsplit(b"/", 1)[1].decode()))
            self._tx.delete(key)
        for key, _ in committed.scan(self._key("rexp", ""), self._key("rexp", "") + stop):
            rid = self._key("rid", key.rsplit(b"/", 1)[1].decode())
            row_key = self._tx.get(rid)
            if row_key is not None:
                self._tx.delete(row_key)
            self._tx.delete(rid)
            self._tx.delete(key)

    def _start_event_ttls(self, committed: Scan, watermark: int) -> None:
        """Events read before the partition had an event time: their TTL runs from the one it has now (their
        own times may be far older, on another clock: a back-dated world's events, scored today, would expire
        at the first score and reach the capture without their event)."""
        early = self._key("eearly", "")
        for key, _ in committed.scan(early, early[:-1] + b"0"):
            self._tx.put(self._key("eexp", _ts(watermark), key[len(early) :].decode()), b"")
            self._tx.delete(key)

    def _expire_parked(self, application_id: str, outcome_id: str) -> None:
        """An outcome that waited a TTL for a score: one with no score (join coverage)."""
        key = self._key("pend", application_id)
        parked = self._tx.get_json(key) or []
        kept = [o for o in parked if o["event_id"] != outcome_id]
        if len(kept) < len(parked):
            self._tx.add(self._key("stat", "outcomes_unmatched"))
        if kept:
            self._tx.put_json(key, kept)
        else:
            self._tx.delete(key)

    def _expire_score(self, application_id: str, event_id: str) -> None:
        key = self._key("score", application_id)
        scores = self._tx.get_json(key) or []
        kept = [s for s in scores if s["event_id"] != event_id]
        if any(not s["answered"] for s in scores if s["event_id"] == event_id):
            self._tx.add(self._key("stat", "scores_expired_unanswered"))
        if kept:
            self._tx.put_json(key, kept)
        else:
            self._tx.delete(key)

    def _key(self, kind: str, *parts: str) -> bytes:
        return self._p + "/".join((kind, *parts)).encode()


def _challenger_figures(record: dict[str, Any]) -> dict[str, list[Any]]:
    """A shadow record's models as the snapshot holds them: ``<model>:challenger`` -> [p, approved, version]."""
    return {
        f"{name}{CHALLENGER}": [float(p), bool(approved), str(version)]
        for name, (p, approved, version) in dict(record["models"]).items()
    }


def _joinable(outcome: dict[str, Any], scores: list[dict[str, Any]]) -> bool:
    """Whether the score ``outcome`` answers is here: the one it names, or (naming none) any of its application.

    An outcome that names a score waits for that very score, even when another score of the application is
    here already: joining it with whichever came first would make the join depend on how the topics interleave.
    """
    if outcome["score_event_id"] is None:
        return bool(scores)
    return any(s["event_id"] == outcome["score_event_id"] for s in scores)


def _answered_score(outcome: dict[str, Any], scores: list[dict[str, Any]]) -> dict[str, Any]:
    """The score the outcome names, else the latest one before its decision, else the earliest."""
    named = [s for s in scores if s["event_id"] == outcome["score_event_id"]]
    if named:
        return named[0]
    before = [s for s in scores if s["scored_at"] <= outcome["decided_at"]]
    return max(before, key=lambda s: s["scored_at"]) if before else min(scores, key=lambda s: s["scored_at"])


def _ts(ms: int) -> str:
    return f"{int(ms):013d}"


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000) if hasattr(value, "timestamp") else int(value)
