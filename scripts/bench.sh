#!/usr/bin/env bash
# `npm run bench`: set up, build the release Worker, the empty Rust Worker
# and the load generator, then run bench/run.mjs under plain workerd.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
bash scripts/setup.sh
bash scripts/build.sh
# The scale run's rollout uses the test build, whose shard layouts start
# seconds after a change rather than ten minutes (TEST_SHARD_LEAD_MS).
if [ "${BENCH_ONLY:-}" = scale ]; then bash scripts/build.sh --test-hooks; fi
(cd bench/empty-rust && worker-build --release)
cargo build --release -q -p bw-ledger-loadgen
node bench/run.mjs
