"""Small model sets for the model-lifecycle tests: trained in seconds, different from the committed set."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

from models import train as training
from models.config import ModelsConfig
from models.manifest import Manifest
from models.store import ModelStore
from producer_tools.world import generate

TREES = 8  # a few trees per bank: a set unlike the committed one, trained in a few seconds


def small_model_set(out_dir: Path, seed: int = 11, events: int = 2000, parent: str | None = None) -> Manifest:
    """Train every configured model on ``events`` synthetic events (at most ``TREES`` trees per bank)."""
    batch = generate(events, seed)
    data = training.LabelledEvents.from_truth(batch.events, batch.truth)
    lineage = {"source": "synthetic world", "events": events, "seed": seed}
    with mock.patch.object(training, "MAX_TREES", TREES):
        config = ModelsConfig()
        return training.train(data, config, out_dir, seed, folds=2, log=lambda _: None, parent=parent, lineage=lineage)


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def store_with_two_sets(root: Path, trained: Path) -> tuple[ModelStore, str, str]:
    """A store holding the committed set (active) and ``trained`` (a set from ``small_model_set``)."""
    from models.config import DEFAULT_ARTIFACTS_DIR

    store = ModelStore(root)
    first = store.add(DEFAULT_ARTIFACTS_DIR)
    second = store.add(trained)
    store.activate(first, ["bank_a", "bank_b", "bank_c", "bank_d", "bank_e", "lead"], "test", "start")
    return store, first, second
