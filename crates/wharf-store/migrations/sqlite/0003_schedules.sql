-- Schedule triggers: what the scheduler has handled, and pauses.
-- One row per (app, trigger position in the active manifest's [[job.trigger]] list).
-- `spec` is the expression and time zone `last_slot` belongs to: when a deploy changes
-- them, the scheduler starts afresh from the deploy instead of catching up.
CREATE TABLE schedule_states (
    app_id         TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    trigger_index  BIGINT NOT NULL,
    spec           TEXT NOT NULL,
    -- Unix ms of the newest slot fired or deliberately passed over.
    last_slot      BIGINT NOT NULL,
    paused         BIGINT NOT NULL DEFAULT 0,
    paused_by      TEXT,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (app_id, trigger_index)
);

-- Per-app trigger URL secrets: only the SHA-256 of the random secret is kept.
CREATE TABLE trigger_secrets (
    app_id       TEXT PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    secret_hash  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL
);
