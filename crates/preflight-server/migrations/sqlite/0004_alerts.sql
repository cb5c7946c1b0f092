-- Alert rules, the alerts evaluations raise (written in the evaluation's own transaction),
-- and the extractor vendors each tenant has used (for "unknown provider").

CREATE TABLE alert_rules (
    id           BLOB PRIMARY KEY,
    tenant_id    BLOB NOT NULL REFERENCES tenants (id),
    name         TEXT NOT NULL,
    metric       TEXT NOT NULL CHECK (metric IN ('drift', 'reliability', 'unknown_provider', 'change_point', 'extractor_changed')),
    operator     TEXT CHECK (operator IN ('gt', 'lt', 'eq')),
    threshold    REAL,
    severity     TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    -- NULL: every template.
    template_id  TEXT,
    enabled      BOOLEAN NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    CHECK ((operator IS NULL) = (threshold IS NULL))
);
CREATE INDEX alert_rules_tenant ON alert_rules (tenant_id, id);

CREATE TABLE alerts (
    -- UUIDv7: time-ordered, so the primary key doubles as a stable pagination cursor.
    id                   BLOB PRIMARY KEY,
    tenant_id            BLOB NOT NULL REFERENCES tenants (id),
    -- NULL for the built-in rules that apply while a tenant has none of its own.
    rule_id              BLOB,
    rule_name            TEXT NOT NULL,
    metric               TEXT NOT NULL,
    severity             TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    status               TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    -- What makes two firings the same alert while it is not resolved.
    dedupe_key           TEXT NOT NULL,
    template_id          TEXT,
    template_version_id  BLOB,
    evaluation_id        BLOB NOT NULL,
    last_evaluation_id   BLOB NOT NULL,
    value                REAL,
    threshold            REAL,
    message              TEXT NOT NULL,
    details              TEXT NOT NULL,
    occurrences          INTEGER NOT NULL,
    delivery_status      TEXT NOT NULL CHECK (delivery_status IN ('no_endpoint', 'pending', 'delivered', 'failed')),
    created_at           TEXT NOT NULL,
    last_seen_at         TEXT NOT NULL,
    acknowledged_at      TEXT,
    acknowledged_by      TEXT,
    resolved_at          TEXT,
    resolved_by          TEXT
);
CREATE INDEX alerts_tenant_id ON alerts (tenant_id, id DESC);
-- One unresolved alert per key: a repeat firing counts as an occurrence of it.
CREATE UNIQUE INDEX alerts_unresolved_key ON alerts (tenant_id, dedupe_key) WHERE status <> 'resolved';

CREATE TABLE tenant_extractors (
    tenant_id      BLOB NOT NULL REFERENCES tenants (id),
    vendor         TEXT NOT NULL,
    first_seen_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, vendor)
);
