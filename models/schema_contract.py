"""The schema-to-model contract: does a writer schema still feed every feature a configured model uses?

``check_contract(writer, reader, models)`` resolves the writer's fields against the reader's the way Avro does
(by name, or a reader alias; promotions int -> long -> float -> double and string <-> bytes; unions branch by
branch; enums symbol by symbol) and, for every feature of every model, follows the fields the feature is built
from (``FEATURE_SOURCES``). A field the reader must have and cannot get makes every event undecodable: that is a
row for every model (``*``). Each row names the model, the feature, the field, the kind of problem and its
severity:

- failure (breaking): ``missing_field`` (renamed or removed: the reader's default fills it, so the feature is
  always missing, or no default and every event is dead-lettered), ``incompatible_type`` (a writer type that does
  not resolve to the reader's, or another logical type), ``always_missing`` (the writer only ever writes null),
  ``lost_symbol`` (an enum that no longer carries a category the model knows), ``unreadable_symbol`` (an enum
  symbol the reader's enum lacks, with no default: its events are dead-lettered);
- warning: ``new_symbol`` (a category the model has never seen: scored as missing and counted as an
  ``unknown_category`` anomaly, or read as the reader enum's default).

Pure: schemas in, rows out. ``docs/schema-contract.md`` explains the severities.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.features import CODED_FIELDS, NUMERIC_FIELDS, ONE_HOT_FIELDS, slug
from schemas.catalog import SchemaVersion

FAILURE = "failure"
WARNING = "warning"
ALL_MODELS = "*"
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_NAMED = ("record", "enum", "fixed")

_DERIVED_SOURCES: dict[str, tuple[str, ...]] = {
    "age_years": ("occurred_at", "applicant.birthdate"),
    "job_tenure_years": ("occurred_at", "applicant.jobstartdate", "applicant.birthdate"),
    "payment": ("applicant.loan_amount", "applicant.loan_term"),
    "payment_to_income": ("applicant.loan_amount", "applicant.loan_term", "applicant.monthprofit"),
    "free_income": ("applicant.monthprofit", "applicant.monthexpense", "applicant.loan_amount", "applicant.loan_term"),
    "log_time_on_site": ("activity.total_time_spent_on_website",),
    "log_total_visits": ("activity.total_visits",),
    "do_not_email": ("activity.do_not_email",),
}


def _feature_sources() -> dict[str, tuple[str, ...]]:
    sources = {name: (f"{section}.{src}",) for name, section, src, *_ in NUMERIC_FIELDS}
    sources |= {name: (f"{section}.{src}",) for name, section, src, _ in CODED_FIELDS}
    for field, values in ONE_HOT_FIELDS:
        for value in (*values, "unknown"):
            sources[f"{field}_{slug(value)}"] = (f"activity.{field}",)
    return sources | _DERIVED_SOURCES


# feature -> the event fields (dotted paths) it is built from, as models.features builds it
FEATURE_SOURCES: dict[str, tuple[str, ...]] = _feature_sources()
# categorical field -> (its vocabulary, feature -> the category that feature stands for; None: the whole field)
_VOCABULARIES: dict[str, tuple[tuple[str, ...], dict[str, str | None]]] = {
    **{f"{section}.{src}": (values, {name: None}) for name, section, src, values in CODED_FIELDS},
    **{
        f"activity.{field}": (values, {f"{field}_{slug(v)}": v for v in values} | {f"{field}_unknown": None})
        for field, values in ONE_HOT_FIELDS
    },
}


@dataclass(frozen=True, slots=True)
class ContractRow:
    """One problem of one feature of one model (``model`` is ``*`` when every event is undecodable)."""

    model: str
    feature: str
    field: str
    problem: str
    severity: str
    detail: str


@dataclass(frozen=True, slots=True)
class _Finding:
    problem: str
    severity: str
    detail: str
    undecodable: bool = False  # every event fails to decode, whatever the model


@dataclass(frozen=True, slots=True)
class _Enum:
    writer: tuple[str, ...]
    reader: tuple[str, ...]
    default: str | None


@dataclass
class _FieldVerdict:
    findings: list[_Finding]
    enum: _Enum | None = None


def check_contract(
    writer: SchemaVersion, reader: SchemaVersion, models: Mapping[str, Sequence[str]]
) -> list[ContractRow]:
    """Rows for every way ``writer`` (resolved to ``reader``) fails the features of ``models`` (model name ->
    the features it uses), failures first. No rows: the writer feeds every model as the reader would."""
    verdicts = _resolve_fields(writer, reader)
    rows = [
        ContractRow(ALL_MODELS, ALL_MODELS, path, f.problem, f.severity, f.detail)
        for path, verdict in verdicts.items()
        for f in verdict.findings
        if f.undecodable
    ]
    for model, features in models.items():
        for feature in features:
            rows += _feature_rows(model, feature, verdicts)
    return sorted(rows, key=lambda r: (r.severity != FAILURE, r.model != ALL_MODELS))


def is_breaking(rows: Sequence[ContractRow]) -> bool:
    """True when any row is a failure."""
    return any(r.severity == FAILURE for r in rows)


def _feature_rows(model: str, feature: str, verdicts: Mapping[str, _FieldVerdict]) -> Iterator[ContractRow]:
    for path in FEATURE_SOURCES.get(feature, ()):
        verdict = verdicts.get(path)
        if verdict is None:
            continue
        for f in verdict.findings:
            if not f.undecodable:
                detail = f.detail.replace("{feature}", feature)
                yield ContractRow(model, feature, path, f.problem, f.severity, detail)
        if verdict.enum is not None and path in _VOCABULARIES:
            for problem, severity, detail in _vocabulary_findings(feature, path, verdict.enum):
                yield ContractRow(model, feature, path, problem, severity, detail)


def _vocabulary_findings(feature: str, path: str, enum: _Enum) -> Iterator[tuple[str, str, str]]:
    vocabulary, categories = _VOCABULARIES[path]
    category = categories.get(feature)
    known = vocabulary if category is None else (category,)
    lost = [s for s in known if s not in enum.writer]
    if lost:
        detail = f"the writer's enum no longer has {_quoted(lost)}, which {feature} was trained on: those applicants"
        yield "lost_symbol", FAILURE, f"{detail} now arrive as another category or not at all"
    if category is not None and not feature.endswith("_unknown"):
        return  # a one-hot column of a known category: new symbols land in the field's `_unknown` column
    for symbol in (s for s in enum.writer if s not in vocabulary):
        if symbol not in enum.reader and enum.default is None:
            detail = f"{symbol!r} is not in the reader's enum, which has no default"
            yield "unreadable_symbol", FAILURE, f"{detail}: events carrying it are dead-lettered"
        elif symbol not in enum.reader:
            yield "new_symbol", WARNING, f"{symbol!r} is read as the reader enum's default {enum.default!r}"
        else:
            detail = f"{symbol!r} is a category the model has never seen"
            yield "new_symbol", WARNING, f"{detail}: scored as missing (counted as an unknown_category anomaly)"


def _quoted(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)


# --- Avro resolution, field by field ------------------------------------------------------------------------


class _Names:
    """Named types (records, enums, fixed) of one parsed schema, by full name."""

    def __init__(self, parsed: dict[str, Any]) -> None:
        self._by_name: dict[str, dict[str, Any]] = {}
        self._collect(parsed)

    def _collect(self, schema: Any) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch)
        elif isinstance(schema, dict):
            if schema.get("type") in _NAMED:
                self._by_name.setdefault(schema["name"], schema)
            for field in schema.get("fields", ()):
                self._collect(field["type"])
            for key in ("items", "values"):
                if key in schema:
                    self._collect(schema[key])

    def deref(self, schema: Any) -> Any:
        """The definition behind a named type's reference; any other type as it is."""
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return self._by_name.get(schema, schema)
        return schema


def _resolve_fields(writer: SchemaVersion, reader: SchemaVersion) -> dict[str, _FieldVerdict]:
    """A verdict for every reader field (dotted path) the writer's records reach, nested records included."""
    out: dict[str, _FieldVerdict] = {}
    _resolve_record(writer.parsed, reader.parsed, _Names(writer.parsed), _Names(reader.parsed), "", out)
    return out


def _resolve_record(
    w: dict[str, Any], r: dict[str, Any], wn: _Names, rn: _Names, prefix: str, out: dict[str, _FieldVerdict]
) -> None:
    w_fields = {f["name"]: f for f in w["fields"]}
    for field in r["fields"]:
        path = f"{prefix}{field['name']}"
        match = next((w_fields[n] for n in (field["name"], *field.get("aliases", ())) if n in w_fields), None)
        if match is None:
            out[path] = _FieldVerdict([_absent(field)])
            continue
        w_type, r_type = wn.deref(match["type"]), rn.deref(field["type"])
        w_record, r_record = _record_branch(w_type, wn), _record_branch(r_type, rn)
        if w_record is not None and r_record is not None:
            _resolve_record(w_record, r_record, wn, rn, f"{path}.", out)
            continue
        out[path] = _resolve_type(w_type, r_type, wn, rn)


def _absent(field: dict[str, Any]) -> _Finding:
    if "default" not in field:
        return _Finding(
            "missing_field",
            FAILURE,
            "not in the writer schema and the reader has no default: every event is dead-lettered",
            undecodable=True,
        )
    return _Finding(
        "missing_field",
        FAILURE,
        f"not in the writer schema (renamed or removed): the reader's default "
        f"{json.dumps(field['default'])} fills it, so {{feature}} is always missing",
    )


def _record_branch(schema: Any, names: _Names) -> dict[str, Any] | None:
    """The record a field holds (alone or as a union's branch; sections are records), else None."""
    for branch in schema if isinstance(schema, list) else [schema]:
        branch = names.deref(branch)
        if isinstance(branch, dict) and branch.get("type") == "record":
            return branch
    return None


def _resolve_type(w: Any, r: Any, wn: _Names, rn: _Names) -> _FieldVerdict:
    w_branches = [wn.deref(b) for b in (w if isinstance(w, list) else [w])]
    r_branches = [rn.deref(b) for b in (r if isinstance(r, list) else [r])]
    if all(_kind(b) == "null" for b in w_branches):
        detail = "the writer only ever writes null: {feature} is always missing"
        return _FieldVerdict([_Finding("always_missing", FAILURE, detail)])
    findings: list[_Finding] = []
    unresolved = [b for b in w_branches if _match(b, r_branches) is None]
    if unresolved:
        detail = f"writer type {_describe(unresolved)} does not resolve to the reader's {_describe(r_branches)}"
        every = len(unresolved) == len(w_branches) and _required(r_branches)
        findings.append(
            _Finding("incompatible_type", FAILURE, f"{detail}: events carrying it are dead-lettered", every)
        )
    enum: _Enum | None = None
    for branch, target in ((b, _match(b, r_branches)) for b in w_branches if _kind(b) != "null"):
        if target is None:
            continue
        if _logical(branch) != _logical(target):
            detail = f"logical type {_logical(branch)} where the reader expects {_logical(target)}"
            findings.append(_Finding("incompatible_type", FAILURE, f"{detail}: the values mean something else"))
        if _kind(branch) == "enum":
            enum = _Enum(tuple(branch["symbols"]), tuple(target["symbols"]), target.get("default"))
    return _FieldVerdict(findings, enum)


def _required(reader_branches: list[Any]) -> bool:
    return all(_kind(b) != "null" for b in reader_branches)


def _kind(schema: Any) -> str:
    return str(schema["type"]) if isinstance(schema, dict) else str(schema)


def _logical(schema: Any) -> str | None:
    return schema.get("logicalType") if isinstance(schema, dict) else None


def _short(name: str) -> str:
    return name.rpartition(".")[2]


def _match(w: Any, r_branches: list[Any]) -> Any | None:
    """The reader branch the writer type ``w`` resolves to (Avro: the first exact match, else the first
    promotion), or None."""
    kind = _kind(w)
    exact = [b for b in r_branches if _kind(b) == kind and _same_name(w, b)]
    if exact:
        return exact[0]
    return next((b for b in r_branches if _kind(b) in _PROMOTIONS.get(kind, ())), None)


def _same_name(w: Any, r: Any) -> bool:
    if _kind(w) not in _NAMED:
        return True
    names = {_short(r["name"]), *(_short(a) for a in r.get("aliases", ()))}
    return _short(w["name"]) in names


def _describe(branches: list[Any]) -> str:
    kinds = [_kind(b) if _kind(b) not in _NAMED else f"{_kind(b)} {_short(b['name'])}" for b in branches]
    return kinds[0] if len(kinds) == 1 else "[" + ", ".join(kinds) + "]"


def format_table(rows: Sequence[ContractRow]) -> str:
    """The rows as an aligned text table: model, feature, field, problem, severity, detail."""
    header = ("MODEL", "FEATURE", "FIELD", "PROBLEM", "SEVERITY", "DETAIL")
    lines = [header, *((r.model, r.feature, r.field, r.problem, r.severity, r.detail) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join("  ".join([*(v.ljust(w) for v, w in zip(line, widths, strict=False)), line[-1]]) for line in lines)


def model_features(banks: Mapping[str, Sequence[str]], lead: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Model name -> its features, the way ``check_contract`` takes them (the lead model is called ``lead``)."""
    return {**{name: tuple(features) for name, features in banks.items()}, "lead": tuple(lead)}
