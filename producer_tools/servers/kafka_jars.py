"""Apache Kafka's jars from Maven Central, resolved once into a cache outside the repository.

``mvn dependency:copy-dependencies`` on the pinned ``producer_tools/servers/jvm/pom.xml`` copies Kafka and its runtime
dependencies into ``<cache>/apache-kafka-<pom digest>/libs``. The folder is complete only once a stamp file is in
it; a second call finds the stamp and runs nothing, so nothing is downloaded twice. The cache is
``$CRM_SCORER_CACHE``, else ``$XDG_CACHE_HOME/crm-scorer``, else ``~/.cache/crm-scorer``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from producer_tools.servers.process import BrokerError

CACHE_ENV = "CRM_SCORER_CACHE"
JVM_DIR = Path(__file__).parent / "jvm"
POM = JVM_DIR / "pom.xml"
LOG4J_CONFIG = JVM_DIR / "log4j2.yaml"
_STAMP = ".complete"
_MAVEN_TIMEOUT_S = 900


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where downloaded broker and registry files live (never inside the repository)."""
    env = os.environ if environ is None else environ
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV])
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "crm-scorer"


def kafka_unavailable_reason() -> str | None:
    """Why Apache Kafka cannot start here (``java`` or ``mvn`` not on PATH), or None when it can."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    return f"Apache Kafka needs {' and '.join(missing)} on PATH (OpenJDK 17+ and Maven 3.8+)" if missing else None


def kafka_libs(cache: Path | None = None) -> Path:
    """The folder of Kafka's jars (for ``java -cp '<folder>/*'``), resolving it with Maven on first use.

    Raises:
        BrokerError: java or mvn is missing, or Maven failed; the message carries Maven's last lines.
    """
    reason = kafka_unavailable_reason()
    if reason:
        raise BrokerError(reason)
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    home = (cache or cache_root()) / f"apache-kafka-{digest}"
    libs = home / "libs"
    if (libs / _STAMP).exists():
        return libs
    staging = home / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_MAVEN_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"Maven did not resolve Apache Kafka's jars within {_MAVEN_TIMEOUT_S}s") from exc
    if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        tail = (done.stdout + done.stderr)[-3000:]
        raise BrokerError(f"Maven could not resolve Apache Kafka's jars ({' '.join(command)}):\n{tail}")
    (staging / _STAMP).write_text(POM.read_text())
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs
