-- Users, API keys, revoked sessions and the append-only audit trail.

CREATE TABLE users (
    id                  BLOB PRIMARY KEY,
    tenant_id           BLOB NOT NULL REFERENCES tenants (id),
    email               TEXT NOT NULL,
    password_hash       TEXT NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    failed_logins       INTEGER NOT NULL DEFAULT 0,
    locked_until        TEXT,
    tokens_valid_after  TEXT NOT NULL,
    created_at          TEXT NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (email);
CREATE INDEX users_tenant ON users (tenant_id);

CREATE TABLE api_keys (
    id                     BLOB PRIMARY KEY,
    tenant_id              BLOB REFERENCES tenants (id),
    name                   TEXT NOT NULL,
    prefix                 TEXT NOT NULL,
    key_hash               TEXT NOT NULL UNIQUE,
    scopes                 TEXT NOT NULL,
    operator               BOOLEAN NOT NULL DEFAULT FALSE,
    rate_limit_per_minute  INTEGER,
    expires_at             TEXT,
    created_by             TEXT NOT NULL,
    created_at             TEXT NOT NULL,
    last_used_at           TEXT,
    revoked_at             TEXT,
    CHECK (operator OR tenant_id IS NOT NULL)
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at DESC);

CREATE TABLE revoked_tokens (
    jti         TEXT PRIMARY KEY,
    expires_at  TEXT NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);

CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    BLOB REFERENCES tenants (id),
    occurred_at  TEXT NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    target       TEXT,
    ip           TEXT,
    request_id   TEXT,
    details      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id DESC);

-- Append-only, enforced by the database itself.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
