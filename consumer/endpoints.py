"""A process's HTTP endpoints: ``/metrics`` (Prometheus exposition), ``/healthz`` and ``/readyz`` (JSON).

Shared ground: the scorer's host (``consumer.telemetry``) and the monitor serve their own registry and health
through it, and it imports neither.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from schemas.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """The answer of a health endpoint: ``ok`` and, per check, whether it passed and why."""

    ok: bool
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def body(self) -> bytes:
        return json.dumps({"status": "ok" if self.ok else "fail", "checks": self.checks}).encode()


class Health(Protocol):
    """What the health endpoints ask: the scorer's ``HealthState``, the monitor's ``MonitorHealth``."""

    def liveness(self) -> Verdict: ...

    def readiness(self) -> Verdict: ...


@contextlib.contextmanager
def serve_endpoints(
    registry: CollectorRegistry, health: Health, host: str, port: int, what: str = "metrics"
) -> Iterator[int]:
    """Serve ``registry`` and ``health`` on ``host:port`` until the block ends; yields the bound port.

    Raises:
        ConfigError: the address cannot be bound (in use, or not an address of this host).
    """
    try:
        server = ThreadingHTTPServer((host, port), _handler(registry, health))
    except OSError as exc:
        raise ConfigError(f"{what} host/port: cannot listen on {host}:{port}: {exc.strerror}") from exc
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    bound = int(server.server_address[1])
    log.info("metrics on http://%s:%d/metrics (health: /healthz, /readyz)", host, bound)
    try:
        yield bound
    finally:
        server.shutdown()
        server.server_close()


def _handler(registry: CollectorRegistry, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, content_type, encoder(registry))
            elif path in ("/healthz", "/readyz"):
                verdict = health.liveness() if path == "/healthz" else health.readiness()
                self._send(200 if verdict.ok else 503, "application/json", verdict.body())
            else:
                self._send(404, "text/plain", b"try /metrics, /healthz or /readyz\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
