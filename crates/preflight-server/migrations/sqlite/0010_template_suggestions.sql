-- Template suggestions: what operators decided about clusters of NEW evaluations
-- (GET /v1/template-suggestions clusters them on every call; only decisions are stored).
-- 0009 is the review queue's.

CREATE TABLE template_suggestion_decisions (
    tenant_id                     BLOB NOT NULL REFERENCES tenants (id),
    -- The cluster key: 64 hex digits, cluster_key(leader evaluation id).
    suggestion_id                 TEXT NOT NULL,
    status                        TEXT NOT NULL CHECK (status IN ('accepted', 'dismissed')),
    -- The cluster's representative when decided, and its layout (structural features:
    -- metadata only, never document text): later clusters of the same layout stay
    -- dismissed.
    representative_evaluation_id  BLOB NOT NULL,
    representative_features       TEXT NOT NULL,
    layout_fingerprint            TEXT NOT NULL,
    size                          BIGINT NOT NULL,
    -- The template an accepted suggestion became.
    template_id                   TEXT,
    template_version_id           BLOB,
    decided_by                    TEXT NOT NULL,
    decided_at                    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, suggestion_id)
);

-- The members of accepted suggestions, which later listings leave out.
CREATE TABLE template_suggestion_members (
    tenant_id      BLOB NOT NULL REFERENCES tenants (id),
    evaluation_id  BLOB NOT NULL,
    suggestion_id  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, evaluation_id)
);
