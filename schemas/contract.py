"""The published contract as files a subscriber can take away: every shipped schema version, the AsyncAPI
document that references them, and an index of their fingerprints.

``crm-scorer schemas export DIR`` writes them (with the reason-code catalogue); the files come from the installed
package, so a subscriber needs the package or the image, not this repository. The document and the ``.avsc``
files sit side by side, so the document's relative references stay valid.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from schemas.catalog import SCHEMA_DIR, load_catalog

ASYNCAPI = "asyncapi.yaml"
INDEX = "schemas.json"


def contract_index() -> dict[str, dict[str, str]]:
    """Per shipped version: its file, its record's full name and its CRC-64-AVRO fingerprint (hex, as the
    single-object framing's 8 bytes after ``C3 01``), which is how a reader finds a message's writer schema."""
    return {
        version.label: {
            "file": f"{version.label}.avsc",
            "record": version.full_name,
            "fingerprint_crc64_avro": version.fingerprint.hex(),
        }
        for version in load_catalog(SCHEMA_DIR)
    }


def export_contract(directory: Path, extra: tuple[Path, ...] = ()) -> list[Path]:
    """Copy every shipped ``.avsc``, the AsyncAPI document and ``extra`` files into ``directory`` (created if
    missing; files of the same name are replaced) and write the fingerprint index. Returns the paths written.

    Raises:
        OSError: ``directory`` cannot be created or written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    index = contract_index()
    sources = [SCHEMA_DIR / entry["file"] for entry in index.values()]
    written = [Path(shutil.copyfile(source, directory / source.name)) for source in [*sources, SCHEMA_DIR / ASYNCAPI]]
    written += [Path(shutil.copyfile(source, directory / source.name)) for source in extra]
    target = directory / INDEX
    target.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return [*written, target]
