#!/usr/bin/env bash
# The load benchmark, one command: installs the load generator and the peers where missing,
# builds Warden and the benchmark upstream in release mode, then runs every scenario on loopback
# (bench/run.py) and writes bench/results/latest.{json,md,png}.
#
#   bash bench/run.sh                      # defaults: 64 connections, 3 × 8 s per scenario
#   BENCH_DURATION=15 BENCH_REPS=5 bash bench/run.sh
#   bash bench/run.sh --only direct,warden-full   # a subset of scenarios
#   BENCH_ROUNDS=3 bash bench/run.sh --only warden-full,warden-full-audit   # alternating A/B
#   BENCH_WARDEN=path/to/other/warden bash bench/run.sh ...   # another build of Warden
#
# Where there are at least 2 cores, the servers run on the upper half of them and the load
# generator (wrk) and the benchmark upstream on the lower half (BENCH_PIN=0: not pinned).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"

# System packages: the load generator (wrk), nginx, redis-server, Node.js for the Express peer.
packages=()
command -v wrk >/dev/null 2>&1 || packages+=(wrk)
command -v taskset >/dev/null 2>&1 || packages+=(util-linux)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || packages+=(nginx-light)
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
if ! command -v python3 >/dev/null 2>&1; then
  packages+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  packages+=(python3-venv)
fi
command -v node >/dev/null 2>&1 || packages+=(nodejs npm)
if [ "${#packages[@]}" -gt 0 ]; then
  echo "installing ${packages[*]}"
  $sudo_cmd apt-get update -qq
  # Debian starts services on install where it can; the benchmark runs its own instances.
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${packages[@]}"
fi

# The FastAPI peer and the chart renderer, in a virtual environment of their own.
venv=target/bench/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import fastapi, uvicorn, jwt, slowapi, matplotlib' >/dev/null 2>&1; then
  echo "installing the FastAPI peer and matplotlib"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r bench/peers/fastapi/requirements.txt 'matplotlib>=3.8,<4'
fi

# The Express peer (exact versions in package.json; no lock file is kept).
if [ ! -d bench/peers/express/node_modules/http-proxy-middleware ]; then
  echo "installing the Express peer"
  (cd bench/peers/express && npm install --silent --no-audit --no-fund --no-package-lock)
fi

cargo build --release -p warden-gateway --bin warden --example bench_upstream --example bench_cert

exec "$venv/bin/python" bench/run.py "$@"
