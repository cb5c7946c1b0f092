-- Users, API keys, revoked sessions and the append-only audit trail.

CREATE TABLE users (
    id                  UUID PRIMARY KEY,
    tenant_id           UUID NOT NULL REFERENCES tenants (id),
    email               TEXT NOT NULL,
    password_hash       TEXT NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    failed_logins       INTEGER NOT NULL DEFAULT 0,
    locked_until        TIMESTAMPTZ,
    -- Tokens issued before this instant are refused (set on password change).
    tokens_valid_after  TIMESTAMPTZ NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL
);
-- The email is the login identity, so it is unique across tenants.
CREATE UNIQUE INDEX users_email ON users (email);
CREATE INDEX users_tenant ON users (tenant_id);

CREATE TABLE api_keys (
    id                     UUID PRIMARY KEY,
    -- NULL only for operator keys minted with `preflight admin`.
    tenant_id              UUID REFERENCES tenants (id),
    name                   TEXT NOT NULL,
    prefix                 TEXT NOT NULL,
    key_hash               TEXT NOT NULL UNIQUE,
    scopes                 TEXT NOT NULL,
    operator               BOOLEAN NOT NULL DEFAULT FALSE,
    rate_limit_per_minute  INTEGER,
    expires_at             TIMESTAMPTZ,
    created_by             TEXT NOT NULL,
    created_at             TIMESTAMPTZ NOT NULL,
    last_used_at           TIMESTAMPTZ,
    revoked_at             TIMESTAMPTZ,
    CHECK (operator OR tenant_id IS NOT NULL)
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at DESC);

CREATE TABLE revoked_tokens (
    jti         TEXT PRIMARY KEY,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);

CREATE TABLE audit_log (
    id           BIGSERIAL PRIMARY KEY,
    tenant_id    UUID REFERENCES tenants (id),
    occurred_at  TIMESTAMPTZ NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    target       TEXT,
    ip           TEXT,
    request_id   TEXT,
    details      JSONB NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id DESC);

-- Append-only, enforced by the database itself: no code path (or operator typo) can rewrite history.
CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
