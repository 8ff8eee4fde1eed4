"""The model store: versioned model sets side by side, which one is active, and every activation.

::

    <store>/
      <version>/            one model set: manifest.json, the model files, reference_profile.json, MODEL_CARD.md
      activations.json      the active set, the stack rollback pops, and the history of every activation

A set's directory is named by its manifest's ``version`` and never changes once added. Activating a set
verifies it first (``problems``: every file's sha256, the feature-pipeline version, every configured model
present) and only then records it; a rollback returns to the set active before the current one. Every change of
the record holds an exclusive lock and replaces the file atomically, so two operators cannot interleave and a
reader never sees half a record.

This module is file logic only. Telling the running scorers is the control topic's job
(``consumer.kafka.model_control``); the record here is what ``crm-scorer models list`` shows and where a scorer
that starts finds the set to serve before it reads the topic.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.manifest import MANIFEST, Manifest
from models.pipeline import pipeline_version
from schemas.errors import ArtifactError

RECORD = "activations.json"
# Why a scorer refuses an activation (a metric label each): the set is not in its store, its manifest is not the
# one activated, a file or the manifest fails verification, it was built for another feature pipeline, a model
# does not load, or the control record itself is unreadable.
REFUSAL_REASONS = ("not_in_store", "manifest_changed", "verification", "pipeline", "load", "bad_record")
_LOCK = ".lock"


class StoreError(ArtifactError):
    """A store operation that cannot be done: an unknown version, a set that fails verification, nothing to
    roll back to. The message is one line naming the version and the problem."""


@dataclass(frozen=True)
class Activation:
    """One activation, as recorded in the store and published on the control topic."""

    version: str
    manifest_sha256: str
    activated_at: str  # ISO 8601, UTC
    by: str
    reason: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Activation:
        """Raises ValueError naming the problem: not JSON, or a field missing or not a string."""
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"activation record is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError("activation record is not a JSON object")
        fields = ("version", "manifest_sha256", "activated_at", "by", "reason")
        bad = [f for f in fields if not isinstance(raw.get(f), str)]
        if bad:
            raise ValueError(f"activation record: {', '.join(bad)} missing or not a string")
        return cls(**{f: raw[f] for f in fields})


@dataclass
class _Record:
    stack: list[str] = field(default_factory=list)  # activated versions; the last is active, rollback pops
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def active(self) -> str | None:
        return self.stack[-1] if self.stack else None


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ModelStore:
    """A directory of model sets (see the module docstring). Nothing is read or created until asked."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def versions(self) -> list[str]:
        """Every set in the store, oldest first (by when its manifest was written)."""
        if not self.root.is_dir():
            return []
        sets = [d for d in self.root.iterdir() if d.is_dir() and (d / MANIFEST).is_file()]
        return [d.name for d in sorted(sets, key=lambda d: ((d / MANIFEST).stat().st_mtime, d.name))]

    def directory(self, version: str) -> Path:
        """The directory of set ``version``. Raises StoreError when the store holds no such set."""
        path = self.root / version
        if "/" in version or version.startswith(".") or not (path / MANIFEST).is_file():
            known = ", ".join(self.versions()) or "none"
            raise StoreError(f"model set {version!r} is not in the store {self.root} (sets: {known})")
        return path

    def manifest(self, version: str) -> Manifest:
        return Manifest.read(self.directory(version))

    def manifest_sha256(self, version: str) -> str:
        return sha256_file(self.directory(version) / MANIFEST)

    def created(self, version: str) -> str:
        """When the set's manifest was written (UTC, to the second)."""
        mtime = (self.directory(version) / MANIFEST).stat().st_mtime
        return dt.datetime.fromtimestamp(mtime, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def active(self) -> str | None:
        return self._read().active

    def active_dir(self) -> Path:
        """The active set's directory. Raises StoreError when none is active."""
        version = self.active()
        if version is None:
            raise StoreError(f"no model set is active in the store {self.root}: run `crm-scorer models activate`")
        return self.directory(version)

    def history(self) -> list[dict[str, Any]]:
        """Every activation and rollback, oldest first."""
        return self._read().history

    def add(self, source: Path) -> str:
        """Copy the set in ``source`` into the store under its manifest's version; returns the version.

        Raises:
            ArtifactError: ``source`` holds no valid manifest.
            StoreError: a different set of that version is already in the store.
        """
        manifest = Manifest.read(source)
        target = self.root / manifest.version
        if (target / MANIFEST).is_file():
            if sha256_file(target / MANIFEST) != sha256_file(source / MANIFEST):
                raise StoreError(f"model set {manifest.version!r} is already in the store with another manifest")
            return manifest.version
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".adding-{manifest.version}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        staging.rename(target)  # a set appears whole or not at all
        return manifest.version

    def problems(self, version: str, models: Sequence[str]) -> list[str]:
        """Every reason set ``version`` cannot be served with ``models`` (the configured banks and "lead"):
        one line each, none when it can. Raises StoreError when the store holds no such set."""
        directory = self.directory(version)
        try:
            manifest = Manifest.read(directory)
        except ArtifactError as exc:
            return [str(exc)]
        found = _version_problems(manifest, version) + _file_problems(directory, manifest)
        missing = [m for m in models if m not in manifest.models]
        if missing:
            found.append(f"{version}: configured model(s) {', '.join(missing)} not in the manifest")
        return found

    def activate(
        self, version: str, models: Sequence[str], by: str, reason: str, action: str = "activate"
    ) -> Activation:
        """Verify set ``version`` and record it as active (``action``: "activate", or "promote" for a challenger
        promoted by ``crm-scorer models promote``, which the monitor's rollback rule watches).

        Raises:
            StoreError: no such set, or it fails verification (the first problem, and how many there are).
        """
        self.check(version, models)
        with self._locked() as record:
            activation = self._activation(version, by, reason)
            if record.active != version:
                record.stack.append(version)
            record.history.append(asdict(activation) | {"action": action})
            self._write(record)
        return activation

    def rollback(self, models: Sequence[str], by: str, reason: str) -> Activation:
        """Return to the set that was active before the current one (verified again first).

        Raises:
            StoreError: nothing to roll back to, or that set now fails verification.
        """
        record = self._read()
        if len(record.stack) < 2:
            raise StoreError(f"nothing to roll back to: {record.active or 'no set'} is the only set activated")
        target = record.stack[-2]
        self.check(target, models)
        with self._locked() as record:
            if len(record.stack) < 2 or record.stack[-2] != target:
                raise StoreError("the activation record changed while rolling back: run the rollback again")
            activation = self._activation(target, by, reason or f"rollback from {record.stack[-1]}")
            record.stack.pop()
            record.history.append(asdict(activation) | {"action": "rollback"})
            self._write(record)
        return activation

    def check(self, version: str, models: Sequence[str]) -> None:
        """Raises StoreError when set ``version`` is missing or has a problem (see ``problems``)."""
        found = self.problems(version, models)
        if found:
            more = f" (and {len(found) - 1} more problem(s): crm-scorer models verify {version})" if found[1:] else ""
            raise StoreError(f"refusing model set {found[0]}{more}")  # each problem starts with the version

    def _activation(self, version: str, by: str, reason: str) -> Activation:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        return Activation(version, self.manifest_sha256(version), now, by, reason)

    def _read(self) -> _Record:
        path = self.root / RECORD
        if not path.is_file():
            return _Record()
        try:
            raw = json.loads(path.read_text())
            return _Record(list(raw["stack"]), list(raw["history"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{path} is not a valid activation record: {exc}") from exc

    def _write(self, record: _Record) -> None:
        path = self.root / RECORD
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(record), indent=1) + "\n")
        os.replace(temporary, path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_Record]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / _LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield self._read()


def _version_problems(manifest: Manifest, version: str) -> list[str]:
    found = []
    if manifest.version != version:
        found.append(f"{version}: the manifest names version {manifest.version}, not its directory's")
    running = pipeline_version()
    if manifest.pipeline_version is None:
        found.append(f"{version}: the manifest records no feature-pipeline version (this scorer runs {running})")
    elif manifest.pipeline_version != running:
        found.append(
            f"{version}: built for feature pipeline {manifest.pipeline_version}, this scorer runs pipeline {running}"
        )
    return found


def _file_problems(directory: Path, manifest: Manifest) -> list[str]:
    stored = [(name, e.file, e.sha256) for name, e in manifest.models.items()]
    if manifest.reference_profile is not None:
        stored.append(("reference_profile", manifest.reference_profile.file, manifest.reference_profile.sha256))
    else:
        stored.append(("reference_profile", "", ""))
    found = []
    for name, file, expected in stored:
        path = directory / file
        if not file:
            found.append(f"{directory.name}: the manifest lists no {name}")
        elif not path.is_file():
            found.append(f"{directory.name}: {name} file {file} is missing")
        elif sha256_file(path) != expected:
            found.append(f"{directory.name}: {name} file {file} sha256 does not match the manifest")
    return found
