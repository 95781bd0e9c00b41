-- Directory pull sync: idplex pulls users and groups from an IdP's directory API through the
-- connection's connector, page by page, in passes. PostgreSQL dialect.
-- Keep equivalent to ../sqlite/0011_directory_sync.sql: same tables, columns, constraints and indexes.

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
    enabled          BOOLEAN NOT NULL DEFAULT TRUE,
    interval_secs    BIGINT  NOT NULL DEFAULT 900 CHECK (interval_secs >= 60),
    pass_id          BIGINT  NOT NULL DEFAULT 0,
    pass_kind        TEXT    CHECK (pass_kind IN ('full', 'delta')),
    pass_cursor      TEXT,
    pass_pages       BIGINT  NOT NULL DEFAULT 0,
    pass_started_at  BIGINT,
    resume_cursor    TEXT,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    next_run_at      BIGINT,
    updated_at       BIGINT  NOT NULL
);

-- One row per sync run (scheduled or manual), for admins: its outcome and what it did. A run is
-- 'running' until the hub finishes it. Pruned by age (Store::prune_directory_sync_log).
CREATE TABLE directory_sync_runs (
    id            BIGSERIAL PRIMARY KEY,
    connection_id TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    trigger       TEXT    NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    started_at    BIGINT  NOT NULL,
    finished_at   BIGINT,
    outcome       TEXT    NOT NULL CHECK (outcome IN ('running', 'ok', 'error')),
    pass_kind     TEXT    CHECK (pass_kind IN ('full', 'delta')),
    pages         BIGINT  NOT NULL DEFAULT 0,
    users_seen    BIGINT  NOT NULL DEFAULT 0,
    groups_seen   BIGINT  NOT NULL DEFAULT 0,
    created       BIGINT  NOT NULL DEFAULT 0,
    changed       BIGINT  NOT NULL DEFAULT 0,
    removed       BIGINT  NOT NULL DEFAULT 0,
    errors        BIGINT  NOT NULL DEFAULT 0,
    message       TEXT
);
CREATE INDEX directory_sync_runs_connection_idx
    ON directory_sync_runs (connection_id, started_at DESC, id DESC);

-- Failed pages and per-item problems of a run (a userName taken, an unknown member, ...), for
-- admins. message is actionable and never a secret. Removed with its run.
CREATE TABLE directory_sync_log (
    id            BIGSERIAL PRIMARY KEY,
    run_id        BIGINT  NOT NULL REFERENCES directory_sync_runs (id) ON DELETE CASCADE,
    connection_id TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    at            BIGINT  NOT NULL,
    level         TEXT    NOT NULL CHECK (level IN ('error', 'warning')),
    message       TEXT    NOT NULL
);
CREATE INDEX directory_sync_log_connection_idx ON directory_sync_log (connection_id, at DESC, id DESC);
CREATE INDEX directory_sync_log_run_idx ON directory_sync_log (run_id);

-- The pass that last reported a user, group or membership (directory_sync.pass_id). NULL for
-- what SCIM (or sign-in) provisioned: a full pass's sweep never removes those. A full pass
-- removes what of its connection has a smaller sync_pass when it completes.
ALTER TABLE directory_users ADD COLUMN sync_pass BIGINT;
ALTER TABLE directory_groups ADD COLUMN sync_pass BIGINT;
ALTER TABLE group_members ADD COLUMN sync_pass BIGINT;
CREATE INDEX directory_users_connection_sync_pass_idx ON directory_users (connection_id, sync_pass);
CREATE INDEX directory_groups_connection_sync_pass_idx ON directory_groups (connection_id, sync_pass);

-- Nested groups: member_group_id is a member of group_id (groups of the same connection);
-- removed with either group.
CREATE TABLE group_subgroups (
    group_id        TEXT    NOT NULL REFERENCES directory_groups (id) ON DELETE CASCADE,
    member_group_id TEXT    NOT NULL REFERENCES directory_groups (id) ON DELETE CASCADE,
    sync_pass       BIGINT,
    PRIMARY KEY (group_id, member_group_id),
    CHECK (group_id <> member_group_id)
);
CREATE INDEX group_subgroups_member_idx ON group_subgroups (member_group_id);
