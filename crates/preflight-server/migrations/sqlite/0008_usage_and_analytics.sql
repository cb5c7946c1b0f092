-- Plans and monthly usage (counted in the evaluation's commit, so quotas are exact across
-- replicas), and the rollups analytics reads instead of scanning evaluations: per tenant ×
-- hour × template version × extractor, sparse histograms of drift and reliability per
-- tenant × hour (for percentiles), and feedback per tenant × hour × decision × reliability
-- band (for calibration). Existing evaluations are rolled up here, once.

ALTER TABLE tenants ADD COLUMN plan TEXT NOT NULL DEFAULT 'free'
    CHECK (plan IN ('free', 'developer', 'team', 'enterprise'));
-- NULL: the plan's own limit.
ALTER TABLE tenants ADD COLUMN monthly_limit_override BIGINT CHECK (monthly_limit_override >= 0);

CREATE TABLE usage_counters (
    tenant_id  BLOB NOT NULL REFERENCES tenants (id),
    -- The calendar month in UTC, e.g. '2026-12'.
    period     TEXT NOT NULL,
    used       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, period)
);

CREATE TABLE evaluation_rollups (
    tenant_id                 BLOB NOT NULL REFERENCES tenants (id),
    -- Unix seconds of the hour's start (UTC).
    bucket_start              BIGINT NOT NULL,
    -- '' and 0: no template (NEW, REJECT).
    template_id               TEXT NOT NULL,
    template_version          BIGINT NOT NULL,
    extractor_vendor          TEXT NOT NULL,
    extractor_model           TEXT NOT NULL,
    extractor_version         TEXT NOT NULL,
    template_version_id       BLOB,
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
    PRIMARY KEY (tenant_id, bucket_start, template_id, template_version,
                 extractor_vendor, extractor_model, extractor_version)
);

CREATE TABLE evaluation_histograms (
    tenant_id     BLOB NOT NULL REFERENCES tenants (id),
    bucket_start  BIGINT NOT NULL,
    -- 0: drift, 1: reliability.
    metric        SMALLINT NOT NULL,
    -- floor(value × 100), 0..=100.
    bin           SMALLINT NOT NULL,
    n             BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, bucket_start, metric, bin)
);

CREATE TABLE feedback_rollups (
    tenant_id                BLOB NOT NULL REFERENCES tenants (id),
    -- The evaluated hour (not the feedback's), so calibration describes evaluations.
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
    PRIMARY KEY (tenant_id, bucket_start, decision, reliability_bin)
);

INSERT INTO usage_counters (tenant_id, period, used)
SELECT tenant_id, strftime('%Y-%m', created_at), COUNT(*)
FROM evaluations GROUP BY 1, 2;

INSERT INTO evaluation_rollups
SELECT tenant_id,
       CAST(strftime('%s', created_at) AS INTEGER) / 3600 * 3600,
       COALESCE(template_id, ''), COALESCE(template_version, 0),
       extractor_vendor, extractor_model,
       COALESCE(TRIM(json_extract(request, '$.extractor_metadata.version')), ''),
       MIN(template_version_id),
       COUNT(*),
       SUM(decision = 'MATCH'), SUM(decision = 'REVIEW'), SUM(decision = 'NEW'),
       SUM(decision = 'REJECT'),
       SUM(drift_score), SUM(reliability_score), SUM(match_confidence),
       SUM(extractor_confidence),
       COALESCE(SUM(json_extract(request, '$.extractor_metadata.latency_ms')), 0),
       SUM(json_type(request, '$.extractor_metadata.cost_usd') IN ('integer', 'real')),
       COALESCE(SUM(CASE WHEN json_type(request, '$.extractor_metadata.cost_usd') IN ('integer', 'real')
                    THEN json_extract(request, '$.extractor_metadata.cost_usd') END), 0)
FROM evaluations GROUP BY 1, 2, 3, 4, 5, 6, 7;

INSERT INTO evaluation_histograms
SELECT tenant_id, bucket_start, metric, bin, COUNT(*) FROM (
    SELECT tenant_id, CAST(strftime('%s', created_at) AS INTEGER) / 3600 * 3600 AS bucket_start,
           0 AS metric, MIN(MAX(CAST(drift_score * 100 AS INTEGER), 0), 100) AS bin
    FROM evaluations
    UNION ALL
    SELECT tenant_id, CAST(strftime('%s', created_at) AS INTEGER) / 3600 * 3600,
           1, MIN(MAX(CAST(reliability_score * 100 AS INTEGER), 0), 100)
    FROM evaluations
) GROUP BY 1, 2, 3, 4;

INSERT INTO feedback_rollups
SELECT tenant_id,
       CAST(strftime('%s', created_at) AS INTEGER) / 3600 * 3600,
       decision,
       MIN(MAX(CAST(reliability_score * 10 AS INTEGER), 0), 9),
       COUNT(*),
       SUM(feedback_outcome = 'correct'), SUM(feedback_outcome = 'corrected'),
       SUM(feedback_outcome = 'rejected'),
       SUM(reliability_score), SUM(reliability_score * reliability_score),
       COALESCE(SUM(CASE WHEN feedback_outcome = 'correct' THEN reliability_score END), 0)
FROM evaluations WHERE feedback_outcome IS NOT NULL GROUP BY 1, 2, 3, 4;
