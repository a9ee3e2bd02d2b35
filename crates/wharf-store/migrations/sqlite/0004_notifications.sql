-- Notifications of finished runs (the outbox of the notifier): written in the same
-- transaction as the run's end, delivered and retried by wharf-control.
CREATE TABLE notifications (
    id               TEXT PRIMARY KEY,
    run_id           TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    app_name         TEXT NOT NULL,
    channel          TEXT NOT NULL,
    event            TEXT NOT NULL,
    -- pending | sent | failed
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    sent_at          BIGINT,
    updated_at       BIGINT NOT NULL,
    UNIQUE (run_id, channel)
);

CREATE INDEX notifications_due ON notifications (state, next_attempt_at);
