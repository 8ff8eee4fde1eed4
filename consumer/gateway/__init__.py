"""``crm-scorer gateway``: the earlier pre-scoring and lead-scoring services' HTTP API, in front of the stream.

Uploads become application events on the input topic (answered once the broker acknowledged them); results
come from a local view of the scores and dead-letter topics; lead scores from the stream's engine in-process.
"""
