-- Directory pull sync: idplex pulls users and groups from an IdP's directory API through the
-- connection's connector, page by page, in passes. SQLite dialect.
-- Keep equivalent to ../postgres/0011_directory_sync.sql: same tables, columns, constraints and indexes.

-- One row per connection that pulls (see Store::apply_pull_page). A pass is 'full' (a snapshot:
-- whatever it did not report is gone when it completes) or 'delta' (changes since the cursor the
-- previous pass ended with). pass_id is the id of the current or last pass, increasing;
-- pass_kind is set while a pass is in progress (NULL otherwise); pass_cursor is the cursor to
-- ask next in that pass (NULL: the start of a full pass); pass_pages counts the pages it
-- applied. resume_cursor is what the last complete pass ended with: where the next pass (a
-- delta) starts. Every page is applied in one transaction with the cursor, so a run killed
-- mid-pass resumes from the last applied page. lease_owner/lease_expires_at: the replica
-- running the sync (one at a time per connection); next_run_at: when the schedule runs it next.
CREATE TABLE directory_sync (
    connection_id    TEXT    NOT NULL PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    enabled          INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    interval_secs    INTEGER NOT NULL DEFAULT 900 CHECK (interval_secs >= 60),
    pass_id          INTEGER NOT NULL DEFAULT 0,
    pass_kind        TEXT    CHECK (pass_kind IN ('full', 'delta')),
    pass_cursor      TEXT,
    pass_pages       INTEGER NOT NULL DEFAULT 0,
    pass_started_at  INTEGER,
    resume_cursor    TEXT,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    next_run_at      INTEGER,
    updated_at       INTEGER NOT NULL
);

-- One row per sync run (scheduled or manual), for admins: its outcome and what it did. A run is
-- 'running' until the hub finishes it. Pruned by age (Store::prune_directory_sync_log).
CREATE TABLE directory_sync_runs (
    id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    connection_id TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    trigger       TEXT    NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    outcome       TEXT    NOT NULL CHECK (outcome IN ('running', 'ok', 'error')),
    pass_kind     TEXT    CHECK (pass_kind IN ('full', 'delta')),
    pages         INTEGER NOT NULL DEFAULT 0,
    users_seen    INTEGER NOT NULL DEFAULT 0,
    groups_seen   INTEGER NOT NULL DEFAULT 0,
    created       INTEGER NOT NULL DEFAULT 0,
    changed       INTEGER NOT NULL DEFAULT 0,
    removed       INTEGER NOT NULL DEFAULT 0,
    errors        INTEGER NOT NULL DEFAULT 0,
    message       TEXT
);
CREATE INDEX directory_sync_runs_connection_idx
    ON directory_sync_runs (connection_id, started_at DESC, id DESC);

-- Failed pages and per-item problems of a run (a userName taken, an unknown member, ...), for
-- admins. message is actionable and never a secret. Removed with its run.
CREATE TABLE directory_sync_log (
    id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    run_id        INTEGER NOT NULL REFERENCES directory_sync_runs (id) ON DELETE CASCADE,
    connection_id TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    at            INTEGER NOT NULL,
    level         TEXT    NOT NULL CHECK (level IN ('error', 'warning')),
    message       TEXT    NOT NULL
);
CREATE INDEX directory_sync_log_connection_idx ON directory_sync_log (connection_id, at DESC, id DESC);
CREATE INDEX directory_sync_log_run_idx ON directory_sync_log (run_id);

-- The pass that last reported a user, group or membership (directory_sync.pass_id). NULL for
-- what SCIM (or sign-in) provisioned: a full pass's sweep never removes those. A full pass
-- removes what of its connection has a smaller sync_pass when it completes.
ALTER TABLE directory_users ADD COLUMN sync_pass INTEGER;
ALTER TABLE directory_groups ADD COLUMN sync_pass INTEGER;
ALTER TABLE group_members ADD COLUMN sync_pass INTEGER;
CREATE INDEX directory_users_connection_sync_pass_idx ON directory_users (connection_id, sync_pass);
CREATE INDEX directory_groups_connection_sync_pass_idx ON directory_groups (connection_id, sync_pass);

-- Nested groups: member_group_id is a member of group_id (groups of the same connection);
-- removed with either group.
CREATE TABLE group_subgroups (
    group_id        TEXT    NOT NULL REFERENCES directory_groups (id) ON DELETE CASCADE,
    member_group_id TEXT    NOT NULL REFERENCES directory_groups (id) ON DELETE CASCADE,
    sync_pass       INTEGER,
    PRIMARY KEY (group_id, member_group_id),
    CHECK (group_id <> member_group_id)
);
CREATE INDEX group_subgroups_member_idx ON group_subgroups (member_group_id);
