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
    tenant_id                 BLOB NOT NULL REFERENCES tenants (id),
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
    sum_drift                 REAL NOT NULL,
    sum_reliability           REAL NOT NULL,
    sum_match_confidence      REAL NOT NULL,
    sum_extractor_confidence  REAL NOT NULL,
    sum_latency_ms            REAL NOT NULL,
    cost_count                BIGINT NOT NULL,
    sum_cost_usd              REAL NOT NULL,
    PRIMARY KEY (tenant_id, grain, bucket_start, extractor_vendor, extractor_model,
                 extractor_version)
);

-- Evaluations with a template only (MATCH and REVIEW).
CREATE TABLE template_rollups (
    tenant_id                 BLOB NOT NULL REFERENCES tenants (id),
    grain                     BIGINT NOT NULL CHECK (grain IN (3600, 86400)),
    bucket_start              BIGINT NOT NULL,
    template_id               TEXT NOT NULL,
    template_version          BIGINT NOT NULL,
    template_version_id       BLOB,
    first_hour                BIGINT NOT NULL,
    last_hour                 BIGINT NOT NULL,
    evaluations               BIGINT NOT NULL,
    match_count               BIGINT NOT NULL,
    review_count              BIGINT NOT NULL,
    new_count                 BIGINT NOT NULL,
    reject_count              BIGINT NOT NULL,
    sum_drift                 REAL NOT NULL,
    sum_reliability           REAL NOT NULL,
    sum_match_confidence      REAL NOT NULL,
    sum_extractor_confidence  REAL NOT NULL,
    sum_latency_ms            REAL NOT NULL,
    cost_count                BIGINT NOT NULL,
    sum_cost_usd              REAL NOT NULL,
    PRIMARY KEY (tenant_id, grain, bucket_start, template_id, template_version)
);

CREATE TABLE score_histograms (
    tenant_id     BLOB NOT NULL REFERENCES tenants (id),
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
    tenant_id                BLOB NOT NULL REFERENCES tenants (id),
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
    sum_reliability          REAL NOT NULL,
    sum_reliability_sq       REAL NOT NULL,
    sum_reliability_correct  REAL NOT NULL,
    PRIMARY KEY (tenant_id, grain, bucket_start, decision, reliability_bin)
);

CREATE TABLE review_rollups (
    tenant_id                BLOB NOT NULL REFERENCES tenants (id),
    grain                    BIGINT NOT NULL CHECK (grain IN (3600, 86400)),
    -- The bucket the items were resolved in.
    bucket_start             BIGINT NOT NULL,
    resolved                 BIGINT NOT NULL,
    -- Item creation to resolution: both instants rounded to the millisecond, in seconds.
    sum_resolution_seconds   REAL NOT NULL,
    max_resolution_seconds   REAL NOT NULL,
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
       SUM(decision = 'MATCH'), SUM(decision = 'REVIEW'), SUM(decision = 'NEW'),
       SUM(decision = 'REJECT'),
       SUM(drift_score), SUM(reliability_score), SUM(match_confidence),
       SUM(extractor_confidence),
       COALESCE(SUM(json_extract(request, '$.extractor_metadata.latency_ms')), 0),
       SUM(json_type(request, '$.extractor_metadata.cost_usd') IN ('integer', 'real')),
       COALESCE(SUM(CASE WHEN json_type(request, '$.extractor_metadata.cost_usd') IN ('integer', 'real')
                    THEN json_extract(request, '$.extractor_metadata.cost_usd') END), 0)
FROM (SELECT e.*, CAST(strftime('%s', created_at) AS INTEGER) / 3600 * 3600 AS hour,
             COALESCE(TRIM(json_extract(request, '$.extractor_metadata.version')), '') AS extractor_version
      FROM evaluations e)
GROUP BY tenant_id, hour, extractor_vendor, extractor_model, extractor_version;

INSERT INTO template_rollups
SELECT tenant_id, 3600, hour, template_id, template_version, MIN(template_version_id), hour, hour,
       COUNT(*),
       SUM(decision = 'MATCH'), SUM(decision = 'REVIEW'), SUM(decision = 'NEW'),
       SUM(decision = 'REJECT'),
       SUM(drift_score), SUM(reliability_score), SUM(match_confidence),
       SUM(extractor_confidence),
       COALESCE(SUM(json_extract(request, '$.extractor_metadata.latency_ms')), 0),
       SUM(json_type(request, '$.extractor_metadata.cost_usd') IN ('integer', 'real')),
       COALESCE(SUM(CASE WHEN json_type(request, '$.extractor_metadata.cost_usd') IN ('integer', 'real')
                    THEN json_extract(request, '$.extractor_metadata.cost_usd') END), 0)
FROM (SELECT e.*, CAST(strftime('%s', created_at) AS INTEGER) / 3600 * 3600 AS hour FROM evaluations e WHERE template_id IS NOT NULL)
GROUP BY tenant_id, hour, template_id, template_version;

INSERT INTO score_histograms
SELECT tenant_id, 3600, bucket_start, metric, bin, COUNT(*) FROM (
    SELECT tenant_id, CAST(strftime('%s', created_at) AS INTEGER) / 3600 * 3600 AS bucket_start,
           0 AS metric, MIN(MAX(CAST(drift_score * 100 AS INTEGER), 0), 100) AS bin
    FROM evaluations
    UNION ALL
    SELECT tenant_id, CAST(strftime('%s', created_at) AS INTEGER) / 3600 * 3600,
           1, MIN(MAX(CAST(reliability_score * 100 AS INTEGER), 0), 100)
    FROM evaluations
) GROUP BY 1, 3, 4, 5;

INSERT INTO calibration_rollups
SELECT tenant_id, 3600,
       CAST(strftime('%s', created_at) AS INTEGER) / 3600 * 3600,
       decision,
       MIN(MAX(CAST(reliability_score * 10 AS INTEGER), 0), 9),
       COUNT(*),
       SUM(feedback_outcome = 'correct'), SUM(feedback_outcome = 'corrected'),
       SUM(feedback_outcome = 'rejected'),
       SUM(reliability_score), SUM(reliability_score * reliability_score),
       COALESCE(SUM(CASE WHEN feedback_outcome = 'correct' THEN reliability_score END), 0)
FROM evaluations WHERE feedback_outcome IS NOT NULL GROUP BY 1, 3, 4, 5;

INSERT INTO review_rollups
SELECT tenant_id, 3600, bucket_start, COUNT(*), SUM(seconds), MAX(seconds) FROM (
    SELECT tenant_id,
           CAST(strftime('%s', resolved_at) AS INTEGER) / 3600 * 3600 AS bucket_start,
           -- julianday() keeps milliseconds: the difference of the rounded instants.
           ROUND((julianday(resolved_at) - julianday(created_at)) * 86400.0, 3) AS seconds
    FROM review_items WHERE status = 'resolved'
) GROUP BY 1, 3;

INSERT INTO extractor_rollups
SELECT tenant_id, 86400, bucket_start / 86400 * 86400, extractor_vendor, extractor_model,
       extractor_version, MIN(first_hour), MAX(last_hour),
       SUM(evaluations), SUM(match_count), SUM(review_count), SUM(new_count), SUM(reject_count),
       SUM(sum_drift), SUM(sum_reliability), SUM(sum_match_confidence),
       SUM(sum_extractor_confidence), SUM(sum_latency_ms), SUM(cost_count), SUM(sum_cost_usd)
FROM extractor_rollups WHERE grain = 3600 GROUP BY 1, 3, 4, 5, 6;

INSERT INTO template_rollups
SELECT tenant_id, 86400, bucket_start / 86400 * 86400, template_id, template_version,
       MIN(template_version_id), MIN(first_hour), MAX(last_hour),
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
