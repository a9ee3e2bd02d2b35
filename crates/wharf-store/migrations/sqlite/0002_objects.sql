-- Buckets, objects and their blobs, multipart uploads, the event outbox and S3 access keys.
-- Portable like 0001 except `events.seq`: SQLite's INTEGER PRIMARY KEY is the rowid
-- (monotonic, assigned on insert); PostgreSQL will use BIGINT GENERATED ALWAYS AS IDENTITY.

CREATE TABLE buckets (
    name         TEXT PRIMARY KEY,
    owner_id     TEXT NOT NULL,
    public_read  BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL
);

-- Keys are compared byte-wise (SQLite BINARY collation on UTF-8 = S3's order).
CREATE TABLE objects (
    bucket         TEXT NOT NULL REFERENCES buckets (name),
    key            TEXT NOT NULL,
    blob_id        TEXT NOT NULL,
    size           BIGINT NOT NULL,
    etag           TEXT NOT NULL,
    content_type   TEXT,
    metadata       TEXT NOT NULL,
    parts_count    BIGINT,
    last_modified  BIGINT NOT NULL,
    PRIMARY KEY (bucket, key)
);

CREATE TABLE multipart_uploads (
    id             TEXT PRIMARY KEY,
    bucket         TEXT NOT NULL REFERENCES buckets (name),
    key            TEXT NOT NULL,
    content_type   TEXT,
    metadata       TEXT NOT NULL,
    initiator      TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX multipart_uploads_by_key ON multipart_uploads (bucket, key, id);

CREATE TABLE multipart_parts (
    upload_id    TEXT NOT NULL REFERENCES multipart_uploads (id) ON DELETE CASCADE,
    part_number  BIGINT NOT NULL,
    blob_id      TEXT NOT NULL,
    size         BIGINT NOT NULL,
    etag         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);

-- Blobs no longer referenced (replaced or deleted objects, aborted parts), written in the
-- same transaction that dropped the reference; the blob is deleted after the commit.
CREATE TABLE blob_garbage (
    blob_id     TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL
);

-- The outbox: every object change writes its event in the same transaction.
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    source         TEXT NOT NULL,
    detail_type    TEXT NOT NULL,
    body           TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    dispatched_at  BIGINT
);
CREATE INDEX events_undispatched ON events (dispatched_at, seq);
CREATE INDEX events_by_time ON events (created_at);

-- S3 access keys: a user's (all buckets) or a run's (only `buckets`, a JSON list).
-- The secret is sealed with the server's secret key (never stored in the clear).
CREATE TABLE s3_keys (
    access_key     TEXT PRIMARY KEY,
    secret_sealed  TEXT NOT NULL,
    user_id        TEXT REFERENCES users (id) ON DELETE CASCADE,
    run_id         TEXT,
    buckets        TEXT,
    description    TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT
);
CREATE INDEX s3_keys_by_run ON s3_keys (run_id);

ALTER TABLE runs ADD COLUMN event_id TEXT;
