#!/usr/bin/env bash
# Builds the release Worker into build/ with worker-build, using only the
# tools setup.sh installed. wrangler.toml's [build] command runs this too.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
command -v worker-build >/dev/null || { echo "build: worker-build missing; run: npm run setup" >&2; exit 1; }
# worker-build re-runs wasm-opt (about a minute) even when nothing changed:
# skip the whole build when the sources are exactly those of the last build.
sources_hash() {
  find src core/src Cargo.toml Cargo.lock core/Cargo.toml -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}
stamp=build/.sources-sha256
if [ -f build/index.js ] && [ -f build/index_bg.wasm ] && [ "$(cat "$stamp" 2>/dev/null)" = "$(sources_hash)" ]; then
  echo "build: sources unchanged since the last build; build/ is current" >&2
  exit 0
fi
worker-build --release
sources_hash > "$stamp"
