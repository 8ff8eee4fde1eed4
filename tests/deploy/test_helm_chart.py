"""The Helm chart (deploy/helm/crm-scorer), checked offline: `helm lint` and `helm template`, every manifest against
the Kubernetes API schemas (kubernetes-validate), KEDA's objects against KEDA's own CRD schemas and the
ServiceMonitor against the Prometheus Operator's, the probes,
resources and autoscaler against the code and the benchmark, and the pods against docker-compose.yml."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args

import jsonschema
import kubernetes_validate
import pytest
import yaml

from consumer.monitor.settings import load_monitor_settings
from consumer.settings import Settings, load_settings
from tests.deploy.chart import CHART, ROOT, SECURED, container, crd_schema, helm, kind, plain_env, render
from tests.unit.test_deployment import COMPOSE, stage

BUILTIN = {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap"}
CRDS = {
    "ScaledObject": "keda.sh_scaledobjects",
    "TriggerAuthentication": "keda.sh_triggerauthentications",
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors",
}
BENCHMARKS = ROOT / "docs" / "benchmarks.md"
COMPOSE_KAFKA = {"bootstrapServers": "kafka:19092"}
COMPOSE_REGISTRY = {"url": "http://schema-registry:8080/apis/ccompat/v7"}


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return render(tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return render(tmp_path_factory.mktemp("secured"), SECURED)


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


def test_helm_lint_passes_strictly() -> None:
    done = helm("lint", "--strict", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


def test_the_chart_renders_the_scorer_the_monitor_and_their_operations(default: list[dict[str, Any]]) -> None:
    kinds = sorted(m["kind"] for m in default)
    expected = ["Deployment", "Deployment", "PodDisruptionBudget", "ScaledObject", "Service", "Service"]
    assert kinds == [*expected, "ServiceMonitor"]
    assert not kind(default, "TriggerAuthentication"), "a PLAINTEXT cluster needs no credentials for the scaler"


@pytest.mark.parametrize("which", ["default", "secured"])
def test_every_manifest_is_valid_against_the_kubernetes_and_keda_schemas(
    which: str, request: pytest.FixtureRequest
) -> None:
    manifests: list[dict[str, Any]] = request.getfixturevalue(which)
    version = kubernetes_validate.latest_version()
    assert {m["kind"] for m in manifests} <= BUILTIN | CRDS.keys()
    for manifest in manifests:
        if manifest["kind"] in BUILTIN:
            kubernetes_validate.validate(manifest, version, strict=True)
        else:
            jsonschema.validate(manifest, crd_schema(CRDS[manifest["kind"]]))


def test_a_misspelt_keda_field_is_refused_by_the_crd_schema(default: list[dict[str, Any]]) -> None:
    (scaled,) = kind(default, "ScaledObject")
    wrong = {**scaled, "spec": {**scaled["spec"], "maxReplicas": 3}}
    with pytest.raises(jsonschema.ValidationError, match="maxReplicas"):
        jsonschema.validate(wrong, crd_schema(CRDS["ScaledObject"]))


def test_the_autoscaler_reads_the_scorers_group_lag_capped_at_the_partition_count(
    default: list[dict[str, Any]], secured: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    (scaled,) = kind(default, "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    scorer_yaml = load_settings(ROOT / "configs" / "scorer.yaml")
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == scorer_yaml.consumer.group_id
    assert trigger["metadata"]["topic"] == scorer_yaml.topics.input
    assert trigger["metadata"]["lagThreshold"] == str(values["autoscaling"]["lagThresholdPerWorker"])
    assert trigger["metadata"]["allowIdleConsumers"] == "false"
    assert scaled["spec"]["maxReplicaCount"] == values["kafka"]["partitions"] == 6
    (deployment,) = [d for d in kind(default, "Deployment") if d["metadata"]["name"].endswith("-scorer")]
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    # Two workers per pod: twice the lag per pod, half the pods; 12 partitions.
    (scaled,) = kind(secured, "ScaledObject")
    assert scaled["spec"]["maxReplicaCount"] == 6
    assert scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] == str(
        2 * values["autoscaling"]["lagThresholdPerWorker"]
    )
    assert scaled["spec"]["triggers"][0]["metadata"]["sasl"] == "scram_sha512"
    assert scaled["spec"]["triggers"][0]["metadata"]["tls"] == "enable"


def test_fewer_partitions_than_workers_per_pod_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"kafka\.partitions is smaller than scorer\.workers"):
        render(tmp_path, {"kafka": {"partitions": 1}, "scorer": {"workers": 2}})


def test_the_lag_threshold_is_the_one_docs_kubernetes_md_derives(values: dict[str, Any]) -> None:
    doc = (ROOT / "docs" / "kubernetes.md").read_text()
    threshold = values["autoscaling"]["lagThresholdPerWorker"]
    assert f"lagThreshold = {threshold:,}" in doc


def test_probes_ask_the_scorers_healthz_and_readyz_and_the_monitors_metrics_on_their_ports(
    default: list[dict[str, Any]],
) -> None:
    scorer = container(default, "scorer")
    port = load_settings(ROOT / "configs" / "scorer.yaml").metrics.port
    assert scorer["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    assert scorer["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert scorer["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert scorer["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    monitor = container(default, "monitor")
    monitor_port = load_monitor_settings(ROOT / "configs" / "monitor.yaml").metrics_port
    assert monitor["ports"][0]["containerPort"] == monitor_port
    assert monitor["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert monitor["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_resources_follow_the_benchmarks_per_worker_figures(
    default: list[dict[str, Any]], secured: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    peaks = [int(mib) for mib in re.findall(r"peak RSS per worker\s+(\d+) MiB", BENCHMARKS.read_text())]
    assert peaks, "docs/benchmarks.md records no peak RSS per worker"
    per_worker = values["scorer"]["perWorker"]
    # The runs are recorded oldest first; the first (576 MiB) predates the memory work.
    assert peaks[-1] <= per_worker["memoryRequestMi"] < per_worker["memoryLimitMi"]
    assert per_worker["cpuMillis"] == 1000, "one worker keeps one core busy at its throughput"
    one = container(default, "scorer")["resources"]
    assert one == {"requests": {"cpu": "1100m", "memory": "832Mi"}, "limits": {"memory": "1152Mi"}}
    two = container(secured, "scorer")["resources"]
    assert two == {"requests": {"cpu": "2100m", "memory": "1408Mi"}, "limits": {"memory": "1920Mi"}}


def test_a_disruption_takes_one_scorer_at_a_time(default: list[dict[str, Any]]) -> None:
    (budget,) = kind(default, "PodDisruptionBudget")
    (deployment,) = [d for d in kind(default, "Deployment") if d["metadata"]["name"].endswith("-scorer")]
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]


def test_the_service_monitor_scrapes_both_services_metrics_ports(default: list[dict[str, Any]]) -> None:
    (monitor,) = kind(default, "ServiceMonitor")
    services = kind(default, "Service")
    assert len(services) == 2
    selector = monitor["spec"]["selector"]["matchLabels"]
    for service in services:
        assert selector.items() <= service["metadata"]["labels"].items()
        assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]


def test_secrets_reach_the_pods_as_mounted_files_the_settings_read(
    secured: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    (deployment,) = [d for d in kind(secured, "Deployment") if d["metadata"]["name"].endswith("-scorer")]
    pod = deployment["spec"]["template"]["spec"]
    scorer = container(secured, "scorer")
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"kafka-password": "crm-kafka-password", "kafka-tls": "crm-kafka-tls"}
    mounts = {m["name"]: m["mountPath"] for m in scorer["volumeMounts"]}
    env = plain_env(scorer)
    assert not [name for name in env if "PASSWORD" in name and not name.endswith("_FILE")]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(ROOT / "configs" / "scorer.yaml")
    assert settings.kafka.sasl_password_file == Path(mounts["kafka-password"]) / "password"
    assert settings.kafka.ssl_ca_location == Path(mounts["kafka-tls"]) / "ca.crt"
    assert settings.kafka.ssl_certificate_location == Path(mounts["kafka-tls"]) / "tls.crt"
    assert settings.kafka.ssl_key_location == Path(mounts["kafka-tls"]) / "tls.key"
    (from_secret,) = [e for e in scorer["env"] if "valueFrom" in e]
    assert from_secret["name"] == "CRM_SCORER_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO"
    (auth,) = kind(secured, "TriggerAuthentication")
    parameters = {ref["parameter"]: ref["name"] for ref in auth["spec"]["secretTargetRef"]}
    assert parameters == {"password": "crm-kafka-password", "ca": "crm-kafka-tls", "cert": "crm-kafka-tls"} | {
        "key": "crm-kafka-tls"
    }


def test_the_monitors_environment_is_settings_the_monitor_reads(
    secured: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monitor = container(secured, "monitor")
    for key, value in plain_env(monitor).items():
        monkeypatch.setenv(key, value)
    settings = load_monitor_settings(ROOT / "configs" / "monitor.yaml")
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.sasl_password_file == Path("/etc/crm-scorer/kafka/password")
    assert settings.store.path == Path("/var/tmp/monitor-state")
    mounts = {m["mountPath"] for m in monitor["volumeMounts"]}
    assert {"/var/tmp", "/etc/crm-scorer/kafka", "/etc/crm-scorer/kafka-tls", "/app/configs/monitor.yaml"} <= mounts


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def test_the_pods_run_the_command_line_and_settings_of_the_compose_services(tmp_path: Path) -> None:
    manifests = render(tmp_path, {"kafka": COMPOSE_KAFKA, "schemaRegistry": COMPOSE_REGISTRY})
    services = compose_services()
    image_entrypoint = yaml.safe_load(dict(stage("scorer"))["ENTRYPOINT"])
    for component in ("scorer", "monitor"):
        service, pod = services[component], container(manifests, component)
        entrypoint = service.get("entrypoint", image_entrypoint)
        assert [*pod["command"], *pod["args"]] == [*entrypoint, *service["command"]], component
        composed = {key: str(value) for key, value in service["environment"].items()}
        rendered = plain_env(pod)
        assert composed.items() <= rendered.items(), component
        config = service["command"][service["command"].index("--config") + 1]
        mounted = [v.split(":")[1] for v in service["volumes"] if v.startswith("./configs/")]
        assert mounted == [config], f"compose mounts the {component}'s config where the image holds it"
    # What the pods set beyond compose is where the scorer's topics are, as configs/scorer.yaml names them.
    scorer = container(manifests, "scorer")
    beyond = plain_env(scorer).keys() - services["scorer"]["environment"].keys()
    topics = load_settings(ROOT / "configs" / "scorer.yaml").topics
    assert beyond == {"CRM_SCORER_TOPICS__INPUT", "CRM_SCORER_TOPICS__OUTPUT", "CRM_SCORER_TOPICS__DLQ"}
    assert [plain_env(scorer)[f"CRM_SCORER_TOPICS__{n.upper()}"] for n in ("input", "output", "dlq")] == [
        topics.input,
        topics.output,
        topics.dlq,
    ]


def test_the_image_holds_the_configs_the_pods_name() -> None:
    copied = [args.split()[-1] for instruction, args in stage("runtime") if instruction == "COPY"]
    assert "configs/scorer.yaml" in copied and "configs/monitor.yaml" in copied


def test_without_keda_the_operator_or_the_monitor_the_scorer_runs_its_replicas(tmp_path: Path) -> None:
    off = {"enabled": False}
    manifests = render(tmp_path, {"autoscaling": off, "serviceMonitor": off, "monitor": off})
    assert sorted(m["kind"] for m in manifests) == ["Deployment", "PodDisruptionBudget", "Service"]
    (deployment,) = kind(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_the_values_schema_refuses_what_the_settings_would(tmp_path: Path) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    guarantees = schema["properties"]["scorer"]["properties"]["guarantee"]["enum"]
    assert guarantees == list(get_args(Settings.model_fields["guarantee"].annotation))
    with pytest.raises(AssertionError, match="value must be one of 'at_least_once', 'exactly_once'"):
        render(tmp_path, {"scorer": {"guarantee": "twice"}})
    with pytest.raises(AssertionError, match="/kafka/partitions"):
        render(tmp_path, {"kafka": {"partitions": 0}})
