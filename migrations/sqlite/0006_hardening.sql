-- Hardening (issue 9), SQLite dialect.
-- Keep equivalent to ../postgres/0006_hardening.sql: same tables, columns, constraints and indexes.

-- The key of group displayName lookups (SCIM `filter=displayName eq "..."`, which IdPs send
-- before creating a group): the Unicode lower case of display_name, computed by the store in
-- Rust (`str::to_lowercase`) on every write, as user_name_lc is, so both backends and the SCIM
-- filter evaluator agree. SQL lower() is ASCII-only in SQLite: it only seeds existing rows here;
-- the store rewrites them with the Rust key when it opens the database (see store_backfills).
ALTER TABLE directory_groups ADD COLUMN display_name_lc TEXT NOT NULL DEFAULT '';
UPDATE directory_groups SET display_name_lc = lower(display_name);
CREATE INDEX directory_groups_connection_display_name_idx
    ON directory_groups (connection_id, display_name_lc);

-- One-off data fixes the store runs in Rust after the migrations (a migration cannot compute
-- them): a row per fix done, e.g. 'directory_groups.display_name_lc'.
CREATE TABLE store_backfills (
    name    TEXT    NOT NULL PRIMARY KEY,
    done_at INTEGER NOT NULL
);

-- Connector events are coalesced: a repeat of an event (same connection, connector and kind)
-- within the store's coalescing window bumps `repeats` and `last_at` of the row that opened the
-- window instead of inserting a new row. last_at is NULL until the first repeat.
ALTER TABLE connector_events ADD COLUMN repeats INTEGER NOT NULL DEFAULT 1 CHECK (repeats >= 1);
ALTER TABLE connector_events ADD COLUMN last_at INTEGER;
