"""Assembling the gateway from the scorer's settings and its own, and serving it with uvicorn.

The broker, credentials, topics and models are the scorer's (``consumer.settings.Settings``): the producer and
the view's consumer connect with its shared connection model (``consumer.connection.KafkaConnection``), and
the lead scorer is the stream's engine (``consumer.service``) on the same verified model set: the store's active
set when ``models.store_dir`` is set, then every activation on the control topic, followed by the scorer's own
``ModelFollower``. Nothing here connects before ``serve`` starts.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from consumer.gateway.app import create_app
from consumer.gateway.lead import LeadScorer
from consumer.gateway.middleware import GatewayMetrics
from consumer.gateway.publisher import KafkaPublisher, producer_config
from consumer.gateway.routes import Gateway
from consumer.gateway.settings import GatewaySettings
from consumer.gateway.store import TaskStore, ViewBatch
from consumer.gateway.view import ScoresView, view_consumer_config
from consumer.kafka.model_control import KafkaControlFeed, ModelFollower, control_consumer_conf
from consumer.service import build_offline_engine, registry_source
from consumer.settings import Settings
from models.store import ModelStore
from schemas import ResultDecoder, SingleObjectEncoder, load_catalog
from schemas.errors import ConfigError

log = logging.getLogger(__name__)


class StoreOpener:
    """Opens the state store, retrying every second while it cannot (another process holds its lock)."""

    def __init__(self, path: Path, on_open: Callable[[TaskStore], None]) -> None:
        self._path = path
        self._on_open = on_open
        self._store: TaskStore | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._open, name="gateway-store-opener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def get(self) -> TaskStore | None:
        return self._store

    def _open(self) -> None:
        while not self._stop.is_set():
            try:
                store = TaskStore(self._path)
            except OSError as exc:
                log.warning("%s; retrying", exc)
                self._stop.wait(1.0)
                continue
            self._on_open(store)
            self._store = store
            return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._store is not None:
            self._store.close()
            self._store = None


class _ViewSlot:
    """The scores view once the store is open (not ready before)."""

    view: ScoresView | None = None

    def ready(self) -> bool:
        return self.view is not None and self.view.ready()


def _view_counter(metrics: GatewayMetrics) -> Callable[[ViewBatch, int, dict[str, int]], None]:
    """What the view tells the metrics after each poll."""

    def count(batch: ViewBatch, skipped: int, answered: dict[str, int]) -> None:
        now_ms = time.time() * 1000
        for accepted_ms in answered.values():
            metrics.upload_to_answer.observe(max(0.0, now_ms - accepted_ms) / 1000)
        metrics.view_records.labels("result").inc(len(batch.results))
        metrics.view_records.labels("dead_letter").inc(len(batch.dead_letters))
        metrics.view_records.labels("skipped").inc(skipped)

    return count


def build_gateway(scorer: Settings, settings: GatewaySettings, registry: CollectorRegistry) -> tuple[Gateway, Any]:
    """The gateway's edges, not started: returns it and a callable that starts them (and returns a stopper)."""
    catalog = load_catalog()
    metrics = GatewayMetrics(registry)
    encode = SingleObjectEncoder(catalog.application_event_latest)
    results = ResultDecoder(catalog, registry_source(scorer))
    engine = build_offline_engine(scorer)
    decode = ResultDecoder(catalog).decode
    leads = LeadScorer(engine, encode, decode, metrics.models_served, metrics.set_refused)
    publisher = KafkaPublisher(
        producer_config(scorer.kafka, settings.publish_timeout_s),
        scorer.topics.input,
        settings.readiness_interval_s,
    )
    slot = _ViewSlot()

    def start_view(store: TaskStore) -> None:
        conf = view_consumer_config(scorer.kafka, settings.view_group_id)
        topics = (scorer.topics.output, scorer.topics.dlq)
        slot.view = ScoresView(conf, topics, store, results.decode, _view_counter(metrics))
        slot.view.start()

    opener = StoreOpener(settings.store_path, start_view)
    gw = Gateway(publisher, opener.get, slot, leads, encode, metrics)

    def start() -> Callable[[], None]:
        opener.start()
        follower = model_follower(scorer, settings, leads.version, metrics.set_refused)
        leads.follow(follower.start() if follower is not None else None)

        def stop() -> None:
            if slot.view is not None:
                slot.view.close()
            opener.close()
            publisher.close()
            if follower is not None:
                follower.close()
            leads.close()

        return stop

    return gw, start


def model_follower(
    scorer: Settings, settings: GatewaySettings, serving: str, refused: Callable[[str], None]
) -> ModelFollower | None:
    """The scorer's follower of model-set activations, for predict (None without a model store, as the scorer)."""
    models = scorer.models
    if models.store_dir is None:
        return None
    conf = control_consumer_conf(view_consumer_config(scorer.kafka, settings.view_group_id), settings.view_group_id)
    conf["client.id"] = f"{scorer.kafka.client_id or 'crm-scorer'}-gateway-models"
    topic, channel = models.control_topic, models.channel
    log.info("predict follows model-set activations on %s (channel %s), serving %s", topic, channel, serving)
    feed = KafkaControlFeed(conf, topic, channel)
    return ModelFollower(feed, ModelStore(models.store_dir), models, serving, refused)


def serve(scorer: Settings, settings: GatewaySettings) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn's own handling): requests in flight finish, then the edges close.

    The socket is bound first, so the line naming the port (``port`` 0 picks a free one) is printed before the
    first request can arrive. Raises ConfigError when the address cannot be listened on (in use, not ours)."""
    sock = _listen(settings.host, settings.port)
    gw, start = build_gateway(scorer, settings, CollectorRegistry())

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = start()
        try:
            yield
        finally:
            stop()

    app = create_app(gw, settings)
    app.router.lifespan_context = lifespan
    # one write, newline included: print() writes the text and its end apart, and a log line from another thread
    # landing between them glued its timestamp onto the port
    sys.stdout.write(f"gateway: listening on http://{settings.host}:{sock.getsockname()[1]}\n")
    sys.stdout.flush()
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=10)
    uvicorn.Server(config).run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"port: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them, never refused
    return sock
