-- The review queue: the evaluations a person should look at (REVIEW, NEW, REJECT and a
-- sample of MATCHes), created in the evaluation's own commit, claimed under a lease and
-- resolved with an outcome that is recorded as the evaluation's feedback in the same
-- transaction. Evaluations committed before this migration get no items.

CREATE TABLE review_items (
    -- UUIDv7 at the evaluation's time: the primary key orders items by age.
    id                 UUID PRIMARY KEY,
    tenant_id          UUID NOT NULL REFERENCES tenants (id),
    evaluation_id      UUID NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    decision           TEXT NOT NULL CHECK (decision IN ('MATCH', 'REVIEW', 'NEW', 'REJECT')),
    -- `decision`: the answer itself asks for a person; `sample`: a MATCH drawn for QA.
    reason             TEXT NOT NULL CHECK (reason IN ('decision', 'sample')),
    priority           INTEGER NOT NULL,
    template_id        TEXT,
    template_version   BIGINT,
    extractor_vendor   TEXT NOT NULL,
    extractor_model    TEXT NOT NULL,
    reliability_score  DOUBLE PRECISION NOT NULL,
    drift_score        DOUBLE PRECISION NOT NULL,
    -- `claimed` with a lease in the past is claimable again: a crashed reviewer's item
    -- returns by itself, without a sweeper.
    status             TEXT NOT NULL CHECK (status IN ('open', 'claimed', 'resolved')),
    lease_token        UUID,
    claimed_by         TEXT,
    claimed_at         TIMESTAMPTZ,
    lease_expires_at   TIMESTAMPTZ,
    claim_count        INTEGER NOT NULL DEFAULT 0,
    resolved_at        TIMESTAMPTZ,
    resolved_by        TEXT,
    outcome            TEXT CHECK (outcome IN ('correct', 'corrected', 'rejected')),
    UNIQUE (tenant_id, evaluation_id),
    CHECK ((status = 'claimed') = (lease_token IS NOT NULL)),
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
-- The queue as reviewers read it: unresolved items by priority, then age.
CREATE INDEX review_items_queue ON review_items (tenant_id, priority DESC, id)
    WHERE status <> 'resolved';
CREATE INDEX review_items_tenant_id ON review_items (tenant_id, id);
CREATE INDEX review_items_resolved ON review_items (tenant_id, resolved_at)
    WHERE status = 'resolved';
