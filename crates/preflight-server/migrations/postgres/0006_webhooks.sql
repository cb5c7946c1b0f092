-- Webhook endpoints, the deliveries of alerts to them (written in the transaction that
-- raised the alert: the outbox) and a log of every attempt.

CREATE TABLE webhook_endpoints (
    id                      UUID PRIMARY KEY,
    tenant_id               UUID NOT NULL REFERENCES tenants (id),
    url                     TEXT NOT NULL,
    description             TEXT,
    -- Comma-separated alert metrics it takes; empty: every metric.
    metrics                 TEXT NOT NULL,
    min_severity            TEXT NOT NULL CHECK (min_severity IN ('info', 'warning', 'critical')),
    -- NULL: alerts of every template.
    template_id             TEXT,
    enabled                 BOOLEAN NOT NULL,
    disabled_reason         TEXT,
    -- Sealed (encrypted) `whsec_` secrets; the previous one is still signed with until
    -- `previous_secret_until`, so receivers can switch without missing a delivery.
    secret_sealed           TEXT NOT NULL,
    previous_secret_sealed  TEXT,
    previous_secret_until   TIMESTAMPTZ,
    created_at              TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, id);

CREATE TABLE webhook_deliveries (
    -- Creation order: events of one template reach an endpoint in this order.
    seq              BIGSERIAL PRIMARY KEY,
    id               UUID NOT NULL UNIQUE,
    tenant_id        UUID NOT NULL REFERENCES tenants (id),
    endpoint_id      UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- The event's id (`webhook-id`): the alert's, the same for every endpoint and attempt.
    event_id         UUID NOT NULL,
    event_type       TEXT NOT NULL,
    ordering_key     TEXT NOT NULL,
    payload          JSONB NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    locked_until     TIMESTAMPTZ,
    last_status      INTEGER,
    last_error       TEXT,
    delivered_at     TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, ordering_key, seq);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (tenant_id, endpoint_id, seq DESC);

CREATE TABLE webhook_attempts (
    id               BIGSERIAL PRIMARY KEY,
    tenant_id        UUID NOT NULL REFERENCES tenants (id),
    delivery_id      UUID NOT NULL,
    attempted_at     TIMESTAMPTZ NOT NULL,
    status_code      INTEGER,
    latency_ms       DOUBLE PRECISION NOT NULL,
    error            TEXT,
    response_excerpt TEXT NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (tenant_id, delivery_id, id);
