-- Service replicas: one row per replica started, kept after it stopped (for `wharf ps`,
-- its logs and restart recovery) until retention removes it.

CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    app_id       TEXT NOT NULL,
    app_name     TEXT NOT NULL,
    version      BIGINT NOT NULL,
    port         BIGINT NOT NULL,
    -- starting | ready | draining | stopped
    state        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    ready_at     BIGINT,
    stopped_at   BIGINT,
    exit_code    BIGINT,
    exit_signal  BIGINT,
    -- Why it stopped, in words.
    message      TEXT
);

CREATE INDEX replicas_by_app ON replicas (app_name, created_at);
CREATE INDEX replicas_by_state ON replicas (state);
