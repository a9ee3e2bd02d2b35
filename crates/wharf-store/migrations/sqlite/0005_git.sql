-- Git-backed apps: where an app's source is fetched from at each run start.

CREATE TABLE git_sources (
    app_name           TEXT PRIMARY KEY,
    url                TEXT NOT NULL,
    git_ref            TEXT NOT NULL,
    subdir             TEXT NOT NULL,
    -- none | token | ssh_key; the credential itself is sealed with the server's key.
    credential_kind    TEXT NOT NULL,
    credential_sealed  TEXT,
    last_commit        TEXT,
    last_version       BIGINT,
    last_fetch_at      BIGINT,
    last_error         TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

ALTER TABLE runs ADD COLUMN source_commit TEXT;
