-- OpenID Connect for downstream apps, and per-organization session policy. SQLite dialect.
-- Keep equivalent to ../postgres/0009_oidc.sql: same tables, columns, constraints and indexes.

-- Apps (OAuth 2.0 / OIDC clients) registered by an admin. The client secret is shown once; only
-- its sha256 is kept. Redirect URIs are a JSON array, matched exactly.
CREATE TABLE oidc_clients (
    id                 TEXT    NOT NULL PRIMARY KEY,
    org_id             TEXT    NOT NULL,
    name               TEXT    NOT NULL,
    redirect_uris_json TEXT    NOT NULL,
    secret_hash        TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    secret_rotated_at  INTEGER NOT NULL,
    UNIQUE (org_id, name)
);

-- The keys ID tokens are signed with: the newest unretired one signs; retired ones stay
-- published in the JWKS until the tokens they signed have expired, then are pruned. The private
-- key is sealed with the deployment's secrets key.
CREATE TABLE oidc_signing_keys (
    kid                TEXT    NOT NULL PRIMARY KEY,
    alg                TEXT    NOT NULL,
    private_key_sealed TEXT    NOT NULL,
    public_jwk_json    TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,
    retired_at         INTEGER
);

-- Authorization requests waiting for the user to sign in (the app's parameters, kept here so
-- that the sign-in's return path stays short); consumed once.
CREATE TABLE oidc_pending (
    id          TEXT    NOT NULL PRIMARY KEY,
    client_id   TEXT    NOT NULL REFERENCES oidc_clients (id) ON DELETE CASCADE,
    params_json TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX oidc_pending_expires_idx ON oidc_pending (expires_at);

-- Authorization codes (stored hashed): redeemed once; a second redemption marks the code reused,
-- which revokes the tokens issued for it.
CREATE TABLE oidc_codes (
    code_hash      TEXT    NOT NULL PRIMARY KEY,
    id             TEXT    NOT NULL UNIQUE,
    client_id      TEXT    NOT NULL REFERENCES oidc_clients (id) ON DELETE CASCADE,
    user_id        TEXT    NOT NULL REFERENCES directory_users (id) ON DELETE CASCADE,
    redirect_uri   TEXT    NOT NULL,
    code_challenge TEXT    NOT NULL,
    scope          TEXT    NOT NULL,
    nonce          TEXT,
    auth_time      INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER,
    reused_at      INTEGER
);
CREATE INDEX oidc_codes_expires_idx ON oidc_codes (expires_at);

-- Access tokens (stored hashed) for the userinfo endpoint.
CREATE TABLE oidc_access_tokens (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    code_id    TEXT    NOT NULL,
    client_id  TEXT    NOT NULL REFERENCES oidc_clients (id) ON DELETE CASCADE,
    user_id    TEXT    NOT NULL REFERENCES directory_users (id) ON DELETE CASCADE,
    scope      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX oidc_access_tokens_code_idx ON oidc_access_tokens (code_id);
CREATE INDEX oidc_access_tokens_expires_idx ON oidc_access_tokens (expires_at);

-- An organization's session policy: sessions end after this long without a request (idle) and
-- this long after sign-in (absolute), whatever lifetime they were opened with.
CREATE TABLE org_settings (
    org_id                   TEXT    NOT NULL PRIMARY KEY,
    session_idle_minutes     INTEGER,
    session_absolute_minutes INTEGER,
    updated_at               INTEGER NOT NULL
);
