#!/usr/bin/env bash
# `npm run dev`: set up, build, and serve the Worker at http://127.0.0.1:8787
# under wrangler dev (workerd), with Durable Object storage persisted in
# .wrangler/state so that data survives a restart.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
bash scripts/setup.sh
if [ ! -f .dev.vars ]; then
  cp .dev.vars.example .dev.vars
  echo "dev: created .dev.vars from .dev.vars.example; edit it to set your own secrets" >&2
fi
exec wrangler dev --local --ip 127.0.0.1 --port "${PORT:-8787}" --persist-to .wrangler/state "$@"
