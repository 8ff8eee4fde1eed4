"""The gateway's ASGI middleware: request metrics, and the body-size limit.

Metrics take a registry (a test passes a fresh one). The route label is the route's template
(``/get_result``), never the raw path: ids and arbitrary paths must not become label values.
"""

from __future__ import annotations

import json
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from models.artifacts import ModelSet
from models.store import REFUSAL_REASONS

Scope = dict[str, Any]
ASGIApp = Any

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    """Every metric the gateway exports, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "crm_gateway_requests_total", "HTTP requests answered", ["route", "method", "status"], registry=registry
        )
        self.errors = Counter(
            "crm_gateway_request_errors_total",
            "HTTP requests answered 4xx/5xx",
            ["route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "crm_gateway_request_duration_seconds",
            "time from request to response",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.published = Counter(
            "crm_gateway_events_published_total", "application events the broker acknowledged", registry=registry
        )
        self.refused = Counter(
            "crm_gateway_uploads_refused_total",
            "uploads answered 503: broker or state store unavailable",
            registry=registry,
        )
        self.upload_to_answer = Histogram(
            "crm_gateway_upload_to_answer_seconds",
            "from the broker's acknowledgement of an upload to its result (or dead letter) in the scores view",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.view_records = Counter(
            "crm_gateway_view_records_total", "records read into the scores view", ["kind"], registry=registry
        )
        self.ready = Gauge(
            "crm_gateway_ready", "1 when the broker and the state store are available", registry=registry
        )
        self.model_info = Gauge(
            "crm_gateway_model_info",
            "Model versions predict scores with (value 1)",
            ["model", "version"],
            registry=registry,
        )
        self.model_set_refused = Counter(
            "crm_gateway_model_set_refused_total",
            "Activated model sets predict refused (failed verification or loading); the running set kept answering",
            ["reason"],
            registry=registry,
        )
        for reason in REFUSAL_REASONS:  # exported at zero from the start, as the scorer's
            self.model_set_refused.labels(reason)

    def models_served(self, models: ModelSet) -> None:
        """``crm_gateway_model_info`` names ``models``' versions only."""
        self.model_info.clear()
        for model, version in models.versions().items():
            self.model_info.labels(model, version).set(1)

    def set_refused(self, reason: str) -> None:
        self.model_set_refused.labels(reason).inc()


class RequestMetrics:
    """ASGI middleware: counts every HTTP request by route, method and status, and times it."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before starting its response

        async def record_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        self.metrics.requests.labels(template, method, str(status)).inc()
        self.metrics.latency.labels(template, method).observe(seconds)
        if status >= 400:
            self.metrics.errors.labels(template, str(status)).inc()


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 before the app reads any of it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large(send, self.max_bytes)
            return
        chunks, size = [], 0
        while True:  # read the (bounded) body first: a chunked body has no length to check up front
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Any, max_bytes: int) -> None:
    body = json.dumps({"detail": f"request body larger than {max_bytes} bytes"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
