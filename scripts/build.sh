#!/usr/bin/env bash
# Builds the release Worker into build/ with worker-build, using only the
# tools setup.sh installed. wrangler.toml's [build] command runs this too.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
command -v worker-build >/dev/null || { echo "build: worker-build missing; run: npm run setup" >&2; exit 1; }
worker-build --release
