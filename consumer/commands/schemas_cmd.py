"""``crm-scorer schemas export DIR``: the published contract as files, for subscribers who do not clone this repository.

Writes every shipped schema version (``.avsc``), the AsyncAPI document beside them, the reason-code catalogue
and ``schemas.json`` (each version's record and fingerprint). Why an export rather than a package of its own:
docs/contract-changelog.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.reasons import DEFAULT_REASON_CODES
from schemas.contract import export_contract


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schemas", help="export the published contract: schemas, AsyncAPI, reason codes")
    actions = parser.add_subparsers(dest="action", required=True)
    export = actions.add_parser(
        "export", help="write every schema version, the AsyncAPI document and the reason codes into DIR"
    )
    export.add_argument("directory", type=Path, help="where to write the files (created if missing)")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    for path in export_contract(args.directory, extra=(DEFAULT_REASON_CODES,)):
        print(path)
    return 0
