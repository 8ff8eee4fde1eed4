#!/usr/bin/env bash
# The gateway's docs page rendered by headless Chromium in a network namespace that has only a loopback
# interface: if the page needed anything from the internet, it would render blank. Needs root (unshare -n) and
# Debian's chromium (apt-get install -y chromium). Usage: scripts/gateway_docs_screenshot.sh [out.png]
set -euo pipefail
out="${1:-docs/gateway-docs.png}"
python="${PYTHON:-.venv/bin/python}"
store="$(mktemp -d)"
profile="$(mktemp -d)"
trap 'rm -rf "$store" "$profile"' EXIT
unshare -n bash -euo pipefail -c '
  ip link set lo up
  # no broker is reachable here: the docs page needs none (the gateway is not ready, and says so on /readyz)
  "$0" -m consumer.commands.cli gateway --bootstrap-servers 127.0.0.1:9 --port 8765 --store-path "$1" \
      --log-level ERROR > /dev/null 2>&1 &
  gateway=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:8765/healthz > /dev/null && break; sleep 0.2; done
  if ip route get 1.1.1.1 > /dev/null 2>&1; then echo "the namespace has a route out" >&2; exit 1; fi
  chromium --headless --no-sandbox --disable-gpu --user-data-dir="$2" --window-size=1280,1900 \
      --virtual-time-budget=8000 --screenshot="$3" \
      "http://127.0.0.1:8765/docs#/default/upload_features_upload_features_post" 2> /dev/null
  kill "$gateway"
' "$python" "$store" "$profile" "$out"
echo "wrote $out"
