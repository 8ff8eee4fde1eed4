#!/usr/bin/env bash
# Installs Prometheus and promtool from Debian's `prometheus` package when either is missing. Idempotent.
# The integration tests call it; so can `make`. Exit codes: 0 installed (or already there), 3 this machine
# cannot install Debian packages (no apt-get, or not root and no password-less sudo), others: apt-get failed.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-prometheus: no apt-get here; install Prometheus (with promtool) yourself" >&2
  exit 3
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "install-prometheus: apt-get needs root (or password-less sudo)" >&2
    exit 3
  fi
fi

# The tests run Prometheus themselves: keep the package's own service from starting (policy-rc.d, exit 101 =
# "action forbidden", the hook Debian's init-script tools ask before they start a service).
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod 755 "$policy"
  created_policy=1
fi
cleanup() { if [ -n "$created_policy" ]; then "${as_root[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
install=("${as_root[@]}" apt-get install -y -q --no-install-recommends prometheus)
if ! "${install[@]}"; then
  # a fresh machine may have no package lists yet
  "${as_root[@]}" apt-get update -q
  "${install[@]}"
fi
command -v promtool >/dev/null 2>&1 && prometheus --version 2>&1 | head -n 1
