#!/usr/bin/env bash
# Loads N (default 10 000 000) realistic evaluations and their review queue into one tenant
# of a fresh PostgreSQL database, then their rollups with the backfill SQL of migrations 0008, 0011 and 0013,
# for the analytics latency benchmark in docs/BENCHMARKS.md ("Analytics at 10 M
# evaluations"). Prints how long each phase took, the counts, and the command that serves
# the database.
#
# Usage: scripts/bench/analytics_10m.sh [evaluations]
#   DB       database to (re)create (default pf10m; an existing one is dropped)
#   PGHOST / PGPORT / PGUSER   the server (default 127.0.0.1 / 5432 / postgres, trust auth)
#   PORT     where the template registration briefly serves (default 18600)
#   CHUNK    evaluations per INSERT … SELECT (default 1 000 000)
#   JOBS     chunks loaded at once, one session each (default 2)
# Needs: cargo build --release -p preflight && cargo build --release -p preflight --example loadgen
#
# What is loaded (deterministic: setseed, fixed per-template switch days):
# - 250 templates × 2 versions registered through the API (`loadgen --versions 2`); each
#   template switches from version 1 to 2 on its own day between 20 % and 80 % of the year;
# - evaluations spread over the 366 days up to now, volume growing linearly from 0.5× to 1.5×
#   the mean (the tenant grows); templates by a Zipf-like popularity (1/k);
# - decisions ~80 % MATCH, 12 % REVIEW, 6 % NEW, 2 % REJECT, with confidence, similarity,
#   drift and reliability drawn per decision;
# - extractors: aws textract-analyze (55 %, version 2023-06 → 2024-11 at day 183, after which
#   its drift is higher for 14 days), azure prebuilt-layout (30 %, 2023-07-31 → 2024-11-30 at
#   day 240), google form-parser (15 %, no cost reported); latency and cost per vendor;
# - feedback on 2 % of MATCH (sent to the evaluation); REVIEW, NEW and REJECT get their
#   verdict through the review queue: reviewed with probability 0.97 when 72 h or more
#   before the end, age / 72 h × 0.97 when younger, after a delay log-uniform from 5 min to
#   24 h (median 85 min); outcomes correct with a probability close to the reliability;
# - a review item per REVIEW, NEW and REJECT evaluation (the server's default
#   REVIEW_SAMPLE_MATCH_RATE of 0 samples no MATCH), as `insert_review_items` writes it with
#   the domain's priority: resolved at the feedback's time with its outcome by one of six
#   reviewers (`user:<uuid>`) when reviewed, else open; the three first open in queue order
#   are claimed under a live 4-hour lease;
# - rows of the real shape (`storage/evaluations.rs`): UUIDv7 ids in time order, the
#   metadata-only request and the answer as compact JSON documents.
# Then the rollup tables are emptied and refilled by running migrations 0008/0011/0013's backfill
# statements again, so analytics answers what the commit path would have produced.
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-10000000}"
db="${DB:-pf10m}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
port="${PORT:-18600}"
chunk="${CHUNK:-1000000}"
jobs="${JOBS:-2}"
templates=250
target="${CARGO_TARGET_DIR:-target}"
bin=$target/release/preflight
loadgen=$target/release/examples/loadgen
for b in "$bin" "$loadgen"; do
  [ -x "$b" ] || { echo "build first: cargo build --release -p preflight && cargo build --release -p preflight --example loadgen" >&2; exit 1; }
done
migration=crates/preflight-server/migrations/postgres/0008_usage_and_analytics.sql
rollups=crates/preflight-server/migrations/postgres/0011_two_grain_rollups.sql
months=crates/preflight-server/migrations/postgres/0013_month_rollups.sql

t0=$(date +%s.%N)
phase_start=$t0
phase() { # prints the time since the previous phase
  local now; now=$(date +%s.%N)
  printf '%-44s %8.1f s\n' "$1" "$(echo "$now - $phase_start" | bc)"
  phase_start=$now
}
psql_db() { psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"; }
in_chunks() { # runs "$1 lo hi" for every chunk of 1..n, $jobs at a time
  local lo hi
  for ((lo = 1; lo <= n; lo += chunk)); do
    hi=$((lo + chunk - 1)); [ "$hi" -gt "$n" ] && hi=$n
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    "$1" "$lo" "$hi" &
  done
  wait
}

# 1. A fresh database, migrated; a tenant on the unlimited plan and its key, the supported way.
dropdb --if-exists "$db"
createdb "$db"
data=$(mktemp -d)
export DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$db" PREFLIGHT_DATA_DIR="$data" LOG_LEVEL=warn
"$bin" migrate >/dev/null
tenant=$("$bin" admin create-tenant --name "Bench 10M" 2>/dev/null)
"$bin" admin set-plan --tenant "$tenant" --plan enterprise >/dev/null 2>&1
key=$("$bin" admin create-key --tenant "$tenant" --name bench --scopes evaluate,read,templates:write 2>/dev/null)
phase "database, migrations, tenant, key"

# 2. Templates through the API: 250 ids × 2 versions.
API_HOST=127.0.0.1 API_PORT="$port" RATE_LIMIT_PER_MINUTE=100000000 "$bin" serve >"$data/serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ready")" = "200" ]; do sleep 0.05; done
"$loadgen" --url "http://127.0.0.1:$port" --key "$key" --templates "$templates" --versions 2 --duration 0
kill -TERM "$server"; wait "$server" || true
trap - EXIT
phase "templates registered ($templates × 2 versions)"

# 3. The evaluations, in chunks of server-side INSERT … SELECT FROM generate_series. The
#    secondary indexes are dropped for the load and rebuilt from their own definitions.
psql_db <<SQL
CREATE TABLE bench_params AS SELECT
    date_trunc('hour', now()) AS end_at,
    date_trunc('hour', now()) - interval '366 days' AS start_at,
    $n::bigint AS n;
-- Each template's versions, and the moment it switches from version 1 to 2.
CREATE TABLE bench_versions AS
SELECT (substring(template_id FROM 6))::int AS ti, version, id, template_id,
       (SELECT start_at FROM bench_params)
           + interval '366 days' * (0.2 + 0.6 * ((substring(template_id FROM 6))::int * 0.6180339887 % 1))
           AS switch_at
FROM templates WHERE tenant_id = '$tenant';
CREATE UNIQUE INDEX ON bench_versions (ti, version);
CREATE TABLE bench_indexes AS
SELECT indexname, indexdef FROM pg_indexes
WHERE tablename = 'evaluations' AND indexname <> 'evaluations_pkey';
SQL
psql_db -tA -c "SELECT 'DROP INDEX ' || indexname || ';' FROM bench_indexes" | psql_db
phase "helper tables, secondary indexes dropped"

load_chunk() { # one INSERT … SELECT of evaluations lo..hi
  local lo=$1 hi=$2 start; start=$(date +%s.%N)
  psql_db <<SQL
SET synchronous_commit = off;
SET jit = off;
SET work_mem = '256MB';
SELECT setseed(0.5 + $lo::float8 / ($n + 1) / 2) \gset
INSERT INTO evaluations (id, tenant_id, created_at, decision, match_confidence, template_id,
    template_version_id, template_version, similarity, drift_score, reliability_score,
    extractor_confidence, extractor_vendor, extractor_model, correlation_id, pipeline_id,
    client_doc_hash, layout_fingerprint, replay_hash, engine_version, request, response,
    feedback_outcome, feedback, feedback_at)
WITH p AS (SELECT * FROM bench_params),
-- One row per evaluation with its independent draws. Time: the inverse of a linearly
-- growing density (0.5 → 1.5), so the ids (from g) stay in time order.
draw AS (
    SELECT g, random() AS r_dec, random() AS r_t, random() AS r_x, random() AS r1,
           random() AS r2, random() AS r3, random() AS r_fb, random() AS r_o, random() AS r_d,
           p.start_at + (p.end_at - p.start_at - interval '1 second')
               * ((sqrt(1 + 8 * ((g - 0.5) / p.n)) - 1) / 2) AS at
    FROM p, generate_series($lo::bigint, $hi::bigint) g
),
d AS MATERIALIZED (
    SELECT draw.*,
           CASE WHEN r_dec < 0.80 THEN 'MATCH' WHEN r_dec < 0.92 THEN 'REVIEW'
                WHEN r_dec < 0.98 THEN 'NEW' ELSE 'REJECT' END AS decision,
           LEAST(floor(exp(r_t * ln($templates + 1))) - 1, $templates - 1)::int AS ti,
           CASE WHEN r_x < 0.55 THEN 'aws' WHEN r_x < 0.85 THEN 'azure' ELSE 'google' END AS vendor,
           (at - (SELECT start_at FROM p)) AS age,
           extract(epoch FROM (SELECT end_at FROM p) - at) AS before_end_s
    FROM draw
),
e AS MATERIALIZED (
    SELECT d.*,
           CASE vendor WHEN 'aws' THEN 'textract-analyze' WHEN 'azure' THEN 'prebuilt-layout'
                ELSE 'form-parser' END AS model,
           CASE vendor
                WHEN 'aws' THEN CASE WHEN age < interval '183 days' THEN '2023-06' ELSE '2024-11' END
                WHEN 'azure' THEN CASE WHEN age < interval '240 days' THEN '2023-07-31' ELSE '2024-11-30' END
                ELSE 'pretrained-form-parser-v2.0' END AS xversion,
           -- The aws upgrade moves layouts a little for two weeks.
           CASE WHEN vendor = 'aws' AND age >= interval '183 days' AND age < interval '197 days'
                THEN 0.12 ELSE 0 END AS upgrade_drift,
           CASE vendor WHEN 'aws' THEN 650 + 700 * r3 WHEN 'azure' THEN 1100 + 1400 * r3
                ELSE 800 + 900 * r3 END AS latency_ms,
           CASE vendor WHEN 'aws' THEN 0.0015 WHEN 'azure' THEN 0.001 END AS cost_usd,
           v.id AS tv_id, v.template_id AS tpl, v.version AS tv
    FROM d LEFT JOIN bench_versions v
      ON d.decision IN ('MATCH', 'REVIEW') AND v.ti = d.ti
     AND v.version = CASE WHEN d.at < v.switch_at THEN 1 ELSE 2 END
),
s AS MATERIALIZED (
    SELECT e.*,
           (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7'
             || substr(md5(g::text), 1, 3) || to_hex(8 + (g % 4)::int)
             || substr(md5(g::text), 4, 15))::uuid AS id,
           CASE decision WHEN 'MATCH' THEN 0.86 + 0.13 * r1 WHEN 'REVIEW' THEN 0.62 + 0.22 * r1
                WHEN 'NEW' THEN 0.15 + 0.4 * r1 ELSE 0.05 + 0.3 * r1 END AS match_confidence,
           CASE decision WHEN 'MATCH' THEN 0.88 + 0.11 * r1 WHEN 'REVIEW' THEN 0.7 + 0.18 * r1
                WHEN 'NEW' THEN 0.2 + 0.45 * r1 ELSE 0.1 + 0.4 * r1 END AS similarity,
           LEAST(CASE decision WHEN 'MATCH' THEN 0.15 * r2 * r2 WHEN 'REVIEW' THEN 0.1 + 0.5 * r2
                ELSE 0 END + upgrade_drift * r2, 1) AS drift_score,
           CASE decision WHEN 'REJECT' THEN 0.3 + 0.4 * r3 ELSE 0.82 + 0.17 * r3 END
               AS extractor_confidence
    FROM e
),
f AS MATERIALIZED (
    SELECT s.*,
           GREATEST(LEAST(CASE decision
                WHEN 'MATCH' THEN 0.99 - 0.6 * drift_score - 0.12 * r1 * r2
                WHEN 'REVIEW' THEN 0.45 + 0.4 * r1 - 0.3 * drift_score
                WHEN 'NEW' THEN 0.3 + 0.4 * r2
                ELSE 0.05 + 0.3 * r2 END, 1), 0) AS reliability_score,
           -- MATCH: feedback sent to the evaluation on 2 %. REVIEW, NEW, REJECT: the verdict
           -- comes through the review queue, reached for 97 % of the items 72 h old or more
           -- and in proportion to the age before (none under 5 minutes).
           CASE WHEN decision = 'MATCH' THEN r_fb < 0.02
                ELSE before_end_s >= 300 AND r_fb < 0.97 * LEAST(before_end_s / 259200, 1) END
               AS has_feedback,
           -- The queue's review delay: log-uniform from 5 minutes to 24 hours (median 85
           -- minutes), and never past the end of the data.
           CASE WHEN decision <> 'MATCH' AND before_end_s >= 300
                THEN 300 * exp(r_d * ln(LEAST(before_end_s, 86400) / 300)) END AS review_delay_s,
           md5(coalesce(tpl || '/' || tv, 'new-' || g)) AS fp,
           CASE WHEN g % 3 = 0 THEN 'ap-invoices' WHEN g % 3 = 1 THEN 'receipts' ELSE 'claims' END
               AS pipeline
    FROM s
),
o AS MATERIALIZED (
    SELECT f.*,
           CASE WHEN NOT has_feedback THEN NULL
                WHEN r_o < 0.04 + 0.95 * reliability_score THEN 'correct'
                WHEN r_o < 0.04 + 0.95 * reliability_score
                           + 0.75 * (0.96 - 0.95 * reliability_score) THEN 'corrected'
                ELSE 'rejected' END AS outcome,
           jsonb_build_object(
               'vendor', vendor, 'model', model, 'version', xversion,
               'confidence', extractor_confidence, 'latency_ms', round(latency_ms::numeric, 1))
             || CASE WHEN cost_usd IS NULL THEN '{}'::jsonb
                     ELSE jsonb_build_object('cost_usd', cost_usd) END AS extractor_metadata
    FROM f
)
SELECT id, '$tenant'::uuid, at, decision, match_confidence, tpl, tv_id, tv, similarity,
       drift_score, reliability_score, extractor_confidence, vendor, model,
       'doc-' || g, pipeline, NULL, fp || fp, md5(id::text) || md5(g::text), '1.2.0',
       jsonb_build_object(
           'structural_features', jsonb_build_object(
               'element_count', 48, 'table_count', 1, 'text_block_count', 46, 'image_count', 0,
               'page_count', 1, 'text_density', 0.3, 'layout_complexity', 0.5,
               'column_count', 2, 'has_header', true, 'has_footer', true,
               'bounding_boxes', '[{"x":0.12,"y":0.03,"width":0.4,"height":0.06,"element_type":"title","confidence":0.95,"reading_order":0},{"x":0.05,"y":0.94,"width":0.9,"height":0.03,"element_type":"footer","confidence":0.93,"reading_order":1}]'::jsonb),
           'extractor_metadata', extractor_metadata,
           'client_correlation_id', 'doc-' || g, 'pipeline_id', pipeline),
       jsonb_build_object(
           'evaluation_id', id, 'decision', decision, 'match_confidence', match_confidence,
           'template_id', tpl, 'template_version_id', tv_id, 'template_version', tv,
           'drift_score', drift_score,
           'drift_components', jsonb_build_array(
               jsonb_build_object('component', 'layout.form', 'score', drift_score),
               jsonb_build_object('component', 'scalar.element_count', 'score', 0.0)),
           'reliability_score', reliability_score,
           'reasons', CASE decision WHEN 'MATCH' THEN '[]'::jsonb
               ELSE jsonb_build_array(jsonb_build_object(
                   'code', CASE decision WHEN 'REVIEW' THEN 'LOW_MATCH_CONFIDENCE'
                                         WHEN 'NEW' THEN 'NO_TEMPLATE_CLOSE'
                                         ELSE 'RELIABILITY_LOW' END,
                   'message', lower(decision) || ': see the scores')) END,
           'warnings', '[]'::jsonb, 'correction_rules', '[]'::jsonb, 'alerts', '[]'::jsonb,
           'replay_hash', md5(id::text) || md5(g::text), 'engine_version', '1.2.0',
           'layout_fingerprint', fp || fp, 'processing_time_ms', round((0.8 + 2 * r2)::numeric, 3),
           'client_correlation_id', 'doc-' || g, 'pipeline_id', pipeline,
           'created_at', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'runner_up', NULL),
       outcome,
       CASE WHEN outcome IS NOT NULL THEN jsonb_build_object(
           'outcome', outcome,
           'field_error_count', CASE outcome WHEN 'corrected' THEN 1 + (g % 4)::int END,
           'review_seconds', round((20 + 200 * r_o)::numeric, 1),
           'source', CASE decision WHEN 'MATCH' THEN 'human-review' ELSE 'review-queue' END) END,
       CASE WHEN outcome IS NULL THEN NULL
            WHEN decision = 'MATCH'
            THEN LEAST(at + interval '10 minutes' + interval '1 day' * r_o, now())
            ELSE at + interval '1 second' * review_delay_s END
FROM o;
SQL
  printf '  evaluations %s..%s: %.1f s\n' "$lo" "$hi" "$(echo "$(date +%s.%N) - $start" | bc)"
}
in_chunks load_chunk
phase "evaluations ($n, $jobs sessions)"

psql_db -tA -c "SELECT indexdef || ';' FROM bench_indexes" | psql_db -c "SET maintenance_work_mem = '1GB'" -f -
phase "secondary indexes rebuilt"

# 3b. The review queue as the commit path and a team working it leave it: one item per
#     REVIEW, NEW and REJECT evaluation (none for MATCH: REVIEW_SAMPLE_MATCH_RATE is 0),
#     with the domain's priority and the columns the item copies from its evaluation.
#     Reviewed ones (the evaluation has feedback) are resolved at the feedback's time by one
#     of six reviewers, who claimed them review_seconds earlier; the rest are open, and the
#     three first in queue order are held under a live 4-hour lease. Loaded in the same
#     chunks of evaluations (by id range), secondary indexes dropped and rebuilt.
psql_db <<SQL
CREATE TABLE bench_review_indexes AS
SELECT indexname, indexdef FROM pg_indexes
WHERE tablename = 'review_items' AND indexname NOT IN (
    SELECT conname FROM pg_constraint WHERE conrelid = 'review_items'::regclass);
-- Reviewers as the server names an actor signed in as a user.
CREATE TABLE bench_reviewers AS
SELECT k, 'user:' || (substr(h, 1, 12) || '7' || substr(h, 14, 3) || '8' || substr(h, 18, 15))::uuid
           AS actor
FROM generate_series(0, 5) k, md5('pfbench-reviewer-' || k) h;
SQL
psql_db -tA -c "SELECT 'DROP INDEX ' || indexname || ';' FROM bench_review_indexes" | psql_db
load_items() { # the items of evaluations lo..hi: their ids lie between the chunk's time bounds
  local lo=$1 hi=$2 start; start=$(date +%s.%N)
  psql_db <<SQL
SET synchronous_commit = off;
SET jit = off;
SET enable_seqscan = off;
WITH bound AS (
    -- An evaluation's id starts with its millisecond: the first id at or after the moment
    -- between evaluation g - 1 and g (see draw.at above).
    SELECT CASE WHEN g = 1 THEN '00000000-0000-0000-0000-000000000000'::uuid
                WHEN g > p.n THEN 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid
                ELSE (lpad(to_hex(floor(extract(epoch FROM p.start_at
                        + (p.end_at - p.start_at - interval '1 second')
                          * ((sqrt(1 + 8 * ((g - 1)::float8 / p.n)) - 1) / 2)) * 1000)::bigint),
                        12, '0') || repeat('0', 20))::uuid END AS id, side
    FROM bench_params p, (VALUES ($lo::bigint, 'lo'), ($hi::bigint + 1, 'hi')) v (g, side)
)
INSERT INTO review_items (id, tenant_id, evaluation_id, created_at, decision, reason, priority,
    template_id, template_version, extractor_vendor, extractor_model, reliability_score,
    drift_score, status, claimed_by, claimed_at, claim_count, resolved_at, resolved_by, outcome)
SELECT (substr(replace(e.id::text, '-', ''), 1, 12) || '7' || substr(h, 1, 3)
          || substr('89ab', 1 + get_byte(decode(h, 'hex'), 15) % 4, 1) || substr(h, 4, 15))::uuid,
       e.tenant_id, e.id, e.created_at, e.decision, 'decision',
       -- domain::review::priority: the class, then round((1 - reliability) × 99).
       CASE e.decision WHEN 'REVIEW' THEN 300 WHEN 'REJECT' THEN 200 ELSE 100 END
           + round(((1 - LEAST(GREATEST(e.reliability_score, 0), 1)) * 99)::numeric)::int,
       e.template_id, e.template_version, e.extractor_vendor, e.extractor_model,
       e.reliability_score, e.drift_score,
       CASE WHEN e.feedback_outcome IS NULL THEN 'open' ELSE 'resolved' END,
       r.actor,
       e.feedback_at - interval '1 second' * (e.feedback ->> 'review_seconds')::float8,
       CASE WHEN e.feedback_outcome IS NULL THEN 0 ELSE 1 END,
       e.feedback_at, r.actor, e.feedback_outcome
FROM evaluations e
CROSS JOIN LATERAL md5(e.id::text || '/review-item') h
LEFT JOIN bench_reviewers r
  ON e.feedback_outcome IS NOT NULL AND r.k = get_byte(decode(h, 'hex'), 14) % 6
WHERE e.tenant_id = '$tenant' AND e.decision <> 'MATCH'
  AND e.id >= (SELECT id FROM bound WHERE side = 'lo')
  AND e.id < (SELECT id FROM bound WHERE side = 'hi');
SQL
  printf '  review items of evaluations %s..%s: %.1f s\n' "$lo" "$hi" "$(echo "$(date +%s.%N) - $start" | bc)"
}
in_chunks load_items
phase "review items ($jobs sessions)"

psql_db -tA -c "SELECT indexdef || ';' FROM bench_review_indexes" | psql_db -c "SET maintenance_work_mem = '1GB'" -f -
psql_db <<SQL
UPDATE review_items i SET status = 'claimed', lease_token = md5(i.id::text || '/lease')::uuid,
    claimed_by = r.actor, claimed_at = now() - interval '1 minute' * (c.k + 1),
    lease_expires_at = now() - interval '1 minute' * (c.k + 1) + interval '14400 seconds',
    claim_count = i.claim_count + 1
FROM (SELECT id, row_number() OVER (ORDER BY priority DESC, id) - 1 AS k
      FROM (SELECT id, priority FROM review_items
            WHERE tenant_id = '$tenant' AND status <> 'resolved'
            ORDER BY priority DESC, id LIMIT 3) q) c
JOIN bench_reviewers r ON r.k = c.k
WHERE i.id = c.id;
DROP TABLE bench_review_indexes, bench_reviewers;
SQL
phase "review item indexes rebuilt, 3 items claimed"

# 4. What the commit path keeps besides the rows: each version's evaluation count.
psql_db <<SQL
UPDATE templates t SET evaluation_count = c.n
FROM (SELECT template_version_id, COUNT(*) AS n FROM evaluations
      WHERE tenant_id = '$tenant' AND template_version_id IS NOT NULL GROUP BY 1) c
WHERE t.id = c.template_version_id;
DROP TABLE bench_params, bench_versions, bench_indexes;
SQL
phase "template evaluation counts"

# 5. The rollups and usage counters: emptied, then the migrations' own backfill statements
#    run again (0008's usage counters, 0011's hour and day rows, 0013's month rows).
psql_db -c "TRUNCATE usage_counters, extractor_rollups, template_rollups, score_histograms, calibration_rollups, review_rollups"
{ echo "SET work_mem = '256MB'; SET jit = off;"
  sed -n '/^INSERT INTO usage_counters/,/;/p' "$migration"
  sed -n '/^-- Backfill:/,$p' "$rollups"
  sed -n '/^-- Backfill:/,$p' "$months"; } | psql_db -f -
phase "rollups (migrations 0008, 0011 and 0013 backfill)"

psql_db -c "VACUUM ANALYZE"
phase "vacuum analyze"

psql_db -tA -F ' ' <<SQL
SELECT 'evaluations', COUNT(*) FROM evaluations;
SELECT 'extractor rollup rows (hour, day)', COUNT(*) FILTER (WHERE grain = 3600), COUNT(*) FILTER (WHERE grain = 86400) FROM extractor_rollups;
SELECT 'template rollup rows (hour, day)', COUNT(*) FILTER (WHERE grain = 3600), COUNT(*) FILTER (WHERE grain = 86400) FROM template_rollups;
SELECT 'histogram rows', COUNT(*) FROM score_histograms;
SELECT 'calibration rollup rows', COUNT(*) FROM calibration_rollups;
SELECT 'review rollup rows', COUNT(*) FROM review_rollups;
SELECT 'evaluations with feedback', COUNT(*) FROM evaluations WHERE feedback_outcome IS NOT NULL;
SELECT 'review items ' || status, COUNT(*) FROM review_items GROUP BY status ORDER BY status;
SELECT 'database size', pg_size_pretty(pg_database_size(current_database()));
SQL
printf '%-44s %8.1f s\n' "total" "$(echo "$(date +%s.%N) - $t0" | bc)"
cat <<EOF
tenant $tenant
key    $key
serve: DATABASE_URL=$DATABASE_URL PREFLIGHT_DATA_DIR=$data REDIS_URL=redis://127.0.0.1:6379 API_HOST=127.0.0.1 API_PORT=$port RATE_LIMIT_PER_MINUTE=100000000 LOG_LEVEL=warn $bin serve
EOF
