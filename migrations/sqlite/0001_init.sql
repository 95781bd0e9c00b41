-- idplex store schema, SQLite dialect.
-- Keep equivalent to ../postgres/0001_init.sql: same tables, columns, constraints and indexes.
-- Timestamps are unix milliseconds (INTEGER), ids are TEXT, JSON documents are TEXT.

-- Installed connector modules, content-addressed by the sha256 of the component bytes.
CREATE TABLE modules (
    sha256           TEXT    NOT NULL PRIMARY KEY CHECK (length(sha256) = 64),
    name             TEXT    NOT NULL,
    version          TEXT    NOT NULL,
    contract_version TEXT    NOT NULL,
    size_bytes       INTEGER NOT NULL CHECK (size_bytes >= 0),
    info_json        TEXT    NOT NULL,
    component        BLOB    NOT NULL,
    installed_at     INTEGER NOT NULL,
    CONSTRAINT modules_name_version_key UNIQUE (name, version)
);

-- An organization's connection to an IdP (a directory), bound to one version of a connector.
CREATE TABLE connections (
    id                TEXT    NOT NULL PRIMARY KEY,
    org_id            TEXT    NOT NULL,
    name              TEXT    NOT NULL,
    connector_name    TEXT    NOT NULL,
    active_version    TEXT,
    previous_version  TEXT,
    config_json       TEXT    NOT NULL DEFAULT '{}',
    egress_allow_json TEXT    NOT NULL DEFAULT '[]',
    limits_json       TEXT    NOT NULL DEFAULT '{}',
    generation        INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    CONSTRAINT connections_org_name_key UNIQUE (org_id, name)
);
CREATE INDEX connections_connector_idx ON connections (connector_name);

-- Append-only log of binding changes; seq is the connection's generation after the change.
CREATE TABLE binding_history (
    connection_id TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    from_version  TEXT,
    to_version    TEXT    NOT NULL,
    action        TEXT    NOT NULL CHECK (action IN ('activate', 'rollback')),
    actor         TEXT    NOT NULL,
    at            INTEGER NOT NULL,
    PRIMARY KEY (connection_id, seq)
);

-- Admin API tokens; only the hex sha256 of the secret is stored.
CREATE TABLE admin_tokens (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL CHECK (length(token_hash) = 64),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    CONSTRAINT admin_tokens_token_hash_key UNIQUE (token_hash)
);

-- What connectors did wrong (traps, timeouts, refused egress, ...), for admins to read.
-- connection_id is deliberately not a foreign key: events outlive connections.
CREATE TABLE connector_events (
    id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,
    connection_id TEXT,
    connector     TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    message       TEXT    NOT NULL
);
CREATE INDEX connector_events_at_idx ON connector_events (at, id);
CREATE INDEX connector_events_connection_idx ON connector_events (connection_id, at, id);
