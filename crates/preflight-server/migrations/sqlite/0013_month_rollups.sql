-- A third rollup grain: UTC calendar months, so a year-long answer sums a dozen rows per
-- dimension value instead of 366.
--
-- 0011's tables keep hour rows (grain 3600) and UTC-day rows (86400). A 366-day summary
-- read ~73 000 histogram rows and a templates listing ~180 000 template rows at 10 M
-- evaluations; with month rows the whole months of a range are read from these, the days
-- either side from day rows and the hours at its edges from hour rows. `grain` 2592000
-- labels month rows (a month has no fixed length: a row's bucket_start is its month's first
-- midnight, UTC). Every commit adds to all three grains in the same statement.
--
-- SQLite cannot change a CHECK constraint in place: each table is rebuilt with the same
-- columns, in the same order, and its rows copied.

ALTER TABLE extractor_rollups RENAME TO extractor_rollups_0011;
CREATE TABLE extractor_rollups (
    tenant_id                 BLOB NOT NULL REFERENCES tenants (id),
    grain                     BIGINT NOT NULL CHECK (grain IN (3600, 86400, 2592000)),
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
INSERT INTO extractor_rollups SELECT * FROM extractor_rollups_0011;
DROP TABLE extractor_rollups_0011;

ALTER TABLE template_rollups RENAME TO template_rollups_0011;
CREATE TABLE template_rollups (
    tenant_id                 BLOB NOT NULL REFERENCES tenants (id),
    grain                     BIGINT NOT NULL CHECK (grain IN (3600, 86400, 2592000)),
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
INSERT INTO template_rollups SELECT * FROM template_rollups_0011;
DROP TABLE template_rollups_0011;

ALTER TABLE score_histograms RENAME TO score_histograms_0011;
CREATE TABLE score_histograms (
    tenant_id     BLOB NOT NULL REFERENCES tenants (id),
    grain         BIGINT NOT NULL CHECK (grain IN (3600, 86400, 2592000)),
    bucket_start  BIGINT NOT NULL,
    -- 0: drift, 1: reliability.
    metric        SMALLINT NOT NULL,
    -- floor(value × 100), 0..=100.
    bin           SMALLINT NOT NULL,
    n             BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, grain, bucket_start, metric, bin)
);
INSERT INTO score_histograms SELECT * FROM score_histograms_0011;
DROP TABLE score_histograms_0011;

ALTER TABLE calibration_rollups RENAME TO calibration_rollups_0011;
CREATE TABLE calibration_rollups (
    tenant_id                BLOB NOT NULL REFERENCES tenants (id),
    grain                    BIGINT NOT NULL CHECK (grain IN (3600, 86400, 2592000)),
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
INSERT INTO calibration_rollups SELECT * FROM calibration_rollups_0011;
DROP TABLE calibration_rollups_0011;

ALTER TABLE review_rollups RENAME TO review_rollups_0011;
CREATE TABLE review_rollups (
    tenant_id                BLOB NOT NULL REFERENCES tenants (id),
    grain                    BIGINT NOT NULL CHECK (grain IN (3600, 86400, 2592000)),
    -- The bucket the items were resolved in.
    bucket_start             BIGINT NOT NULL,
    resolved                 BIGINT NOT NULL,
    -- Item creation to resolution: both instants rounded to the millisecond, in seconds.
    sum_resolution_seconds   REAL NOT NULL,
    max_resolution_seconds   REAL NOT NULL,
    PRIMARY KEY (tenant_id, grain, bucket_start)
);
INSERT INTO review_rollups SELECT * FROM review_rollups_0011;
DROP TABLE review_rollups_0011;

-- Backfill: month rows from the day rows (which already agree with the hour rows).

INSERT INTO extractor_rollups
SELECT tenant_id, 2592000, CAST(strftime('%s', bucket_start, 'unixepoch', 'start of month') AS INTEGER),
       extractor_vendor, extractor_model, extractor_version, MIN(first_hour), MAX(last_hour),
       SUM(evaluations), SUM(match_count), SUM(review_count), SUM(new_count), SUM(reject_count),
       SUM(sum_drift), SUM(sum_reliability), SUM(sum_match_confidence),
       SUM(sum_extractor_confidence), SUM(sum_latency_ms), SUM(cost_count), SUM(sum_cost_usd)
FROM extractor_rollups WHERE grain = 86400 GROUP BY 1, 3, 4, 5, 6;

INSERT INTO template_rollups
SELECT tenant_id, 2592000, CAST(strftime('%s', bucket_start, 'unixepoch', 'start of month') AS INTEGER),
       template_id, template_version,
       MIN(template_version_id), MIN(first_hour), MAX(last_hour),
       SUM(evaluations), SUM(match_count), SUM(review_count), SUM(new_count), SUM(reject_count),
       SUM(sum_drift), SUM(sum_reliability), SUM(sum_match_confidence),
       SUM(sum_extractor_confidence), SUM(sum_latency_ms), SUM(cost_count), SUM(sum_cost_usd)
FROM template_rollups WHERE grain = 86400 GROUP BY 1, 3, 4, 5;

INSERT INTO score_histograms
SELECT tenant_id, 2592000, CAST(strftime('%s', bucket_start, 'unixepoch', 'start of month') AS INTEGER), metric, bin, SUM(n)
FROM score_histograms WHERE grain = 86400 GROUP BY 1, 3, 4, 5;

INSERT INTO calibration_rollups
SELECT tenant_id, 2592000, CAST(strftime('%s', bucket_start, 'unixepoch', 'start of month') AS INTEGER), decision, reliability_bin,
       SUM(n), SUM(correct), SUM(corrected), SUM(rejected), SUM(sum_reliability),
       SUM(sum_reliability_sq), SUM(sum_reliability_correct)
FROM calibration_rollups WHERE grain = 86400 GROUP BY 1, 3, 4, 5;

INSERT INTO review_rollups
SELECT tenant_id, 2592000, CAST(strftime('%s', bucket_start, 'unixepoch', 'start of month') AS INTEGER),
       SUM(resolved), SUM(sum_resolution_seconds), MAX(max_resolution_seconds)
FROM review_rollups WHERE grain = 86400 GROUP BY 1, 3;
