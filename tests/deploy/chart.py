"""The Helm chart rendered by the helm binary `make tools` installs, and the CRD schemas (KEDA's, the Prometheus
Operator's) it copied beside it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "crm-scorer"
TOOLS = ROOT / ".tools"
HELM = TOOLS / "bin" / "helm"
CRDS = TOOLS / "crds"
RELEASE = "crm-scorer"
# The values a secured cluster needs: SASL_SSL with SCRAM, the broker's CA and a client certificate, a registry
# with basic auth, and configs of the operator's own.
SECURED: dict[str, Any] = {
    "kafka": {
        "bootstrapServers": "kafka-0.kafka:9093,kafka-1.kafka:9093",
        "securityProtocol": "SASL_SSL",
        "saslMechanism": "SCRAM-SHA-512",
        "saslUsername": "crm-scorer",
        "passwordSecret": {"name": "crm-kafka-password", "key": "password"},
        "tlsSecret": {"name": "crm-kafka-tls", "caKey": "ca.crt", "certKey": "tls.crt", "keyKey": "tls.key"},
        "partitions": 12,
    },
    "schemaRegistry": {
        "url": "https://registry:8081/apis/ccompat/v7",
        "userInfoSecret": {"name": "crm-registry", "key": "user-info"},
    },
    "scorer": {"workers": 2, "config": "guarantee: exactly_once\n"},
    "monitor": {"config": "quality:\n  min_outcomes: 500\n"},
}


def tool(path: Path) -> Path:
    """A tool `make tools` installs; its absence fails the test (make test installs it first, CI too)."""
    if not path.exists():
        pytest.fail(f"{path.relative_to(ROOT)} is missing: run `make tools` (make test does)")
    return path


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    """``helm ARGS`` with no repository, cache or config of the user's: offline and reproducible."""
    env = {"HELM_CACHE_HOME": str(TOOLS / "helm-cache"), "HELM_CONFIG_HOME": str(TOOLS / "helm-config")}
    env |= {"HELM_DATA_HOME": str(TOOLS / "helm-data"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(tool(HELM)), *args], capture_output=True, text=True, timeout=60, env=env, check=False)


def render(tmp_path: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every manifest ``helm template`` renders with ``values`` over the chart's defaults.

    Raises:
        AssertionError: helm refused the chart or the values (its message included).
    """
    command = ["template", RELEASE, str(CHART)]
    if values:
        path = tmp_path / f"values-{len(list(tmp_path.glob('values-*')))}.yaml"
        path.write_text(yaml.safe_dump(values))
        command += ["--values", str(path)]
    done = helm(*command)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def kind(manifests: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == name]


def container(manifests: list[dict[str, Any]], component: str) -> dict[str, Any]:
    """The one container of the Deployment of ``component`` (scorer or monitor)."""
    (deployment,) = [
        d for d in kind(manifests, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    (found,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(found)


def plain_env(found: dict[str, Any]) -> dict[str, str]:
    """A container's environment variables that have a value (those from a Secret left out)."""
    return {e["name"]: e["value"] for e in found["env"] if "value" in e}


def crd_schema(name: str) -> dict[str, Any]:
    """The openAPIV3Schema of the CRD ``name`` (keda.sh_scaledobjects...), made strict: an object that declares its
    properties accepts no other (the API server prunes unknown fields, and a misspelt one would go unnoticed)."""
    crd = yaml.safe_load((tool(CRDS) / f"{name}.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["served"] and v["storage"]]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    _strict(schema)
    return schema


def _strict(schema: dict[str, Any]) -> None:
    declared = "properties" in schema and "additionalProperties" not in schema
    if declared and not schema.get("x-kubernetes-preserve-unknown-fields"):
        schema["additionalProperties"] = False
    for key in ("properties", "patternProperties"):
        for child in schema.get(key, {}).values():
            _strict(child)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _strict(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        for child in schema.get(key, []):
            _strict(child)
