#!/usr/bin/env bash
# Builds the release Worker into build/ with worker-build, using only the
# tools setup.sh installed. wrangler.toml's [build] command runs this too.
#   --test-hooks  builds the e2e suite's fault-injection variant (the cargo
#                 feature `test-hooks`) into build-test/ instead.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
command -v worker-build >/dev/null || { echo "build: worker-build missing; run: npm run setup" >&2; exit 1; }
out=build
extra=()
if [ "${1:-}" = "--test-hooks" ]; then
  out=build-test
  # The test variant skips wasm-opt (npm's binaryen runs it as wasm under
  # Node: a minute or more per build): only tests run it, and size is the
  # deployed build's concern.
  extra=(--no-opt --features test-hooks)
fi
# worker-build re-runs wasm-opt (about a minute) even when nothing changed:
# skip the whole build when the sources are exactly those of the last build.
sources_hash() {
  find src core/src Cargo.toml Cargo.lock core/Cargo.toml -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}
stamp="$out/.sources-sha256"
# Hashed before building: a source edited during the build makes the next
# build run again instead of being taken for built.
hash="$(sources_hash)"
if [ -f "$out/index.js" ] && [ -f "$out/index_bg.wasm" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$hash" ]; then
  echo "build: sources unchanged since the last build; $out/ is current" >&2
  exit 0
fi
worker-build --release --out-dir "$out" "${extra[@]}"
echo "$hash" > "$stamp"
