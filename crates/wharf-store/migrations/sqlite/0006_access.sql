-- Local logins: an argon2id password hash (PHC string) per user, NULL for users that
-- only use API tokens; and browser sessions, stored as the SHA-256 of their token only.

ALTER TABLE users ADD COLUMN password_hash TEXT;

CREATE TABLE sessions (
    token_hash    TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);

CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
