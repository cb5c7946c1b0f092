#!/usr/bin/env bash
# Time from process start to the first `/ready` = 200, and resident memory when idle.
# Usage: scripts/bench/startup.sh [runs]   (env is passed through: set DATABASE_URL/REDIS_URL
# for the PostgreSQL + Redis mode; without them it measures the embedded default).
# Needs a release build: cargo build --release -p preflight
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-10}"
bin="target/release/preflight"
[ -x "$bin" ] || { echo "build first: cargo build --release -p preflight" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
results=()
for i in $(seq 1 "$runs"); do
  dir=$(mktemp -d)
  start=$(date +%s%N)
  PREFLIGHT_DATA_DIR="$dir" API_HOST=127.0.0.1 API_PORT="$port" LOG_LEVEL=warn "$bin" serve >"$dir/log" 2>&1 &
  pid=$!
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ready")" = "200" ]; do sleep 0.005; done
  end=$(date +%s%N)
  results+=($(( (end - start) / 1000000 )))
  sleep 1
  rss=$(ps -o rss= -p "$pid" | tr -d ' ')
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$dir"
done
sorted=$(printf '%s\n' "${results[@]}" | sort -n)
echo "start-to-ready ms (sorted, $runs runs): $(echo $sorted)"
echo "median ms: $(echo "$sorted" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
echo "idle RSS of the last run: ${rss} KiB"
