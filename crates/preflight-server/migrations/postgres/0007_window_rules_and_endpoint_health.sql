-- Window rules (rates of NEW / REJECT / REVIEW / automation over a sliding window, checked
-- by a background task whose progress is `checked_until`), alerts that no single
-- evaluation raised (a window, an endpoint disabled), and each endpoint's health for the
-- circuit breaker and auto-disable.

ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_metric_check;
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_metric_check CHECK (metric IN (
    'drift', 'reliability', 'unknown_provider', 'change_point', 'extractor_changed',
    'new_rate', 'reject_rate', 'review_rate', 'automation_rate'));
ALTER TABLE alert_rules ADD COLUMN window_seconds INTEGER;
ALTER TABLE alert_rules ADD COLUMN min_volume INTEGER;
-- The end of the last window the background task checked: a restart or another replica
-- goes on from here, and a check is committed only by the one that moved it.
ALTER TABLE alert_rules ADD COLUMN checked_until TIMESTAMPTZ;
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_window_check
    CHECK ((window_seconds IS NULL) = (min_volume IS NULL));

ALTER TABLE alerts ALTER COLUMN evaluation_id DROP NOT NULL;
ALTER TABLE alerts ALTER COLUMN last_evaluation_id DROP NOT NULL;

ALTER TABLE webhook_endpoints ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
-- The first failed attempt since the last success.
ALTER TABLE webhook_endpoints ADD COLUMN failing_since TIMESTAMPTZ;
-- While in the future no delivery to the endpoint is claimed (the circuit is open).
ALTER TABLE webhook_endpoints ADD COLUMN circuit_open_until TIMESTAMPTZ;

-- The claim's "no earlier undelivered delivery of the same key" and an alert's delivery
-- status look up open deliveries by key and deliveries by event: without these a long
-- backlog made each claim scan the delivered rows before it (quadratic in the backlog).
CREATE INDEX webhook_deliveries_open ON webhook_deliveries (endpoint_id, ordering_key, status, seq);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (tenant_id, event_id);
