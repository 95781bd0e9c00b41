//! The SCIM directory: users and groups an IdP (Okta, Entra, OneLogin, ...) provisions through a
//! connection. Groundwork for the SCIM server; no protocol here beyond what storage needs.
//!
//! Every operation is scoped by the connection the request came through (the one its SCIM token
//! opens): an object of another connection is reported as not found, so one directory's token
//! can never read or change another directory's data. `userName` uniqueness, on the other hand,
//! is per organization (the connection's `org_id`) and case-insensitive, as RFC 7643 §4.1.1
//! defines `userName` (`caseExact: false`, server-unique): two directories of one organization
//! cannot provision the same person twice.
//!
//! # Deleting users, and what SCIM sees
//!
//! A SCIM `DELETE` goes through [`Store::scim_delete_user`], which applies the connection's
//! [`ScimDeletePolicy`]: `delete` removes the row; `deactivate` (the default) deactivates the
//! user and sets `scim_deleted_at`, keeping its resource, memberships, API tokens and history.
//! Every SCIM-facing read and write here (`get_user`, the `find_users_*`, `list_users`,
//! `replace_user`, `set_user_active`, `groups_of_user`, group members as listed, members added
//! to a group) treats a soft-deleted user as absent, as RFC 7644 §3.6 requires (404 from then
//! on); admins still see it ([`Store::get_user_for_admin`], [`Store::list_users_including_deleted`]).
//! It keeps its `userName` meanwhile; [`Store::create_user`] of that `userName` through the same
//! connection restores it (same id) instead of failing with a conflict.
//!
//! Whenever a user becomes inactive (`replace_user`, `set_user_active`, `scim_delete_user`), its
//! sessions are ended in the same transaction (see `user_tokens.rs`).
//!
//! Each user or group carries a `version`, 1 at creation and bumped by every write to it
//! (membership changes included for groups): the SCIM server's ETag. Writes that take an
//! `expected_version` fail with [`StoreError::PreconditionFailed`] (HTTP 412) when it is stale.
//!
//! Cost: creating a user is one `INSERT ... SELECT` (the organization is read from the connection
//! in the same statement); lookups by `userName` and `externalId` are single indexed queries;
//! listing a page of groups with members is two queries whatever the page size.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::is_unique_violation;
use crate::group_commit::WriteFailure;
use rusqlite::OptionalExtension;

use crate::readers::numbered;

use crate::user_tokens::{END_USER_SESSIONS, SessionEndReason};
use crate::{Pools, ScimDeleteOutcome, ScimDeletePolicy, Store, StoreError, now_ms, random_id};

/// Upper bound of `limit` in [`Store::list_users`] and [`Store::list_groups`]; larger values are
/// clamped to it.
pub const MAX_DIRECTORY_LIST_LIMIT: u32 = 1000;

/// Longest `userName`, `externalId` or `displayName` the store accepts, in bytes of UTF-8:
/// longer ones are refused with [`StoreError::InvalidInput`]. The SCIM server enforces the
/// same bound on requests; this one holds whatever the caller. It keeps every indexed text
/// column (`user_name_lc`, `external_id`, `display_name_lc`; a lower-case key is at most 1.5
/// times its source) well under PostgreSQL's b-tree row limit (about 2.7 KB), which a larger
/// value would hit with a database error instead of a client error.
pub const MAX_DIRECTORY_TEXT_BYTES: usize = 1024;

/// How many member ids one statement carries (well under both backends' parameter limits).
const MEMBER_CHUNK: usize = 500;

/// A user to create through a connection.
#[derive(Debug, Clone)]
pub struct NewDirectoryUser {
    /// The connection (directory) provisioning the user; its organization owns the user.
    pub connection_id: String,
    /// SCIM `userName`; unique per organization, case-insensitively.
    pub user_name: String,
    /// SCIM `externalId`: the IdP's own identifier, if it sent one.
    pub external_id: Option<String>,
    /// SCIM `active`.
    pub active: bool,
    /// The full RFC 7643 resource (a JSON object), stored as given.
    pub resource: serde_json::Value,
}

/// A user provisioned through a connection, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectoryUser {
    /// 32 random hex digits; the SCIM `id`.
    pub id: String,
    /// The connection (directory) that provisioned the user, and the only one that can see it.
    pub connection_id: String,
    /// The organization of that connection; `userName` is unique within it.
    pub org_id: String,
    /// SCIM `userName`, as last written (original case).
    pub user_name: String,
    /// SCIM `externalId`.
    pub external_id: Option<String>,
    /// SCIM `active`; authoritative over any `active` inside `resource`.
    pub active: bool,
    /// The full RFC 7643 resource, as last written.
    pub resource: serde_json::Value,
    /// 1 at creation, bumped by every write: the ETag source.
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// When the user was last deactivated, while it is inactive; `None` while active.
    pub deactivated_at: Option<i64>,
    /// When a SCIM `DELETE` soft-deleted the user (policy `deactivate`); `None` otherwise.
    /// SCIM-facing reads never return a user for which this is set.
    #[serde(default)]
    pub scim_deleted_at: Option<i64>,
}

/// A group to create through a connection.
#[derive(Debug, Clone)]
pub struct NewDirectoryGroup {
    /// The connection (directory) provisioning the group; its organization owns the group.
    pub connection_id: String,
    /// SCIM `displayName`.
    pub display_name: String,
    /// SCIM `externalId`.
    pub external_id: Option<String>,
    /// The full RFC 7643 resource (a JSON object), stored as given. Membership is stored apart,
    /// in `members`, and is what [`DirectoryGroup::members`] reports.
    pub resource: serde_json::Value,
    /// Ids of the initial members: users of the same organization.
    pub members: Vec<String>,
}

/// A group provisioned through a connection, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectoryGroup {
    /// 32 random hex digits; the SCIM `id`.
    pub id: String,
    /// The connection (directory) that provisioned the group, and the only one that can see it.
    pub connection_id: String,
    /// The organization of that connection.
    pub org_id: String,
    /// SCIM `displayName`.
    pub display_name: String,
    /// SCIM `externalId`.
    pub external_id: Option<String>,
    /// The full RFC 7643 resource, as last written (its `members`, if any, are not maintained:
    /// read [`DirectoryGroup::members`]).
    pub resource: serde_json::Value,
    /// Ids of the member users, in ascending order, soft-deleted users left out. Empty when a
    /// listing was asked without members.
    pub members: Vec<String>,
    /// 1 at creation, bumped by every write, membership changes included: the ETag source.
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Which user [`Store::users_with_groups`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserLookup<'a> {
    /// By id.
    Id(&'a str),
    /// By `userName`, ignoring case (SCIM `filter=userName eq "..."`).
    UserName(&'a str),
}

/// The groups of the connection `$1` that the user `$2` belongs to, by display name then id.
/// CROSS JOIN makes SQLite start from the user's memberships (PostgreSQL plans it as the inner
/// join it is).
const GROUPS_OF_USER: &str = "SELECT g.id, g.display_name FROM group_members m \
     CROSS JOIN directory_groups g \
     WHERE g.id = m.group_id AND g.connection_id = $1 AND m.user_id = $2 \
     ORDER BY g.display_name, g.id";

/// A group a user belongs to, as the user's SCIM `groups` attribute shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryGroupRef {
    pub id: String,
    pub display_name: String,
}

macro_rules! user_columns {
    () => {
        "id, org_id, connection_id, user_name, external_id, active, \
         resource_json, version, created_at, updated_at, deactivated_at, scim_deleted_at"
    };
}
const USER_COLUMNS: &str = user_columns!();

/// [`USER_COLUMNS`] qualified by the table alias `alias`, for joins.
pub(crate) fn user_columns(alias: &str) -> String {
    USER_COLUMNS
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The member ids of the group `$1` as SCIM shows them: soft-deleted users are left out (their
/// memberships are kept, for a restore).
const LIVE_MEMBERS: &str = "SELECT m.user_id FROM group_members m \
     JOIN directory_users u ON u.id = m.user_id \
     WHERE m.group_id = $1 AND u.scim_deleted_at IS NULL ORDER BY m.user_id";

/// Restores a soft-deleted user of the connection `$6` whose `userName` key is `$7`, replacing
/// its resource (a create of that `userName` through that connection). Matches no row if there
/// is no such user, or it is live, or another connection provisioned it.
const RESTORE_USER: &str = "UPDATE directory_users SET user_name = $1, external_id = $2, active = $3, \
         resource_json = $4, version = version + 1, updated_at = $5, scim_deleted_at = NULL, \
         deactivated_at = CASE WHEN $3 THEN NULL ELSE COALESCE(deactivated_at, $5) END \
     WHERE org_id = (SELECT org_id FROM connections WHERE id = $6) AND user_name_lc = $7 \
       AND connection_id = $6 AND scim_deleted_at IS NOT NULL";

const GROUP_COLUMNS: &str = "id, org_id, connection_id, display_name, external_id, \
     resource_json, version, created_at, updated_at";

/// One statement: the organization comes from the connection, so an unknown connection inserts
/// nothing (and returns no row) and a duplicate `userName` in the organization violates
/// `directory_users_org_user_name_key`.
pub(crate) const INSERT_USER: &str = "INSERT INTO directory_users \
     (id, org_id, connection_id, user_name, user_name_lc, external_id, active, resource_json, \
      version, created_at, updated_at, deactivated_at) \
     SELECT $1, c.org_id, c.id, $2, $3, $4, $5, $6, 1, $7, $7, \
            CASE WHEN $5 THEN NULL ELSE $7 END \
     FROM connections c WHERE c.id = $8 \
     RETURNING org_id";

/// A conditional full update of a user: matches no row for an unknown id, another connection's
/// user, a soft-deleted user, or (with `$9` not null) another version.
pub(crate) const UPDATE_USER: &str = concat!(
    "UPDATE directory_users SET user_name = $1, user_name_lc = $2, external_id = $3, \
         active = $4, resource_json = $5, version = version + 1, updated_at = $6, \
         deactivated_at = CASE WHEN $4 THEN NULL ELSE COALESCE(deactivated_at, $6) END \
     WHERE id = $7 AND connection_id = $8 AND ($9 IS NULL OR version = $9) \
       AND scim_deleted_at IS NULL \
     RETURNING ",
    user_columns!()
);

/// One single-statement user write, with its bound values: what [`Store::create_user`] and
/// [`Store::replace_user`] execute directly on PostgreSQL and hand to the group committer on
/// SQLite (see `group_commit.rs`).
#[derive(Debug)]
pub(crate) enum UserWrite {
    /// [`INSERT_USER`].
    Create {
        id: String,
        user_name: String,
        external_id: Option<String>,
        active: bool,
        json: String,
        now: i64,
        connection_id: String,
    },
    /// [`UPDATE_USER`].
    Replace {
        id: String,
        connection_id: String,
        expected_version: Option<i64>,
        user_name: String,
        external_id: Option<String>,
        active: bool,
        json: String,
        now: i64,
    },
}

/// What a [`UserWrite`] returned.
#[derive(Debug)]
pub(crate) enum UserWritten {
    /// The new user's organization; `None`: no such connection.
    Created(Option<String>),
    /// The updated row; `None`: no such user in the connection, or another version.
    Replaced(Option<UserRow>),
}

/// One value bound to a user write's statement. [`UserWrite::params`] lists them in `$N` order,
/// once, and each backend binds that one list: sqlx on PostgreSQL ([`execute_user_write_pg`]),
/// rusqlite on SQLite ([`execute_user_write_sqlite`]).
#[derive(Debug)]
pub(crate) enum Param<'a> {
    Text(&'a str),
    OwnedText(String),
    OptText(Option<&'a str>),
    Bool(bool),
    Int(i64),
    OptInt(Option<i64>),
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Param::Text(v) => v.to_sql(),
            Param::OwnedText(v) => v.to_sql(),
            Param::OptText(v) => v.to_sql(),
            Param::Bool(v) => v.to_sql(),
            Param::Int(v) => v.to_sql(),
            Param::OptInt(v) => v.to_sql(),
        }
    }
}

/// Binds every [`Param`] of `$params` to the sqlx query `$query`, in order.
macro_rules! bind_params {
    ($query:expr, $params:expr) => {{
        let mut q = $query;
        for p in $params {
            q = match p {
                Param::Text(v) => q.bind(*v),
                Param::OwnedText(v) => q.bind(v.as_str()),
                Param::OptText(v) => q.bind(*v),
                Param::Bool(v) => q.bind(*v),
                Param::Int(v) => q.bind(*v),
                Param::OptInt(v) => q.bind(*v),
            };
        }
        q
    }};
}

impl UserWrite {
    /// The statement's bound values, `$1` first.
    pub(crate) fn params(&self) -> Vec<Param<'_>> {
        match self {
            UserWrite::Create { id, user_name, external_id, active, json, now, connection_id } => vec![
                Param::Text(id),
                Param::Text(user_name),
                Param::OwnedText(user_name_key(user_name)),
                Param::OptText(external_id.as_deref()),
                Param::Bool(*active),
                Param::Text(json),
                Param::Int(*now),
                Param::Text(connection_id),
            ],
            UserWrite::Replace { id, connection_id, expected_version, user_name, external_id, active, json, now } => vec![
                Param::Text(user_name),
                Param::OwnedText(user_name_key(user_name)),
                Param::OptText(external_id.as_deref()),
                Param::Bool(*active),
                Param::Text(json),
                Param::Int(*now),
                Param::Text(id),
                Param::Text(connection_id),
                Param::OptInt(*expected_version),
            ],
        }
    }

    /// The values of [`END_USER_SESSIONS`] when this write deactivates the user.
    fn end_sessions_params(&self) -> Option<[Param<'_>; 3]> {
        match self {
            UserWrite::Replace { id, active: false, now, .. } => Some([
                Param::Int(*now),
                Param::Text(SessionEndReason::UserDeactivated.as_str()),
                Param::Text(id),
            ]),
            _ => None,
        }
    }
}

/// Executes `write` on a PostgreSQL transaction. A deactivation ends the user's sessions in the
/// same transaction.
pub(crate) async fn execute_user_write_pg(
    write: &UserWrite,
    tx: &mut sqlx::PgConnection,
) -> Result<UserWritten, sqlx::Error> {
    let params = write.params();
    match write {
        UserWrite::Create { .. } => bind_params!(sqlx::query_scalar(INSERT_USER), &params)
            .fetch_optional(&mut *tx)
            .await
            .map(UserWritten::Created),
        UserWrite::Replace { .. } => {
            let row: Option<UserRow> = bind_params!(sqlx::query_as(UPDATE_USER), &params).fetch_optional(&mut *tx).await?;
            if let (Some(_), Some(end)) = (&row, write.end_sessions_params()) {
                bind_params!(sqlx::query(END_USER_SESSIONS), &end).execute(&mut *tx).await?;
            }
            Ok(UserWritten::Replaced(row))
        }
    }
}

/// Executes `write` on a synchronous SQLite connection (the group committer's, inside its
/// transaction).
pub(crate) fn execute_user_write_sqlite(
    conn: &rusqlite::Connection,
    write: &UserWrite,
) -> rusqlite::Result<UserWritten> {
    let params = write.params();
    let values: Vec<&dyn rusqlite::ToSql> = params.iter().map(|p| p as &dyn rusqlite::ToSql).collect();
    match write {
        UserWrite::Create { .. } => conn
            .prepare_cached(INSERT_USER)?
            .query_row(numbered(&values).as_slice(), |row| row.get(0))
            .optional()
            .map(UserWritten::Created),
        UserWrite::Replace { .. } => {
            let row = conn
                .prepare_cached(UPDATE_USER)?
                .query_row(numbered(&values).as_slice(), UserRow::from_sqlite)
                .optional()?;
            if let (Some(_), Some(end)) = (&row, write.end_sessions_params()) {
                let end: Vec<&dyn rusqlite::ToSql> = end.iter().map(|p| p as &dyn rusqlite::ToSql).collect();
                conn.prepare_cached(END_USER_SESSIONS)?.execute(numbered(&end).as_slice())?;
            }
            Ok(UserWritten::Replaced(row))
        }
    }
}

const INSERT_GROUP: &str = "INSERT INTO directory_groups \
     (id, org_id, connection_id, display_name, display_name_lc, external_id, resource_json, \
      version, created_at, updated_at) \
     SELECT $1, c.org_id, c.id, $2, $7, $3, $4, 1, $5, $5 \
     FROM connections c WHERE c.id = $6 \
     RETURNING org_id";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    id: String,
    org_id: String,
    connection_id: String,
    user_name: String,
    external_id: Option<String>,
    active: bool,
    resource_json: String,
    version: i64,
    created_at: i64,
    updated_at: i64,
    deactivated_at: Option<i64>,
    scim_deleted_at: Option<i64>,
}

impl UserRow {
    /// A row of [`USER_COLUMNS`], in that order, read through rusqlite (`readers.rs`).
    pub(crate) fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
        Ok(UserRow {
            id: row.get(0)?,
            org_id: row.get(1)?,
            connection_id: row.get(2)?,
            user_name: row.get(3)?,
            external_id: row.get(4)?,
            active: row.get(5)?,
            resource_json: row.get(6)?,
            version: row.get(7)?,
            created_at: row.get(8)?,
            updated_at: row.get(9)?,
            deactivated_at: row.get(10)?,
            scim_deleted_at: row.get(11)?,
        })
    }

    pub(crate) fn into_user(self) -> Result<DirectoryUser, StoreError> {
        let resource = serde_json::from_str(&self.resource_json)
            .map_err(|e| StoreError::corrupt("user", &self.id, e))?;
        Ok(DirectoryUser {
            id: self.id,
            connection_id: self.connection_id,
            org_id: self.org_id,
            user_name: self.user_name,
            external_id: self.external_id,
            active: self.active,
            resource,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            deactivated_at: self.deactivated_at,
            scim_deleted_at: self.scim_deleted_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct GroupRow {
    id: String,
    org_id: String,
    connection_id: String,
    display_name: String,
    external_id: Option<String>,
    resource_json: String,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl GroupRow {
    fn into_group(self, members: Vec<String>) -> Result<DirectoryGroup, StoreError> {
        let resource = serde_json::from_str(&self.resource_json)
            .map_err(|e| StoreError::corrupt("group", &self.id, e))?;
        Ok(DirectoryGroup {
            id: self.id,
            connection_id: self.connection_id,
            org_id: self.org_id,
            display_name: self.display_name,
            external_id: self.external_id,
            resource,
            members,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// The key `userName` uniqueness and lookups use: the full Unicode lower case of the `userName`
/// as given (Rust's `str::to_lowercase`), computed here rather than in SQL so both backends
/// agree, and agree with the SCIM filter evaluator. Canonicalizing the `userName` (trimming,
/// NFC, refusing invisible characters) is the SCIM layer's job, before it reaches the store.
///
/// Lower case is not case folding: `ẞ` and `ß` share a key, `SS` and `ß` do not; `I` maps to
/// `i` (never to the Turkish dotless `ı`), and `İ` to `i` followed by U+0307; a final `Σ` maps
/// to `ς`.
pub(crate) fn user_name_key(user_name: &str) -> String {
    user_name.to_lowercase()
}

/// The key of group `displayName` lookups (`display_name_lc`): as [`user_name_key`].
pub(crate) fn display_name_key(display_name: &str) -> String {
    display_name.to_lowercase()
}

/// Refuses a `what` longer than [`MAX_DIRECTORY_TEXT_BYTES`] or holding a NUL character (which
/// PostgreSQL cannot store in text), on both backends alike.
fn check_text(what: &'static str, value: &str) -> Result<(), StoreError> {
    if value.len() > MAX_DIRECTORY_TEXT_BYTES {
        return Err(StoreError::InvalidInput {
            what,
            reason: format!(
                "is {} bytes long; at most {MAX_DIRECTORY_TEXT_BYTES} bytes are accepted",
                value.len()
            ),
        });
    }
    if value.contains('\0') {
        return Err(StoreError::InvalidInput {
            what,
            reason: "must not contain a NUL character".into(),
        });
    }
    Ok(())
}

/// [`check_text`] of an optional `externalId`.
pub(crate) fn check_external_id(external_id: Option<&str>) -> Result<(), StoreError> {
    external_id.map_or(Ok(()), |e| check_text("externalId", e))
}

pub(crate) fn check_user_name(user_name: &str) -> Result<(), StoreError> {
    if user_name.trim().is_empty() {
        return Err(StoreError::InvalidInput {
            what: "userName",
            reason: "must not be empty".into(),
        });
    }
    check_text("userName", user_name)
}

pub(crate) fn check_display_name(display_name: &str) -> Result<(), StoreError> {
    if display_name.trim().is_empty() {
        return Err(StoreError::InvalidInput {
            what: "displayName",
            reason: "must not be empty".into(),
        });
    }
    check_text("displayName", display_name)
}

/// The resource as stored: it must be a JSON object.
pub(crate) fn resource_json(resource: &serde_json::Value, what: &'static str) -> Result<String, StoreError> {
    if !resource.is_object() {
        return Err(StoreError::InvalidInput {
            what,
            reason: "a SCIM resource must be a JSON object".into(),
        });
    }
    crate::to_json(resource, what)
}

fn user_name_taken(user_name: &str) -> StoreError {
    StoreError::conflict(
        "user",
        user_name,
        "userName is already taken in this organization",
    )
}

/// `$start, $start+1, ...`: `n` placeholders.
fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ids` without repetitions, first occurrence kept.
fn dedup(ids: &[String]) -> Vec<&str> {
    let mut seen = HashSet::new();
    ids.iter()
        .map(String::as_str)
        .filter(|id| seen.insert(*id))
        .collect()
}

/// Adds the users `$members` (a `&[String]`) to the group `$group_id` of the connection
/// `$connection_id` inside the transaction `$tx`: one check and one insert per [`MEMBER_CHUNK`]
/// ids. Returns early from the enclosing function with [`StoreError::NotFound`] naming the first
/// id that is not a user of that connection (rolling the transaction back): a directory's groups
/// only ever hold that directory's users. Existing memberships are left as they are.
macro_rules! attach_members {
    ($tx:ident, $group_id:expr, $connection_id:expr, $members:expr) => {
        for chunk in dedup($members).chunks(MEMBER_CHUNK) {
            let sql = format!(
                "SELECT id FROM directory_users \
                 WHERE connection_id = $1 AND scim_deleted_at IS NULL AND id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query_scalar::<_, String>(&sql).bind($connection_id);
            for id in chunk {
                query = query.bind(*id);
            }
            let found: Vec<String> = query.fetch_all(&mut *$tx).await?;
            if found.len() != chunk.len() {
                let found: HashSet<&str> = found.iter().map(String::as_str).collect();
                let missing = chunk.iter().find(|id| !found.contains(**id)).unwrap_or(&"");
                return Err(StoreError::not_found("user", *missing));
            }
            let values = (0..chunk.len())
                .map(|i| format!("($1, ${})", i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO group_members (group_id, user_id) VALUES {values} \
                 ON CONFLICT (group_id, user_id) DO NOTHING"
            );
            let mut query = sqlx::query(&sql).bind($group_id);
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(&mut *$tx).await?;
        }
    };
}

/// The version of a live user, for [`Store::write_refused`].
const USER_VERSION: &str = "SELECT version FROM directory_users \
     WHERE id = $1 AND connection_id = $2 AND scim_deleted_at IS NULL";

/// The version of a group, for [`Store::write_refused`].
const GROUP_VERSION: &str = "SELECT version FROM directory_groups WHERE id = $1 AND connection_id = $2";

/// `LIMIT`/`OFFSET` values for a page.
fn page(offset: u64, limit: u32) -> (i64, i64) {
    (
        i64::try_from(offset).unwrap_or(i64::MAX),
        i64::from(limit.min(MAX_DIRECTORY_LIST_LIMIT)),
    )
}

/// The `store_backfills` name of the Rust pass over `display_name_lc`.
const DISPLAY_NAME_BACKFILL: &str = "directory_groups.display_name_lc";

/// Rows read per statement by the `display_name_lc` backfill.
const BACKFILL_BATCH: i64 = 500;

impl Store {
    /// Once per database (recorded in `store_backfills`): rewrites every group's
    /// `display_name_lc` with the Rust key ([`display_name_key`]). Migration 0006 seeded the
    /// column with SQL `lower()`, which is ASCII-only on SQLite (and locale-dependent on
    /// PostgreSQL). Runs at open, after the migrations, in batches; a row whose `displayName`
    /// changed meanwhile (its writer set the right key) is left alone. Idempotent, so replicas
    /// opening one PostgreSQL database at once may both run it.
    pub(crate) async fn backfill_display_name_keys(&self) -> Result<(), StoreError> {
        let done: Option<String> = with_pool!(self, write, |pool| {
            sqlx::query_scalar("SELECT name FROM store_backfills WHERE name = $1")
                .bind(DISPLAY_NAME_BACKFILL)
                .fetch_optional(pool)
                .await?
        });
        if done.is_some() {
            return Ok(());
        }
        let mut after = String::new();
        let mut fixed = 0u64;
        loop {
            let rows: Vec<(String, String, String)> = with_pool!(self, write, |pool| {
                sqlx::query_as(
                    "SELECT id, display_name, display_name_lc FROM directory_groups \
                     WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(&after)
                .bind(BACKFILL_BATCH)
                .fetch_all(pool)
                .await?
            });
            let Some((last, _, _)) = rows.last() else { break };
            after = last.clone();
            let fixes: Vec<(String, String, String)> = rows
                .into_iter()
                .filter_map(|(id, name, key)| {
                    let want = display_name_key(&name);
                    (want != key).then_some((id, name, want))
                })
                .collect();
            if !fixes.is_empty() {
                with_tx!(self, |tx| {
                    for (id, name, key) in &fixes {
                        sqlx::query(
                            "UPDATE directory_groups SET display_name_lc = $1 \
                             WHERE id = $2 AND display_name = $3",
                        )
                        .bind(key)
                        .bind(id)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                    }
                });
                fixed += fixes.len() as u64;
            }
        }
        with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO store_backfills (name, done_at) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(DISPLAY_NAME_BACKFILL)
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        if fixed > 0 {
            tracing::info!(groups = fixed, "group displayName keys rewritten with Unicode lower case");
        }
        Ok(())
    }
}

impl Store {
    // ---------------------------------------------------------------- users

    /// Creates a user in the connection `new.connection_id` (and its organization), version 1.
    ///
    /// If this connection soft-deleted a user with this `userName` (ignoring case; policy
    /// `deactivate`), that user is restored instead, in one statement: same id and `created_at`,
    /// `scim_deleted_at` cleared, `userName`, `externalId`, `active` and the resource replaced,
    /// version bumped, group memberships as they were kept. Its sessions stay ended; its API
    /// tokens work again if it is active. A soft-deleted user of *another* connection is not
    /// restored from here (directories never change each other's data): that is a conflict.
    ///
    /// [`StoreError::NotFound`] if the connection does not exist; [`StoreError::Conflict`] if
    /// the organization already has a user whose `userName` differs at most in case (whichever
    /// connection provisioned it) and it is not a soft-deleted user of this connection;
    /// [`StoreError::InvalidInput`] for an empty `userName` or a resource that is not a JSON
    /// object.
    pub async fn create_user(&self, new: &NewDirectoryUser) -> Result<DirectoryUser, StoreError> {
        check_user_name(&new.user_name)?;
        check_external_id(new.external_id.as_deref())?;
        let json = resource_json(&new.resource, "SCIM user resource")?;
        let id = random_id("");
        let now = now_ms();
        let write = UserWrite::Create {
            id: id.clone(),
            user_name: new.user_name.clone(),
            external_id: new.external_id.clone(),
            active: new.active,
            json: json.clone(),
            now,
            connection_id: new.connection_id.clone(),
        };
        let org_id = match self.write_user(write).await {
            Ok(UserWritten::Created(Some(org_id))) => org_id,
            Ok(_) => return Err(StoreError::not_found("connection", &new.connection_id)),
            // The userName is taken: by a soft-deleted user of this directory, which this
            // create restores, or by a live user (409).
            Err(WriteFailure::Statement(e)) if is_unique_violation(&e) => {
                return self.restore_user(new, &json).await;
            }
            Err(e) => return Err(e.into()),
        };
        tracing::debug!(user = %id, connection = %new.connection_id, "directory user created");
        Ok(DirectoryUser {
            id,
            connection_id: new.connection_id.clone(),
            org_id,
            user_name: new.user_name.clone(),
            external_id: new.external_id.clone(),
            active: new.active,
            resource: new.resource.clone(),
            version: 1,
            created_at: now,
            updated_at: now,
            deactivated_at: (!new.active).then_some(now),
            scim_deleted_at: None,
        })
    }

    /// The second half of [`Store::create_user`], after its insert hit the `userName`: restores
    /// the soft-deleted user of this connection holding it, or reports the conflict.
    async fn restore_user(
        &self,
        new: &NewDirectoryUser,
        json: &str,
    ) -> Result<DirectoryUser, StoreError> {
        let sql = format!("{RESTORE_USER} RETURNING {USER_COLUMNS}");
        let row: Option<UserRow> = with_pool!(self, write, |pool| {
            sqlx::query_as(&sql)
                .bind(&new.user_name)
                .bind(&new.external_id)
                .bind(new.active)
                .bind(json)
                .bind(now_ms())
                .bind(&new.connection_id)
                .bind(user_name_key(&new.user_name))
                .fetch_optional(pool)
                .await?
        });
        let Some(row) = row else {
            return Err(user_name_taken(&new.user_name));
        };
        tracing::info!(
            user = %row.id, connection = %new.connection_id, version = row.version,
            "soft-deleted directory user restored by a create"
        );
        row.into_user()
    }

    /// The user `id` of the connection `connection_id`. [`StoreError::NotFound`] if there is no
    /// such user, it belongs to another connection, or it is soft-deleted.
    pub async fn get_user(
        &self,
        connection_id: &str,
        id: &str,
    ) -> Result<DirectoryUser, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM directory_users \
             WHERE id = $1 AND connection_id = $2 AND scim_deleted_at IS NULL"
        );
        let row: Option<UserRow> = with_reader!(self,
            sqlite: |r| r.prepare_cached(&sql)?
                .query_row(numbered(&[&id, &connection_id]).as_slice(), UserRow::from_sqlite)
                .optional(),
            pool: |c| sqlx::query_as(&sql).bind(id).bind(connection_id).fetch_optional(c).await
        )?;
        row.ok_or_else(|| StoreError::not_found("user", id))?
            .into_user()
    }

    /// The users of the connection `connection_id` whose `userName` equals `user_name` ignoring
    /// case (SCIM `filter=userName eq "..."`): zero or one, through the organization's unique
    /// index. Empty for an unknown connection.
    pub async fn find_users_by_user_name(
        &self,
        connection_id: &str,
        user_name: &str,
    ) -> Result<Vec<DirectoryUser>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM directory_users \
             WHERE org_id = (SELECT org_id FROM connections WHERE id = $1) \
               AND user_name_lc = $2 AND connection_id = $1 AND scim_deleted_at IS NULL"
        );
        let key = user_name_key(user_name);
        let rows: Vec<UserRow> = with_reader!(self,
            sqlite: |r| r.prepare_cached(&sql)?
                .query_map(numbered(&[&connection_id, &key]).as_slice(), UserRow::from_sqlite)?
                .collect(),
            pool: |c| sqlx::query_as(&sql).bind(connection_id).bind(&key).fetch_all(c).await
        )?;
        rows.into_iter().map(UserRow::into_user).collect()
    }

    /// The users [`UserLookup`] selects in the connection `connection_id` (zero or one: by id,
    /// or by `userName` ignoring case), each with its groups (as [`Store::groups_of_users`]):
    /// what a SCIM read of a user shows. On SQLite both statements run in one read transaction
    /// on one connection — one snapshot, one acquisition of the WAL read lock instead of two,
    /// on the path of the IdPs' most frequent request (the lookup before every create).
    pub async fn users_with_groups(
        &self,
        connection_id: &str,
        lookup: UserLookup<'_>,
    ) -> Result<Vec<(DirectoryUser, Vec<DirectoryGroupRef>)>, StoreError> {
        let (condition, key) = match lookup {
            UserLookup::Id(id) => ("id = $2 AND connection_id = $1", Cow::Borrowed(id)),
            UserLookup::UserName(name) => (
                "org_id = (SELECT org_id FROM connections WHERE id = $1) \
                 AND user_name_lc = $2 AND connection_id = $1",
                Cow::Owned(user_name_key(name)),
            ),
        };
        let users_sql =
            format!("SELECT {USER_COLUMNS} FROM directory_users WHERE {condition} AND scim_deleted_at IS NULL");
        let key = key.as_ref();
        let (rows, memberships): (Vec<UserRow>, Vec<(String, String, String)>) = with_reader!(self,
            sqlite: |r| {
                // BEGIN/COMMIT as cached statements: `Connection::transaction` would parse them
                // on every call (3.6 % of a filtered GET's CPU in a profile).
                r.prepare_cached("BEGIN DEFERRED")?.execute([])?;
                let read = (|| -> rusqlite::Result<(Vec<UserRow>, Vec<(String, String, String)>)> {
                    let rows: Vec<UserRow> = r
                        .prepare_cached(&users_sql)?
                        .query_map(numbered(&[&connection_id, &key]).as_slice(), UserRow::from_sqlite)?
                        .collect::<rusqlite::Result<_>>()?;
                    let mut memberships = Vec::new();
                    for row in &rows {
                        let mut statement = r.prepare_cached(GROUPS_OF_USER)?;
                        let groups = statement.query_map(numbered(&[&connection_id, &row.id]).as_slice(), |g| {
                            Ok((row.id.clone(), g.get(0)?, g.get(1)?))
                        })?;
                        for g in groups {
                            memberships.push(g?);
                        }
                    }
                    Ok((rows, memberships))
                })();
                // A read transaction: ending it is all COMMIT does, also after a failed read. If
                // even that fails, roll back, so the reader is never left inside a transaction.
                let ended = r.prepare_cached("COMMIT").and_then(|mut c| c.execute([]));
                if ended.is_err() {
                    let _ = r.execute_batch("ROLLBACK");
                }
                let read = read?;
                ended?;
                Ok(read)
            },
            pool: |c| {
                let rows: Vec<UserRow> = sqlx::query_as(&users_sql).bind(connection_id).bind(key).fetch_all(c).await?;
                let mut memberships = Vec::new();
                for row in &rows {
                    let groups: Vec<(String, String)> =
                        sqlx::query_as(GROUPS_OF_USER).bind(connection_id).bind(&row.id).fetch_all(c).await?;
                    memberships.extend(groups.into_iter().map(|(id, name)| (row.id.clone(), id, name)));
                }
                Ok::<_, sqlx::Error>((rows, memberships))
            }
        )?;
        let mut groups: HashMap<String, Vec<DirectoryGroupRef>> = HashMap::new();
        for (user, id, display_name) in memberships {
            groups.entry(user).or_default().push(DirectoryGroupRef { id, display_name });
        }
        rows.into_iter()
            .map(|row| {
                let g = groups.remove(&row.id).unwrap_or_default();
                row.into_user().map(|u| (u, g))
            })
            .collect()
    }

    /// The users of the connection `connection_id` whose `externalId` is exactly `external_id`
    /// (SCIM `filter=externalId eq "..."`, `caseExact: true`), oldest first.
    pub async fn find_users_by_external_id(
        &self,
        connection_id: &str,
        external_id: &str,
    ) -> Result<Vec<DirectoryUser>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM directory_users \
             WHERE connection_id = $1 AND external_id = $2 AND scim_deleted_at IS NULL"
        );
        let rows: Vec<UserRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(&sql)
                .bind(connection_id)
                .bind(external_id)
                .fetch_all(pool)
                .await?
        });
        // Sorted here: an ORDER BY would tempt SQLite into the (connection, created_at) index
        // instead of (connection, external_id). The result is small.
        let mut users = rows
            .into_iter()
            .map(UserRow::into_user)
            .collect::<Result<Vec<_>, _>>()?;
        users.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(users)
    }

    /// A page of the users of the connection `connection_id`, in creation order (ties broken by
    /// id, so pages are stable), skipping `offset` (0-based; SCIM's `startIndex` minus one) and
    /// returning at most `limit` (clamped to [`MAX_DIRECTORY_LIST_LIMIT`]), with the total number
    /// of users of the connection (SCIM `totalResults`). Soft-deleted users are left out.
    pub async fn list_users(
        &self,
        connection_id: &str,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<DirectoryUser>, i64), StoreError> {
        self.page_of_users(connection_id, offset, limit, false).await
    }

    /// For admins: like [`Store::list_users`], soft-deleted users included (their
    /// `scim_deleted_at` is set).
    pub async fn list_users_including_deleted(
        &self,
        connection_id: &str,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<DirectoryUser>, i64), StoreError> {
        self.page_of_users(connection_id, offset, limit, true).await
    }

    async fn page_of_users(
        &self,
        connection_id: &str,
        offset: u64,
        limit: u32,
        including_deleted: bool,
    ) -> Result<(Vec<DirectoryUser>, i64), StoreError> {
        let (offset, limit) = page(offset, limit);
        let live = if including_deleted { "" } else { " AND scim_deleted_at IS NULL" };
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM directory_users WHERE connection_id = $1{live} \
             ORDER BY created_at, id LIMIT $2 OFFSET $3"
        );
        let count = format!("SELECT COUNT(*) FROM directory_users WHERE connection_id = $1{live}");
        let (rows, total): (Vec<UserRow>, i64) = with_pool!(self, read, |pool| {
            let rows = sqlx::query_as(&sql)
                .bind(connection_id)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let total = sqlx::query_scalar(&count)
                .bind(connection_id)
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        let users = rows
            .into_iter()
            .map(UserRow::into_user)
            .collect::<Result<_, _>>()?;
        Ok((users, total))
    }

    /// For admins: the user `id` whichever connection provisioned it, soft-deleted or not.
    /// [`StoreError::NotFound`] if there is no such user.
    pub async fn get_user_for_admin(&self, id: &str) -> Result<DirectoryUser, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM directory_users WHERE id = $1");
        let row: Option<UserRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        row.ok_or_else(|| StoreError::not_found("user", id))?
            .into_user()
    }

    /// Replaces the user `id` of the connection `connection_id` (SCIM `PUT`, or the result of a
    /// `PATCH`): `userName`, `externalId`, `active` and the resource, bumping its version.
    /// Deactivating sets `deactivated_at` (kept if already inactive) and ends the user's sessions
    /// in the same transaction; activating clears it.
    ///
    /// With `expected_version` (`If-Match`), the write happens only if the user is still at
    /// that version: [`StoreError::PreconditionFailed`] otherwise. [`StoreError::NotFound`] if
    /// there is no such user in the connection (or it is soft-deleted); [`StoreError::Conflict`]
    /// if the new `userName` is taken by another user of the organization.
    #[allow(clippy::too_many_arguments)]
    pub async fn replace_user(
        &self,
        connection_id: &str,
        id: &str,
        expected_version: Option<i64>,
        user_name: &str,
        external_id: Option<&str>,
        active: bool,
        resource: &serde_json::Value,
    ) -> Result<DirectoryUser, StoreError> {
        check_user_name(user_name)?;
        check_external_id(external_id)?;
        let json = resource_json(resource, "SCIM user resource")?;
        let write = UserWrite::Replace {
            id: id.to_owned(),
            connection_id: connection_id.to_owned(),
            expected_version,
            user_name: user_name.to_owned(),
            external_id: external_id.map(str::to_owned),
            active,
            json,
            now: now_ms(),
        };
        match self.write_user(write).await {
            Ok(UserWritten::Replaced(Some(row))) => row.into_user(),
            // After the write: on SQLite the committer holds the only write connection.
            Ok(_) => Err(self
                .write_refused("user", USER_VERSION, connection_id, id, expected_version)
                .await),
            Err(WriteFailure::Statement(e)) if is_unique_violation(&e) => {
                Err(user_name_taken(user_name))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Runs a user write (one statement, plus ending the user's sessions when it deactivates
    /// them): through the group committer on SQLite (batched with concurrent writes into one
    /// transaction), in a transaction of its own on PostgreSQL.
    async fn write_user(&self, write: UserWrite) -> Result<UserWritten, WriteFailure> {
        match &self.pools {
            Pools::Sqlite { committer, .. } => committer.submit_user(write).await,
            // A transaction: a deactivation also ends the user's sessions.
            Pools::Postgres(pool) => {
                let run = async {
                    let mut tx = pool.begin().await?;
                    let out = execute_user_write_pg(&write, &mut tx).await?;
                    tx.commit().await?;
                    Ok(out)
                };
                run.await.map_err(WriteFailure::Statement)
            }
        }
    }

    /// Activates or deactivates the user `id` of the connection `connection_id` (reversible;
    /// group memberships are kept), bumping its version and keeping `deactivated_at` and the
    /// resource's `active` in step. Deactivating ends the user's sessions in the same
    /// transaction (reactivating does not revive them). [`StoreError::NotFound`] if there is no
    /// such user in the connection, or it is soft-deleted.
    pub async fn set_user_active(
        &self,
        connection_id: &str,
        id: &str,
        active: bool,
    ) -> Result<DirectoryUser, StoreError> {
        let sql = format!(
            "UPDATE directory_users SET active = $1, version = version + 1, updated_at = $2, \
                 deactivated_at = CASE WHEN $1 THEN NULL ELSE COALESCE(deactivated_at, $2) END \
             WHERE id = $3 AND connection_id = $4 AND scim_deleted_at IS NULL \
             RETURNING {USER_COLUMNS}"
        );
        let now = now_ms();
        let row = with_tx!(self, |tx| {
            // The update takes the row (PostgreSQL) or the database (SQLite) for the transaction,
            // so the resource rewritten below cannot have changed in between.
            let row: Option<UserRow> = sqlx::query_as(&sql)
                .bind(active)
                .bind(now)
                .bind(id)
                .bind(connection_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(mut row) = row else {
                return Err(StoreError::not_found("user", id));
            };
            if !active {
                sqlx::query(END_USER_SESSIONS)
                    .bind(now)
                    .bind(SessionEndReason::UserDeactivated.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            let mut resource: serde_json::Value = serde_json::from_str(&row.resource_json)
                .map_err(|e| StoreError::corrupt("user", id, e))?;
            if let Some(fields) = resource.as_object_mut()
                && fields.get("active") != Some(&serde_json::Value::Bool(active))
            {
                fields.insert("active".into(), serde_json::Value::Bool(active));
                row.resource_json = crate::to_json(&resource, "SCIM user resource")?;
                sqlx::query("UPDATE directory_users SET resource_json = $1 WHERE id = $2")
                    .bind(&row.resource_json)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            row
        });
        tracing::debug!(user = %id, connection = %connection_id, active, "directory user activity set");
        row.into_user()
    }

    /// Applies a SCIM `DELETE` of the user `id` of the connection `connection_id`, by the
    /// connection's [`ScimDeletePolicy`], in one transaction:
    ///
    /// * `delete`: the user is removed, with its memberships, API tokens and sessions
    ///   ([`ScimDeleteOutcome::Deleted`]);
    /// * `deactivate`: the user is deactivated (`active` false, `deactivated_at` kept or set, the
    ///   resource's `active` in step) and soft-deleted (`scim_deleted_at`), its version bumped
    ///   and its sessions ended; memberships, API tokens (which stop working) and data are kept
    ///   ([`ScimDeleteOutcome::Deactivated`]).
    ///
    /// Either way SCIM answers 404 for the user from then on. [`StoreError::NotFound`] if there
    /// is no such user in the connection, or it is already soft-deleted;
    /// [`StoreError::PreconditionFailed`] if `expected_version` (a SCIM `If-Match`) is given and
    /// the user is at another version (nothing is changed).
    pub async fn scim_delete_user(
        &self,
        connection_id: &str,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<ScimDeleteOutcome, StoreError> {
        let now = now_ms();
        let outcome = with_tx!(self, |tx| {
            let found: Option<(String, String, i64)> = sqlx::query_as(
                "SELECT c.scim_delete_policy, u.resource_json, u.version FROM directory_users u \
                 JOIN connections c ON c.id = u.connection_id \
                 WHERE u.id = $1 AND u.connection_id = $2 AND u.scim_deleted_at IS NULL",
            )
            .bind(id)
            .bind(connection_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((policy, resource_json, version)) = found else {
                return Err(StoreError::not_found("user", id));
            };
            if let Some(expected) = expected_version.filter(|e| *e != version) {
                return Err(StoreError::PreconditionFailed {
                    what: "user",
                    key: id.to_owned(),
                    expected,
                    actual: version,
                });
            }
            let policy = ScimDeletePolicy::parse(&policy).ok_or_else(|| {
                StoreError::corrupt(
                    "scim_delete_policy of connection",
                    connection_id,
                    format!("unknown policy {policy:?}"),
                )
            })?;
            // The statements below repeat the conditions: on PostgreSQL a concurrent delete or
            // (with `If-Match`) update may have won since the read, and then they match nothing.
            let changed = match policy {
                ScimDeletePolicy::Delete => sqlx::query(
                    "DELETE FROM directory_users \
                     WHERE id = $1 AND connection_id = $2 AND scim_deleted_at IS NULL \
                       AND ($3 IS NULL OR version = $3)",
                )
                .bind(id)
                .bind(connection_id)
                .bind(expected_version)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                ScimDeletePolicy::Deactivate => {
                    let mut resource: serde_json::Value = serde_json::from_str(&resource_json)
                        .map_err(|e| StoreError::corrupt("user", id, e))?;
                    if let Some(fields) = resource.as_object_mut() {
                        fields.insert("active".into(), serde_json::Value::Bool(false));
                    }
                    let changed = sqlx::query(
                        "UPDATE directory_users SET active = $1, resource_json = $2, \
                             version = version + 1, updated_at = $3, scim_deleted_at = $3, \
                             deactivated_at = COALESCE(deactivated_at, $3) \
                         WHERE id = $4 AND connection_id = $5 AND scim_deleted_at IS NULL \
                           AND ($6 IS NULL OR version = $6)",
                    )
                    .bind(false)
                    .bind(crate::to_json(&resource, "SCIM user resource")?)
                    .bind(now)
                    .bind(id)
                    .bind(connection_id)
                    .bind(expected_version)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    sqlx::query(END_USER_SESSIONS)
                        .bind(now)
                        .bind(SessionEndReason::UserDeleted.as_str())
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    changed
                }
            };
            if changed == 0 {
                return Err(StoreError::not_found("user", id));
            }
            match policy {
                ScimDeletePolicy::Delete => ScimDeleteOutcome::Deleted,
                ScimDeletePolicy::Deactivate => ScimDeleteOutcome::Deactivated,
            }
        });
        tracing::info!(user = %id, connection = %connection_id, outcome = ?outcome, "SCIM delete applied");
        Ok(outcome)
    }

    /// Deletes the user `id` of the connection `connection_id`, soft-deleted or not, with its
    /// group memberships, API tokens and sessions, whatever the connection's delete policy (an
    /// admin's purge; SCIM deletes go through [`Store::scim_delete_user`]).
    /// [`StoreError::NotFound`] if there is no such user in the connection.
    pub async fn delete_user(&self, connection_id: &str, id: &str) -> Result<(), StoreError> {
        self.delete_scoped("user", "directory_users", USER_VERSION, connection_id, id, None).await
    }

    /// Deletes row `id` of connection `connection_id` from `table`, if it is at `expected`
    /// (when given); [`StoreError::NotFound`] naming a `what`, or
    /// [`StoreError::PreconditionFailed`], if it removed nothing (see [`Store::write_refused`]).
    async fn delete_scoped(
        &self,
        what: &'static str,
        table: &'static str,
        version_sql: &'static str,
        connection_id: &str,
        id: &str,
        expected: Option<i64>,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "DELETE FROM {table} WHERE id = $1 AND connection_id = $2 AND ($3 IS NULL OR version = $3)"
        );
        let deleted = with_pool!(self, write, |pool| {
            sqlx::query(&sql).bind(id).bind(connection_id).bind(expected).execute(pool).await?.rows_affected()
        });
        if deleted == 0 {
            return Err(self.write_refused(what, version_sql, connection_id, id, expected).await);
        }
        tracing::debug!(%id, connection = %connection_id, "directory {what} deleted");
        Ok(())
    }

    /// Why a conditional write of `id` matched no row: it is not in the connection (`NotFound`)
    /// or it is at another version than `expected` (`PreconditionFailed`). `version_sql` reads
    /// the object's version by id (`$1`) and connection (`$2`): [`USER_VERSION`] or
    /// [`GROUP_VERSION`].
    async fn write_refused(
        &self,
        what: &'static str,
        version_sql: &'static str,
        connection_id: &str,
        id: &str,
        expected: Option<i64>,
    ) -> StoreError {
        let actual: Result<Option<i64>, sqlx::Error> = with_pool!(self, write, |pool| {
            sqlx::query_scalar(version_sql)
                .bind(id)
                .bind(connection_id)
                .fetch_optional(pool)
                .await
        });
        match (actual, expected) {
            (Ok(Some(actual)), Some(expected)) => StoreError::PreconditionFailed {
                what,
                key: id.to_owned(),
                expected,
                actual,
            },
            (Ok(_), _) => StoreError::not_found(what, id),
            (Err(e), _) => e.into(),
        }
    }

    // ---------------------------------------------------------------- groups

    /// Creates a group in the connection `new.connection_id`, with its initial members, version
    /// 1, atomically. [`StoreError::NotFound`] if the connection does not exist or a member id
    /// is not a user of its organization (naming it); [`StoreError::InvalidInput`] for an empty
    /// `displayName` or a resource that is not a JSON object.
    pub async fn create_group(
        &self,
        new: &NewDirectoryGroup,
    ) -> Result<DirectoryGroup, StoreError> {
        check_display_name(&new.display_name)?;
        check_external_id(new.external_id.as_deref())?;
        let json = resource_json(&new.resource, "SCIM group resource")?;
        let id = random_id("");
        let now = now_ms();
        let org_id: String = with_tx!(self, |tx| {
            let org_id: Option<String> = sqlx::query_scalar(INSERT_GROUP)
                .bind(&id)
                .bind(&new.display_name)
                .bind(&new.external_id)
                .bind(&json)
                .bind(now)
                .bind(&new.connection_id)
                .bind(display_name_key(&new.display_name))
                .fetch_optional(&mut *tx)
                .await?;
            let Some(org_id) = org_id else {
                return Err(StoreError::not_found("connection", &new.connection_id));
            };
            attach_members!(tx, &id, &new.connection_id, &new.members);
            org_id
        });
        let mut members: Vec<String> = dedup(&new.members).into_iter().map(str::to_owned).collect();
        members.sort();
        tracing::debug!(group = %id, connection = %new.connection_id, "directory group created");
        Ok(DirectoryGroup {
            id,
            connection_id: new.connection_id.clone(),
            org_id,
            display_name: new.display_name.clone(),
            external_id: new.external_id.clone(),
            resource: new.resource.clone(),
            members,
            version: 1,
            created_at: now,
            updated_at: now,
        })
    }

    /// The group `id` of the connection `connection_id`, with its member ids (soft-deleted users
    /// left out). [`StoreError::NotFound`] if there is no such group or it belongs to another
    /// connection.
    pub async fn get_group(
        &self,
        connection_id: &str,
        id: &str,
    ) -> Result<DirectoryGroup, StoreError> {
        self.get_group_with(connection_id, id, true).await
    }

    /// [`Store::get_group`], reading the members only if `with_members` (otherwise `members`
    /// is empty: SCIM `excludedAttributes=members`, cheap whatever the group's size).
    pub async fn get_group_with(
        &self,
        connection_id: &str,
        id: &str,
        with_members: bool,
    ) -> Result<DirectoryGroup, StoreError> {
        let sql = format!(
            "SELECT {GROUP_COLUMNS} FROM directory_groups WHERE id = $1 AND connection_id = $2"
        );
        let (row, members): (Option<GroupRow>, Vec<String>) = with_pool!(self, read, |pool| {
            let row: Option<GroupRow> = sqlx::query_as(&sql)
                .bind(id)
                .bind(connection_id)
                .fetch_optional(pool)
                .await?;
            let members = if with_members && row.is_some() {
                sqlx::query_scalar(LIVE_MEMBERS)
                    .bind(id)
                    .fetch_all(pool)
                    .await?
            } else {
                Vec::new()
            };
            (row, members)
        });
        row.ok_or_else(|| StoreError::not_found("group", id))?
            .into_group(members)
    }

    /// A page of the groups of the connection `connection_id`, in creation order (ties broken
    /// by id), skipping `offset` and returning at most `limit` (clamped to
    /// [`MAX_DIRECTORY_LIST_LIMIT`]), with the total number of groups of the connection.
    /// Members are read (in one more query for the whole page) only if `with_members`; otherwise
    /// every group's `members` is empty (SCIM `excludedAttributes=members`).
    pub async fn list_groups(
        &self,
        connection_id: &str,
        offset: u64,
        limit: u32,
        with_members: bool,
    ) -> Result<(Vec<DirectoryGroup>, i64), StoreError> {
        let (offset, limit) = page(offset, limit);
        let sql = format!(
            "SELECT {GROUP_COLUMNS} FROM directory_groups WHERE connection_id = $1 \
             ORDER BY created_at, id LIMIT $2 OFFSET $3"
        );
        let (rows, total, pairs): (Vec<GroupRow>, i64, Vec<(String, String)>) =
            with_pool!(self, read, |pool| {
                let rows: Vec<GroupRow> = sqlx::query_as(&sql)
                    .bind(connection_id)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(pool)
                    .await?;
                let total = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM directory_groups WHERE connection_id = $1",
                )
                .bind(connection_id)
                .fetch_one(pool)
                .await?;
                let mut pairs = Vec::new();
                if with_members && !rows.is_empty() {
                    let sql = format!(
                        "SELECT m.group_id, m.user_id FROM group_members m \
                         JOIN directory_users u ON u.id = m.user_id \
                         WHERE m.group_id IN ({}) AND u.scim_deleted_at IS NULL \
                         ORDER BY m.group_id, m.user_id",
                        placeholders(1, rows.len())
                    );
                    let mut query = sqlx::query_as(&sql);
                    for row in &rows {
                        query = query.bind(&row.id);
                    }
                    pairs = query.fetch_all(pool).await?;
                }
                (rows, total, pairs)
            });
        let mut members: HashMap<String, Vec<String>> = HashMap::new();
        for (group_id, user_id) in pairs {
            members.entry(group_id).or_default().push(user_id);
        }
        let groups = rows
            .into_iter()
            .map(|row| {
                let m = members.remove(&row.id).unwrap_or_default();
                row.into_group(m)
            })
            .collect::<Result<_, _>>()?;
        Ok((groups, total))
    }

    /// Replaces the group `id` of the connection `connection_id`: `displayName`, `externalId`,
    /// the resource and, if `members` is given, the whole membership, atomically, bumping its
    /// version. `expected_version`, `NotFound` and `PreconditionFailed` as in
    /// [`Store::replace_user`]; [`StoreError::NotFound`] naming a member id that is not a user
    /// of the organization (nothing is changed then).
    #[allow(clippy::too_many_arguments)]
    pub async fn replace_group(
        &self,
        connection_id: &str,
        id: &str,
        expected_version: Option<i64>,
        display_name: &str,
        external_id: Option<&str>,
        resource: &serde_json::Value,
        members: Option<Vec<String>>,
    ) -> Result<DirectoryGroup, StoreError> {
        check_display_name(display_name)?;
        check_external_id(external_id)?;
        let json = resource_json(resource, "SCIM group resource")?;
        let sql = format!(
            "UPDATE directory_groups SET display_name = $1, external_id = $2, resource_json = $3, \
                 version = version + 1, updated_at = $4, display_name_lc = $8 \
             WHERE id = $5 AND connection_id = $6 AND ($7 IS NULL OR version = $7) \
             RETURNING {GROUP_COLUMNS}"
        );
        let outcome: Option<(GroupRow, Vec<String>)> = with_tx!(self, |tx| {
            let row: Option<GroupRow> = sqlx::query_as(&sql)
                .bind(display_name)
                .bind(external_id)
                .bind(&json)
                .bind(now_ms())
                .bind(id)
                .bind(connection_id)
                .bind(expected_version)
                .bind(display_name_key(display_name))
                .fetch_optional(&mut *tx)
                .await?;
            match row {
                None => None,
                Some(row) => {
                    if let Some(members) = &members {
                        // Soft-deleted users' memberships are invisible to the IdP, hence never
                        // in its list: they are kept, for a restore.
                        sqlx::query(
                            "DELETE FROM group_members WHERE group_id = $1 AND NOT EXISTS \
                             (SELECT 1 FROM directory_users u \
                              WHERE u.id = group_members.user_id AND u.scim_deleted_at IS NOT NULL)",
                        )
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                        attach_members!(tx, id, connection_id, members);
                    }
                    let current: Vec<String> = sqlx::query_scalar(LIVE_MEMBERS)
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?;
                    Some((row, current))
                }
            }
        });
        match outcome {
            Some((row, members)) => row.into_group(members),
            None => Err(self
                .write_refused("group", GROUP_VERSION, connection_id, id, expected_version)
                .await),
        }
    }

    /// Adds users to the group `id` of the connection `connection_id` (SCIM `PATCH add
    /// members`), bumping its version. Adding a member twice is harmless. Returns the group.
    /// [`StoreError::NotFound`] if there is no such group in the connection, or naming a member
    /// id that is not a user of the connection (nothing is added then).
    pub async fn add_group_members(
        &self,
        connection_id: &str,
        id: &str,
        members: &[String],
    ) -> Result<DirectoryGroup, StoreError> {
        self.change_group_members(connection_id, id, None, members, &[]).await
    }

    /// Removes users from the group `id` of the connection `connection_id` (SCIM `PATCH remove
    /// members`), bumping its version. Ids that are not members are ignored. A soft-deleted
    /// user's kept membership is removed too when named (the IdP's explicit intent). Returns the
    /// group. [`StoreError::NotFound`] if there is no such group in the connection.
    pub async fn remove_group_members(
        &self,
        connection_id: &str,
        id: &str,
        members: &[String],
    ) -> Result<DirectoryGroup, StoreError> {
        self.change_group_members(connection_id, id, None, &[], members).await
    }

    /// Adds `add` to and then removes `remove` from the members of the group `id` of the
    /// connection `connection_id`, in one transaction bumping its version once: how IdPs'
    /// membership PATCHes are applied without rewriting a large group's member list.
    /// With `expected_version`, a stale version is [`StoreError::PreconditionFailed`] and
    /// nothing changes. [`StoreError::NotFound`] for an unknown group, or naming an `add` id
    /// that is not a user of the connection (nothing changes then either).
    pub async fn change_group_members(
        &self,
        connection_id: &str,
        id: &str,
        expected_version: Option<i64>,
        add: &[String],
        remove: &[String],
    ) -> Result<DirectoryGroup, StoreError> {
        self.change_group_members_with(connection_id, id, expected_version, add, remove, true).await
    }

    /// [`Store::change_group_members`], reading the committed member list only if
    /// `with_members` (otherwise `members` is empty). The write transaction holds the store's
    /// write lock (SQLite has one writer): reading a 100,000-member list inside it stalls every
    /// other write for as long, so a caller that answers without the members (or reads them
    /// afterwards, outside the lock) passes `false`.
    pub async fn change_group_members_with(
        &self,
        connection_id: &str,
        id: &str,
        expected_version: Option<i64>,
        add: &[String],
        remove: &[String],
        with_members: bool,
    ) -> Result<DirectoryGroup, StoreError> {
        let sql = format!(
            "UPDATE directory_groups SET version = version + 1, updated_at = $1 \
             WHERE id = $2 AND connection_id = $3 AND ($4 IS NULL OR version = $4) \
             RETURNING {GROUP_COLUMNS}"
        );
        let outcome: Option<(GroupRow, Vec<String>)> = with_tx!(self, |tx| {
            let row: Option<GroupRow> = sqlx::query_as(&sql)
                .bind(now_ms())
                .bind(id)
                .bind(connection_id)
                .bind(expected_version)
                .fetch_optional(&mut *tx)
                .await?;
            match row {
                None => None,
                Some(row) => {
                    attach_members!(tx, id, connection_id, add);
                    for chunk in dedup(remove).chunks(MEMBER_CHUNK) {
                        let sql = format!(
                            "DELETE FROM group_members WHERE group_id = $1 AND user_id IN ({})",
                            placeholders(2, chunk.len())
                        );
                        let mut query = sqlx::query(&sql).bind(id);
                        for user_id in chunk {
                            query = query.bind(*user_id);
                        }
                        query.execute(&mut *tx).await?;
                    }
                    let current = if with_members {
                        sqlx::query_scalar(LIVE_MEMBERS).bind(id).fetch_all(&mut *tx).await?
                    } else {
                        Vec::new()
                    };
                    Some((row, current))
                }
            }
        });
        match outcome {
            Some((row, members)) => row.into_group(members),
            None => Err(self
                .write_refused("group", GROUP_VERSION, connection_id, id, expected_version)
                .await),
        }
    }

    /// Deletes the group `id` of the connection `connection_id` and its memberships (not the
    /// users). [`StoreError::NotFound`] if there is no such group in the connection;
    /// [`StoreError::PreconditionFailed`] if `expected_version` (a SCIM `If-Match`) is given and
    /// the group is at another version.
    pub async fn delete_group(
        &self,
        connection_id: &str,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError> {
        self.delete_scoped("group", "directory_groups", GROUP_VERSION, connection_id, id, expected_version).await
    }

    /// The groups of the connection `connection_id` that the user `user_id` (of that connection)
    /// belongs to, by display name then id (the user's SCIM `groups` attribute). Groups of
    /// other connections of the organization are not shown. [`StoreError::NotFound`] if there
    /// is no such user in the connection, or it is soft-deleted.
    pub async fn groups_of_user(
        &self,
        connection_id: &str,
        user_id: &str,
    ) -> Result<Vec<DirectoryGroupRef>, StoreError> {
        let (exists, groups): (bool, Vec<(String, String)>) = with_pool!(self, read, |pool| {
            let exists: Option<String> = sqlx::query_scalar(
                "SELECT id FROM directory_users \
                 WHERE id = $1 AND connection_id = $2 AND scim_deleted_at IS NULL",
            )
            .bind(user_id)
            .bind(connection_id)
            .fetch_optional(pool)
            .await?;
            let groups = if exists.is_some() {
                sqlx::query_as(
                    // CROSS JOIN makes SQLite start from the user's memberships (PostgreSQL
                    // plans it as the inner join it is).
                    "SELECT g.id, g.display_name FROM group_members m \
                     CROSS JOIN directory_groups g \
                     WHERE g.id = m.group_id AND m.user_id = $1 AND g.connection_id = $2 \
                     ORDER BY g.display_name, g.id",
                )
                .bind(user_id)
                .bind(connection_id)
                .fetch_all(pool)
                .await?
            } else {
                Vec::new()
            };
            (exists.is_some(), groups)
        });
        if !exists {
            return Err(StoreError::not_found("user", user_id));
        }
        Ok(groups
            .into_iter()
            .map(|(id, display_name)| DirectoryGroupRef { id, display_name })
            .collect())
    }

    /// The groups of the connection `connection_id` whose `displayName` equals `display_name`
    /// ignoring case (SCIM `filter=displayName eq "..."`, how Entra and Okta look a group up
    /// before creating it), oldest first, with their members when `with_members`. Case is
    /// ignored as for `userName` (Unicode lower case on both sides, see [`user_name_key`]), the
    /// same on both backends. Served by the index on `(connection_id, display_name_lc)`;
    /// callers re-check the exact SCIM comparison.
    pub async fn find_groups_by_display_name(
        &self,
        connection_id: &str,
        display_name: &str,
        with_members: bool,
    ) -> Result<Vec<DirectoryGroup>, StoreError> {
        let key = display_name_key(display_name);
        self.find_groups("display_name_lc = $2", connection_id, &key, with_members).await
    }

    /// The groups of the connection `connection_id` whose `externalId` is exactly `external_id`,
    /// oldest first, with their members when `with_members`.
    pub async fn find_groups_by_external_id(
        &self,
        connection_id: &str,
        external_id: &str,
        with_members: bool,
    ) -> Result<Vec<DirectoryGroup>, StoreError> {
        self.find_groups("external_id = $2", connection_id, external_id, with_members).await
    }

    async fn find_groups(
        &self,
        condition: &str,
        connection_id: &str,
        value: &str,
        with_members: bool,
    ) -> Result<Vec<DirectoryGroup>, StoreError> {
        let sql = format!(
            "SELECT {GROUP_COLUMNS} FROM directory_groups WHERE connection_id = $1 AND {condition}"
        );
        let (rows, pairs): (Vec<GroupRow>, Vec<(String, String)>) = with_pool!(self, read, |pool| {
            let rows: Vec<GroupRow> =
                sqlx::query_as(&sql).bind(connection_id).bind(value).fetch_all(pool).await?;
            let mut pairs = Vec::new();
            if with_members {
                for row in &rows {
                    let ids: Vec<String> = sqlx::query_scalar(LIVE_MEMBERS)
                    .bind(&row.id)
                    .fetch_all(pool)
                    .await?;
                    pairs.extend(ids.into_iter().map(|u| (row.id.clone(), u)));
                }
            }
            (rows, pairs)
        });
        let mut members: HashMap<String, Vec<String>> = HashMap::new();
        for (group, user) in pairs {
            members.entry(group).or_default().push(user);
        }
        let mut groups = rows
            .into_iter()
            .map(|row| {
                let m = members.remove(&row.id).unwrap_or_default();
                row.into_group(m)
            })
            .collect::<Result<Vec<_>, _>>()?;
        groups.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(groups)
    }

    /// The groups of the connection `connection_id` each of `user_ids` belongs to (users of
    /// other connections, and unknown ids, map to no groups), by display name then id: the
    /// SCIM `groups` attribute of a page of users in one query per [`MEMBER_CHUNK`] ids.
    pub async fn groups_of_users(
        &self,
        connection_id: &str,
        user_ids: &[&str],
    ) -> Result<HashMap<String, Vec<DirectoryGroupRef>>, StoreError> {
        let mut out: HashMap<String, Vec<DirectoryGroupRef>> = HashMap::new();
        for chunk in user_ids.chunks(MEMBER_CHUNK) {
            let sql = format!(
                "SELECT m.user_id, g.id, g.display_name FROM group_members m \
                 CROSS JOIN directory_groups g \
                 WHERE g.id = m.group_id AND g.connection_id = $1 AND m.user_id IN ({}) \
                 ORDER BY g.display_name, g.id",
                placeholders(2, chunk.len())
            );
            // On a dedicated reader: every SCIM answer about users asks this.
            let rows: Vec<(String, String, String)> = with_reader!(self,
                sqlite: |r| {
                    // Positional: `$1`, then `$2`… in order, is also the order of first appearance.
                    let params = std::iter::once(&connection_id).chain(chunk);
                    r.prepare_cached(&sql)?
                        .query_map(rusqlite::params_from_iter(params), |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                        })?
                        .collect()
                },
                pool: |c| {
                    let mut query = sqlx::query_as(&sql).bind(connection_id);
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    query.fetch_all(c).await
                }
            )?;
            for (user, id, display_name) in rows {
                out.entry(user).or_default().push(DirectoryGroupRef { id, display_name });
            }
        }
        Ok(out)
    }
}
