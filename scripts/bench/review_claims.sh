#!/usr/bin/env bash
# Review-claim throughput (docs/BENCHMARKS.md, "Review-claim throughput"): a fresh database,
# a tenant without templates and its key, the queue filled through the API (N documents of
# unseen layouts, each NEW and so a review item), then C reviewers claiming the next item and
# resolving it until the queue is empty (`loadgen --mode review`). Afterwards the store is
# checked: every item resolved exactly once, each with its feedback.
#
# Usage: scripts/bench/review_claims.sh CONCURRENCY [FILL]   (FILL default 20 000)
#   BACKEND  postgres (PostgreSQL + Redis, default) or embedded (SQLite, in-process limiter)
#   DB       the PostgreSQL database to (re)create (default pfreview; dropped afterwards
#            unless KEEP=1)
#   PGHOST / PGPORT / PGUSER   the server (default 127.0.0.1 / 5432 / postgres, trust auth)
#   PORT     where the server listens (default 18700)
# Needs: cargo build --release -p preflight && cargo build --release -p preflight --example loadgen
#
# While the reviewers run, it samples the load average and (PostgreSQL) what the server's
# busy sessions are doing (running, waiting on a lock or I/O, idle in a transaction), four times a
# second, and prints both summaries after the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
concurrency="${1:?usage: review_claims.sh CONCURRENCY [FILL]}"
fill="${2:-20000}"
backend="${BACKEND:-postgres}"
db="${DB:-pfreview}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
port="${PORT:-18700}"
target="${CARGO_TARGET_DIR:-target}"
bin=$target/release/preflight
loadgen=$target/release/examples/loadgen
for b in "$bin" "$loadgen"; do
  [ -x "$b" ] || { echo "build first: cargo build --release -p preflight && cargo build --release -p preflight --example loadgen" >&2; exit 1; }
done

data=$(mktemp -d)
env=(PATH="$PATH" PREFLIGHT_DATA_DIR="$data" LOG_LEVEL=warn)
case "$backend" in
  postgres)
    dropdb --if-exists "$db"
    createdb "$db"
    env+=(DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$db" REDIS_URL=redis://127.0.0.1:6379)
    sql() { psql -X -q -tA -F ' ' -v ON_ERROR_STOP=1 -d "$db"; } ;;
  embedded)
    sql() { sqlite3 -separator ' ' "$data/preflight.db"; } ;;
  *) echo "BACKEND is postgres or embedded" >&2; exit 1 ;;
esac
env -i "${env[@]}" "$bin" migrate >/dev/null
tenant=$(env -i "${env[@]}" "$bin" admin create-tenant --name "Review bench" 2>/dev/null)
key=$(env -i "${env[@]}" "$bin" admin create-key --tenant "$tenant" --name bench --scopes evaluate,read 2>/dev/null)

env -i "${env[@]}" API_HOST=127.0.0.1 API_PORT="$port" RATE_LIMIT_PER_MINUTE=100000000 \
  "$bin" serve >"$data/serve.log" 2>&1 &
server=$!
sampler=
cleanup() {
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  if [ "$backend" = postgres ] && [ "${KEEP:-0}" != 1 ]; then dropdb --if-exists "$db"; fi
  rm -rf "$data"
}
trap cleanup EXIT
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ready")" = "200" ]; do sleep 0.05; done
url="http://127.0.0.1:$port"

"$loadgen" --url "$url" --key "$key" --mode review --fill "$fill" --concurrency 4 --duration 0
echo "queue before: $(echo "SELECT status, COUNT(*) FROM review_items GROUP BY status;" | sql)"

# Four times a second: the 1-minute load average, and what each active server session waits on.
(
  while :; do
    echo "load $(cut -d' ' -f1 /proc/loadavg)"
    if [ "$backend" = postgres ]; then
      psql -X -q -tA -F ' ' -d "$db" -c "SELECT 'wait', CASE state WHEN 'active'
          THEN COALESCE(wait_event_type || ':' || wait_event, 'running') ELSE replace(state, ' ', '_') END,
        COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
        AND backend_type = 'client backend' AND state <> 'idle' GROUP BY 2" 2>/dev/null || true
    fi
    sleep 0.25
  done
) >"$data/samples" &
sampler=$!
"$loadgen" --url "$url" --key "$key" --mode review --concurrency "$concurrency" --duration 600 | tee "$data/result"
kill "$sampler"; wait "$sampler" 2>/dev/null || true; sampler=

awk '$1 == "load" { n++; s += $2; if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2 }
     END { if (n) printf "load average (1 min) during the run: %.2f–%.2f, mean %.2f (%d samples)\n", min, max, s / n, n }' "$data/samples"
if [ "$backend" = postgres ]; then
  samples=$(grep -c '^load' "$data/samples")
  echo "busy PostgreSQL sessions by state or wait event, mean over the $samples samples:"
  awk -v n="$samples" '$1 == "wait" { c[$2] += $3 } END { for (w in c) printf "  %-40s %6.2f\n", w, c[w] / n }' "$data/samples" | sort -k2 -nr
fi

# The queue afterwards: as many items resolved, as correct, as the reviewers counted, each
# with its evaluation's feedback; no item claimed twice; one resolve audited per item; the
# calibration rollups counted each verdict once. (Items left when --duration ran out are
# unresolved and were never claimed.)
items=$(sed -n 's/.* items=\([0-9]*\) .*/\1/p' "$data/result")
checks=$(sql <<'SQL'
SELECT 'items', COUNT(*) FROM review_items;
SELECT 'resolved', COUNT(*) FROM review_items WHERE status = 'resolved' AND outcome = 'correct';
SELECT 'unresolved', COUNT(*) FROM review_items WHERE status <> 'resolved';
SELECT 'claimed_more_than_once', COUNT(*) FROM review_items WHERE claim_count > 1;
SELECT 'evaluations_with_feedback', COUNT(*) FROM evaluations WHERE feedback_outcome = 'correct';
SELECT 'item_feedback_mismatches', COUNT(*) FROM review_items i JOIN evaluations e ON e.id = i.evaluation_id
  WHERE (i.status = 'resolved') <> (e.feedback_outcome IS NOT NULL) OR i.outcome <> e.feedback_outcome;
SELECT 'resolve_audits', COUNT(*) FROM audit_log WHERE action = 'review_item_resolved';
SELECT 'items_audited_as_resolved', COUNT(DISTINCT target) FROM audit_log WHERE action = 'review_item_resolved';
SELECT 'feedback_counted', COALESCE(SUM(n), 0) FROM feedback_rollups;
SQL
)
echo "$checks"
echo "loadgen counted $items resolved items"
get() { echo "$checks" | awk -v k="$1" '$1 == k { print $2 }'; }
ok=1
for k in resolved evaluations_with_feedback resolve_audits items_audited_as_resolved feedback_counted; do
  [ "$(get "$k")" = "$items" ] || ok=0
done
[ "$(get items)" = "$fill" ] && [ "$(get unresolved)" = $((fill - items)) ] || ok=0
[ "$(get claimed_more_than_once)" = 0 ] && [ "$(get item_feedback_mismatches)" = 0 ] || ok=0
if [ "$ok" != 1 ]; then echo "check: FAILED"; exit 1; fi
echo "check: $items items resolved, each claimed once and resolved once, with its feedback"
[ "$items" = "$fill" ] || echo "note: --duration ran out with $((fill - items)) items left in the queue"
