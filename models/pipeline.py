"""The feature-pipeline version: which features a model set was built for.

A model is only right for the features it was trained on. ``pipeline_version()`` is a digest of the code that
turns an event into features (``models/features.py``, ``models/vocabulary.py``, ``models/ranges.py``) and of the
reason-code catalogue (``models/reason_codes.yaml``). Training writes it into the manifest; serving compares it
at load and refuses a set built for other features (``check_pipeline``).

The digest is of what the code *does*, not of how it is typed: each module's syntax tree without docstrings
(unparsed back to canonical source), and
the catalogue parsed and written back as canonical JSON. A reformat, a comment or a reworded docstring leaves
the version unchanged, so the sets already in the store keep loading; a changed vocabulary, range, formula or
reason code changes it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from pathlib import Path

import yaml

from schemas.errors import ArtifactError

_HERE = Path(__file__).resolve().parent
PIPELINE_MODULES = ("features.py", "vocabulary.py", "ranges.py")
REASON_CODES = "reason_codes.yaml"
DIGEST_CHARS = 16


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) or not body:
            continue
        first = body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree


def module_digest_text(source: str) -> str:
    """What of a module's source the version depends on: its syntax tree written back as canonical source
    (``ast.unparse``, the same text on every Python since 3.9), docstrings, comments and layout left out."""
    return ast.unparse(_without_docstrings(ast.parse(source)))


def catalogue_digest_text(text: str) -> str:
    """What of the reason-code catalogue the version depends on: its content as canonical JSON."""
    return json.dumps(yaml.safe_load(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@functools.cache
def pipeline_version() -> str:
    """The running code's feature-pipeline version (16 hex digits)."""
    digest = hashlib.sha256()
    for name in PIPELINE_MODULES:
        digest.update(f"{name}\n{module_digest_text((_HERE / name).read_text())}\n".encode())
    digest.update(f"{REASON_CODES}\n{catalogue_digest_text((_HERE / REASON_CODES).read_text())}\n".encode())
    return digest.hexdigest()[:DIGEST_CHARS]


def check_pipeline(recorded: str | None, where: str) -> None:
    """Refuse a model set built for other features.

    Raises:
        ArtifactError: ``recorded`` (the manifest's pipeline version) is not this code's, naming both.
    """
    running = pipeline_version()
    if recorded is not None and recorded != running:
        raise ArtifactError(
            f"{where}: built for feature pipeline {recorded}, this scorer runs pipeline {running}; "
            "retrain the set with this code (crm-train) or run the code it was built for"
        )
