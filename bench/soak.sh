#!/usr/bin/env bash
# The soak: the full pipeline with its audit file under a steady, moderate load for 20 minutes,
# sampling memory, file descriptors, threads and runtime tasks every 10 s (bench/soak.py); writes
# bench/results/soak.{json,png} and fails when any of them keeps growing after the warm-up.
#
#   bash bench/soak.sh                    # 20 minutes, 2 of warm-up
#   SOAK_SECONDS=300 bash bench/soak.sh   # a shorter look
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
packages=()
command -v wrk >/dev/null 2>&1 || packages+=(wrk)
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=(python3-venv)
if [ "${#packages[@]}" -gt 0 ]; then
  echo "installing ${packages[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${packages[@]}"
fi

# The chart renderer (the same environment as bench/run.sh).
venv=target/bench/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c 'import matplotlib' >/dev/null 2>&1; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'matplotlib>=3.8,<4'
fi

cargo build --release -p warden-gateway --bin warden --example bench_upstream --example bench_cert

exec "$venv/bin/python" bench/soak.py "$@"
