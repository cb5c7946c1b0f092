#!/usr/bin/env bash
# Sequential latency (p50/p95/p99) of every analytics route and /v1/usage, with the ranges
# docs/BENCHMARKS.md reports: the default (last 30 days), a full 366 days (interval=day for
# the timeseries) and 7 days hourly. One request at a time for DURATION seconds a line.
# Usage: scripts/bench/analytics_routes.sh URL KEY   (DURATION default 15)
# Needs: cargo build --release -p preflight --example loadgen
set -euo pipefail
cd "$(dirname "$0")/../.."
url="$1" key="$2" duration="${DURATION:-15}"
loadgen="${CARGO_TARGET_DIR:-target}/release/examples/loadgen"
to=$(date -u +%Y-%m-%dT%H:00:00Z)
year="from_ts=$(date -u -d '366 days ago' +%Y-%m-%dT%H:00:00Z)&to_ts=$to"
week="from_ts=$(date -u -d '7 days ago' +%Y-%m-%dT%H:00:00Z)&to_ts=$to"
for path in \
  /v1/analytics/summary "/v1/analytics/summary?$year" \
  /v1/analytics/timeseries "/v1/analytics/timeseries?$year&interval=day" "/v1/analytics/timeseries?$week&interval=hour" \
  /v1/analytics/extractors "/v1/analytics/extractors?$year" \
  /v1/analytics/templates "/v1/analytics/templates?$year" \
  /v1/analytics/calibration "/v1/analytics/calibration?$year" \
  /v1/usage; do
  "$loadgen" --url "$url" --key "$key" --mode get --path "$path" --concurrency 1 --duration "$duration"
done
