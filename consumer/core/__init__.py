"""The pure scoring core: bytes in, result bytes and dead-letter verdicts out.

Decoding, validation, features, every model, reasons, dedup and the result writer. It imports no Kafka client,
no HTTP and no Prometheus (``make lint`` checks it), so it is tested and benchmarked without a broker and serves
the offline command as it serves the stream.
"""
