#!/usr/bin/env bash
# `npm run bench`: set up, build the release Worker, the empty Rust Worker
# and the load generator, then run bench/run.mjs under plain workerd.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
bash scripts/setup.sh
bash scripts/build.sh
(cd bench/empty-rust && worker-build --release)
cargo build --release -q -p bw-ledger-loadgen
node bench/run.mjs
