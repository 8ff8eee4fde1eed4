"""The scorer's process host: the life of one worker (``worker``) and the supervision of ``--workers N``
worker processes (``supervisor``), above the Kafka edge that each worker runs."""
