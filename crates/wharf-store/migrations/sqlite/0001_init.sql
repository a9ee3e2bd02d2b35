-- Portable SQL: TEXT ids made by the application, BIGINT unix milliseconds for times,
-- no SQLite-only types, so the PostgreSQL migration can stay a copy of this file.

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);

CREATE TABLE apps (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    active_version  BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    created_by      TEXT NOT NULL
);

CREATE TABLE app_versions (
    app_id         TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    number         BIGINT NOT NULL,
    manifest       TEXT NOT NULL,
    bundle_sha256  TEXT NOT NULL,
    bundle_size    BIGINT NOT NULL,
    file_count     BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    created_by     TEXT NOT NULL,
    PRIMARY KEY (app_id, number)
);

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    app_id           TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    app_name         TEXT NOT NULL,
    version          BIGINT NOT NULL,
    state            TEXT NOT NULL,
    trigger_kind     TEXT NOT NULL,
    triggered_by     TEXT,
    params           TEXT NOT NULL,
    attempt          BIGINT NOT NULL,
    retry_of         TEXT,
    retried_by       TEXT,
    idempotency_key  TEXT UNIQUE,
    exit_code        BIGINT,
    exit_signal      BIGINT,
    error            TEXT,
    queued_at        BIGINT NOT NULL,
    not_before       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    shim_pid         BIGINT
);

CREATE INDEX runs_by_app ON runs (app_id, queued_at);
CREATE INDEX runs_by_state ON runs (state, not_before);
