"""The Dockerfile and docker-compose.yml, checked against the code they deploy (no Docker engine needed).

Every CRM_SCORER_* variable must be one the settings model reads, every flag one the parsers accept, every
mounted path one the repository has, every image pinned to a version.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumer.commands.cli import build_parser as scorer_parser
from consumer.commands.config_reference import setting_docs
from consumer.gateway.settings import ENV_PREFIX as GATEWAY_ENV_PREFIX
from consumer.gateway.settings import GatewaySettings
from consumer.monitor.settings import MonitorSettings, load_monitor_settings
from consumer.settings import ENV_PREFIX, Settings
from producer_tools.commands.cli import build_parser as producer_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SERVICES = {
    *("kafka", "schema-registry", "topic-init", "scorer", "gateway", "monitor", "outcomes", "producer"),
    *("prometheus", "grafana"),
}
GATEWAY_PORT = 8000
PINNED = re.compile(r"^[\w./-]+:v?\d+(\.\d+)+[\w.-]*$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip().removesuffix("\\") + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            joined.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]


def stage(name: str) -> list[tuple[str, str]]:
    """The instructions of one build stage."""
    out: list[tuple[str, str]] = []
    inside = False
    for instruction, args in dockerfile_instructions():
        if instruction == "FROM":
            inside = args.split()[-1] == name
        elif inside:
            out.append((instruction, args))
    return out


def known_env_names() -> set[str]:
    return {doc.env for doc in setting_docs() if doc.env}


def scorer_env(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {k: str(v) for k, v in services["scorer"]["environment"].items()}


def test_compose_has_the_whole_stack(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES


def test_every_image_is_pinned_to_a_version(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image", "")
        assert PINNED.match(image), f"{name}: image {image!r} is not pinned to a version"
        assert not image.endswith(":latest")
    base = next(args for instruction, args in dockerfile_instructions() if instruction == "ARG")
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+", base)


def test_kafka_runs_in_kraft_mode_with_an_internal_and_a_host_listener(services: dict[str, dict[str, Any]]) -> None:
    env = services["kafka"]["environment"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"]
    assert "INTERNAL://kafka:19092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "HOST://localhost:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_published_ports(services: dict[str, dict[str, Any]]) -> None:
    expected = {
        "kafka": "9092:9092",
        "schema-registry": "8081:8080",
        "scorer": "9400-9401:9400",
        "gateway": f"{GATEWAY_PORT}:{GATEWAY_PORT}",
        "prometheus": "9090:9090",
        "grafana": "3000:3000",
    }
    assert {name: port for name, port in expected.items() if port not in services[name]["ports"]} == {}


def test_services_start_in_order_on_health(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            condition = rule["condition"]
            assert condition in {"service_healthy", "service_completed_successfully"}, f"{name} -> {dependency}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits on {dependency}'s missing healthcheck"
    assert services["scorer"]["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
    assert services["topic-init"]["restart"] == "no"


def test_scorer_env_names_are_settings_the_model_reads(services: dict[str, dict[str, Any]]) -> None:
    env = scorer_env(services)
    dockerfile_env = " ".join(args for instruction, args in stage("runtime") if instruction == "ENV")
    names = [n for n in env if n.startswith(ENV_PREFIX)] + re.findall(rf"{ENV_PREFIX}\w+", dockerfile_env)
    assert names
    unknown = set(names) - known_env_names()
    assert not unknown, f"not read by consumer.settings.Settings: {sorted(unknown)}"


def test_scorer_settings_load_from_the_compose_environment(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in scorer_env(services).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.kafka.bootstrap_servers == "kafka:19092"
    assert settings.schema_registry.url == "http://schema-registry:8080/apis/ccompat/v7"  # Confluent framing
    assert settings.metrics.port == 9400
    assert settings.log.json_format is True


def test_two_scorer_replicas_share_one_group(services: dict[str, dict[str, Any]]) -> None:
    scorer = services["scorer"]
    assert scorer["deploy"]["replicas"] == 2
    assert scorer_env(services)["CRM_SCORER_CONSUMER__GROUP_ID"] == Settings().consumer.group_id


def test_scorer_command_parses_with_crm_scorer_run(services: dict[str, dict[str, Any]]) -> None:
    args = scorer_parser().parse_args(["run", *services["scorer"]["command"]])
    assert args.command == "run"
    assert args.config == Path("/app/configs/scorer.yaml")


def test_the_gateway_is_the_scorers_image_running_crm_scorer_gateway(services: dict[str, dict[str, Any]]) -> None:
    gateway, scorer = services["gateway"], services["scorer"]
    assert (gateway["image"], gateway["build"]) == (scorer["image"], scorer["build"])
    assert gateway["entrypoint"] == ["crm-scorer", "gateway"]
    args = scorer_parser().parse_args(gateway["entrypoint"][1:] + gateway["command"])
    assert (args.command, args.config, args.host, args.port) == (
        "gateway",
        Path("/app/configs/scorer.yaml"),
        "0.0.0.0",
        GATEWAY_PORT,
    )
    assert gateway["depends_on"] == scorer["depends_on"]
    assert set(scorer["volumes"]) <= set(gateway["volumes"]), "the scorers' scorer.yaml and models"


def test_the_gateways_settings_load_from_its_compose_environment(
    services: dict[str, dict[str, Any]], compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: str(v) for k, v in services["gateway"]["environment"].items()}
    gateway_names = {GATEWAY_ENV_PREFIX + name.upper() for name in GatewaySettings.model_fields}
    unknown = {n for n in env if n not in known_env_names() and n not in gateway_names}
    assert not unknown, f"read by neither the scorer's settings nor the gateway's: {sorted(unknown)}"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    scorer = scorer_env(services)
    settings = Settings()
    assert settings.kafka.bootstrap_servers == scorer["CRM_SCORER_KAFKA__BOOTSTRAP_SERVERS"]
    assert settings.schema_registry.url == scorer["CRM_SCORER_SCHEMA_REGISTRY__URL"]
    store = GatewaySettings().store_path
    volumes = dict(v.split(":")[:2] for v in services["gateway"]["volumes"] if not v.startswith("."))
    assert any(store.is_relative_to(target) for target in volumes.values()), "the store survives a restart"
    assert set(volumes) <= set(compose["volumes"])


def test_the_gateways_healthcheck_asks_its_readyz(services: dict[str, dict[str, Any]]) -> None:
    probe = " ".join(services["gateway"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{GATEWAY_PORT}/readyz" in probe
    assert "curl" not in probe  # python:slim has none


def test_dockerfile_entrypoint_is_crm_scorer_run_in_exec_form() -> None:
    scorer = dict(stage("scorer"))
    entrypoint = json.loads(scorer["ENTRYPOINT"])
    assert entrypoint == ["crm-scorer", "run"]
    # the config comes from the environment (tests/unit/test_image_entrypoint.py), so docker run's arguments keep it
    assert "CMD" not in scorer and "CRM_SCORER_CONFIG=/app/configs/scorer.yaml" in scorer["ENV"]
    assert json.loads(dict(stage("tools"))["ENTRYPOINT"]) == ["crm-producer"]


def test_healthchecks_probe_the_scorers_healthz_on_its_metrics_port(services: dict[str, dict[str, Any]]) -> None:
    port = Settings().metrics.port
    dockerfile_probe = dict(stage("scorer"))["HEALTHCHECK"]
    compose_probe = " ".join(services["scorer"]["healthcheck"]["test"])
    for probe in (dockerfile_probe, compose_probe):
        assert f"http://127.0.0.1:{port}/healthz" in probe
        assert "curl" not in probe  # python:slim has none


def test_image_runs_as_a_non_root_user_with_runtime_dependencies_only() -> None:
    runtime = stage("runtime")
    users = [args for instruction, args in runtime if instruction == "USER"]
    assert users and users[-1] not in {"root", "0"}
    installs = [args for instruction, args in stage("build") if instruction == "RUN" and "pip install" in args]
    assert any("pip install ." in args for args in installs)
    assert not any("[" in args for args in installs), "no extras (the local broker and test tools stay out)"


def test_dockerfile_copies_only_what_exists_and_dockerignore_keeps_it() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    copied = [
        source
        for instruction, args in dockerfile_instructions()
        if instruction == "COPY" and "--from=" not in args
        for source in args.split()[:-1]
    ]
    assert copied, "the Dockerfile copies nothing from the repository"
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert source not in ignored, f"COPY {source}: excluded by .dockerignore"


def test_mounted_paths_exist_in_the_repository(services: dict[str, dict[str, Any]]) -> None:
    mounts = [
        (name, source)
        for name, service in services.items()
        for source in (volume.split(":", 1)[0] for volume in service.get("volumes", []))
        if source.startswith(".")
    ]
    assert mounts, "no service mounts a path of the repository"
    for name, source in mounts:
        assert (ROOT / source).exists(), f"{name}: mounts {source}, which is not in the repository"


def test_topic_init_creates_the_topics_the_scorer_uses(services: dict[str, dict[str, Any]]) -> None:
    env = services["topic-init"]["environment"]
    topics = Settings().topics
    assert (env["INPUT_TOPIC"], env["OUTPUT_TOPIC"], env["DLQ_TOPIC"]) == (topics.input, topics.output, topics.dlq)
    script = services["topic-init"]["command"][0]
    for variable in ("INPUT_TOPIC", "OUTPUT_TOPIC", "DLQ_TOPIC", "PARTITIONS", "RETENTION_MS", "DLQ_RETENTION_MS"):
        assert f"$${variable}" in script, variable
    assert re.fullmatch(r"\$\{CRM_TOPIC_PARTITIONS:-\d+\}", env["PARTITIONS"])


def test_producer_command_parses_and_matches_the_scorer(services: dict[str, dict[str, Any]]) -> None:
    command = services["producer"]["command"]
    args = producer_parser().parse_args(command)
    assert args.command == "produce"
    assert args.topic == Settings().topics.input
    assert args.framing == "confluent"
    assert args.schema_registry_url == scorer_env(services)["CRM_SCORER_SCHEMA_REGISTRY__URL"]
    assert args.bootstrap_servers == scorer_env(services)["CRM_SCORER_KAFKA__BOOTSTRAP_SERVERS"]
    assert 0 < args.bad_ratio <= 0.05 and args.rate > 0


def test_prometheus_gets_the_projects_config_and_rules_and_scrapes_the_scorer(
    services: dict[str, dict[str, Any]],
) -> None:
    mounts = dict(volume.split(":")[:2] for volume in services["prometheus"]["volumes"] if volume.startswith("."))
    assert mounts["./configs/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    config = yaml.safe_load((ROOT / "configs/prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert f"/etc/prometheus/{rule_file}" in mounts.values(), f"rule file {rule_file} is not mounted"
    found = {job["job_name"]: job["dns_sd_configs"][0] for job in config["scrape_configs"]}
    jobs = {name: (sd["names"], sd["port"]) for name, sd in found.items()}
    assert jobs["crm-scorer"] == (["scorer"], Settings().metrics.port)
    assert jobs["crm-gateway"] == (["gateway"], GATEWAY_PORT)
    assert jobs["crm-monitor"] == (["monitor"], MonitorSettings().metrics_port)


def test_the_monitor_joins_the_outcomes_the_world_answers_on_the_topics_topic_init_creates(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monitor, init = services["monitor"], services["topic-init"]["environment"]
    scorer_parser().parse_args([*monitor["entrypoint"][1:], *monitor["command"]])
    for key, value in monitor["environment"].items():
        monkeypatch.setenv(key, str(value))
    settings = load_monitor_settings(ROOT / "configs" / "monitor.yaml")
    assert settings.kafka.bootstrap_servers == scorer_env(services)["CRM_SCORER_KAFKA__BOOTSTRAP_SERVERS"]
    assert settings.schema_registry.url == scorer_env(services)["CRM_SCORER_SCHEMA_REGISTRY__URL"]
    assert (settings.topics.scores, settings.topics.outcomes) == (init["OUTPUT_TOPIC"], init["OUTCOMES_TOPIC"])
    assert '"$$OUTCOMES_TOPIC" "$$RETENTION_MS"' in services["topic-init"]["command"][0]
    outcomes = producer_parser().parse_args(services["outcomes"]["command"])
    produced = producer_parser().parse_args(services["producer"]["command"])
    assert (outcomes.scores_topic, outcomes.topic) == (settings.topics.scores, settings.topics.outcomes)
    assert (outcomes.count, outcomes.seed, outcomes.schema_version) == (
        produced.count,
        produced.seed,
        produced.schema_version,
    ), "the outcomes answer the world the producer sends"
    registry = services["outcomes"]["environment"]["CRM_PRODUCER_SCHEMA_REGISTRY__URL"]
    assert registry == settings.schema_registry.url, "the scores are Confluent-framed"


def test_grafana_provisioning_reaches_prometheus_and_the_dashboard(services: dict[str, dict[str, Any]]) -> None:
    mounts = dict(volume.split(":")[:2] for volume in services["grafana"]["volumes"])
    assert mounts["./configs/grafana/provisioning"] == "/etc/grafana/provisioning"
    provisioning = ROOT / "configs/grafana/provisioning"
    datasources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    assert any(d["url"] == "http://prometheus:9090" for d in datasources)
    providers = [
        p for f in (provisioning / "dashboards").glob("*.yml") for p in yaml.safe_load(f.read_text())["providers"]
    ]
    dashboard_target = mounts["./configs/grafana/dashboard.json"]
    assert any(dashboard_target.startswith(p["options"]["path"].rstrip("/") + "/") for p in providers)
    json.loads((ROOT / "configs/grafana/dashboard.json").read_text())


def test_compose_comment_names_the_topic_variables_it_uses() -> None:
    text = COMPOSE.read_text()
    variables = [variable for variable in re.findall(r"\$\{(\w+):-", text) if variable.startswith("CRM_")]
    assert variables, "the compose file reads no CRM_ variable"
    for variable in variables:
        assert text.count(variable) >= 2, f"{variable} is used but not explained in the header"


def test_compose_runs_the_apache_kafka_version_the_tests_run_on(services: dict[str, dict[str, Any]]) -> None:
    from producer_tools.servers.apache_kafka import KAFKA_VERSION

    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    pom = (Path(__file__).parents[2] / "producer_tools" / "servers" / "jvm" / "pom.xml").read_text()
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom


def test_compose_runs_the_registry_the_tests_run_against(services: dict[str, dict[str, Any]]) -> None:
    from producer_tools.servers.apicurio import APICURIO_VERSION, CCOMPAT_PATH

    registry = services["schema-registry"]
    assert registry["image"] == f"apicurio/apicurio-registry:{APICURIO_VERSION}"
    assert registry["ports"] == ["8081:8080"]
    assert scorer_env(services)["CRM_SCORER_SCHEMA_REGISTRY__URL"] == f"http://schema-registry:8080{CCOMPAT_PATH}"
