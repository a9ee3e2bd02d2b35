-- Asynchronous invocations of service apps ("functions"). The row is written after the
-- request body (DATA/invocations/ID/request) is on disk, before the caller gets its 202;
-- the response body goes to DATA/invocations/ID/response before the row says it ended.

CREATE TABLE invocations (
    id                    TEXT PRIMARY KEY,
    app_id                TEXT NOT NULL,
    app_name              TEXT NOT NULL,
    -- The user whose token queued it (passed to the app as X-Wharf-User).
    invoked_by            TEXT NOT NULL,
    method                TEXT NOT NULL,
    -- Path and query inside the app, e.g. /predict?model=2
    path                  TEXT NOT NULL,
    request_content_type  TEXT,
    request_size          BIGINT NOT NULL,
    callback_url          TEXT,
    -- queued | running | succeeded | failed
    state                 TEXT NOT NULL,
    attempts              BIGINT NOT NULL,
    next_attempt_at       BIGINT NOT NULL,
    error                 TEXT,
    response_status       BIGINT,
    -- JSON: [["name", "value"], ...]
    response_headers      TEXT,
    response_content_type TEXT,
    -- Bytes kept (at most the server's cap) and whether the app sent more.
    response_size         BIGINT,
    response_truncated    BIGINT NOT NULL,
    duration_ms           BIGINT,
    created_at            BIGINT NOT NULL,
    started_at            BIGINT,
    finished_at           BIGINT,
    -- none | pending | sent | failed
    callback_state        TEXT NOT NULL,
    callback_attempts     BIGINT NOT NULL,
    callback_next_at      BIGINT,
    callback_error        TEXT,
    updated_at            BIGINT NOT NULL
);

CREATE INDEX invocations_by_app ON invocations (app_name, created_at);
CREATE INDEX invocations_by_state ON invocations (state, created_at);
CREATE INDEX invocations_callbacks_due ON invocations (callback_state, callback_next_at);

-- Every attempt: calls of the app and deliveries of the callback.
CREATE TABLE invocation_attempts (
    invocation_id  TEXT NOT NULL REFERENCES invocations (id) ON DELETE CASCADE,
    -- call | callback
    kind           TEXT NOT NULL,
    number         BIGINT NOT NULL,
    started_at     BIGINT NOT NULL,
    finished_at    BIGINT NOT NULL,
    -- The HTTP status answered, if any.
    status         BIGINT,
    error          TEXT,
    PRIMARY KEY (invocation_id, kind, number)
);
