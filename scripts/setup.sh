#!/usr/bin/env bash
# Brings everything the project needs onto this machine, idempotently:
# the wasm32 target, wasm-bindgen-cli (the exact version in Cargo.lock),
# worker-build, and the npm dependencies (wrangler pinned to 4.86.0).
# Nothing is downloaded from GitHub. A second run only checks, in seconds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

say() { printf 'setup: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs), then run this again"
command -v node >/dev/null || die "node not found: install Node.js 20 or newer, then run this again"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "Node.js $(node --version) is too old: wrangler 4.86 needs 20.3 or newer"

# 1. The wasm32 target.
has_wasm_std() {
  local dir
  dir="$(rustc --target wasm32-unknown-unknown --print target-libdir 2>/dev/null)" || return 1
  compgen -G "$dir/libstd-*.rlib" >/dev/null
}
if ! has_wasm_std; then
  command -v rustup >/dev/null || die "the wasm32-unknown-unknown target is missing and rustup is not available to add it"
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
  has_wasm_std || die "rustup added wasm32-unknown-unknown but its std is still missing"
fi

# 1b. rustfmt and clippy, for the lint gates of `npm test`.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  command -v rustup >/dev/null || die "rustfmt or clippy is missing and rustup is not available to add them"
  say "adding the rustfmt and clippy components"
  rustup component add rustfmt clippy
fi

# 2 and 3. wasm-bindgen-cli and worker-build (scripts/setup-tools.sh);
# `npm test` builds them in the background instead (--tools-later), while
# its first layers, which need neither, run.
if [ "${1:-}" != "--tools-later" ]; then
  bash scripts/setup-tools.sh
fi

# 4. npm dependencies, reinstalled only when package-lock.json changed.
stamp="node_modules/.bw-ledger-setup"
lock_sum="$(cksum package-lock.json | awk '{print $1}')"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ] || [ ! -x node_modules/.bin/wrangler ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund
  echo "$lock_sum" > "$stamp"
fi

[ -x "$WASM_OPT_BIN" ] || die "wasm-opt is missing from node_modules (package binaryen)"

# 5. Chromium for the console's browser test (Debian's package; playwright
#    never downloads a browser of its own).
if [ -z "${CHROMIUM_PATH:-}" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing Debian's chromium for the browser test"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    say "note: no Chromium found; the console's browser test needs one (apt-get install chromium, or set CHROMIUM_PATH)"
  fi
fi
