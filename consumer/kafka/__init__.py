"""The Kafka edge: the run loop of a consumer-group member, the two delivery guarantees, the publisher and the
host that runs several workers. The only place (with ``settings``) that speaks librdkafka, through the small
``Source`` / ``Sink`` protocols of ``clients``; ``memory`` is an in-memory Kafka behind the same protocols."""
