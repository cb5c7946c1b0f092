-- Window rules (rates of NEW / REJECT / REVIEW / automation over a sliding window, checked
-- by a background task whose progress is `checked_until`), alerts that no single
-- evaluation raised (a window, an endpoint disabled), and each endpoint's health for the
-- circuit breaker and auto-disable. SQLite cannot change a CHECK or a NOT NULL in place,
-- so `alert_rules` and `alerts` are rebuilt (nothing references them).

CREATE TABLE alert_rules_v7 (
    id              BLOB PRIMARY KEY,
    tenant_id       BLOB NOT NULL REFERENCES tenants (id),
    name            TEXT NOT NULL,
    metric          TEXT NOT NULL CHECK (metric IN (
        'drift', 'reliability', 'unknown_provider', 'change_point', 'extractor_changed',
        'new_rate', 'reject_rate', 'review_rate', 'automation_rate')),
    operator        TEXT CHECK (operator IN ('gt', 'lt', 'eq')),
    threshold       REAL,
    severity        TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    -- NULL: every template.
    template_id     TEXT,
    enabled         BOOLEAN NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    window_seconds  INTEGER,
    min_volume      INTEGER,
    -- The end of the last window the background task checked: a restart or another
    -- replica goes on from here, and a check is committed only by the one that moved it.
    checked_until   TEXT,
    CHECK ((operator IS NULL) = (threshold IS NULL)),
    CHECK ((window_seconds IS NULL) = (min_volume IS NULL))
);
INSERT INTO alert_rules_v7 (id, tenant_id, name, metric, operator, threshold, severity,
    template_id, enabled, created_at, updated_at)
SELECT id, tenant_id, name, metric, operator, threshold, severity, template_id, enabled,
    created_at, updated_at FROM alert_rules;
DROP TABLE alert_rules;
ALTER TABLE alert_rules_v7 RENAME TO alert_rules;
CREATE INDEX alert_rules_tenant ON alert_rules (tenant_id, id);

CREATE TABLE alerts_v7 (
    id                   BLOB PRIMARY KEY,
    tenant_id            BLOB NOT NULL REFERENCES tenants (id),
    rule_id              BLOB,
    rule_name            TEXT NOT NULL,
    metric               TEXT NOT NULL,
    severity             TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    status               TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    dedupe_key           TEXT NOT NULL,
    template_id          TEXT,
    template_version_id  BLOB,
    -- NULL for an alert no single evaluation raised.
    evaluation_id        BLOB,
    last_evaluation_id   BLOB,
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
INSERT INTO alerts_v7 SELECT * FROM alerts;
DROP TABLE alerts;
ALTER TABLE alerts_v7 RENAME TO alerts;
CREATE INDEX alerts_tenant_id ON alerts (tenant_id, id DESC);
CREATE UNIQUE INDEX alerts_unresolved_key ON alerts (tenant_id, dedupe_key) WHERE status <> 'resolved';

ALTER TABLE webhook_endpoints ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
-- The first failed attempt since the last success.
ALTER TABLE webhook_endpoints ADD COLUMN failing_since TEXT;
-- While in the future no delivery to the endpoint is claimed (the circuit is open).
ALTER TABLE webhook_endpoints ADD COLUMN circuit_open_until TEXT;

-- The claim's "no earlier undelivered delivery of the same key" and an alert's delivery
-- status look up open deliveries by key and deliveries by event: without these a long
-- backlog made each claim scan the delivered rows before it (quadratic in the backlog).
CREATE INDEX webhook_deliveries_open ON webhook_deliveries (endpoint_id, ordering_key, status, seq);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (tenant_id, event_id);
