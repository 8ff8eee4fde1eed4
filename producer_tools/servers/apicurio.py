"""Apicurio Registry: the real Schema Registry of the tests, the demo stack and the registry fault scenarios.

The registry is a Quarkus application published on Maven Central as ``io.apicurio:apicurio-registry-app``
(classifier ``all``, a tar.gz). ``mvn dependency:copy`` fetches it once into the cache beside Apache Kafka's jars
(``<cache>/apicurio-registry-<version>``) and it is unpacked there; a stamp file marks a complete unpack, so a
second run downloads nothing. It runs as ``java -jar quarkus-run.jar`` on a free loopback port, with its
Confluent-compatible API at ``/apis/ccompat/v7``: the URL confluent-kafka's ``SchemaRegistryClient`` takes.

Apicurio Registry 3.3 is compiled for Java 21: :func:`registry_java` finds a JDK 21 or newer (``$CRM_SCORER_JAVA``,
``$JAVA_HOME``, ``java`` on PATH, then the JDKs installed under ``/usr/lib/jvm``). Storage is an H2 database file
in the registry's own folder rather than the default in-memory one, so a registry killed and started again (the
fault scenarios) keeps its ids, as a production registry backed by a database does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from producer_tools.servers.kafka_jars import cache_root
from producer_tools.servers.process import HOST, BrokerError, LocalServer, ServerProcess, free_port

APICURIO_VERSION = "3.3.3"
ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"
CCOMPAT_PATH = "/apis/ccompat/v7"
JAVA_ENV = "CRM_SCORER_JAVA"
MIN_JAVA = 21
_JVM_DIRS = (Path("/usr/lib/jvm"),)  # where Debian and Ubuntu packages (and most JDK installers) put JDKs
_STAMP = ".complete"
_MAVEN_TIMEOUT_S = 900
_START_TIMEOUT_S = 120.0


def registry_home(cache: Path | None = None) -> Path:
    """The unpacked registry (the folder holding ``quarkus-run.jar``), fetching it with Maven on first use.

    Raises:
        BrokerError: mvn is missing, or Maven or the unpack failed; the message carries Maven's last lines.
    """
    if shutil.which("mvn") is None:
        raise BrokerError("Apicurio Registry is fetched from Maven Central: it needs mvn on PATH (Maven 3.8+)")
    home = (cache or cache_root()) / f"apicurio-registry-{APICURIO_VERSION}"
    app = home / "app"
    if (app / _STAMP).exists():
        return app
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    command = ["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={ARTIFACT}", f"-DoutputDirectory={home}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_MAVEN_TIMEOUT_S, check=False, cwd=home)
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"Maven did not fetch Apicurio Registry within {_MAVEN_TIMEOUT_S}s") from exc
    archives = list(home.glob("apicurio-registry-app-*.tar.gz"))
    if done.returncode != 0 or not archives:
        tail = (done.stdout + done.stderr)[-3000:]
        raise BrokerError(f"Maven could not fetch Apicurio Registry ({' '.join(command)}):\n{tail}")
    staging = home / "app.partial"
    with tarfile.open(archives[0]) as archive:
        archive.extractall(staging, filter="data")
    if not (staging / "quarkus-run.jar").exists():
        raise BrokerError(f"{archives[0].name} holds no quarkus-run.jar")
    (staging / _STAMP).write_text(ARTIFACT)
    staging.rename(app)
    archives[0].unlink()
    return app


def java_major(java: str) -> int | None:
    """The major version of the ``java`` executable at ``java`` (17, 21, 25...), or None if it does not run."""
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def registry_java(environ: Mapping[str, str] | None = None) -> str:
    """A ``java`` of version 21 or newer for the registry.

    Raises:
        BrokerError: none found; names every java looked at and its version.
    """
    env = os.environ if environ is None else environ
    candidates: list[str] = []
    if env.get(JAVA_ENV):
        candidates.append(env[JAVA_ENV])
    if env.get("JAVA_HOME"):
        candidates.append(str(Path(env["JAVA_HOME"]) / "bin" / "java"))
    if on_path := shutil.which("java"):
        candidates.append(on_path)
    for folder in _JVM_DIRS:
        candidates += [str(java) for java in sorted(folder.glob("*/bin/java"), reverse=True)]
    seen: list[str] = []
    for java in dict.fromkeys(candidates):
        major = java_major(java)
        if major is not None and major >= MIN_JAVA:
            return java
        seen.append(f"{java} ({f'Java {major}' if major else 'does not run'})")
    raise BrokerError(
        f"Apicurio Registry {APICURIO_VERSION} needs Java {MIN_JAVA} or newer; found "
        f"{', '.join(seen) or 'no java'}. Install a JDK {MIN_JAVA}+ or point {JAVA_ENV} at its "
        "java"
    )


def registry_unavailable_reason() -> str | None:
    """Why Apicurio Registry cannot start here (no mvn, no Java 21+), or None when it can."""
    if shutil.which("mvn") is None:
        return "Apicurio Registry is fetched from Maven Central: it needs mvn on PATH"
    try:
        registry_java()
    except BrokerError as exc:
        return str(exc)
    return None


def answers(url: str, timeout: float = 2.0) -> bool:
    """True when the ccompat API at ``url`` answers its subject list with 200."""
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=timeout) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:  # an answer, but not yet the API: close it (it holds the socket)
        exc.close()
        return False
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ApicurioRegistry(LocalServer):
    """An Apicurio Registry process on loopback; a context manager that stops it on exit.

    Nothing starts in ``__init__``. :meth:`start` (or ``with``) launches it and waits until the ccompat API
    answers. :meth:`kill` and :meth:`start` again keep the port and the stored schemas (the registry's H2 file).
    """

    kind = "apicurio"
    version = APICURIO_VERSION
    name = "the registry"

    def __init__(self, port: int | None = None, *, data_dir: Path | None = None, heap: str = "384m") -> None:
        self._port = port
        self._own_dir = data_dir is None
        self._dir = data_dir or Path(tempfile.mkdtemp(prefix="crm-scorer-registry-"))
        self._heap = heap
        self._server: ServerProcess | None = None
        self.start_seconds: float | None = None  # how long the last start took until the API answered

    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError("the registry has not been started")
        return self._port

    @property
    def url(self) -> str:
        """The Schema Registry URL for confluent-kafka (``schema_registry.url``)."""
        return f"http://{HOST}:{self.port}{CCOMPAT_PATH}"

    @property
    def log_path(self) -> Path:
        return self._dir / "registry.log"

    def processes(self) -> list[ServerProcess]:
        return [] if self._server is None else [self._server]

    def start(self, timeout: float = _START_TIMEOUT_S) -> Self:
        """Start (or start again after :meth:`kill`) and wait until the API answers.

        Raises:
            BrokerError: no Java 21+, Maven failed, or the registry did not answer within ``timeout``; the
                message carries the tail of its log.
        """
        if self.is_running():
            return self
        app, java = registry_home(), registry_java()
        self._port = self._port or free_port()
        management = free_port()
        command = [
            java,
            f"-Xmx{self._heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dquarkus.http.host={HOST}",
            f"-Dquarkus.http.port={self._port}",
            f"-Dquarkus.management.host={HOST}",
            f"-Dquarkus.management.port={management}",
            f"-Dapicurio.datasource.url=jdbc:h2:file:{self._dir / 'h2' / 'registry'}",
            "-Dapicurio.datasource.jdbc.initial-size=2",
            "-Dapicurio.datasource.jdbc.min-size=2",
            "-jar",
            str(app / "quarkus-run.jar"),
        ]
        self._server = ServerProcess(f"Apicurio Registry {APICURIO_VERSION}", command, self.log_path)
        started = time.monotonic()
        self._server.start()
        self._server.wait_until(lambda: answers(self.url), timeout, f"answer on {self.url}")
        self.start_seconds = time.monotonic() - started
        return self

    def _stopped(self) -> None:
        """Forget the process and remove the data folder the registry was given none of."""
        self._server = None
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)
