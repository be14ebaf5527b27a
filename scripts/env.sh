# Sourced by the other scripts: where the project's tools live and the
# environment worker-build and wrangler need. Prints nothing, changes nothing.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Tools are cached outside the checkout so that fresh clones (CI) reuse them.
TOOLS_DIR="${BW_LEDGER_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/bw-ledger/tools}"
WORKER_BUILD_VERSION="0.8.7"
# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock")"

WORKER_BUILD_ROOT="$TOOLS_DIR/worker-build-$WORKER_BUILD_VERSION"
WASM_BINDGEN_ROOT="$TOOLS_DIR/wasm-bindgen-$WASM_BINDGEN_VERSION"

if [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi
export PATH="$WORKER_BUILD_ROOT/bin:$WASM_BINDGEN_ROOT/bin:$ROOT/node_modules/.bin:$PATH"
# worker-build looks for each tool in these variables before it tries to download.
export WASM_BINDGEN_BIN="$WASM_BINDGEN_ROOT/bin/wasm-bindgen"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export WRANGLER_SEND_METRICS=false
