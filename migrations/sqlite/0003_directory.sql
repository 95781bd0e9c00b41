-- SCIM directory: users and groups provisioned by IdPs, SQLite dialect.
-- Keep equivalent to ../postgres/0003_directory.sql: same tables, columns, constraints and indexes.

-- A user provisioned through a connection (directory). org_id is copied from the connection at
-- creation so userName uniqueness (case-insensitive, through user_name_lc) is enforced per
-- organization by one index. resource_json is the full RFC 7643 resource as stored; version is
-- the ETag source, bumped by every write. A connection that still has users cannot be deleted.
CREATE TABLE directory_users (
    id             TEXT    NOT NULL PRIMARY KEY,
    org_id         TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL REFERENCES connections (id) ON DELETE RESTRICT,
    user_name      TEXT    NOT NULL,
    user_name_lc   TEXT    NOT NULL,
    external_id    TEXT,
    active         INTEGER NOT NULL CHECK (active IN (0, 1)),
    resource_json  TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    deactivated_at INTEGER,
    CONSTRAINT directory_users_org_user_name_key UNIQUE (org_id, user_name_lc)
);
CREATE INDEX directory_users_connection_external_idx ON directory_users (connection_id, external_id);
CREATE INDEX directory_users_connection_order_idx ON directory_users (connection_id, created_at, id);

-- A group provisioned through a connection; same conventions as directory_users.
CREATE TABLE directory_groups (
    id            TEXT    NOT NULL PRIMARY KEY,
    org_id        TEXT    NOT NULL,
    connection_id TEXT    NOT NULL REFERENCES connections (id) ON DELETE RESTRICT,
    display_name  TEXT    NOT NULL,
    external_id   TEXT,
    resource_json TEXT    NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 1),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX directory_groups_connection_external_idx ON directory_groups (connection_id, external_id);
CREATE INDEX directory_groups_connection_order_idx ON directory_groups (connection_id, created_at, id);

-- Group membership (users only); removed with either side.
CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES directory_groups (id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES directory_users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user_idx ON group_members (user_id);
