-- Named secrets (`wharf secret set NAME`), injected into apps whose manifest names them in
-- [env] as { secret = "NAME" }. The value is stored sealed with the server's key
-- (DATA/secret.key, XChaCha20-Poly1305); it is never listed, logged or returned by the API.

CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    sealed      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    -- The user who set the current value.
    updated_by  TEXT NOT NULL
);
