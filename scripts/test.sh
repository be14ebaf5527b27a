#!/usr/bin/env bash
# `npm test`: every test layer, after setting up and building.
#   0. the house rules: rustfmt, clippy with -D warnings, no import circle,
#      no function over 80 lines (scripts/check-structure.mjs)
#   1. the domain core natively (cargo test)
#   2. the same core on wasm32 under Node (wasm-bindgen-test)
#   3. the built Worker end to end under real workerd (node --test)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
bash scripts/setup.sh --tools-later
# The build tools compile (once per machine) while the layers that need
# neither run: wasm-bindgen first (the wasm32 tests need its test runner),
# then worker-build (the Worker builds need it).
tools_log="$(mktemp)"
wasm_bindgen_ready="$tools_log.wasm-bindgen"
{ bash scripts/setup-tools.sh wasm-bindgen && touch "$wasm_bindgen_ready" && bash scripts/setup-tools.sh worker-build; } \
  >"$tools_log" 2>&1 &
tools_pid=$!
tools_failed() {
  cat "$tools_log" >&2
  echo "setup: the build tools could not be installed" >&2
  exit 1
}
wait_for_wasm_bindgen() {
  while [ ! -f "$wasm_bindgen_ready" ]; do
    kill -0 "$tools_pid" 2>/dev/null || { wait "$tools_pid" || tools_failed; [ -f "$wasm_bindgen_ready" ] || tools_failed; }
    sleep 1
  done
}
wait_for_tools() {
  wait "$tools_pid" || tools_failed
  cat "$tools_log" >&2
}

echo "== house rules: cargo fmt --check, clippy -D warnings, no import circle, no function over 80 lines"
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings
node --test tests/tools/
node scripts/check-structure.mjs

echo "== core, native: cargo test"
cargo test -p bw-ledger-core -- --skip fuzz_
echo "== core, native: fuzzing the callback parser and the send validator (FUZZ_CASES per strategy, default 2000)"
cargo test -p bw-ledger-core --test fuzz -- --nocapture

wait_for_wasm_bindgen
echo "== core, wasm32 under Node: wasm-bindgen-test"
cargo test -p bw-ledger-core --target wasm32-unknown-unknown

wait_for_tools
echo "== Worker build, and its test-hooks variant for fault injection (build-test/)"
bash scripts/build.sh
bash scripts/build.sh --test-hooks

echo "== end to end under workerd: node --test"
# A glob, not a directory: Node 21 and later refuse a directory here.
# Every Worker of the run logs into one directory; afterwards no secret may
# appear in any of those logs (tests/log-secrets.test.mjs).
export E2E_RUN_DIR="$ROOT/tests/artifacts/run-logs"
rm -rf "$E2E_RUN_DIR"
# Two test files at a time (E2E_CONCURRENCY): each starts its own runtimes
# on free ports with their own storage, and most of a file's time is spent
# waiting (retry schedules, timers), so two overlap on a 2-core machine.
# The crash-restart file runs alone afterwards: it needs the machine's
# throughput to get enough callbacks through between its kills.
alone=(tests/e2e/restart.test.mjs)
together=()
for f in tests/e2e/*.test.mjs; do
  [[ " ${alone[*]} " == *" $f "* ]] || together+=("$f")
done
node --test --test-concurrency="${E2E_CONCURRENCY:-2}" "${together[@]}"
node --test --test-concurrency=1 "${alone[@]}"
echo "== the whole run's logs hold no secret"
node --test tests/log-secrets.test.mjs
