-- A third rollup grain: UTC calendar months, so a year-long answer sums a dozen rows per
-- dimension value instead of 366.
--
-- 0011's tables keep hour rows (grain 3600) and UTC-day rows (86400). A 366-day summary
-- read ~73 000 histogram rows and a templates listing ~180 000 template rows at 10 M
-- evaluations; with month rows the whole months of a range are read from these, the days
-- either side from day rows and the hours at its edges from hour rows. `grain` 2592000
-- labels month rows (a month has no fixed length: a row's bucket_start is its month's first
-- midnight, UTC). Every commit adds to all three grains in the same statement.

ALTER TABLE extractor_rollups DROP CONSTRAINT extractor_rollups_grain_check,
    ADD CONSTRAINT extractor_rollups_grain_check CHECK (grain IN (3600, 86400, 2592000));
ALTER TABLE template_rollups DROP CONSTRAINT template_rollups_grain_check,
    ADD CONSTRAINT template_rollups_grain_check CHECK (grain IN (3600, 86400, 2592000));
ALTER TABLE score_histograms DROP CONSTRAINT score_histograms_grain_check,
    ADD CONSTRAINT score_histograms_grain_check CHECK (grain IN (3600, 86400, 2592000));
ALTER TABLE calibration_rollups DROP CONSTRAINT calibration_rollups_grain_check,
    ADD CONSTRAINT calibration_rollups_grain_check CHECK (grain IN (3600, 86400, 2592000));
ALTER TABLE review_rollups DROP CONSTRAINT review_rollups_grain_check,
    ADD CONSTRAINT review_rollups_grain_check CHECK (grain IN (3600, 86400, 2592000));

-- Backfill: month rows from the day rows (which already agree with the hour rows).

INSERT INTO extractor_rollups
SELECT tenant_id, 2592000,
       EXTRACT(EPOCH FROM date_trunc('month', to_timestamp(bucket_start) AT TIME ZONE 'UTC'))::BIGINT,
       extractor_vendor, extractor_model, extractor_version, MIN(first_hour), MAX(last_hour),
       SUM(evaluations), SUM(match_count), SUM(review_count), SUM(new_count), SUM(reject_count),
       SUM(sum_drift), SUM(sum_reliability), SUM(sum_match_confidence),
       SUM(sum_extractor_confidence), SUM(sum_latency_ms), SUM(cost_count), SUM(sum_cost_usd)
FROM extractor_rollups WHERE grain = 86400 GROUP BY 1, 3, 4, 5, 6;

INSERT INTO template_rollups
SELECT tenant_id, 2592000,
       EXTRACT(EPOCH FROM date_trunc('month', to_timestamp(bucket_start) AT TIME ZONE 'UTC'))::BIGINT,
       template_id, template_version,
       MIN(template_version_id::TEXT)::UUID, MIN(first_hour), MAX(last_hour),
       SUM(evaluations), SUM(match_count), SUM(review_count), SUM(new_count), SUM(reject_count),
       SUM(sum_drift), SUM(sum_reliability), SUM(sum_match_confidence),
       SUM(sum_extractor_confidence), SUM(sum_latency_ms), SUM(cost_count), SUM(sum_cost_usd)
FROM template_rollups WHERE grain = 86400 GROUP BY 1, 3, 4, 5;

INSERT INTO score_histograms
SELECT tenant_id, 2592000,
       EXTRACT(EPOCH FROM date_trunc('month', to_timestamp(bucket_start) AT TIME ZONE 'UTC'))::BIGINT,
       metric, bin, SUM(n)
FROM score_histograms WHERE grain = 86400 GROUP BY 1, 3, 4, 5;

INSERT INTO calibration_rollups
SELECT tenant_id, 2592000,
       EXTRACT(EPOCH FROM date_trunc('month', to_timestamp(bucket_start) AT TIME ZONE 'UTC'))::BIGINT,
       decision, reliability_bin,
       SUM(n), SUM(correct), SUM(corrected), SUM(rejected), SUM(sum_reliability),
       SUM(sum_reliability_sq), SUM(sum_reliability_correct)
FROM calibration_rollups WHERE grain = 86400 GROUP BY 1, 3, 4, 5;

INSERT INTO review_rollups
SELECT tenant_id, 2592000,
       EXTRACT(EPOCH FROM date_trunc('month', to_timestamp(bucket_start) AT TIME ZONE 'UTC'))::BIGINT,
       SUM(resolved), SUM(sum_resolution_seconds), MAX(max_resolution_seconds)
FROM review_rollups WHERE grain = 86400 GROUP BY 1, 3;
