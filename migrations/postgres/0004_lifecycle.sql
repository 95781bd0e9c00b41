-- User lifecycle: SCIM DELETE policy, soft-deleted users, user API tokens and sessions, and the
-- per-directory SCIM sync log. PostgreSQL dialect.
-- Keep equivalent to ../sqlite/0004_lifecycle.sql: same tables, columns, constraints and indexes.

-- What a SCIM DELETE of a user does in this directory: 'deactivate' (default: the user is
-- deactivated and hidden from SCIM, its data, memberships and history kept) or 'delete' (the
-- row is removed, with its memberships, API tokens and sessions).
ALTER TABLE connections ADD COLUMN scim_delete_policy TEXT NOT NULL DEFAULT 'deactivate'
    CONSTRAINT connections_scim_delete_policy_check CHECK (scim_delete_policy IN ('deactivate', 'delete'));

-- Set when a SCIM DELETE soft-deleted the user ('deactivate' policy): from then on SCIM treats
-- the user as absent (404), admins still see it, and a create of the same userName through the
-- same directory restores it. The user keeps its userName (uniqueness) meanwhile.
ALTER TABLE directory_users ADD COLUMN scim_deleted_at BIGINT;

-- API tokens of directory users (what a user's scripts present to /api/v1). Only the hex
-- sha256 of the secret is stored; prefix is the start of the secret, for people to recognise
-- it. A token works only while it is unrevoked, unexpired and its user active and not deleted.
CREATE TABLE user_api_tokens (
    id           TEXT    NOT NULL PRIMARY KEY,
    org_id       TEXT    NOT NULL,
    user_id      TEXT    NOT NULL REFERENCES directory_users (id) ON DELETE CASCADE,
    label        TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL CHECK (length(token_hash) = 64),
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT,
    CONSTRAINT user_api_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX user_api_tokens_user_idx ON user_api_tokens (user_id, created_at);
CREATE INDEX user_api_tokens_org_idx ON user_api_tokens (org_id, created_at);

-- Sessions of directory users (the idplex_session cookie). Ended for good (ended_at,
-- end_reason) when the user is deactivated or deleted: reactivation does not revive them.
CREATE TABLE user_sessions (
    id           TEXT    NOT NULL PRIMARY KEY,
    org_id       TEXT    NOT NULL,
    user_id      TEXT    NOT NULL REFERENCES directory_users (id) ON DELETE CASCADE,
    token_hash   TEXT    NOT NULL CHECK (length(token_hash) = 64),
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    last_seen_at BIGINT,
    ended_at     BIGINT,
    end_reason   TEXT    CHECK (end_reason IN ('user_deactivated', 'user_deleted', 'revoked')),
    CONSTRAINT user_sessions_token_hash_key UNIQUE (token_hash),
    CONSTRAINT user_sessions_end_check CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);
CREATE INDEX user_sessions_user_idx ON user_sessions (user_id, created_at);

-- One row per SCIM request of a directory, for admins: what the IdP asked, what it got and why.
-- detail is an actionable error message (never a secret, a token or a request body).
-- Pruned by age (see Store::prune_sync_log); removed with the connection.
CREATE TABLE scim_sync_log (
    id            BIGSERIAL PRIMARY KEY,
    connection_id TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    at            BIGINT  NOT NULL,
    method        TEXT    NOT NULL,
    path          TEXT    NOT NULL,
    resource_type TEXT    CHECK (resource_type IN ('User', 'Group')),
    resource_id   TEXT,
    operation     TEXT    NOT NULL
        CHECK (operation IN ('create', 'get', 'query', 'replace', 'patch', 'delete', 'search', 'other')),
    status        INTEGER NOT NULL CHECK (status BETWEEN 100 AND 599),
    outcome       TEXT    NOT NULL
        CHECK (outcome IN ('ok', 'client_error', 'connector_error', 'server_error')),
    scim_type     TEXT,
    detail        TEXT,
    duration_us   BIGINT  NOT NULL CHECK (duration_us >= 0),
    user_agent    TEXT
);
CREATE INDEX scim_sync_log_connection_at_idx ON scim_sync_log (connection_id, at DESC, id DESC);
