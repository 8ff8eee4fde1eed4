"""The gateway's FastAPI application: the routes, the API key, the limits, the docs page and the probes.

The docs page (``/docs``) loads Swagger UI from the gateway itself (the assets shipped in the
``fastapi-offline`` wheel), so it works on a network with no internet. ``/healthz``, ``/readyz`` and
``/metrics`` are outside the API key: probes and Prometheus do not hold it.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import pydantic
from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consumer.gateway.middleware import BodyLimit, RequestMetrics
from consumer.gateway.routes import Gateway, router
from consumer.gateway.settings import GatewaySettings

ASSETS = "/docs-assets"
_ERRORS_URL = f"https://errors.pydantic.dev/{pydantic.VERSION.rsplit('.', 1)[0]}/v/"
API_KEY_HEADER = "X-API-Key"


def create_app(gw: Gateway, settings: GatewaySettings) -> FastAPI:
    """The application over ``gw`` (real or fake edges alike)."""
    app = FastAPI(
        title="CRM scorer gateway",
        version="1",
        description="The pre-scoring and lead-scoring services' HTTP API, answered by the streaming scorer.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = gw
    app.mount(ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")
    app.include_router(router, dependencies=_key_check(settings))
    _add_operations(app, gw)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=gw.metrics)
    return app


def _key_check(settings: GatewaySettings) -> list[Any]:
    """The API key dependency when a key is configured (the OpenAPI document then names the header)."""
    if settings.api_key_sha256 is None:
        return []
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)

    # a default rather than Annotated: the header object is local, and annotations here are strings; async, as
    # every dependency here: a plain function would be run in a worker thread for every request
    async def require_key(key: str | None = Security(header)) -> None:
        if not settings.key_matches(key):
            raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": API_KEY_HEADER})

    return [Depends(require_key)]


def _add_operations(app: FastAPI, gw: Gateway) -> None:
    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - docs",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        broker, store, view = gw.publisher.broker_ready(), gw.tasks() is not None, gw.view.ready()
        ready = broker and store and view
        gw.metrics.ready.set(1 if ready else 0)
        body = {"ready": ready, "broker": broker, "state_store": store, "scores_view": view}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        gw.metrics.ready.set(1 if gw.ready() else 0)
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, with each error's pydantic documentation link as the earlier service answered it."""
    errors = []
    for error in exc.errors():
        entry = {key: error[key] for key in ("type", "loc", "msg", "input") if key in error}
        entry.setdefault("input", None)
        if "ctx" in error:
            entry["ctx"] = {key: str(value) for key, value in error["ctx"].items()}
        entry["url"] = _ERRORS_URL + str(error.get("type", ""))
        try:
            errors.append(jsonable_encoder(entry))
        except (TypeError, ValueError):  # an input JSON cannot carry (undecodable bytes): its repr, shortened
            errors.append(jsonable_encoder(entry | {"input": repr(entry["input"])[:200]}))
    return JSONResponse({"detail": errors}, status_code=422)
