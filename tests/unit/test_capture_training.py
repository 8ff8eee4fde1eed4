"""Training from the monitor's capture: reading, deduplication, bad input, selected labels, one bank retrained."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from consumer.monitor.capture import Capture
from consumer.monitor.join import JoinedRow
from models import train_cli
from models.artifacts import load_models
from models.capture_rows import read_capture
from models.capture_training import CaptureTraining, selected, train_from_capture
from models.config import DEFAULT_ARTIFACTS_DIR, ModelsConfig
from models.manifest import Manifest
from models.store import ModelStore
from producer_tools.world import generate
from schemas import SingleObjectEncoder, load_catalog
from schemas.errors import CaptureError

ROUTING = "top2-approved.v1"
EVENTS = 700


def _rows(events: list[dict], truth: list[dict], banks: tuple[str, ...]) -> list[JoinedRow]:
    """Every event routed to ``banks`` (labels: the world's draws) and answered by its lead."""
    rows = []
    for event, t in zip(events, truth, strict=True):
        scored_at = int(event["occurred_at"].timestamp() * 1000)
        eid = str(event["event_id"])
        for model in (*banks, "lead"):
            positive = bool(t["lead"]["converted"] if model == "lead" else t["banks"][model]["approved"])
            routing = None if model == "lead" else ROUTING
            row = JoinedRow(
                outcome_id=f"{eid}-{model}",
                application_id=event["application_id"],
                score_event_id=eid,
                model=model,
                model_version=f"{model}-0",
                probability=0.5,
                decided=True,
                positive=positive,
                scored_at=scored_at,
                decided_at=scored_at + 3_600_000,
                routing=routing,
                amount=None,
            )
            rows.append(row)
    return rows


def _write(directory: Path, rows: list[JoinedRow], events: dict[str, bytes], lose: set[str] = frozenset()) -> None:
    """The monitor's own writer: the real Parquet schema, the event's JSON view beside each row."""
    capture = Capture(directory, lambda row: None if row.score_event_id in lose else events[row.score_event_id])
    capture.add(rows)
    capture.flush()


@pytest.fixture(scope="module")
def world() -> tuple[list[JoinedRow], dict[str, bytes]]:
    batch = generate(EVENTS, seed=3, schema_version="v2")
    encode = SingleObjectEncoder(load_catalog().application_event_latest)
    events = {str(e["event_id"]): encode(e) for e in batch.events}
    return _rows(batch.events, batch.truth, ("bank_b", "bank_c")), events


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory, world: tuple[list[JoinedRow], dict[str, bytes]]) -> Path:
    directory = tmp_path_factory.mktemp("capture")
    _write(directory, *world)
    return directory


def test_rows_are_read_with_their_events_and_the_capture_dates(capture: Path) -> None:
    rows = read_capture(capture)

    assert rows.summary.rows == 3 * EVENTS
    assert rows.summary.duplicates == 0
    assert rows.models() == ["bank_b", "bank_c", "lead"]
    assert len(rows.events) == EVENTS
    assert rows.summary.dates == ("2026-03-02",)
    assert "0 duplicate rows dropped" in rows.summary.line()


def test_a_rebuilt_partition_written_twice_is_deduplicated_and_counted(
    tmp_path: Path, world: tuple[list[JoinedRow], dict[str, bytes]]
) -> None:
    rows, events = world
    _write(tmp_path, rows, events)
    _write(tmp_path, rows[100:400], events)  # a member rebuilding a partition writes its rows again

    read = read_capture(tmp_path)

    assert read.summary.rows == len(rows) + 300
    assert read.summary.duplicates == 300
    assert len(read.model) == len(rows)
    assert "300 duplicate rows dropped" in read.summary.line()


def test_rows_without_their_event_are_counted_and_skipped(
    tmp_path: Path, world: tuple[list[JoinedRow], dict[str, bytes]]
) -> None:
    rows, events = world
    lost = {rows[0].score_event_id, rows[3].score_event_id}  # two events the monitor never read
    _write(tmp_path, rows, events, lose=lost)

    read = read_capture(tmp_path)

    assert read.summary.without_event == 6
    assert len(read.model) == len(rows) - 6
    assert not lost & set(read.score_event_id.tolist())
    assert "6 rows without their event (skipped" in read.summary.line()


def test_a_corrupt_parquet_file_is_named(tmp_path: Path, world: tuple[list[JoinedRow], dict[str, bytes]]) -> None:
    _write(tmp_path, *world)
    bad = tmp_path / "date=2026-03-03" / "part-broken.parquet"
    bad.parent.mkdir()
    bad.write_bytes(b"PAR1 this is not what a Parquet writer leaves behind")

    with pytest.raises(CaptureError, match=r"date=2026-03-03/part-broken\.parquet is not readable Parquet"):
        read_capture(tmp_path)


def test_a_directory_without_capture_files_says_so(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="holds no date=YYYY-MM-DD/"):
        read_capture(tmp_path)


def test_each_model_gets_only_its_own_selected_rows(capture: Path) -> None:
    rows = read_capture(capture)

    bank = selected(rows, "bank_c")

    assert len(bank.y) == EVENTS
    assert bank.routing == (ROUTING,)
    assert 0.2 < bank.y.mean() < 0.7
    with pytest.raises(CaptureError, match=r"no rows for bank_a \(models with rows: bank_b, bank_c, lead\)"):
        selected(rows, "bank_a")


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def test_retraining_one_bank_keeps_every_other_file_byte_identical(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"
    plan = CaptureTraining(seed=1, folds=3, only="bank_c")

    manifest = train_from_capture(read_capture(capture), ModelsConfig(), DEFAULT_ARTIFACTS_DIR, out, plan, log=str)

    parent, child = _digests(DEFAULT_ARTIFACTS_DIR), _digests(out)
    kept = ["bank_a.ubj", "bank_b.ubj", "bank_d.ubj", "bank_e.ubj", "lead.json"]
    assert {name: child[name] for name in kept} == {name: parent[name] for name in kept}
    assert child["bank_c.ubj"] != parent["bank_c.ubj"]
    assert manifest.parent == Manifest.read(DEFAULT_ARTIFACTS_DIR).version
    assert manifest.lineage is not None
    assert manifest.lineage["rows"] == {"bank_c": EVENTS}
    assert manifest.lineage["routing"] == [ROUTING]
    assert manifest.lineage["capture_dates"] == ["2026-03-02"]
    assert manifest.models["bank_c"].metrics.n == EVENTS - int(EVENTS * 0.8)  # the holdout of its own rows


def test_a_bank_without_rows_writes_nothing(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"

    with pytest.raises(CaptureError, match="no rows for bank_a"):
        train_from_capture(
            read_capture(capture), ModelsConfig(), DEFAULT_ARTIFACTS_DIR, out, CaptureTraining(only="bank_a"), str
        )

    assert not out.exists()


def test_crm_train_from_capture_names_a_bank_without_rows_in_one_line(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "set"

    code = train_cli.main(["--from-capture", str(capture), "--bank", "bank_a", "--out", str(out)])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == ("crm-train: the capture holds no rows for bank_a (models with rows: bank_b, bank_c, lead)")
    assert not out.exists()


def test_crm_train_from_capture_names_a_corrupt_file_and_writes_nothing(
    tmp_path: Path, world: tuple[list[JoinedRow], dict[str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path / "capture", *world)
    bad = tmp_path / "capture" / "date=2026-03-02" / "part-torn.parquet"
    bad.write_bytes(b"\x00" * 64)

    code = train_cli.main(
        ["--from-capture", str(tmp_path / "capture"), "--bank", "bank_c", "--out", str(tmp_path / "set")]
    )

    assert code == 2
    assert "date=2026-03-02/part-torn.parquet is not readable Parquet" in capsys.readouterr().err
    assert not (tmp_path / "set").exists()


def test_crm_train_from_capture_writes_a_set_that_loads(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "set"

    code = train_cli.main(
        ["--from-capture", str(capture), "--bank", "bank_c", "--out", str(out), "--folds", "3", "--warm-start"]
    )

    assert code == 0
    loaded = load_models(ModelsConfig(), out)
    assert loaded.manifest.lineage is not None
    assert loaded.manifest.lineage["warm_start"] is True
    assert f"model set {loaded.version} written to {out}" in capsys.readouterr().out
    card = (out / "MODEL_CARD.md").read_text()
    assert "- routing rule(s) that selected the labels: top2-approved.v1" in card
    assert "| bank_a | kept from the parent |" in card


def test_with_a_store_the_new_set_is_added_beside_the_active_parent_and_not_activated(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ModelStore(tmp_path / "store")
    parent = store.add(DEFAULT_ARTIFACTS_DIR)
    store.activate(parent, ["bank_a", "bank_b", "bank_c", "bank_d", "bank_e", "lead"], by="test", reason="start")
    config = tmp_path / "scorer.yaml"
    config.write_text(f"models:\n  store_dir: {tmp_path / 'store'}\n")

    code = train_cli.main(["--from-capture", str(capture), "--bank", "lead", "--config", str(config), "--folds", "3"])

    assert code == 0
    added = [v for v in store.versions() if v != parent]
    assert len(added) == 1
    assert store.active() == parent
    assert store.manifest(added[0]).parent == parent
    assert f"model set {added[0]} added to the store" in capsys.readouterr().out
