"""``crm-train --from-capture DIR``: a new model set trained on what the monitor captured.

Reads the capture (``models.capture_rows``), trains every model on its own rows or only ``--bank NAME``
(``models.capture_training``), and writes the set with its model card. The parent is the set the scorer serves
(the store's active set when ``models.store_dir`` is set, else ``models.artifacts_dir``); the new set is added
to the store (not activated: ``crm-scorer models activate VERSION`` does that) or, without a store, written to
``--out``, which must not be the parent's directory. Any bad input is one line on stderr and nothing is written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from models.artifacts import models_dir
from models.capture_rows import read_capture
from models.capture_training import CaptureTraining, train_from_capture
from models.config import ModelsConfig
from models.evaluation import Quality, quality_table
from models.manifest import Manifest
from schemas.errors import ArtifactError, CaptureError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--from-capture", type=Path, metavar="DIR", help="train on the monitor's Parquet capture in DIR")
    add("--bank", metavar="NAME", help="with --from-capture: retrain only NAME (a bank or lead), keep the others")
    add("--since", metavar="TIME", help="with --from-capture: only rows scored at or after TIME (ISO 8601, UTC)")
    add(
        "--warm-start",
        action="store_true",
        help="with --from-capture: continue each retrained bank's parent booster on its routed rows",
    )


def run(args: argparse.Namespace, config: ModelsConfig, log: Any) -> int:
    """Train from ``args.from_capture``; 0 on success, 2 with one line on stderr when the input is bad."""
    try:
        since = _since(args.since)
        parent = models_dir(config)
        rows = read_capture(args.from_capture, since)
        log(rows.summary.line())
        plan = CaptureTraining(args.seed, args.folds, args.bank, args.warm_start, args.since)
        if config.store_dir is not None:
            version = _into_store(rows, config, parent, plan, log)
            print(f"model set {version} added to the store {config.store_dir} (parent {parent.name})")
            return 0
        if args.out is None or Path(args.out).resolve() == parent.resolve():
            raise CaptureError("--out DIR: a new directory for the set (not the parent's, which it is built from)")
        manifest = _trained(rows, config, parent, Path(args.out), plan, log)
    except (CaptureError, ArtifactError) as exc:
        print(f"crm-train: {exc}", file=sys.stderr)
        return 2
    print(f"model set {manifest.version} written to {args.out} (parent {manifest.parent})")
    return 0


def _since(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CaptureError(f"--since {text!r}: not an ISO 8601 date or time") from exc
    moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def _trained(rows: Any, config: ModelsConfig, parent: Path, out: Path, plan: CaptureTraining, log: Any) -> Manifest:
    """The set written to a staging folder beside ``out`` and moved there whole: a failure leaves nothing."""
    if out.exists() and any(out.iterdir()):
        raise CaptureError(f"--out {out}: the directory is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".training-") as staging:
        manifest = train_from_capture(rows, config, parent, Path(staging) / "set", plan, log)
        write_capture_card(Path(staging) / "set", manifest)
        if out.exists():
            out.rmdir()
        shutil.move(Path(staging) / "set", out)
    return manifest


def _into_store(rows: Any, config: ModelsConfig, parent: Path, plan: CaptureTraining, log: Any) -> str:
    from models.store import ModelStore

    assert config.store_dir is not None
    with tempfile.TemporaryDirectory(prefix=".training-") as staging:
        _trained(rows, config, parent, Path(staging) / "set", plan, log)
        return ModelStore(config.store_dir).add(Path(staging) / "set")


def write_capture_card(out_dir: Path, manifest: Manifest) -> None:
    """MODEL_CARD.md of a set trained from a capture: its lineage, and each model's figures on its own rows."""
    lineage = manifest.lineage or {}
    retrained = set(lineage.get("retrained", []))
    rows = [
        f"| {name} | {'retrained' if name in retrained else 'kept from the parent'} | {m.version} "
        f"| {lineage.get('rows', {}).get(name, '-')} | {m.trees if m.trees is not None else '-'} |"
        for name, m in manifest.models.items()
    ]
    holdout = {
        name: Quality(**m.metrics.model_dump(exclude={"auc_ratio"}))
        for name, m in manifest.models.items()
        if name in retrained
    }
    text = [
        "# Model card",
        "",
        f"Generated by `crm-train --from-capture`; do not edit by hand. Model set {manifest.version}, parent "
        f"{manifest.parent}, feature pipeline {manifest.pipeline_version}.",
        "",
        "## Lineage",
        "",
        *_lineage_lines(lineage),
        "",
        "| model | | version | rows | trees |",
        "|---|---|---|---:|---:|",
        *rows,
        "",
        "## Holdout of each retrained model's own rows",
        "",
        quality_table(holdout),
        "",
        "A bank's rows are its decisions on the applications routed to it: these figures hold for routed",
        "applications, not for the whole population (see docs/retraining.md). Kept models keep their parent's card.",
        "",
    ]
    (out_dir / "MODEL_CARD.md").write_text("\n".join(text))


def _lineage_lines(lineage: dict[str, Any]) -> list[str]:
    since = f" (rows scored since {lineage['since']})" if lineage.get("since") else ""
    return [
        f"- capture dates: {', '.join(lineage.get('capture_dates', [])) or '-'}{since}",
        f"- capture rows: {lineage.get('capture_rows')}, duplicates dropped: {lineage.get('duplicates_dropped')}, "
        f"rows without their event (skipped): {lineage.get('rows_without_event')}",
        f"- routing rule(s) that selected the labels: {', '.join(lineage.get('routing', [])) or '-'}",
        f"- warm start from the parent's boosters: {'yes' if lineage.get('warm_start') else 'no'}",
    ]
