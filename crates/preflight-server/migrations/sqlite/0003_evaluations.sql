-- Templates (versioned layouts), evaluations, change points and idempotency records.

-- Bumped in the same transaction as every template change; replicas poll it to keep their
-- in-memory indexes exact.
ALTER TABLE tenants ADD COLUMN template_revision BIGINT NOT NULL DEFAULT 0;

CREATE TABLE templates (
    id                    BLOB PRIMARY KEY,
    tenant_id             BLOB NOT NULL REFERENCES tenants (id),
    template_id           TEXT NOT NULL,
    version               BIGINT NOT NULL,
    name                  TEXT,
    description           TEXT,
    status                TEXT NOT NULL CHECK (status IN ('draft', 'active', 'deprecated', 'archived')),
    baseline_reliability  REAL NOT NULL,
    correction_rules      TEXT NOT NULL,
    -- Layout metadata only (structural features), never document text.
    exemplars             TEXT NOT NULL,
    outcome_stats         TEXT NOT NULL,
    detector_state        TEXT NOT NULL,
    evaluation_count      BIGINT NOT NULL DEFAULT 0,
    -- The tenant's template_revision at this row's last change.
    revision              BIGINT NOT NULL,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    UNIQUE (tenant_id, template_id, version)
);
CREATE INDEX templates_tenant_revision ON templates (tenant_id, revision);
CREATE INDEX templates_tenant_status ON templates (tenant_id, status, template_id, version);

CREATE TABLE evaluations (
    -- BLOBv7: time-ordered, so the primary key doubles as a stable pagination cursor.
    id                    BLOB PRIMARY KEY,
    tenant_id             BLOB NOT NULL REFERENCES tenants (id),
    created_at            TEXT NOT NULL,
    decision              TEXT NOT NULL,
    match_confidence      REAL NOT NULL,
    template_id           TEXT,
    template_version_id   BLOB,
    template_version      BIGINT,
    similarity            REAL NOT NULL,
    drift_score           REAL NOT NULL,
    reliability_score     REAL NOT NULL,
    extractor_confidence  REAL NOT NULL,
    extractor_vendor      TEXT NOT NULL,
    extractor_model       TEXT NOT NULL,
    correlation_id        TEXT,
    pipeline_id           TEXT,
    client_doc_hash       TEXT,
    layout_fingerprint    TEXT NOT NULL,
    replay_hash           TEXT NOT NULL,
    engine_version        TEXT NOT NULL,
    -- The metadata-only request (features + extractor) and the answer as sent.
    request               TEXT NOT NULL,
    response              TEXT NOT NULL,
    feedback_outcome      TEXT CHECK (feedback_outcome IN ('correct', 'corrected', 'rejected')),
    feedback              TEXT,
    feedback_at           TEXT
);
CREATE INDEX evaluations_tenant_id ON evaluations (tenant_id, id DESC);
CREATE INDEX evaluations_tenant_decision ON evaluations (tenant_id, decision, id DESC);
CREATE INDEX evaluations_tenant_template ON evaluations (tenant_id, template_id, id DESC);
CREATE INDEX evaluations_tenant_version_time ON evaluations (tenant_id, template_version_id, created_at);
CREATE INDEX evaluations_tenant_pipeline ON evaluations (tenant_id, pipeline_id, id DESC);
CREATE INDEX evaluations_tenant_correlation ON evaluations (tenant_id, correlation_id);
CREATE INDEX evaluations_tenant_created ON evaluations (tenant_id, created_at);

CREATE TABLE change_points (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id            BLOB NOT NULL REFERENCES tenants (id),
    template_version_id  BLOB NOT NULL REFERENCES templates (id),
    evaluation_id        BLOB NOT NULL,
    series               TEXT NOT NULL,
    observation          BIGINT NOT NULL,
    detected_at          BIGINT NOT NULL,
    baseline_mean        REAL NOT NULL,
    recent_mean          REAL NOT NULL,
    occurred_at          TEXT NOT NULL
);
CREATE INDEX change_points_template ON change_points (tenant_id, template_version_id, id);

CREATE TABLE idempotency_keys (
    tenant_id     BLOB NOT NULL REFERENCES tenants (id),
    key           TEXT NOT NULL,
    route         TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status        INTEGER NOT NULL,
    response      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
