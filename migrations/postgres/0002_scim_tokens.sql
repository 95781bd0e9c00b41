-- SCIM bearer tokens, PostgreSQL dialect.
-- Keep equivalent to ../sqlite/0002_scim_tokens.sql: same tables, columns, constraints and indexes.

-- Bearer tokens an IdP presents to /scim/v2/{connection}; each is valid for its own connection
-- only. Only the hex sha256 of the secret is stored. Every token expires. rotated_from is the
-- token this one replaced (rotation keeps both valid during an overlap window).
CREATE TABLE scim_tokens (
    id            TEXT    NOT NULL PRIMARY KEY,
    connection_id TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    token_hash    TEXT    NOT NULL CHECK (length(token_hash) = 64),
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    revoked_at    BIGINT,
    last_used_at  BIGINT,
    rotated_from  TEXT    REFERENCES scim_tokens (id) ON DELETE SET NULL,
    CONSTRAINT scim_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX scim_tokens_connection_idx ON scim_tokens (connection_id, created_at);
