# syntax=docker/dockerfile:1
#
# Two images from one file:
#   docker build -t crm-scorer:0.1.0 .                           the scorer (the default, last stage)
#   docker build -t crm-scorer-tools:0.1.0 --target tools .      crm-producer: synthetic traffic, tail, replay-dlq
# Both carry only the runtime dependencies (`pip install .`, no local-broker or test extras), run as a non-root
# user, and hold the trained models, scorer.yaml and monitor.yaml under /app; mount over /app/models/artifacts or
# /app/configs/scorer.yaml to serve other ones without rebuilding.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# README.md is the package's long description: the build needs it.
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY models models
COPY consumer consumer
COPY producer_tools producer_tools
# xgboost's wheel pulls in NCCL (~200 MB) for multi-GPU training; it is loaded only on demand, never on CPU.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip \
 && /opt/venv/bin/pip install . \
 && /opt/venv/bin/pip uninstall --yes nvidia-nccl-cu12 \
 && /opt/venv/bin/python -c "import consumer.commands.cli, producer_tools.commands.cli, xgboost, sklearn, confluent_kafka"

FROM ${PYTHON_IMAGE} AS runtime
# NUMBA_CACHE_DIR: the compiled tree walk (models/tree_walk.py) is cached where the non-root user may write.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CRM_SCORER_MODELS__ARTIFACTS_DIR=/app/models/artifacts \
    NUMBA_CACHE_DIR=/tmp/numba-cache
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin scorer
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY configs/scorer.yaml configs/scorer.yaml
# crm-scorer monitor --config /app/configs/monitor.yaml (Kubernetes runs the monitor from this image).
COPY configs/monitor.yaml configs/monitor.yaml
COPY models/artifacts models/artifacts
USER scorer

FROM runtime AS tools
ENTRYPOINT ["crm-producer"]
CMD ["--help"]

FROM runtime AS scorer
EXPOSE 9400
# /healthz answers 200 while every worker's loop goes round; slim images have no curl, Python has urllib.
# It follows metrics.port's default: a scorer moved to another port needs this probe moved with it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:9400/healthz', timeout=4)"]
# Exec form: the scorer is PID 1 and gets SIGTERM itself (finish the batch, flush, commit, leave the group).
# The config comes from CRM_SCORER_CONFIG (read by `run` when --config is absent), not from CMD: arguments given
# to `docker run <image> --workers 2` replace CMD, and would drop the config with it.
ENV CRM_SCORER_CONFIG=/app/configs/scorer.yaml
ENTRYPOINT ["crm-scorer", "run"]
