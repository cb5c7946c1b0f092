-- Rollups at two grains, so analytics reads a few thousand rows at any volume.
--
-- 0008's rollups were hourly per template version × extractor: a tenant with hundreds of
-- templates in use fills ~400 rows an hour, and a 30-day summary summed 300 000 of them.
-- These tables keep one dimension each and two grains: `grain` 3600 (hour rows, for a
-- range's edges and hour buckets) and 86400 (UTC-day rows, for its whole UTC days). Every
-- commit adds to both in the same statement, so the grains always agree.
--   extractor_rollups   tenant × grain × bucket × extractor: summary, timeseries, extractors
--   template_rollups    tenant × grain × bucket × template version: templates
--   score_histograms    tenant × grain × bucket × metric × bin: percentiles
--   calibration_rollups tenant × grain × evaluated bucket × decision × band: calibration
--   review_rollups      tenant × grain × resolved bucket: the review queue's resolved stats
-- first_hour / last_hour: the first and last hour with evaluations within the row (equal
-- to bucket_start on hour rows), so "first seen" stays exact to the hour.

CREATE TABLE extractor_rollups (
    tenant_id                 UUID NOT NULL REFERENCES tenants (id),
    grain                     BIGINT NOT NULL CHECK (grain IN (3600, 86400)),
    bucket_start              BIGINT NOT NULL,
    extractor_vendor          TEXT NOT NULL,
    extractor_model           TEXT NOT NULL,
    extractor_version         TEXT NOT NULL,
    first_hour                BIGINT NOT NULL,
    last_hour                 BIGINT NOT NULL,
    evaluations               BIGINT NOT NULL,
    match_count               BIGINT NOT NULL,
    review_count              BIGINT NOT NULL,
    new_count                 BIGINT NOT NULL,
    reject_count              BIGINT NOT NULL,
    sum_drift                 DOUBLE PRECISION NOT NULL,
    sum_reliability           DOUBLE PRECISION NOT NULL,
    sum_match_confidence      DOUBLE PRECISION NOT NULL,
    sum_extractor_confidence  DOUBLE PRECISION NOT NULL,
    sum_latency_ms            DOUBLE PRECISION NOT NULL,
    cost_count                BIGINT NOT NULL,
    sum_cost_usd              DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, grain, bucket_start, extractor_vendor, extractor_model,
                 extractor_version)
);

-- Evaluations with a template only (MATCH and REVIEW).
CREATE TABLE template_rollups (
    tenant_id                 UUID NOT NULL REFERENCES tenants (id),
    grain                     BIGINT NOT NULL CHECK (grain IN (3600, 86400)),
    bucket_start              BIGINT NOT NULL,
    template_id               TEXT NOT NULL,
    template_version          BIGINT NOT NULL,
    template_version_id       UUID,
    first_hour                BIGINT NOT NULL,
    last_hour                 BIGINT NOT NULL,
    evaluations               BIGINT NOT NULL,
    match_count               BIGINT NOT NULL,
    review_count              BIGINT NOT NULL,
    new_count                 BIGINT NOT NULL,
    reject_count              BIGINT NOT NULL,
    sum_drift                 DOUBLE PRECISION NOT NULL,
    sum_reliability           DOUBLE PRECISION NOT NULL,
    sum_match_confidence      DOUBLE PRECISION NOT NULL,
    sum_extractor_confidence  DOUBLE PRECISION NOT NULL,
    sum_latency_ms            DOUBLE PRECISION NOT NULL,
    cost_count                BIGINT NOT NULL,
    sum_cost_usd              DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, grain, bucket_start, template_id, template_version)
);

CREATE TABLE score_histograms (
    tenant_id     UUID NOT NULL REFERENCES tenants (id),
    grain         BIGINT NOT NULL CHECK (grain IN (3600, 86400)),
    bucket_start  BIGINT NOT NULL,
    -- 0: drift, 1: reliability.
    metric        SMALLINT NOT NULL,
    -- floor(value × 100), 0..=100.
    bin           SMALLINT NOT NULL,
    n             BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, grain, bucket_start, metric, bin)
);

CREATE TABLE calibration_rollups (
    tenant_id                UUID NOT NULL REFERENCES tenants (id),
    grain                    BIGINT NOT NULL CHECK (grain IN (3600, 86400)),
    -- The evaluated bucket (not the feedback's), so calibration describes evaluations.
    bucket_start             BIGINT NOT NULL,
    decision                 TEXT NOT NULL,
    -- floor(reliability × 10), 0..=9 (1.0 falls in 9).
    reliability_bin          SMALLINT NOT NULL,
    n                        BIGINT NOT NULL,
    correct                  BIGINT NOT NULL,
    corrected                BIGINT NOT NULL,
    rejected                 BIGINT NOT NULL,
    sum_reliability          DOUBLE PRECISION NOT NULL,
    sum_reliability_sq       DOUBLE PRECISION NOT NULL,
    sum_reliability_correct  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, grain, bucket_start, decision, reliability_bin)
);

CREATE TABLE review_rollups (
    tenant_id                UUID NOT NULL REFERENCES tenants (id),
    grain                    BIGINT NOT NULL CHECK (grain IN (3600, 86400)),
    -- The bucket the items were resolved in.
    bucket_start             BIGINT NOT NULL,
    resolved                 BIGINT NOT NULL,
    -- Item creation to resolution: both instants rounded to the millisecond, in seconds.
    sum_resolution_seconds   DOUBLE PRECISION NOT NULL,
    max_resolution_seconds   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, grain, bucket_start)
);

DROP TABLE evaluation_rollups;
DROP TABLE evaluation_histograms;
DROP TABLE feedback_rollups;

-- Backfill: existing evaluations, feedback and resolved items rolled up as commits do. Hour
-- rows from the source rows, then day rows from the hour rows.

INSERT INTO extractor_rollups
SELECT tenant_id, 3600, hour, extractor_vendor, extractor_model, extractor_version, hour, hour,
       COUNT(*),
       COUNT(*) FILTER (WHERE decision = 'MATCH'),
       COUNT(*) FILTER (WHERE decision = 'REVIEW'),
       COUNT(*) FILTER (WHERE decision = 'NEW'),
       COUNT(*) FILTER (WHERE decision = 'REJECT'),
       SUM(drift_score), SUM(reliability_score), SUM(match_confidence),
       SUM(extractor_confidence),
       COALESCE(SUM((request -> 'extractor_metadata' ->> 'latency_ms')::DOUBLE PRECISION), 0),
       COUNT(request -> 'extractor_metadata' -> 'cost_usd')
           FILTER (WHERE jsonb_typeof(request -> 'extractor_metadata' -> 'cost_usd') = 'number'),
       COALESCE(SUM((request -> 'extractor_metadata' ->> 'cost_usd')::DOUBLE PRECISION)
           FILTER (WHERE jsonb_typeof(request -> 'extractor_metadata' -> 'cost_usd') = 'number'), 0)
FROM (SELECT e.*, (FLOOR(EXTRACT(EPOCH FROM created_at) / 3600) * 3600)::BIGINT AS hour,
             COALESCE(TRIM(request -> 'extractor_metadata' ->> 'version'), '') AS extractor_version
      FROM evaluations e) e
GROUP BY tenant_id, hour, extractor_vendor, extractor_model, extractor_version;

INSERT INTO template_rollups
SELECT tenant_id, 3600, hour, template_id, template_version,
       MIN(template_version_id::TEXT)::UUID, hour, hour,
       COUNT(*),
       COUNT(*) FILTER (WHERE decision = 'MATCH'),
       COUNT(*) FILTER (WHERE decision = 'REVIEW'),
       COUNT(*) FILTER (WHERE decision = 'NEW'),
       COUNT(*) FILTER (WHERE decision = 'REJECT'),
       SUM(drift_score), SUM(reliability_score), SUM(match_confidence),
       SUM(extractor_confidence),
       COALESCE(SUM((request -> 'extractor_metadata' ->> 'latency_ms')::DOUBLE PRECISION), 0),
       COUNT(request -> 'extractor_metadata' -> 'cost_usd')
           FILTER (WHERE jsonb_typeof(request -> 'extractor_metadata' -> 'cost_usd') = 'number'),
       COALESCE(SUM((request -> 'extractor_metadata' ->> 'cost_usd')::DOUBLE PRECISION)
           FILTER (WHERE jsonb_typeof(request -> 'extractor_metadata' -> 'cost_usd') = 'number'), 0)
FROM (SELECT e.*, (FLOOR(EXTRACT(EPOCH FROM created_at) / 3600) * 3600)::BIGINT AS hour
      FROM evaluations e WHERE template_id IS NOT NULL) e
GROUP BY tenant_id, hour, template_id, template_version;

INSERT INTO score_histograms
SELECT tenant_id, 3600, bucket_start, metric, bin, COUNT(*) FROM (
    SELECT tenant_id, (FLOOR(EXTRACT(EPOCH FROM created_at) / 3600) * 3600)::BIGINT AS bucket_start,
           0::SMALLINT AS metric, LEAST(GREATEST(FLOOR(drift_score * 100), 0), 100)::SMALLINT AS bin
    FROM evaluations
    UNION ALL
    SELECT tenant_id, (FLOOR(EXTRACT(EPOCH FROM created_at) / 3600) * 3600)::BIGINT,
           1::SMALLINT, LEAST(GREATEST(FLOOR(reliability_score * 100), 0), 100)::SMALLINT
    FROM evaluations
) v GROUP BY 1, 3, 4, 5;

INSERT INTO calibration_rollups
SELECT tenant_id, 3600,
       (FLOOR(EXTRACT(EPOCH FROM created_at) / 3600) * 3600)::BIGINT,
       decision,
       LEAST(GREATEST(FLOOR(reliability_score * 10), 0), 9)::SMALLINT,
       COUNT(*),
       COUNT(*) FILTER (WHERE feedback_outcome = 'correct'),
       COUNT(*) FILTER (WHERE feedback_outcome = 'corrected'),
       COUNT(*) FILTER (WHERE feedback_outcome = 'rejected'),
       SUM(reliability_score), SUM(reliability_score * reliability_score),
       COALESCE(SUM(reliability_score) FILTER (WHERE feedback_outcome = 'correct'), 0)
FROM evaluations WHERE feedback_outcome IS NOT NULL GROUP BY 1, 3, 4, 5;

INSERT INTO review_rollups
SELECT tenant_id, 3600, bucket_start, COUNT(*), SUM(seconds), MAX(seconds) FROM (
    SELECT tenant_id,
           (FLOOR(EXTRACT(EPOCH FROM resolved_at) / 3600) * 3600)::BIGINT AS bucket_start,
           ((ROUND(EXTRACT(EPOCH FROM resolved_at) * 1000)
             - ROUND(EXTRACT(EPOCH FROM created_at) * 1000)) / 1000)::DOUBLE PRECISION AS seconds
    FROM review_items WHERE status = 'resolved'
) r GROUP BY 1, 3;

INSERT INTO extractor_rollups
SELECT tenant_id, 86400, bucket_start / 86400 * 86400, extractor_vendor, extractor_model,
       extractor_version, MIN(first_hour), MAX(last_hour),
       SUM(evaluations), SUM(match_count), SUM(review_count), SUM(new_count), SUM(reject_count),
       SUM(sum_drift), SUM(sum_reliability), SUM(sum_match_confidence),
       SUM(sum_extractor_confidence), SUM(sum_latency_ms), SUM(cost_count), SUM(sum_cost_usd)
FROM extractor_rollups WHERE grain = 3600 GROUP BY 1, 3, 4, 5, 6;

INSERT INTO template_rollups
SELECT tenant_id, 86400, bucket_start / 86400 * 86400, template_id, template_version,
       MIN(template_version_id::TEXT)::UUID, MIN(first_hour), MAX(last_hour),
       SUM(evaluations), SUM(match_count), SUM(review_count), SUM(new_count), SUM(reject_count),
       SUM(sum_drift), SUM(sum_reliability), SUM(sum_match_confidence),
       SUM(sum_extractor_confidence), SUM(sum_latency_ms), SUM(cost_count), SUM(sum_cost_usd)
FROM template_rollups WHERE grain = 3600 GROUP BY 1, 3, 4, 5;

INSERT INTO score_histograms
SELECT tenant_id, 86400, bucket_start / 86400 * 86400, metric, bin, SUM(n)
FROM score_histograms WHERE grain = 3600 GROUP BY 1, 3, 4, 5;

INSERT INTO calibration_rollups
SELECT tenant_id, 86400, bucket_start / 86400 * 86400, decision, reliability_bin,
       SUM(n), SUM(correct), SUM(corrected), SUM(rejected), SUM(sum_reliability),
       SUM(sum_reliability_sq), SUM(sum_reliability_correct)
FROM calibration_rollups WHERE grain = 3600 GROUP BY 1, 3, 4, 5;

INSERT INTO review_rollups
SELECT tenant_id, 86400, bucket_start / 86400 * 86400, SUM(resolved),
       SUM(sum_resolution_seconds), MAX(max_resolution_seconds)
FROM review_rollups WHERE grain = 3600 GROUP BY 1, 3;
