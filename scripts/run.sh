#!/usr/bin/env bash
# The main job: the DFI inference service on the shipped bundles (models/), default bundle fashion-mnist.
#   set-up (scripts/setup.sh) → Redis (REDIS_URL if given, else an embedded redis-server with AOF in runs/redis)
#   → one metric-job worker (python -m service.worker) → the API (python -m service) on http://127.0.0.1:${PORT:-8000}
# Ctrl-C stops all three. Settings are environment variables: README.md lists them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

mkdir -p runs
if [[ -z ${REDIS_URL:-} ]]; then
  redis_port=${DFI_EMBEDDED_REDIS_PORT:-6390}
  python3 -m service.embedded_redis --port "$redis_port" --dir runs/redis > runs/redis.url &
  pids+=($!)
  for _ in $(seq 100); do [[ -s runs/redis.url ]] && break; sleep 0.1; done
  [[ -s runs/redis.url ]] || { echo "run: the embedded redis-server did not start" >&2; exit 1; }
  export REDIS_URL=$(cat runs/redis.url)
  echo "run: embedded Redis at $REDIS_URL (data in runs/redis)"
fi
python3 -m service.worker &
pids+=($!)
python3 -m service
