"""``crm-scorer check-schema NEW.avsc``: does a new application-event schema still feed every configured model?

Exit codes: 0 the schema passes (warnings, if any, are printed); 1 a breaking change (at least one failure row);
2 the schema or the config cannot be read. ``docs/schema-contract.md`` says what is checked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from consumer.settings import load_settings
from models.schema_contract import check_contract, format_table, is_breaking, model_features
from schemas import load_catalog
from schemas.catalog import SchemaVersion
from schemas.errors import ConfigError

BREAKING = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check-schema", help="check a new event schema against the configured models")
    parser.add_argument("schema", type=Path, help="the new application-event schema (.avsc), as producers write it")
    parser.add_argument("--config", type=Path, default=None, help="scorer.yaml (default: configs/scorer.yaml)")
    parser.add_argument(
        "--reader", type=Path, default=None, help="the reader schema (default: the latest shipped application event)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    models = load_settings(args.config).models
    reader = _read(args.reader) if args.reader else load_catalog().application_event_latest
    writer = _read(args.schema)
    if writer.full_name != reader.full_name:
        raise ConfigError(f"{args.schema}: a {writer.full_name} schema, not {reader.full_name}")
    rows = check_contract(
        writer, reader, model_features({b.name: b.features for b in models.banks}, models.lead.features)
    )
    failures = sum(r.severity == "failure" for r in rows)
    if rows:
        print(format_table(rows))
    verdict = "breaking" if is_breaking(rows) else "passes"
    print(f"{args.schema.name} against {reader.label}: {failures} failures, {len(rows) - failures} warnings: {verdict}")
    return BREAKING if is_breaking(rows) else 0


def _read(path: Path) -> SchemaVersion:
    try:
        return SchemaVersion.parse(path.read_text(encoding="utf-8"), path.name)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the schema: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
