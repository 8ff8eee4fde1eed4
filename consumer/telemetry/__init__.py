"""What the scorer tells its operators: Prometheus metrics, drift, consumer lag, health and readiness, logs."""
