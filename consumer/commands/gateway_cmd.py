"""``crm-scorer gateway``: the earlier services' HTTP API in front of the stream (docs/gateway.md).

The broker, topics and models come from the scorer's settings (scorer.yaml, ``CRM_SCORER_*``, and the flags
below that name them); the gateway's own from ``CRM_GATEWAY_*`` and its flags. Prints the address it listens on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from consumer.cli_style import add_log_options
from consumer.gateway.runtime import serve
from consumer.gateway.settings import load_gateway_settings
from consumer.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("gateway", help="HTTP API of the earlier services: uploads, results, predict")
    add = parser.add_argument
    add("--config", type=Path, default=None, help="scorer.yaml (default: configs/scorer.yaml)")
    add("--bootstrap-servers", help="kafka.bootstrap_servers")
    add("--input-topic", help="topics.input: where uploads are published")
    add("--output-topic", help="topics.output: the scores the view reads")
    add("--dlq-topic", help="topics.dlq: the dead letters the view reads")
    add("--host", help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, help="HTTP port (0 = pick a free port)")
    add("--store-path", type=Path, help="the scores view's RocksDB folder")
    add_log_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    scorer = load_settings(
        args.config,
        kafka={"bootstrap_servers": args.bootstrap_servers},
        topics={"input": args.input_topic, "output": args.output_topic, "dlq": args.dlq_topic},
    )
    settings = load_gateway_settings(host=args.host, port=args.port, store_path=args.store_path)
    serve(scorer, settings)
    return 0
