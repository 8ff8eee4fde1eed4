"""``crm-scorer schemas export DIR``: a subscriber's copy of the contract, complete and usable on its own."""

from __future__ import annotations

import io
import json
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import fastavro
import pytest
import yaml

from consumer.commands.cli import main
from models.reasons import DEFAULT_REASON_CODES
from schemas import load_catalog
from schemas.contract import ASYNCAPI, INDEX, contract_index
from schemas.json_view import from_json_view

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "schemas"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("contract") / "crm-scorer-contract"
    assert main(["schemas", "export", str(directory)]) == 0
    return directory


def test_every_shipped_file_is_written_unchanged(exported: Path) -> None:
    shipped = [*sorted(SCHEMA_DIR.glob("*.avsc")), SCHEMA_DIR / ASYNCAPI, DEFAULT_REASON_CODES]
    for source in shipped:
        assert (exported / source.name).read_bytes() == source.read_bytes(), source.name
    assert {p.name for p in exported.iterdir()} == {p.name for p in shipped} | {INDEX}


def test_the_index_names_each_versions_record_and_fingerprint(exported: Path) -> None:
    index = json.loads((exported / INDEX).read_text(encoding="utf-8"))
    assert index == contract_index()
    for version in load_catalog(exported):  # the exported files alone make the same catalogue
        assert index[version.label]["fingerprint_crc64_avro"] == version.fingerprint.hex()
        assert index[version.label]["record"] == version.full_name


def test_the_asyncapi_documents_references_resolve_inside_the_export(exported: Path) -> None:
    spec = yaml.safe_load((exported / ASYNCAPI).read_text(encoding="utf-8"))
    refs = [m["payload"]["schema"]["$ref"] for m in spec["components"]["messages"].values() if "schema" in m["payload"]]
    assert len(refs) == len(list(SCHEMA_DIR.glob("*.avsc")))
    for ref in refs:
        assert (exported / ref).resolve().parent == exported.resolve() and (exported / ref).is_file(), ref


def test_a_v1_subscriber_reads_a_v2_result_with_the_exported_files_only(exported: Path) -> None:
    spec = yaml.safe_load((exported / ASYNCAPI).read_text(encoding="utf-8"))
    example: dict[str, Any] = spec["components"]["messages"]["ScoreResultV2"]["examples"][0]["payload"]
    writer_raw = json.loads((exported / "score_result.v2.avsc").read_text(encoding="utf-8"))
    reader = fastavro.parse_schema(json.loads((exported / "score_result.v1.avsc").read_text(encoding="utf-8")))
    writer = fastavro.parse_schema(writer_raw)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, writer, from_json_view(example, writer))
    body.seek(0)
    read = fastavro.schemaless_reader(body, writer, reader)
    assert read["best_offer"] == example["best_offer"] == example["offers"][0]["bank"]
    assert "offers" not in read


def test_the_package_ships_every_file_the_export_reads() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    patterns = package_data["package-data"]
    shipped = [(p, "schemas") for p in [*SCHEMA_DIR.glob("*.avsc"), SCHEMA_DIR / ASYNCAPI]]
    for path, package in [*shipped, (DEFAULT_REASON_CODES, "models")]:
        assert any(fnmatch(path.name, pattern) for pattern in patterns[package]), f"{path.name} is not package data"
