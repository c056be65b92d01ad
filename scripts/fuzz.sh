#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer, nightly toolchain; cargo-fuzz is built from crates.io into
# target/tools on first use). Targets and their seed corpora are in fuzz/.
#
#   bash scripts/fuzz.sh smoke              # every target for a few seconds from its corpus (CI;
#                                           # an unoptimized build, quicker to make)
#   bash scripts/fuzz.sh run TARGET [SECS]  # one target, 600 s by default, AddressSanitizer on
#                                           # (FUZZ_SANITIZER=none: optimized, no sanitizer)
#   bash scripts/fuzz.sh list
#
# New inputs go to target/fuzz-corpus/TARGET, never into the committed corpus; a crash is
# written to fuzz/artifacts/TARGET/ (minimize it, fix it, and add it to fuzz/corpus/TARGET).
set -euo pipefail
cd "$(dirname "$0")/.."

tools="$PWD/target/tools"
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
  echo "building cargo-fuzz (once)"
  cargo install --quiet --locked --root "$tools" cargo-fuzz --version 0.13.2
fi
export PATH="$tools/bin:$PATH"
fuzz() { (cd fuzz && cargo +nightly fuzz "$@"); }

targets() { fuzz list; }

run() {
  local target=$1 seconds=$2 sanitizer=$3
  shift 3
  local scratch="$PWD/target/fuzz-corpus/$target"
  mkdir -p "$scratch"
  fuzz run -s "$sanitizer" "$@" "$target" "$scratch" "corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
}

case "${1:-smoke}" in
  list) targets ;;
  smoke)
    # Without a sanitizer or optimizations: the build is the long part, and the point is that
    # every target builds, reads its corpus and runs.
    fuzz build -s none --dev
    log=target/fuzz-smoke.log
    for target in $(targets); do
      if ! run "$target" "${FUZZ_SMOKE_SECONDS:-5}" none --dev > "$log" 2>&1; then
        cat "$log"
        echo "fuzz target $target failed"
        exit 1
      fi
      echo "$target: $(grep -m1 -o 'number_of_executed_units: [0-9]*' "$log" || echo 'no stats')"
    done
    ;;
  run) run "${2:?target}" "${3:-600}" "${FUZZ_SANITIZER:-address}" ;;
  *) echo "usage: $0 smoke | run TARGET [SECONDS] | list" >&2; exit 2 ;;
esac
