#!/usr/bin/env bash
# Supply-chain checks: the dependency tree against deny.toml (licenses, banned crates, duplicate
# versions reported, registries and git sources), and, with --sbom, a CycloneDX SBOM of the
# gateway in target/sbom/. The tools are built from crates.io into target/tools on first use.
#
#   bash scripts/supply-chain.sh          # cargo deny check bans licenses sources
#   bash scripts/supply-chain.sh --sbom   # also writes target/sbom/warden-gateway.cdx.json
#
# Advisories need the RustSec database (fetched from GitHub): where it is reachable, run
# `target/tools/bin/cargo-deny deny check advisories` (or `cargo audit`).
set -euo pipefail
cd "$(dirname "$0")/.."

tools="$PWD/target/tools"
install() {
  local binary=$1 crate=$2 version=$3
  if [ ! -x "$tools/bin/$binary" ]; then
    echo "building $crate $version (once)"
    cargo install --quiet --locked --root "$tools" "$crate" --version "$version"
  fi
}

install cargo-deny cargo-deny 0.20.2
"$tools/bin/cargo-deny" deny --log-level error check bans licenses sources

if [ "${1:-}" = "--sbom" ]; then
  install cargo-cyclonedx cargo-cyclonedx "${CYCLONEDX_VERSION:-0.5.9}"
  mkdir -p target/sbom
  "$tools/bin/cargo-cyclonedx" cyclonedx --format json --manifest-path crates/warden-gateway/Cargo.toml
  # It writes one file beside each crate's manifest (the gateway's is the one to ship).
  find crates -maxdepth 2 -name '*.cdx.json' -exec mv {} target/sbom/ \;
  echo "SBOM: target/sbom/warden-gateway.cdx.json (and the library's, warden.cdx.json)"
fi
