"""``make stack``: the docker-compose topology as local processes, with no Docker engine.

Apache Kafka (one KRaft node, :mod:`producer_tools.servers.apache_kafka`), Apicurio Registry
(:mod:`producer_tools.servers.apicurio`),
the four topics, two ``crm-scorer run`` replicas in one consumer group with Confluent framing (each its own
process, instance id and metrics port), the synthetic CRM producing at a steady rate with about 1% malformed
messages, the HTTP gateway (``crm-scorer gateway``, its scores view in the stack's folder), the feedback loop
(the world's banks and leads answering the scores on ``crm.outcomes``, :mod:`producer_tools.demos.stack_outcomes`,
and ``crm-scorer monitor`` joining them, its state store in the stack's folder), and Prometheus (Debian's package,
installed by ``scripts/install-prometheus.sh`` when missing) with ``configs/prometheus.yml``'s rules, scraping
both replicas, the gateway and the monitor. Grafana has no Debian package; its dashboard's
queries are evaluated against Prometheus by the test suite instead. Every process logs into the stack's folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from producer_tools.demos.stack_outcomes import StackOutcomes
from producer_tools.publishing.topics import ensure_topics
from producer_tools.servers.apache_kafka import ApacheKafka
from producer_tools.servers.apicurio import ApicurioRegistry
from producer_tools.servers.process import HOST, BrokerError, ServerProcess, free_port, port_is_free

ROOT = Path(__file__).resolve().parents[2]  # the checkout: producer_tools/demos/stack.py -> ../../..
CONFIGS = ROOT / "configs"
INSTALL_PROMETHEUS = ROOT / "scripts" / "install-prometheus.sh"
TOPICS = {"input": "crm.applications", "output": "crm.scores", "dlq": "crm.applications.dlq"}
OUTCOMES = "crm.outcomes"  # co-partitioned with crm.scores: the monitor joins them partition by partition
GROUP = "crm-scorer"
_BATCH = 5000  # events per producer run; the next run takes the next seed, so the stream never repeats


@dataclass(frozen=True)
class StackPorts:
    """Where the stack listens on loopback; a port in use (or 0) is replaced by a free one."""

    registry: int = 8081
    scorers: tuple[int, int] = (9400, 9401)
    prometheus: int = 9090
    gateway: int = 8000
    monitor: int = 9410


def _port(wanted: int) -> int:
    return wanted if wanted and port_is_free(wanted) else free_port()


class Stack:
    """The whole topology; ``start`` brings it up in dependency order, ``stop`` takes it down in reverse."""

    def __init__(
        self,
        folder: Path | None = None,
        *,
        ports: StackPorts | None = None,
        rate: float = 200.0,
        bad_ratio: float = 0.01,
        prometheus: bool = True,
    ) -> None:
        self.folder = folder or Path(tempfile.mkdtemp(prefix="crm-scorer-stack-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        wanted = ports or StackPorts()
        self.kafka = ApacheKafka()
        self.registry = ApicurioRegistry(_port(wanted.registry), data_dir=self.folder / "registry")
        self.scorer_ports = tuple(_port(p) for p in wanted.scorers)
        self.prometheus_port = _port(wanted.prometheus) if prometheus else None
        self.gateway_port = _port(wanted.gateway)
        self.monitor_port = _port(wanted.monitor)
        self._rate, self._bad_ratio = rate, bad_ratio
        self._scorers: list[ServerProcess] = []
        self._prometheus: ServerProcess | None = None
        self._gateway: ServerProcess | None = None
        self._monitor: ServerProcess | None = None
        self._outcomes: StackOutcomes | None = None
        self._producer: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._producer_thread: threading.Thread | None = None

    @property
    def prometheus_url(self) -> str | None:
        return f"http://{HOST}:{self.prometheus_port}" if self.prometheus_port else None

    def urls(self) -> dict[str, str]:
        urls = {"kafka": self.kafka.bootstrap_servers, "schema registry": self.registry.url}
        for i, port in enumerate(self.scorer_ports):
            urls[f"scorer {i + 1}"] = f"http://{HOST}:{port}/metrics"
        urls["gateway"] = f"http://{HOST}:{self.gateway_port}/docs"
        urls["monitor"] = f"http://{HOST}:{self.monitor_port}/metrics"
        if self.prometheus_url:
            urls["prometheus"] = self.prometheus_url
        urls["logs"] = str(self.folder)
        return urls

    def start(self) -> Stack:
        """Bring every part up and wait until each answers. Raises BrokerError naming the part that did not."""
        self.kafka.start()
        self.registry.start()
        partitions = {TOPICS["input"]: 6, TOPICS["output"]: 6, TOPICS["dlq"]: 1, OUTCOMES: 6}
        ensure_topics(self.kafka.bootstrap_servers, partitions)
        for i, port in enumerate(self.scorer_ports):
            self._scorers.append(self._scorer(i, port))
        self._gateway = self._start_gateway(self.gateway_port)
        self._monitor = self._start_monitor(self.monitor_port)
        self._outcomes = StackOutcomes(self.kafka.bootstrap_servers, self.registry.url, TOPICS["output"], OUTCOMES)
        self._outcomes.start()
        self._producer_thread = threading.Thread(target=self._produce_forever, name="stack-producer", daemon=True)
        self._producer_thread.start()
        if self.prometheus_port:
            self._prometheus = self._start_prometheus(self.prometheus_port)
        return self

    def processes(self) -> list[ServerProcess]:
        """The scorer replicas, the gateway, the monitor and Prometheus (the broker and the registry have objects of
        their own)."""
        others = [server for server in (self._gateway, self._monitor, self._prometheus) if server is not None]
        return [*self._scorers, *others]

    def problems(self) -> list[str]:
        """Parts that stopped running, each with the tail of its log (empty while all is well)."""
        found = []
        for server in self.processes():
            if not server.is_running():
                found.append(f"{server.name} exited:\n{server.log_tail(1500)}")
        if self._outcomes is not None and not self._outcomes.is_running():
            found.append(f"the outcomes stopped: {self._outcomes.tally.line()}")
        if not self.kafka.is_running():
            found.append(f"Apache Kafka exited:\n{self.kafka.log_tail()[-1500:]}")
        if not self.registry.is_running():
            found.append(f"Apicurio Registry exited:\n{self.registry.log_tail()[-1500:]}")
        return found

    def stop(self) -> None:
        """Stop everything, producer first and broker last (scorers commit and leave the group on SIGTERM)."""
        self._stopping.set()
        if self._producer is not None and self._producer.poll() is None:
            self._producer.terminate()
            self._producer.wait(15)
        if self._producer_thread is not None:
            self._producer_thread.join(15)
        if self._outcomes is not None:
            self._outcomes.stop()
        servers = [*reversed(self.processes())]
        for server in servers:
            server.request_stop()
        for server in servers:
            server.stop(20)
        self.registry.stop()
        self.kafka.stop()

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _scorer(self, replica: int, port: int) -> ServerProcess:
        command = [
            sys.executable,
            "-m",
            "consumer.commands.cli",
            "run",
            "--bootstrap-servers",
            self.kafka.bootstrap_servers,
            "--schema-registry-url",
            self.registry.url,
            "--input-topic",
            TOPICS["input"],
            "--output-topic",
            TOPICS["output"],
            "--dlq-topic",
            TOPICS["dlq"],
            "--group-id",
            GROUP,
            "--metrics-port",
            str(port),
        ]
        env = {"CRM_SCORER_CONSUMER__INSTANCE_ID": f"stack-replica-{replica + 1}", "CRM_SCORER_METRICS__HOST": HOST}
        server = ServerProcess(
            f"scorer replica {replica + 1}", command, self.folder / f"scorer-{replica + 1}.log", env=env
        )
        server.start()
        server.wait_until(
            lambda: _http_status(f"http://{HOST}:{port}/healthz") == 200, 90, f"serve /healthz on port {port}"
        )
        return server

    def _start_gateway(self, port: int) -> ServerProcess:
        """``crm-scorer gateway`` on the stack's topics; ready once the broker, its store and its view are."""
        topics = [(f"--{name}-topic", topic) for name, topic in TOPICS.items()]
        command = [
            *(sys.executable, "-m", "consumer.commands.cli", "gateway"),
            *("--bootstrap-servers", self.kafka.bootstrap_servers),
            *(part for flag in topics for part in flag),
            *("--port", str(port), "--store-path", str(self.folder / "gateway-state")),
        ]
        env = {"CRM_SCORER_SCHEMA_REGISTRY__URL": self.registry.url}  # the results are Confluent-framed
        server = ServerProcess("gateway", command, self.folder / "gateway.log", env=env)
        server.start()
        server.wait_until(lambda: _http_status(f"http://{HOST}:{port}/readyz") == 200, 120, f"be ready on port {port}")
        return server

    def _start_monitor(self, port: int) -> ServerProcess:
        """``crm-scorer monitor`` on the stack's scores and outcomes; up once it serves /metrics."""
        command = [
            *(sys.executable, "-m", "consumer.commands.cli", "monitor"),
            *("--bootstrap-servers", self.kafka.bootstrap_servers, "--schema-registry-url", self.registry.url),
            *("--scores-topic", TOPICS["output"], "--outcomes-topic", OUTCOMES),
            *("--store-path", str(self.folder / "monitor-state"), "--metrics-port", str(port)),
        ]
        env = {"CRM_MONITOR_METRICS_HOST": HOST}
        server = ServerProcess("monitor", command, self.folder / "monitor.log", env=env)
        server.start()
        server.wait_until(lambda: _http_status(f"http://{HOST}:{port}/metrics") == 200, 60, f"serve /metrics on {port}")
        return server

    def _produce_forever(self) -> None:
        """The synthetic CRM: runs of ``crm-producer produce`` at the stack's rate, each with the next seed (its
        world's outcomes follow the scores)."""
        seed = 1
        with (self.folder / "producer.log").open("ab") as log:
            while not self._stopping.is_set():
                if self._outcomes is not None:
                    self._outcomes.add_world(_BATCH, seed, "mixed")
                command = [
                    sys.executable,
                    "-m",
                    "producer_tools.commands.cli",
                    "produce",
                    "--bootstrap-servers",
                    self.kafka.bootstrap_servers,
                    "--topic",
                    TOPICS["input"],
                    "--rate",
                    str(self._rate),
                    "--count",
                    str(_BATCH),
                    "--seed",
                    str(seed),
                    "--schema-version",
                    "mixed",
                    "--framing",
                    "confluent",
                    "--schema-registry-url",
                    self.registry.url,
                    "--bad-ratio",
                    str(self._bad_ratio),
                    "--live-timestamps",
                ]
                self._producer = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
                self._producer.wait()
                seed += 1
                if self._producer.returncode and not self._stopping.wait(2.0):
                    continue  # a failed run (the broker restarting) is followed by the next one

    def _start_prometheus(self, port: int) -> ServerProcess:
        binary = prometheus_binary()
        path = self.folder / "prometheus.yml"
        scorers, gateway = [f"{HOST}:{p}" for p in self.scorer_ports], [f"{HOST}:{self.gateway_port}"]
        monitor = [f"{HOST}:{self.monitor_port}"]
        path.write_text(yaml.safe_dump(local_prometheus_config(scorers, "5s", gateway, monitor)))
        command = [
            binary,
            f"--config.file={path}",
            f"--storage.tsdb.path={self.folder / 'prometheus-data'}",
            f"--web.listen-address={HOST}:{port}",
            "--log.level=warn",
        ]
        server = ServerProcess("Prometheus", command, self.folder / "prometheus.log")
        server.start()
        server.wait_until(lambda: _http_status(f"http://{HOST}:{port}/-/ready") == 200, 60, f"be ready on {port}")
        return server


def local_prometheus_config(
    targets: list[str], interval: str, gateways: Sequence[str] = (), monitors: Sequence[str] = ()
) -> dict[str, Any]:
    """``configs/prometheus.yml`` for scorers (and gateways, monitors) on this machine: the same rules (by absolute
    path) and scrape jobs, each target named by address instead of found by DNS (as compose does), scraped every
    ``interval``; a job with no target here (no gateway) is left out."""
    config: dict[str, Any] = yaml.safe_load((CONFIGS / "prometheus.yml").read_text())
    config["global"] |= {"scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(CONFIGS / name) for name in config["rule_files"]]
    local = {"crm-scorer": list(targets), "crm-gateway": list(gateways), "crm-monitor": list(monitors)}
    jobs = [job for job in config["scrape_configs"] if local.get(job["job_name"])]
    for job in jobs:
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [{"targets": local[job["job_name"]]}]
    config["scrape_configs"] = jobs
    return config


def prometheus_binary() -> str:
    """Prometheus, installed from Debian's packages by the project's script when absent.

    Raises:
        BrokerError: it is not installed and this machine cannot install it (the script says why).
    """
    if found := shutil.which("prometheus"):
        return found
    done = subprocess.run(["bash", str(INSTALL_PROMETHEUS)], capture_output=True, text=True, check=False)
    found = shutil.which("prometheus")
    if done.returncode != 0 or not found:
        raise BrokerError(f"Prometheus is not installed and could not be: {(done.stdout + done.stderr)[-1000:]}")
    return found


def prometheus_api(base: str, path: str) -> Any:
    """The ``data`` of a Prometheus HTTP API answer (``/api/v1/<path>``)."""
    with urllib.request.urlopen(f"{base}/api/v1/{path}", timeout=5) as response:
        return json.load(response)["data"]


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0
