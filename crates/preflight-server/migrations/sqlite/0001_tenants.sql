-- Tenants: the unit of isolation. Every tenant-owned table references this one.
-- Ids are 16-byte UUID blobs and times are RFC 3339 text written by the application, so the
-- same queries serve SQLite and PostgreSQL.
CREATE TABLE tenants (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);
