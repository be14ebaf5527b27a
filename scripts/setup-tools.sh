#!/usr/bin/env bash
# The two build tools, compiled from crates.io once per machine into
# BW_LEDGER_TOOLS (~/.cache/bw-ledger/tools): wasm-bindgen-cli, at exactly
# the version in Cargo.lock, and worker-build. Idempotent: a second run
# only checks their versions. setup.sh runs it; `npm test` runs it in the
# background while the layers that need neither run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

say() { printf 'setup: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# 2. wasm-bindgen-cli, at exactly the version Cargo.lock resolved.
[ -n "$WASM_BINDGEN_VERSION" ] || die "could not read the wasm-bindgen version from Cargo.lock"
# `wasm-bindgen --version` prints "wasm-bindgen X", `worker-build --version` just "X".
installed_version() { "$1" --version 2>/dev/null | awk '{print $NF}'; }
# Both tools are built once per machine, in one target directory (they
# share dependencies), unoptimized: their own speed hardly matters (a build
# of the Worker takes a second longer), and a full release build of both
# took about 14 minutes on 2 cores, this about 4
# (docs/decisions/0008-first-run.md has the figures).
tool_install() {
  CARGO_TARGET_DIR="$TOOLS_DIR/target" \
  CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256 \
  CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_INCREMENTAL=false \
    cargo install "$@"
}
# `setup-tools.sh wasm-bindgen` or `setup-tools.sh worker-build` installs
# only that one; no argument, both.
want() { [ -z "${1:-}" ] || [ "$1" = "$2" ]; }
if want "${1:-}" wasm-bindgen && [ "$(installed_version "$WASM_BINDGEN_BIN")" != "$WASM_BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION into $WASM_BINDGEN_ROOT (about 2 minutes, once)"
  # --locked can fail when a locked dependency has left the index; retry unlocked.
  tool_install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION" --locked --root "$WASM_BINDGEN_ROOT" \
    || tool_install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION" --root "$WASM_BINDGEN_ROOT"
fi

# 3. worker-build.
if want "${1:-}" worker-build && [ "$(installed_version "$WORKER_BUILD_ROOT/bin/worker-build")" != "$WORKER_BUILD_VERSION" ]; then
  say "installing worker-build $WORKER_BUILD_VERSION into $WORKER_BUILD_ROOT (about 2 minutes, once)"
  tool_install worker-build --version "=$WORKER_BUILD_VERSION" --locked --root "$WORKER_BUILD_ROOT"
fi
# Both tools are installed; their build directory is not needed again.
if [ -z "${1:-}" ] || [ "$1" = worker-build ]; then
  rm -rf "$TOOLS_DIR/target"
fi
