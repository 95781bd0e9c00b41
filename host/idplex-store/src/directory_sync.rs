//! Directory pull sync: what the store keeps when idplex *pulls* users and groups from an IdP's
//! directory API (through the connection's connector), instead of waiting for the IdP to push
//! them over SCIM.
//!
//! # Passes, pages and cursors
//!
//! The hub asks the connector for the directory page by page, in *passes*. A pass is
//! [`PassKind::Full`] (a snapshot: whatever the pass did not report is gone when it completes)
//! or [`PassKind::Delta`] (the changes since the cursor the previous pass ended with). Each page
//! ([`PulledPage`]) is applied by [`Store::apply_pull_page`] in **one transaction together with
//! the pass's cursor**, so a process killed mid-pass resumes from the last applied page
//! ([`DirectorySyncState::pass`]): nothing is applied twice, nothing lost. A run goes:
//!
//! 1. [`Store::acquire_sync_lease`] (one replica per connection at a time; renewed with
//!    [`Store::renew_sync_lease`] while the run lasts);
//! 2. [`Store::start_sync_run`] (the run's record, for admins);
//! 3. if [`Store::directory_sync_state`] shows a pass in progress, go on with it from its
//!    cursor; otherwise [`Store::begin_pull_pass`]: a delta from
//!    [`DirectorySyncState::resume_cursor`] if there is one, else a full pass;
//! 4. [`Store::apply_pull_page`] for each page, until one says [`PageApplied::pass_complete`];
//!    an IdP that refuses the delta cursor (expired) → [`Store::abandon_pull_pass`] and a full
//!    pass;
//! 5. [`Store::finish_sync_run`], [`Store::release_sync_lease`] (which schedules the next run).
//!
//! Every pass operation is *fenced*: it only happens for the lease owner, with an unexpired
//! lease, and (for pages) for the pass in progress. Otherwise nothing is written and the error
//! is a [`StoreError::Conflict`] for which [`StoreError::is_sync_lease_lost`] is true: the run
//! must stop (another replica took over, or will).
//!
//! # What a page does
//!
//! Users and groups are matched by `(connection, externalId)` — soft-deleted users of the
//! connection included, which a reappearance restores. Each object and membership a pass
//! reports is stamped with the pass's id (`sync_pass`); when a full pass completes, what of the
//! connection carries an older stamp is gone: users get the connection's
//! [`crate::ScimDeletePolicy`] (as a SCIM `DELETE`), groups are deleted, and memberships of the
//! groups the pass reported are removed. What SCIM (or sign-in) provisioned has no stamp and is
//! never swept — unless a pass reports it (the same external id in the connection): from then on
//! it is the pull's. A delta page never sweeps.
//!
//! Within a page, users come first (updates before inserts, so a `userName` a rename frees is
//! free for a new user), then groups, then memberships (whose members must exist by then),
//! then the removals, then the cursor (and, ending a full pass, the sweep).
//!
//! A problem with one item (a `userName` another user of the organization holds, an empty
//! `userName`, an unknown member) never fails the page: the item is skipped and the problem is
//! reported in [`PageApplied::problems`], for the hub to record ([`Store::record_sync_problem`]).
//!
//! # Cost
//!
//! On SQLite a page runs as one synchronous transaction on the store's writer connection
//! (`readers.rs`): every statement a plain call on prepared, cached statements. Lookups are one
//! statement per [`LOOKUP_CHUNK`] external ids (a JSON array through `json_each` on SQLite, an
//! array through `= ANY` on PostgreSQL); users are inserted one cached statement each on
//! SQLite, all of a page in one `unnest` statement on PostgreSQL; unchanged users and groups
//! are stamped in one statement per chunk. The logic is written once
//! ([`apply_page`]), over the small [`PullTx`] interface each backend implements.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;

use crate::directory::{
    check_display_name, check_external_id, check_user_name, display_name_key, resource_json,
    user_name_key,
};
use crate::error::is_unique_violation;
use crate::readers::to_sqlx;
use crate::sync_log::{clean, scrub};
use crate::user_tokens::{END_USER_SESSIONS, SessionEndReason};
use crate::{Pools, ScimDeletePolicy, Store, StoreError, now_ms, random_id};

/// Seconds between scheduled runs when the schedule does not say.
pub const DIRECTORY_SYNC_DEFAULT_INTERVAL_SECS: i64 = 900;

/// Shortest interval between scheduled runs, in seconds.
pub const MIN_DIRECTORY_SYNC_INTERVAL_SECS: i64 = 60;

/// Longest interval between scheduled runs, in seconds (30 days).
pub const MAX_DIRECTORY_SYNC_INTERVAL_SECS: i64 = 30 * 24 * 3600;

/// Longest cursor (a pass's next page, or where the next pass resumes) the store keeps, in
/// bytes; a page naming a longer one is refused with [`StoreError::InvalidInput`].
pub const MAX_SYNC_CURSOR_BYTES: usize = 64 * 1024;

/// Longest lease owner name, in bytes.
pub const MAX_SYNC_LEASE_OWNER_BYTES: usize = 200;

/// Longest stored run message or log line, in bytes (longer ones are cut and end with `…`).
pub const MAX_SYNC_MESSAGE_BYTES: usize = 2048;

/// Most problems [`PageApplied::problems`] lists for one page; a last line counts the rest.
pub const MAX_PAGE_PROBLEMS: usize = 100;

/// Largest `limit` of [`Store::sync_runs`] and [`Store::sync_log`]; larger ones are clamped.
pub const MAX_SYNC_RUNS_LIMIT: u32 = 1000;

/// How long runs and their log lines are kept unless configured otherwise: 90 days, in ms
/// (for the hub's pruner, [`Store::prune_directory_sync_log`]).
pub const DIRECTORY_SYNC_LOG_DEFAULT_RETENTION_MS: i64 = 90 * 24 * 60 * 60 * 1000;

/// External ids (or ids) one lookup or stamping statement carries.
const LOOKUP_CHUNK: usize = 500;

/// Rows deleted per statement by [`Store::prune_directory_sync_log`].
const PRUNE_BATCH: i64 = 5000;

/// The `what` of the [`StoreError::Conflict`] a pass operation returns when the caller does not
/// hold the connection's sync lease (any more).
pub(crate) const SYNC_LEASE: &str = "directory sync lease of connection";

/// The `what` of the [`StoreError::Conflict`] [`Store::apply_pull_page`] returns when the page's
/// pass is not the pass in progress (any more).
pub(crate) const SYNC_PASS: &str = "directory sync pass of connection";

/// The longest external id or name a problem line quotes, in bytes.
const SHOWN_BYTES: usize = 128;

// ---------------------------------------------------------------- public records

/// The kind of a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PassKind {
    /// A snapshot of the directory: when it completes, what it did not report is gone.
    Full,
    /// The changes since the cursor the previous pass ended with.
    Delta,
}

impl PassKind {
    /// `full` or `delta`.
    pub fn as_str(self) -> &'static str {
        match self {
            PassKind::Full => "full",
            PassKind::Delta => "delta",
        }
    }
}

impl fmt::Display for PassKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PassKind {
    type Err = String;

    /// `full` or `delta` (exactly).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" => Ok(PassKind::Full),
            "delta" => Ok(PassKind::Delta),
            other => Err(format!("a pass kind is full or delta, not {other:?}")),
        }
    }
}

/// A user as a page reports it, already converted to a SCIM resource by the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PulledUser {
    /// The IdP's identifier of the user: how pulled users are matched (SCIM `externalId`).
    pub external_id: String,
    /// SCIM `userName`; unique per organization, ignoring case.
    pub user_name: String,
    /// SCIM `active`.
    pub active: bool,
    /// The full RFC 7643 resource (a JSON object), stored as given.
    pub resource: serde_json::Value,
}

/// A group as a page reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PulledGroup {
    /// The IdP's identifier of the group (SCIM `externalId`).
    pub external_id: String,
    /// SCIM `displayName`.
    pub display_name: String,
    /// The full RFC 7643 resource (a JSON object), stored as given; membership is stored apart
    /// ([`PulledMembers`]).
    pub resource: serde_json::Value,
}

/// A member of a group, by external id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PulledMember {
    /// A user, by its external id.
    User(String),
    /// A nested group, by its external id.
    Group(String),
}

/// Membership of one group, as a page reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PulledMembers {
    /// The group, by external id.
    pub group: String,
    /// Members the group has (full pass: all of them, possibly over several pages and
    /// entries) or gained (delta pass).
    #[serde(default)]
    pub added: Vec<PulledMember>,
    /// Members the group lost (delta pass only; ignored in a full pass, whose sweep removes
    /// what was not reported).
    #[serde(default)]
    pub removed: Vec<PulledMember>,
}

/// One page of a pass, as the hub hands it to [`Store::apply_pull_page`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PulledPage {
    /// Users created or changed (delta), or present (full).
    #[serde(default)]
    pub users: Vec<PulledUser>,
    /// Groups created or changed (delta), or present (full).
    #[serde(default)]
    pub groups: Vec<PulledGroup>,
    /// Memberships. Members must be known by the time their page is applied: users and groups
    /// reported on this page or an earlier one (of any pass).
    #[serde(default)]
    pub members: Vec<PulledMembers>,
    /// External ids of users the IdP removed (any pass kind): they get the connection's delete
    /// policy.
    #[serde(default)]
    pub removed_users: Vec<String>,
    /// External ids of groups the IdP removed (any pass kind): they are deleted.
    #[serde(default)]
    pub removed_groups: Vec<String>,
    /// The cursor of the pass's next page; `None`: this is the pass's last page.
    #[serde(default)]
    pub next: Option<String>,
    /// On the last page: where the next pass starts (a delta); `None`: the next pass is full.
    #[serde(default)]
    pub resume: Option<String>,
}

/// The pass in progress of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassInProgress {
    /// The pass's id (increasing per connection): what [`Store::apply_pull_page`] is given.
    pub id: i64,
    /// Full or delta: what [`Store::apply_pull_page`] is given too.
    pub kind: PassKind,
    /// The cursor to ask next; `None`: the start of a full pass.
    pub cursor: Option<String>,
    /// Pages applied so far in this pass.
    pub pages: i64,
    /// When the pass began (unix ms).
    pub started_at: i64,
}

/// A connection's pull sync: its schedule, its pass in progress, its lease and its last run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectorySyncState {
    /// The connection (directory) pulled.
    pub connection_id: String,
    /// Whether the schedule runs the sync ([`Store::due_directory_syncs`]).
    pub enabled: bool,
    /// Seconds between the end of a run and the next scheduled one.
    pub interval_secs: i64,
    /// The pass in progress, if any (a run stopped mid-pass resumes it).
    pub pass: Option<PassInProgress>,
    /// Where the next pass starts (a delta), as the last complete pass ended; `None`: the next
    /// pass is full.
    pub resume_cursor: Option<String>,
    /// Who holds the lease (a replica running the sync), if anyone did last.
    pub lease_owner: Option<String>,
    /// Until when (unix ms); a lease past it is free.
    pub lease_expires_at: Option<i64>,
    /// When the schedule runs the sync next (unix ms); `None`: as soon as it is enabled.
    pub next_run_at: Option<i64>,
    /// The most recent run.
    pub last_run: Option<SyncRun>,
}

/// What [`Store::apply_pull_page`] did with a page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageApplied {
    /// Users the page reported.
    pub users_seen: u64,
    /// Groups the page reported.
    pub groups_seen: u64,
    /// Users and groups created.
    pub created: u64,
    /// Users and groups changed: their resource, `userName`, `displayName` or `active`, a
    /// restore, or (groups) their membership.
    pub changed: u64,
    /// Users and groups removed: by the page's removals and, when it completed a full pass,
    /// by the sweep.
    pub removed: u64,
    /// Whether this page completed its pass (the sweep ran for a full pass).
    pub pass_complete: bool,
    /// What was skipped and why, one line each (at most [`MAX_PAGE_PROBLEMS`], then a line
    /// counting the rest). Never a secret.
    pub problems: Vec<String>,
}

/// A run of a connection's sync, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SyncRun {
    /// Increasing.
    pub id: i64,
    /// The connection synced.
    pub connection_id: String,
    /// `schedule` or `manual`.
    pub trigger: String,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms; `None` while running.
    pub finished_at: Option<i64>,
    /// `running`, `ok` or `error`.
    pub outcome: String,
    /// `full` or `delta`: the kind of the (last) pass the run made.
    pub pass_kind: Option<String>,
    /// Pages applied.
    pub pages: i64,
    /// The totals of [`PageApplied`] over the run's pages.
    pub users_seen: i64,
    /// See [`SyncRun::users_seen`].
    pub groups_seen: i64,
    /// See [`SyncRun::users_seen`].
    pub created: i64,
    /// See [`SyncRun::users_seen`].
    pub changed: i64,
    /// See [`SyncRun::users_seen`].
    pub removed: i64,
    /// Problems and failed pages.
    pub errors: i64,
    /// What went wrong (an error run), or a summary.
    pub message: Option<String>,
}

/// The totals of a run so far, for [`Store::update_sync_run_progress`] and
/// [`Store::finish_sync_run`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRunTotals {
    /// The kind of the (last) pass the run made.
    pub pass_kind: Option<PassKind>,
    /// Pages applied.
    pub pages: u64,
    /// Sums of [`PageApplied`]'s counts ([`SyncRunTotals::add_page`]).
    pub users_seen: u64,
    /// See [`SyncRunTotals::users_seen`].
    pub groups_seen: u64,
    /// See [`SyncRunTotals::users_seen`].
    pub created: u64,
    /// See [`SyncRunTotals::users_seen`].
    pub changed: u64,
    /// See [`SyncRunTotals::users_seen`].
    pub removed: u64,
    /// Problems and failed pages.
    pub errors: u64,
    /// Stored scrubbed and cut to [`MAX_SYNC_MESSAGE_BYTES`].
    pub message: Option<String>,
}

impl SyncRunTotals {
    /// Adds a page's counts (one page, its users, groups, created, changed, removed, and its
    /// problems as errors).
    pub fn add_page(&mut self, page: &PageApplied) {
        self.pages += 1;
        self.users_seen += page.users_seen;
        self.groups_seen += page.groups_seen;
        self.created += page.created;
        self.changed += page.changed;
        self.removed += page.removed;
        self.errors += page.problems.len() as u64;
    }
}

/// A line of a connection's sync log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SyncLogLine {
    /// Increasing.
    pub id: i64,
    /// The run it is a problem of.
    pub run_id: i64,
    /// When it was recorded (unix ms).
    pub at: i64,
    /// `error` or `warning`.
    pub level: String,
    pub message: String,
}

// ---------------------------------------------------------------- two backends, one logic

/// Which SQL dialect [`PullTx`] statements are expanded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a statement's `$N`.
#[derive(Debug, Clone, Copy)]
enum V<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    Bool(bool),
    /// A list of texts, for `IN LIST($N)` and `TEXTS($N)` (see [`dialect_sql`]).
    Texts(&'a [&'a str]),
}

/// `sql` for `dialect`. Two tokens stand for a bound list of texts ([`V::Texts`]):
///
/// * `x IN LIST($N)`: SQLite `x IN (SELECT value FROM json_each($N))` (a JSON array),
///   PostgreSQL `x = ANY($N)` (a `text[]`); both are index lookups;
/// * `FROM TEXTS($N)`: a table of one column `value`: SQLite `json_each($N)`, PostgreSQL
///   `unnest($N::text[]) AS texts(value)`.
fn dialect_sql(sql: &'static str, dialect: Dialect) -> Cow<'static, str> {
    const LIST: &str = "IN LIST($";
    const TEXTS: &str = "TEXTS($";
    if !sql.contains(LIST) && !sql.contains(TEXTS) {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql;
    loop {
        let next = [(LIST, true), (TEXTS, false)]
            .into_iter()
            .filter_map(|(token, list)| rest.find(token).map(|at| (at, token, list)))
            .min_by_key(|(at, ..)| *at);
        let Some((at, token, list)) = next else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..at]);
        let after = &rest[at + token.len()..];
        let close = after.find(')').expect("a list placeholder is closed");
        let n = &after[..close];
        out.push_str(&match (dialect, list) {
            (Dialect::Sqlite, true) => format!("IN (SELECT value FROM json_each(${n}))"),
            (Dialect::Postgres, true) => format!("= ANY(${n})"),
            (Dialect::Sqlite, false) => format!("json_each(${n})"),
            (Dialect::Postgres, false) => format!("unnest(${n}::text[]) AS texts(value)"),
        });
        rest = &after[close + 1..];
    }
    Cow::Owned(out)
}

/// A row type both backends decode: tuples of plain column types.
trait Decode: Sized + Send + Unpin + for<'r> sqlx::FromRow<'r, PgRow> {
    fn sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

macro_rules! decode_tuple {
    ($($t:ident $i:tt),+) => {
        impl<$($t),+> Decode for ($($t,)+)
        where
            $($t: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, sqlx::Postgres>
                + sqlx::Type<sqlx::Postgres> + Send + Unpin),+
        {
            fn sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok(($(row.get::<_, $t>($i)?,)+))
            }
        }
    };
}
decode_tuple!(A 0);
decode_tuple!(A 0, B 1);
decode_tuple!(A 0, B 1, C 2);
decode_tuple!(A 0, B 1, C 2, D 3);
decode_tuple!(A 0, B 1, C 2, D 3, E 4);
decode_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);
decode_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);

/// What is constant in the rows a page inserts.
struct RowHead<'a> {
    org_id: &'a str,
    connection_id: &'a str,
    now: i64,
    pass_id: i64,
}

/// The statements of a page's transaction, on one backend. Statements are written once, in the
/// `$N` syntax both backends accept, with the list tokens of [`dialect_sql`]; on SQLite the
/// first appearances of `$1`, `$2`, … must be in that order (values are bound by position).
trait PullTx {
    /// Runs a statement; the number of rows it changed.
    fn exec(&mut self, sql: &'static str, params: &[V<'_>]) -> impl Future<Output = Result<u64, sqlx::Error>>;

    /// [`PullTx::exec`] of a statement that may violate a unique constraint: `None` if it did,
    /// the statement undone and the transaction still usable.
    fn exec_unless_taken(
        &mut self,
        sql: &'static str,
        params: &[V<'_>],
    ) -> impl Future<Output = Result<Option<u64>, sqlx::Error>>;

    /// The rows of a query.
    fn rows<R: Decode>(&mut self, sql: &'static str, params: &[V<'_>]) -> impl Future<Output = Result<Vec<R>, sqlx::Error>>;

    /// Inserts `users` (none taken by another: each its own `userName` key); the ids of those
    /// inserted: a user whose `userName` the organization already holds is not.
    fn insert_users(
        &mut self,
        head: &RowHead<'_>,
        users: &[&PreparedUser],
    ) -> impl Future<Output = Result<HashSet<String>, sqlx::Error>>;

    /// Inserts `groups`.
    fn insert_groups(&mut self, head: &RowHead<'_>, groups: &[&PreparedGroup]) -> impl Future<Output = Result<(), sqlx::Error>>;
}

/// Binds `params` to `stmt` by position (`$1` first; see [`PullTx`]).
fn bind_sqlite(stmt: &mut rusqlite::Statement<'_>, params: &[V<'_>]) -> rusqlite::Result<()> {
    debug_assert_eq!(stmt.parameter_count(), params.len(), "one value per distinct $N");
    for (i, value) in params.iter().enumerate() {
        let at = i + 1;
        debug_assert_eq!(
            stmt.parameter_name(at),
            Some(format!("${at}").as_str()),
            "$N must first appear in order on SQLite"
        );
        match *value {
            V::Text(v) => stmt.raw_bind_parameter(at, v)?,
            V::OptText(v) => stmt.raw_bind_parameter(at, v)?,
            V::Int(v) => stmt.raw_bind_parameter(at, v)?,
            V::Bool(v) => stmt.raw_bind_parameter(at, v)?,
            V::Texts(v) => {
                let json = serde_json::to_string(v).expect("a list of strings serializes");
                stmt.raw_bind_parameter(at, &json)?
            }
        }
    }
    Ok(())
}

/// A page's transaction on SQLite: the synchronous writer connection, inside the transaction
/// [`crate::readers::Writer::transaction`] opened. Every future completes at its first poll.
struct SqliteTx<'c> {
    conn: &'c rusqlite::Connection,
}

impl SqliteTx<'_> {
    fn exec_sync(&self, sql: &'static str, params: &[V<'_>]) -> rusqlite::Result<u64> {
        let sql = dialect_sql(sql, Dialect::Sqlite);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        bind_sqlite(&mut stmt, params)?;
        stmt.raw_execute().map(|n| n as u64)
    }
}

impl PullTx for SqliteTx<'_> {
    async fn exec(&mut self, sql: &'static str, params: &[V<'_>]) -> Result<u64, sqlx::Error> {
        self.exec_sync(sql, params).map_err(to_sqlx)
    }

    async fn exec_unless_taken(&mut self, sql: &'static str, params: &[V<'_>]) -> Result<Option<u64>, sqlx::Error> {
        // SQLite undoes a statement that fails on a constraint, and only it (`ABORT`).
        match self.exec_sync(sql, params).map_err(to_sqlx) {
            Ok(n) => Ok(Some(n)),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn rows<R: Decode>(&mut self, sql: &'static str, params: &[V<'_>]) -> Result<Vec<R>, sqlx::Error> {
        let run = || -> rusqlite::Result<Vec<R>> {
            let sql = dialect_sql(sql, Dialect::Sqlite);
            let mut stmt = self.conn.prepare_cached(&sql)?;
            bind_sqlite(&mut stmt, params)?;
            let mut rows = stmt.raw_query();
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(R::sqlite(row)?);
            }
            Ok(out)
        };
        run().map_err(to_sqlx)
    }

    async fn insert_users(&mut self, head: &RowHead<'_>, users: &[&PreparedUser]) -> Result<HashSet<String>, sqlx::Error> {
        let mut inserted = HashSet::new();
        for u in users {
            let n = self
                .exec_sync(
                    INSERT_PULLED_USER,
                    &[
                        V::Text(&u.id),
                        V::Text(head.org_id),
                        V::Text(head.connection_id),
                        V::Text(&u.user_name),
                        V::Text(&u.key),
                        V::Text(&u.external_id),
                        V::Bool(u.active),
                        V::Text(&u.json),
                        V::Int(head.now),
                        V::Int(head.pass_id),
                    ],
                )
                .map_err(to_sqlx)?;
            if n == 1 {
                inserted.insert(u.id.clone());
            }
        }
        Ok(inserted)
    }

    async fn insert_groups(&mut self, head: &RowHead<'_>, groups: &[&PreparedGroup]) -> Result<(), sqlx::Error> {
        for g in groups {
            self.exec_sync(
                INSERT_PULLED_GROUP,
                &[
                    V::Text(&g.id),
                    V::Text(head.org_id),
                    V::Text(head.connection_id),
                    V::Text(&g.display_name),
                    V::Text(&g.key),
                    V::Text(&g.external_id),
                    V::Text(&g.json),
                    V::Int(head.now),
                    V::Int(head.pass_id),
                ],
            )
            .map_err(to_sqlx)?;
        }
        Ok(())
    }
}

/// Binds [`V`]s to a sqlx query (or `query_as`), in order.
macro_rules! bind_pg {
    ($query:expr, $params:expr) => {{
        let mut q = $query;
        for p in $params {
            q = match *p {
                V::Text(v) => q.bind(v),
                V::OptText(v) => q.bind(v),
                V::Int(v) => q.bind(v),
                V::Bool(v) => q.bind(v),
                V::Texts(v) => q.bind(v),
            };
        }
        q
    }};
}

/// A page's transaction on PostgreSQL.
struct PgTx<'c> {
    conn: &'c mut sqlx::PgConnection,
}

impl PullTx for PgTx<'_> {
    async fn exec(&mut self, sql: &'static str, params: &[V<'_>]) -> Result<u64, sqlx::Error> {
        let sql = dialect_sql(sql, Dialect::Postgres);
        Ok(bind_pg!(sqlx::query(&sql), params).execute(&mut *self.conn).await?.rows_affected())
    }

    async fn exec_unless_taken(&mut self, sql: &'static str, params: &[V<'_>]) -> Result<Option<u64>, sqlx::Error> {
        // A failed statement aborts a PostgreSQL transaction: a savepoint keeps it usable.
        sqlx::query("SAVEPOINT pulled_row").execute(&mut *self.conn).await?;
        match self.exec(sql, params).await {
            Ok(n) => {
                sqlx::query("RELEASE SAVEPOINT pulled_row").execute(&mut *self.conn).await?;
                Ok(Some(n))
            }
            Err(e) if is_unique_violation(&e) => {
                sqlx::query("ROLLBACK TO SAVEPOINT pulled_row").execute(&mut *self.conn).await?;
                sqlx::query("RELEASE SAVEPOINT pulled_row").execute(&mut *self.conn).await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn rows<R: Decode>(&mut self, sql: &'static str, params: &[V<'_>]) -> Result<Vec<R>, sqlx::Error> {
        let sql = dialect_sql(sql, Dialect::Postgres);
        bind_pg!(sqlx::query_as::<_, R>(&sql), params).fetch_all(&mut *self.conn).await
    }

    async fn insert_users(&mut self, head: &RowHead<'_>, users: &[&PreparedUser]) -> Result<HashSet<String>, sqlx::Error> {
        if users.is_empty() {
            return Ok(HashSet::new());
        }
        let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
        let names: Vec<&str> = users.iter().map(|u| u.user_name.as_str()).collect();
        let keys: Vec<&str> = users.iter().map(|u| u.key.as_str()).collect();
        let external: Vec<&str> = users.iter().map(|u| u.external_id.as_str()).collect();
        let active: Vec<bool> = users.iter().map(|u| u.active).collect();
        let json: Vec<&str> = users.iter().map(|u| u.json.as_str()).collect();
        let inserted: Vec<String> = sqlx::query_scalar(INSERT_PULLED_USERS_PG)
            .bind(head.org_id)
            .bind(head.connection_id)
            .bind(head.now)
            .bind(head.pass_id)
            .bind(ids)
            .bind(names)
            .bind(keys)
            .bind(external)
            .bind(active)
            .bind(json)
            .fetch_all(&mut *self.conn)
            .await?;
        Ok(inserted.into_iter().collect())
    }

    async fn insert_groups(&mut self, head: &RowHead<'_>, groups: &[&PreparedGroup]) -> Result<(), sqlx::Error> {
        if groups.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
        let names: Vec<&str> = groups.iter().map(|g| g.display_name.as_str()).collect();
        let keys: Vec<&str> = groups.iter().map(|g| g.key.as_str()).collect();
        let external: Vec<&str> = groups.iter().map(|g| g.external_id.as_str()).collect();
        let json: Vec<&str> = groups.iter().map(|g| g.json.as_str()).collect();
        sqlx::query(INSERT_PULLED_GROUPS_PG)
            .bind(head.org_id)
            .bind(head.connection_id)
            .bind(head.now)
            .bind(head.pass_id)
            .bind(ids)
            .bind(names)
            .bind(keys)
            .bind(external)
            .bind(json)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }
}

/// Drives a future whose every await completes at once (a page on [`SqliteTx`]) on this
/// thread.
fn run_ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => unreachable!("SQLite statements of a page complete synchronously"),
    }
}

// ---------------------------------------------------------------- statements

/// The fence of a page: matches (and locks, until the transaction ends) the connection's sync
/// row only for the lease owner, with an unexpired lease, and for the pass in progress.
const FENCE: &str = "UPDATE directory_sync SET updated_at = $1 \
     WHERE connection_id = $2 AND lease_owner = $3 AND lease_expires_at > $1 \
       AND pass_id = $4 AND pass_kind = $5 \
     RETURNING pass_pages";

/// What [`fence_refusal`] needs to say why a fence did not match.
const SYNC_ROW: &str = "SELECT lease_owner, lease_expires_at, pass_id, pass_kind FROM directory_sync \
     WHERE connection_id = $1";

const CONNECTION: &str = "SELECT org_id, scim_delete_policy FROM connections WHERE id = $1";

/// The users of the connection `$1` with the external ids `$2` (soft-deleted ones included).
/// No ORDER BY: it would tempt SQLite into the creation-order index.
const USERS_BY_EXTERNAL_ID: &str = "SELECT id, external_id, user_name, active, resource_json, \
         scim_deleted_at, created_at \
     FROM directory_users WHERE connection_id = $1 AND external_id IN LIST($2)";

/// Rewrites a pulled user that changed (or reappeared: a soft-deleted one is restored).
const UPDATE_PULLED_USER: &str = "UPDATE directory_users SET user_name = $1, user_name_lc = $2, \
         active = $3, resource_json = $4, version = version + 1, updated_at = $5, \
         scim_deleted_at = NULL, sync_pass = $6, \
         deactivated_at = CASE WHEN $3 THEN NULL ELSE COALESCE(deactivated_at, $5) END \
     WHERE id = $7";

/// A new pulled user (SQLite: one per statement); nothing if the `userName` is taken.
const INSERT_PULLED_USER: &str = "INSERT INTO directory_users \
     (id, org_id, connection_id, user_name, user_name_lc, external_id, active, resource_json, \
      version, created_at, updated_at, deactivated_at, sync_pass) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9, CASE WHEN $7 THEN NULL ELSE $9 END, $10) \
     ON CONFLICT (org_id, user_name_lc) DO NOTHING";

/// A page's new pulled users in one statement (PostgreSQL); those whose `userName` is taken are
/// not inserted, and not returned.
const INSERT_PULLED_USERS_PG: &str = "INSERT INTO directory_users \
     (id, org_id, connection_id, user_name, user_name_lc, external_id, active, resource_json, \
      version, created_at, updated_at, deactivated_at, sync_pass) \
     SELECT u.id, $1, $2, u.user_name, u.user_name_lc, u.external_id, u.active, u.resource_json, \
            1, $3, $3, CASE WHEN u.active THEN NULL ELSE $3 END, $4 \
     FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::bool[], $10::text[]) \
          AS u(id, user_name, user_name_lc, external_id, active, resource_json) \
     ON CONFLICT (org_id, user_name_lc) DO NOTHING \
     RETURNING id";

/// Stamps users the pass reported unchanged.
const STAMP_USERS: &str = "UPDATE directory_users SET sync_pass = $1 WHERE id IN LIST($2)";

/// The groups of the connection `$1` with the external ids `$2`.
const GROUPS_BY_EXTERNAL_ID: &str = "SELECT id, external_id, display_name, resource_json, created_at \
     FROM directory_groups WHERE connection_id = $1 AND external_id IN LIST($2)";

const UPDATE_PULLED_GROUP: &str = "UPDATE directory_groups SET display_name = $1, display_name_lc = $2, \
         resource_json = $3, version = version + 1, updated_at = $4, sync_pass = $5 \
     WHERE id = $6";

const INSERT_PULLED_GROUP: &str = "INSERT INTO directory_groups \
     (id, org_id, connection_id, display_name, display_name_lc, external_id, resource_json, \
      version, created_at, updated_at, sync_pass) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8, $9)";

const INSERT_PULLED_GROUPS_PG: &str = "INSERT INTO directory_groups \
     (id, org_id, connection_id, display_name, display_name_lc, external_id, resource_json, \
      version, created_at, updated_at, sync_pass) \
     SELECT g.id, $1, $2, g.display_name, g.display_name_lc, g.external_id, g.resource_json, \
            1, $3, $3, $4 \
     FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) \
          AS g(id, display_name, display_name_lc, external_id, resource_json)";

const STAMP_GROUPS: &str = "UPDATE directory_groups SET sync_pass = $1 WHERE id IN LIST($2)";

/// Bumps the version of groups whose membership changed.
const BUMP_GROUPS: &str = "UPDATE directory_groups SET version = version + 1, updated_at = $1 \
     WHERE id IN LIST($2)";

/// New memberships of the group `$1` (stamped `$2`): as many rows as were new.
const ADD_MEMBERS: &str = "INSERT INTO group_members (group_id, user_id, sync_pass) \
     SELECT $1, value, $2 FROM TEXTS($3) WHERE true \
     ON CONFLICT (group_id, user_id) DO NOTHING";

/// Stamps the memberships of the group `$2` the pass reported.
const STAMP_MEMBERS: &str = "UPDATE group_members SET sync_pass = $1 \
     WHERE group_id = $2 AND user_id IN LIST($3) AND (sync_pass IS NULL OR sync_pass <> $1)";

const REMOVE_MEMBERS: &str = "DELETE FROM group_members WHERE group_id = $1 AND user_id IN LIST($2)";

const ADD_SUBGROUPS: &str = "INSERT INTO group_subgroups (group_id, member_group_id, sync_pass) \
     SELECT $1, value, $2 FROM TEXTS($3) WHERE true \
     ON CONFLICT (group_id, member_group_id) DO NOTHING";

const STAMP_SUBGROUPS: &str = "UPDATE group_subgroups SET sync_pass = $1 \
     WHERE group_id = $2 AND member_group_id IN LIST($3) AND (sync_pass IS NULL OR sync_pass <> $1)";

const REMOVE_SUBGROUPS: &str = "DELETE FROM group_subgroups WHERE group_id = $1 AND member_group_id IN LIST($2)";

/// Live users of the connection `$1` with the external ids `$2`, for removal.
const LIVE_USERS_BY_EXTERNAL_ID: &str = "SELECT id, resource_json FROM directory_users \
     WHERE connection_id = $1 AND external_id IN LIST($2) AND scim_deleted_at IS NULL";

/// Users of the connection `$1` a full pass `$2` did not report (never those SCIM provisioned:
/// their `sync_pass` is NULL).
const UNREPORTED_USERS: &str = "SELECT id, resource_json FROM directory_users \
     WHERE connection_id = $1 AND sync_pass < $2 AND scim_deleted_at IS NULL";

/// A removed user under policy `deactivate`, as [`Store::scim_delete_user`] does it.
const SOFT_DELETE_USER: &str = "UPDATE directory_users SET active = $1, resource_json = $2, \
         version = version + 1, updated_at = $3, scim_deleted_at = $3, \
         deactivated_at = COALESCE(deactivated_at, $3) \
     WHERE id = $4 AND scim_deleted_at IS NULL";

const DELETE_USERS: &str = "DELETE FROM directory_users WHERE id IN LIST($1)";

const DELETE_GROUPS_BY_EXTERNAL_ID: &str = "DELETE FROM directory_groups \
     WHERE connection_id = $1 AND external_id IN LIST($2)";

const DELETE_UNREPORTED_GROUPS: &str = "DELETE FROM directory_groups WHERE connection_id = $1 AND sync_pass < $2";

/// Groups the full pass `$2` reported that have memberships it did not.
const GROUPS_WITH_UNREPORTED_MEMBERS: &str = "SELECT m.group_id FROM group_members m \
     JOIN directory_groups g ON g.id = m.group_id \
     WHERE g.connection_id = $1 AND g.sync_pass = $2 AND m.sync_pass < $2 \
     UNION SELECT s.group_id FROM group_subgroups s \
     JOIN directory_groups g ON g.id = s.group_id \
     WHERE g.connection_id = $1 AND g.sync_pass = $2 AND s.sync_pass < $2";

const DELETE_UNREPORTED_MEMBERS: &str = "DELETE FROM group_members \
     WHERE group_id IN (SELECT id FROM directory_groups WHERE connection_id = $1 AND sync_pass = $2) \
       AND sync_pass < $2";

const DELETE_UNREPORTED_SUBGROUPS: &str = "DELETE FROM group_subgroups \
     WHERE group_id IN (SELECT id FROM directory_groups WHERE connection_id = $1 AND sync_pass = $2) \
       AND sync_pass < $2";

const ADVANCE_PASS: &str = "UPDATE directory_sync SET pass_pages = pass_pages + 1, pass_cursor = $1, \
         updated_at = $2 WHERE connection_id = $3";

const COMPLETE_PASS: &str = "UPDATE directory_sync SET pass_pages = pass_pages + 1, pass_kind = NULL, \
         pass_cursor = NULL, resume_cursor = $1, updated_at = $2 WHERE connection_id = $3";

// ---------------------------------------------------------------- a page, prepared

/// A valid user of a page, ready to write.
#[derive(Debug)]
struct PreparedUser {
    /// Its id if it is new.
    id: String,
    external_id: String,
    user_name: String,
    /// [`user_name_key`] of `user_name`.
    key: String,
    active: bool,
    json: String,
}

/// A valid group of a page, ready to write.
#[derive(Debug)]
struct PreparedGroup {
    id: String,
    external_id: String,
    display_name: String,
    /// [`display_name_key`] of `display_name`.
    key: String,
    json: String,
}

/// A page checked and serialized (outside the transaction), with what it is applied as.
#[derive(Debug)]
struct PageJob {
    connection_id: String,
    owner: String,
    pass_id: i64,
    kind: PassKind,
    now: i64,
    users: Vec<PreparedUser>,
    groups: Vec<PreparedGroup>,
    members: Vec<PulledMembers>,
    removed_users: Vec<String>,
    removed_groups: Vec<String>,
    next: Option<String>,
    resume: Option<String>,
    users_seen: u64,
    groups_seen: u64,
    /// Items refused before the transaction.
    problems: Vec<String>,
}

/// `text` as a problem line quotes it: control characters replaced (see [`scrub`]), cut to
/// [`SHOWN_BYTES`].
fn shown(text: &str) -> Cow<'_, str> {
    if text.len() <= SHOWN_BYTES && !text.chars().any(char::is_control) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(crate::truncate_utf8(&scrub(text), SHOWN_BYTES))
    }
}

/// Refuses a cursor the store will not keep.
fn check_cursor(what: &'static str, cursor: Option<&str>) -> Result<(), StoreError> {
    let Some(cursor) = cursor else { return Ok(()) };
    if cursor.len() > MAX_SYNC_CURSOR_BYTES {
        return Err(StoreError::InvalidInput {
            what,
            reason: format!("is {} bytes long; at most {MAX_SYNC_CURSOR_BYTES} are kept", cursor.len()),
        });
    }
    if cursor.contains('\0') {
        return Err(StoreError::InvalidInput { what, reason: "must not contain a NUL character".into() });
    }
    Ok(())
}

/// What an external id must be: non-empty, and what [`check_external_id`] accepts.
fn check_pulled_external_id(external_id: &str) -> Result<(), StoreError> {
    if external_id.is_empty() {
        return Err(StoreError::InvalidInput { what: "externalId", reason: "must not be empty".into() });
    }
    check_external_id(Some(external_id))
}

/// The reason of an item's refusal, as a problem line says it.
fn reason(e: &StoreError) -> String {
    match e {
        StoreError::InvalidInput { what, reason } => format!("{what} {reason}"),
        other => other.to_string(),
    }
}

/// The external ids of `ids` a lookup can carry (see [`check_pulled_external_id`]); the others
/// are reported (as `what`) and left out.
fn valid_references(what: &str, ids: &[String], problems: &mut Vec<String>) -> Vec<String> {
    ids.iter()
        .filter(|id| match check_pulled_external_id(id) {
            Ok(()) => true,
            Err(e) => {
                problems.push(format!("{what} {}: skipped: {}", shown(id), reason(&e)));
                false
            }
        })
        .cloned()
        .collect()
}

/// `members` with only the references a lookup can carry; `None` (reported) if the group's own
/// external id is not one.
fn valid_members(members: &PulledMembers, problems: &mut Vec<String>) -> Option<PulledMembers> {
    if let Err(e) = check_pulled_external_id(&members.group) {
        problems.push(format!("group {}: membership skipped: {}", shown(&members.group), reason(&e)));
        return None;
    }
    let keep = |list: &[PulledMember], problems: &mut Vec<String>| -> Vec<PulledMember> {
        list.iter()
            .filter(|m| {
                let (PulledMember::User(id) | PulledMember::Group(id)) = m;
                match check_pulled_external_id(id) {
                    Ok(()) => true,
                    Err(e) => {
                        problems.push(format!("group {}: member {} skipped: {}", shown(&members.group), shown(id), reason(&e)));
                        false
                    }
                }
            })
            .cloned()
            .collect()
    };
    Some(PulledMembers {
        group: members.group.clone(),
        added: keep(&members.added, problems),
        removed: keep(&members.removed, problems),
    })
}

impl PageJob {
    fn prepare(connection_id: &str, owner: &str, pass_id: i64, kind: PassKind, page: &PulledPage) -> Result<PageJob, StoreError> {
        check_cursor("next page cursor", page.next.as_deref())?;
        check_cursor("resume cursor", page.resume.as_deref())?;
        let mut problems = Vec::new();

        // The last report of an external id wins.
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, u) in page.users.iter().enumerate() {
            if last.insert(&u.external_id, i).is_some() {
                problems.push(format!(
                    "user {}: reported more than once on this page; the last report is applied",
                    shown(&u.external_id)
                ));
            }
        }
        let mut users = Vec::with_capacity(page.users.len());
        for (i, u) in page.users.iter().enumerate() {
            if last.get(u.external_id.as_str()) != Some(&i) {
                continue;
            }
            let checked = check_pulled_external_id(&u.external_id)
                .and_then(|()| check_user_name(&u.user_name))
                .and_then(|()| resource_json(&u.resource, "SCIM user resource"));
            match checked {
                Ok(json) => users.push(PreparedUser {
                    id: random_id(""),
                    external_id: u.external_id.clone(),
                    user_name: u.user_name.clone(),
                    key: user_name_key(&u.user_name),
                    active: u.active,
                    json,
                }),
                Err(e) => problems.push(format!("user {}: skipped: {}", shown(&u.external_id), reason(&e))),
            }
        }

        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, g) in page.groups.iter().enumerate() {
            if last.insert(&g.external_id, i).is_some() {
                problems.push(format!(
                    "group {}: reported more than once on this page; the last report is applied",
                    shown(&g.external_id)
                ));
            }
        }
        let mut groups = Vec::with_capacity(page.groups.len());
        for (i, g) in page.groups.iter().enumerate() {
            if last.get(g.external_id.as_str()) != Some(&i) {
                continue;
            }
            let checked = check_pulled_external_id(&g.external_id)
                .and_then(|()| check_display_name(&g.display_name))
                .and_then(|()| resource_json(&g.resource, "SCIM group resource"));
            match checked {
                Ok(json) => groups.push(PreparedGroup {
                    id: random_id(""),
                    external_id: g.external_id.clone(),
                    display_name: g.display_name.clone(),
                    key: display_name_key(&g.display_name),
                    json,
                }),
                Err(e) => problems.push(format!("group {}: skipped: {}", shown(&g.external_id), reason(&e))),
            }
        }

        Ok(PageJob {
            connection_id: connection_id.to_owned(),
            owner: owner.to_owned(),
            pass_id,
            kind,
            now: now_ms(),
            users,
            groups,
            members: page.members.iter().filter_map(|m| valid_members(m, &mut problems)).collect(),
            removed_users: valid_references("removed user", &page.removed_users, &mut problems),
            removed_groups: valid_references("removed group", &page.removed_groups, &mut problems),
            next: page.next.clone(),
            resume: page.resume.clone(),
            users_seen: page.users.len() as u64,
            groups_seen: page.groups.len() as u64,
            problems,
        })
    }
}

/// What a page's transaction came to.
#[derive(Debug)]
enum Outcome {
    Applied(PageApplied),
    /// Nothing was applied: the caller does not hold the lease, or the pass is not in progress.
    Fenced(StoreError),
}

/// Whether two stored resources are the same JSON (the same text, or the same value written
/// differently).
fn same_json(stored: &str, new: &str) -> bool {
    stored == new
        || matches!(
            (serde_json::from_str::<serde_json::Value>(stored), serde_json::from_str::<serde_json::Value>(new)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// A user's resource with `active` false (kept as is if it does not parse as an object).
fn deactivated_json(stored: &str) -> Cow<'_, str> {
    match serde_json::from_str::<serde_json::Value>(stored) {
        Ok(mut resource) => match resource.as_object_mut() {
            Some(fields) if fields.get("active") != Some(&serde_json::Value::Bool(false)) => {
                fields.insert("active".into(), serde_json::Value::Bool(false));
                serde_json::to_string(&resource).map_or(Cow::Borrowed(stored), Cow::Owned)
            }
            _ => Cow::Borrowed(stored),
        },
        Err(_) => Cow::Borrowed(stored),
    }
}

/// Why a fence (or a pass operation's condition) did not match, as the error to return, from
/// the connection's sync row as read after: `(lease_owner, lease_expires_at, pass_id,
/// pass_kind)`. `pass`: the pass a page named (`None`: a pass operation, fenced by the lease
/// only).
fn fence_refusal(
    connection_id: &str,
    owner: &str,
    now: i64,
    row: Option<(Option<String>, Option<i64>, i64, Option<String>)>,
    pass: Option<(i64, PassKind)>,
) -> StoreError {
    let lease = |reason: String| StoreError::conflict(SYNC_LEASE, connection_id, format!("{reason}; nothing was done"));
    let Some((lease_owner, expires_at, pass_id, pass_kind)) = row else {
        return lease(format!("is not held by {owner:?}: the connection has no sync state"));
    };
    match (lease_owner, expires_at) {
        (Some(o), Some(t)) if o == owner && t > now => {}
        (Some(o), Some(t)) if o == owner => return lease(format!("of {owner:?} expired at {t} (unix ms)")),
        (Some(o), _) => return lease(format!("is held by {o:?}, not {owner:?}")),
        (None, _) => return lease(format!("is not held by {owner:?} (nor by anyone)")),
    }
    let Some((id, kind)) = pass else {
        // The lease was not `owner`'s when the operation ran, and is again now.
        return lease(format!("was not held by {owner:?} when asked"));
    };
    let in_progress = match pass_kind {
        Some(current) => format!("pass {pass_id} ({current}) is in progress"),
        None => "no pass is in progress".to_owned(),
    };
    StoreError::conflict(
        SYNC_PASS,
        connection_id,
        format!("is not {id} ({kind}): {in_progress}; nothing was done"),
    )
}

/// Removes users (`(id, resource_json)`) by the connection's delete policy, as a SCIM `DELETE`
/// would: `delete` removes the rows, `deactivate` deactivates and soft-deletes them and ends
/// their sessions. How many.
async fn remove_users<T: PullTx>(tx: &mut T, policy: ScimDeletePolicy, users: &[(String, String)], now: i64) -> Result<u64, sqlx::Error> {
    let mut removed = 0;
    match policy {
        ScimDeletePolicy::Delete => {
            let ids: Vec<&str> = users.iter().map(|(id, _)| id.as_str()).collect();
            for chunk in ids.chunks(LOOKUP_CHUNK) {
                removed += tx.exec(DELETE_USERS, &[V::Texts(chunk)]).await?;
            }
        }
        ScimDeletePolicy::Deactivate => {
            for (id, json) in users {
                let json = deactivated_json(json);
                removed += tx
                    .exec(SOFT_DELETE_USER, &[V::Bool(false), V::Text(&json), V::Int(now), V::Text(id)])
                    .await?;
                tx.exec(
                    END_USER_SESSIONS,
                    &[V::Int(now), V::Text(SessionEndReason::UserDeleted.as_str()), V::Text(id)],
                )
                .await?;
            }
        }
    }
    Ok(removed)
}

/// Adds (and stamps) memberships of one group: `add` to `insert`, then `stamp` the ones that
/// were there. How many were new.
async fn add_links<T: PullTx>(
    tx: &mut T,
    (insert, stamp): (&'static str, &'static str),
    group_id: &str,
    members: &[&str],
    pass_id: i64,
) -> Result<u64, sqlx::Error> {
    let mut new = 0;
    for chunk in members.chunks(LOOKUP_CHUNK) {
        let inserted = tx.exec(insert, &[V::Text(group_id), V::Int(pass_id), V::Texts(chunk)]).await?;
        if (inserted as usize) < chunk.len() {
            tx.exec(stamp, &[V::Int(pass_id), V::Text(group_id), V::Texts(chunk)]).await?;
        }
        new += inserted;
    }
    Ok(new)
}

/// Maps external ids to ids, among rows `(external_id, id, deleted, created_at)`: a live row
/// before a soft-deleted one, then the oldest.
fn pick_by_external_id(rows: Vec<(String, String, bool, i64)>) -> HashMap<String, (String, bool)> {
    let mut best: HashMap<String, (String, bool, i64)> = HashMap::new();
    for (external_id, id, deleted, created_at) in rows {
        match best.get(&external_id) {
            Some((old_id, old_deleted, old_created)) if (*old_deleted, *old_created, old_id.as_str()) <= (deleted, created_at, id.as_str()) => {}
            _ => {
                best.insert(external_id, (id, deleted, created_at));
            }
        }
    }
    best.into_iter().map(|(k, (id, deleted, _))| (k, (id, deleted))).collect()
}

/// The page, in the transaction `tx` (see the module docs).
async fn apply_page<T: PullTx>(tx: &mut T, job: &PageJob) -> Result<Outcome, sqlx::Error> {
    let conn = job.connection_id.as_str();
    let now = job.now;
    let pass_id = job.pass_id;

    // ---- fence
    let fenced: Vec<(i64,)> = tx
        .rows(FENCE, &[V::Int(now), V::Text(conn), V::Text(&job.owner), V::Int(pass_id), V::Text(job.kind.as_str())])
        .await?;
    if fenced.is_empty() {
        let row: Vec<(Option<String>, Option<i64>, i64, Option<String>)> = tx.rows(SYNC_ROW, &[V::Text(conn)]).await?;
        return Ok(Outcome::Fenced(fence_refusal(conn, &job.owner, now, row.into_iter().next(), Some((pass_id, job.kind)))));
    }
    let connection: Vec<(String, String)> = tx.rows(CONNECTION, &[V::Text(conn)]).await?;
    let Some((org_id, policy)) = connection.into_iter().next() else {
        return Ok(Outcome::Fenced(StoreError::not_found("connection", conn)));
    };
    let policy = ScimDeletePolicy::parse(&policy).unwrap_or_default();
    let head = RowHead { org_id: &org_id, connection_id: conn, now, pass_id };

    let mut problems = job.problems.clone();
    let (mut created, mut changed, mut removed) = (0u64, 0u64, 0u64);

    // ---- users
    let mut existing: HashMap<String, (String, String, bool, String, Option<i64>, i64)> = HashMap::new();
    let external: Vec<&str> = job.users.iter().map(|u| u.external_id.as_str()).collect();
    for chunk in external.chunks(LOOKUP_CHUNK) {
        let rows: Vec<(String, String, String, bool, String, Option<i64>, i64)> =
            tx.rows(USERS_BY_EXTERNAL_ID, &[V::Text(conn), V::Texts(chunk)]).await?;
        for (id, external_id, user_name, active, json, deleted_at, created_at) in rows {
            // A live user before a soft-deleted one, then the oldest.
            let better = match existing.get(&external_id) {
                None => true,
                Some((old_id, _, _, _, old_deleted, old_created)) => {
                    (deleted_at.is_some(), created_at, id.as_str()) < (old_deleted.is_some(), *old_created, old_id.as_str())
                }
            };
            if better {
                existing.insert(external_id, (id, user_name, active, json, deleted_at, created_at));
            }
        }
    }
    let mut stamp: Vec<&str> = Vec::new();
    let mut new_users: Vec<&PreparedUser> = Vec::new();
    for u in &job.users {
        let Some((id, user_name, active, json, deleted_at, _)) = existing.get(&u.external_id) else {
            new_users.push(u);
            continue;
        };
        if deleted_at.is_none() && *user_name == u.user_name && *active == u.active && same_json(json, &u.json) {
            stamp.push(id);
            continue;
        }
        let params = [
            V::Text(&u.user_name),
            V::Text(&u.key),
            V::Bool(u.active),
            V::Text(&u.json),
            V::Int(now),
            V::Int(pass_id),
            V::Text(id),
        ];
        let done = if user_name_key(user_name) == u.key {
            Some(tx.exec(UPDATE_PULLED_USER, &params).await?)
        } else {
            tx.exec_unless_taken(UPDATE_PULLED_USER, &params).await?
        };
        match done {
            Some(_) => {
                changed += 1;
                if *active && deleted_at.is_none() && !u.active {
                    tx.exec(
                        END_USER_SESSIONS,
                        &[V::Int(now), V::Text(SessionEndReason::UserDeactivated.as_str()), V::Text(id)],
                    )
                    .await?;
                }
            }
            None => {
                problems.push(taken(u));
                // Still reported by the IdP: not to be swept.
                stamp.push(id);
            }
        }
    }
    for chunk in stamp.chunks(LOOKUP_CHUNK) {
        tx.exec(STAMP_USERS, &[V::Int(pass_id), V::Texts(chunk)]).await?;
    }
    // After the updates: a user renamed on this page frees its old userName for a new one.
    let inserted = tx.insert_users(&head, &new_users).await?;
    created += inserted.len() as u64;
    for u in new_users.iter().filter(|u| !inserted.contains(&u.id)) {
        problems.push(taken(u));
    }

    // ---- groups
    let mut existing: HashMap<String, (String, String, String, i64)> = HashMap::new();
    let external: Vec<&str> = job.groups.iter().map(|g| g.external_id.as_str()).collect();
    for chunk in external.chunks(LOOKUP_CHUNK) {
        let rows: Vec<(String, String, String, String, i64)> =
            tx.rows(GROUPS_BY_EXTERNAL_ID, &[V::Text(conn), V::Texts(chunk)]).await?;
        for (id, external_id, display_name, json, created_at) in rows {
            let better = match existing.get(&external_id) {
                None => true,
                Some((old_id, _, _, old_created)) => (created_at, id.as_str()) < (*old_created, old_id.as_str()),
            };
            if better {
                existing.insert(external_id, (id, display_name, json, created_at));
            }
        }
    }
    // Groups created or rewritten on this page: their version is new already.
    let mut touched: HashSet<String> = HashSet::new();
    let mut stamp: Vec<&str> = Vec::new();
    let mut new_groups: Vec<&PreparedGroup> = Vec::new();
    for g in &job.groups {
        let Some((id, display_name, json, _)) = existing.get(&g.external_id) else {
            new_groups.push(g);
            continue;
        };
        if *display_name == g.display_name && same_json(json, &g.json) {
            stamp.push(id);
            continue;
        }
        tx.exec(
            UPDATE_PULLED_GROUP,
            &[V::Text(&g.display_name), V::Text(&g.key), V::Text(&g.json), V::Int(now), V::Int(pass_id), V::Text(id)],
        )
        .await?;
        changed += 1;
        touched.insert(id.clone());
    }
    for chunk in stamp.chunks(LOOKUP_CHUNK) {
        tx.exec(STAMP_GROUPS, &[V::Int(pass_id), V::Texts(chunk)]).await?;
    }
    tx.insert_groups(&head, &new_groups).await?;
    created += new_groups.len() as u64;
    touched.extend(new_groups.iter().map(|g| g.id.clone()));

    // ---- memberships
    if !job.members.is_empty() {
        let mut group_refs: HashSet<&str> = HashSet::new();
        let mut user_refs: HashSet<&str> = HashSet::new();
        for m in &job.members {
            group_refs.insert(&m.group);
            for member in m.added.iter().chain(&m.removed) {
                match member {
                    PulledMember::User(x) => user_refs.insert(x),
                    PulledMember::Group(x) => group_refs.insert(x),
                };
            }
        }
        let group_refs: Vec<&str> = group_refs.into_iter().collect();
        let mut rows = Vec::new();
        for chunk in group_refs.chunks(LOOKUP_CHUNK) {
            let found: Vec<(String, String, i64)> = tx
                .rows(
                    "SELECT external_id, id, created_at FROM directory_groups \
                     WHERE connection_id = $1 AND external_id IN LIST($2)",
                    &[V::Text(conn), V::Texts(chunk)],
                )
                .await?;
            rows.extend(found.into_iter().map(|(x, id, at)| (x, id, false, at)));
        }
        let group_ids = pick_by_external_id(rows);
        let user_refs: Vec<&str> = user_refs.into_iter().collect();
        let mut rows = Vec::new();
        for chunk in user_refs.chunks(LOOKUP_CHUNK) {
            let found: Vec<(String, String, bool, i64)> = tx
                .rows(
                    "SELECT external_id, id, scim_deleted_at IS NOT NULL, created_at FROM directory_users \
                     WHERE connection_id = $1 AND external_id IN LIST($2)",
                    &[V::Text(conn), V::Texts(chunk)],
                )
                .await?;
            rows.extend(found);
        }
        let user_ids = pick_by_external_id(rows);

        let mut membership_changed: HashSet<String> = HashSet::new();
        for m in &job.members {
            let Some((group_id, _)) = group_ids.get(&m.group) else {
                problems.push(format!(
                    "group {}: not a group of this directory; its membership changes were skipped",
                    shown(&m.group)
                ));
                continue;
            };
            let (mut users, mut groups): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
            let (mut seen_users, mut seen_groups) = (HashSet::new(), HashSet::new());
            for member in &m.added {
                match member {
                    PulledMember::User(x) => match user_ids.get(x) {
                        Some((id, false)) => {
                            if seen_users.insert(id.as_str()) {
                                users.push(id.as_str());
                            }
                        }
                        _ => problems.push(format!(
                            "group {}: member user {} is not a user of this directory; skipped",
                            shown(&m.group),
                            shown(x)
                        )),
                    },
                    PulledMember::Group(x) => match group_ids.get(x) {
                        Some((id, _)) if id == group_id => problems.push(format!(
                            "group {}: a group cannot be a member of itself; skipped",
                            shown(&m.group)
                        )),
                        Some((id, _)) => {
                            if seen_groups.insert(id.as_str()) {
                                groups.push(id.as_str());
                            }
                        }
                        None => problems.push(format!(
                            "group {}: member group {} is not a group of this directory; skipped",
                            shown(&m.group),
                            shown(x)
                        )),
                    },
                }
            }
            let mut delta = add_links(tx, (ADD_MEMBERS, STAMP_MEMBERS), group_id, &users, pass_id).await?;
            delta += add_links(tx, (ADD_SUBGROUPS, STAMP_SUBGROUPS), group_id, &groups, pass_id).await?;
            if job.kind == PassKind::Delta && !m.removed.is_empty() {
                // Removing a member that is not one is harmless: unknown ones are ignored.
                let mut users: Vec<&str> = Vec::new();
                let mut groups: Vec<&str> = Vec::new();
                for member in &m.removed {
                    match member {
                        PulledMember::User(x) => users.extend(user_ids.get(x).map(|(id, _)| id.as_str())),
                        PulledMember::Group(x) => groups.extend(group_ids.get(x).map(|(id, _)| id.as_str())),
                    }
                }
                for chunk in users.chunks(LOOKUP_CHUNK) {
                    delta += tx.exec(REMOVE_MEMBERS, &[V::Text(group_id), V::Texts(chunk)]).await?;
                }
                for chunk in groups.chunks(LOOKUP_CHUNK) {
                    delta += tx.exec(REMOVE_SUBGROUPS, &[V::Text(group_id), V::Texts(chunk)]).await?;
                }
            }
            if delta > 0 && !touched.contains(group_id) {
                membership_changed.insert(group_id.clone());
            }
        }
        changed += bump_groups(tx, membership_changed.iter().map(String::as_str).collect(), now).await?;
        touched.extend(membership_changed);
    }

    // ---- removals
    if !job.removed_users.is_empty() {
        let external: Vec<&str> = job.removed_users.iter().map(String::as_str).collect();
        let mut users = Vec::new();
        for chunk in external.chunks(LOOKUP_CHUNK) {
            let found: Vec<(String, String)> = tx.rows(LIVE_USERS_BY_EXTERNAL_ID, &[V::Text(conn), V::Texts(chunk)]).await?;
            users.extend(found);
        }
        removed += remove_users(tx, policy, &users, now).await?;
    }
    if !job.removed_groups.is_empty() {
        let external: Vec<&str> = job.removed_groups.iter().map(String::as_str).collect();
        for chunk in external.chunks(LOOKUP_CHUNK) {
            removed += tx.exec(DELETE_GROUPS_BY_EXTERNAL_ID, &[V::Text(conn), V::Texts(chunk)]).await?;
        }
    }

    // ---- the cursor, and the end of the pass
    let pass_complete = job.next.is_none();
    if let Some(next) = &job.next {
        tx.exec(ADVANCE_PASS, &[V::Text(next), V::Int(now), V::Text(conn)]).await?;
    } else {
        if job.kind == PassKind::Full {
            let unreported: Vec<(String, String)> = tx.rows(UNREPORTED_USERS, &[V::Text(conn), V::Int(pass_id)]).await?;
            removed += remove_users(tx, policy, &unreported, now).await?;
            removed += tx.exec(DELETE_UNREPORTED_GROUPS, &[V::Text(conn), V::Int(pass_id)]).await?;
            let shrunk: Vec<(String,)> = tx.rows(GROUPS_WITH_UNREPORTED_MEMBERS, &[V::Text(conn), V::Int(pass_id)]).await?;
            if !shrunk.is_empty() {
                tx.exec(DELETE_UNREPORTED_MEMBERS, &[V::Text(conn), V::Int(pass_id)]).await?;
                tx.exec(DELETE_UNREPORTED_SUBGROUPS, &[V::Text(conn), V::Int(pass_id)]).await?;
                let bump: Vec<&str> = shrunk.iter().map(|(id,)| id.as_str()).filter(|id| !touched.contains(*id)).collect();
                changed += bump_groups(tx, bump, now).await?;
            }
        }
        tx.exec(COMPLETE_PASS, &[V::OptText(job.resume.as_deref()), V::Int(now), V::Text(conn)]).await?;
    }

    if problems.len() > MAX_PAGE_PROBLEMS {
        let more = problems.len() - MAX_PAGE_PROBLEMS;
        problems.truncate(MAX_PAGE_PROBLEMS);
        problems.push(format!("… and {more} more problems on this page"));
    }
    Ok(Outcome::Applied(PageApplied {
        users_seen: job.users_seen,
        groups_seen: job.groups_seen,
        created,
        changed,
        removed,
        pass_complete,
        problems,
    }))
}

/// Bumps the version of the groups `ids` once each; how many.
async fn bump_groups<T: PullTx>(tx: &mut T, ids: Vec<&str>, now: i64) -> Result<u64, sqlx::Error> {
    let mut bumped = 0;
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        bumped += tx.exec(BUMP_GROUPS, &[V::Int(now), V::Texts(chunk)]).await?;
    }
    Ok(bumped)
}

/// The problem line of a user whose `userName` another user holds.
fn taken(u: &PreparedUser) -> String {
    format!(
        "user {}: userName {} is taken by another user of the organization",
        shown(&u.external_id),
        shown(&u.user_name)
    )
}

// ---------------------------------------------------------------- state, lease, passes

#[derive(sqlx::FromRow)]
struct StateRow {
    connection_id: String,
    enabled: bool,
    interval_secs: i64,
    pass_id: i64,
    pass_kind: Option<String>,
    pass_cursor: Option<String>,
    pass_pages: i64,
    pass_started_at: Option<i64>,
    resume_cursor: Option<String>,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
    next_run_at: Option<i64>,
}

const STATE_COLUMNS: &str = "connection_id, enabled, interval_secs, pass_id, pass_kind, pass_cursor, \
     pass_pages, pass_started_at, resume_cursor, lease_owner, lease_expires_at, next_run_at";

const RUN_COLUMNS: &str = "id, connection_id, trigger, started_at, finished_at, outcome, pass_kind, pages, \
     users_seen, groups_seen, created, changed, removed, errors, message";

impl StateRow {
    fn into_state(self, last_run: Option<SyncRun>) -> Result<DirectorySyncState, StoreError> {
        let pass = match self.pass_kind {
            None => None,
            Some(kind) => Some(PassInProgress {
                id: self.pass_id,
                kind: kind.parse().map_err(|e| StoreError::corrupt("directory sync of connection", &self.connection_id, e))?,
                cursor: self.pass_cursor,
                pages: self.pass_pages,
                started_at: self.pass_started_at.unwrap_or_default(),
            }),
        };
        Ok(DirectorySyncState {
            connection_id: self.connection_id,
            enabled: self.enabled,
            interval_secs: self.interval_secs,
            pass,
            resume_cursor: self.resume_cursor,
            lease_owner: self.lease_owner,
            lease_expires_at: self.lease_expires_at,
            next_run_at: self.next_run_at,
            last_run,
        })
    }
}

/// Refuses an unusable lease owner name.
fn check_owner(owner: &str) -> Result<(), StoreError> {
    if owner.is_empty() || owner.len() > MAX_SYNC_LEASE_OWNER_BYTES || owner.contains('\0') {
        return Err(StoreError::InvalidInput {
            what: "sync lease owner",
            reason: format!("must be 1 to {MAX_SYNC_LEASE_OWNER_BYTES} bytes, without NUL"),
        });
    }
    Ok(())
}

/// Refuses a non-positive lease lifetime.
fn check_ttl(ttl_ms: i64) -> Result<(), StoreError> {
    if ttl_ms <= 0 {
        return Err(StoreError::InvalidInput { what: "sync lease lifetime", reason: "must be positive".into() });
    }
    Ok(())
}

/// The limit of a listing, clamped to 1..=[`MAX_SYNC_RUNS_LIMIT`].
fn listing_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, MAX_SYNC_RUNS_LIMIT))
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// The pull sync of the connection `connection_id`: schedule, pass in progress, lease and
    /// most recent run. `None` if the connection never had one (no schedule set, never run).
    pub async fn directory_sync_state(&self, connection_id: &str) -> Result<Option<DirectorySyncState>, StoreError> {
        let state_sql = format!("SELECT {STATE_COLUMNS} FROM directory_sync WHERE connection_id = $1");
        let run_sql = format!(
            "SELECT {RUN_COLUMNS} FROM directory_sync_runs WHERE connection_id = $1 \
             ORDER BY started_at DESC, id DESC LIMIT 1"
        );
        let (row, run): (Option<StateRow>, Option<SyncRun>) = with_pool!(self, read, |pool| {
            let row: Option<StateRow> = sqlx::query_as(&state_sql).bind(connection_id).fetch_optional(pool).await?;
            let run = if row.is_some() {
                sqlx::query_as(&run_sql).bind(connection_id).fetch_optional(pool).await?
            } else {
                None
            };
            (row, run)
        });
        row.map(|r| r.into_state(run)).transpose()
    }

    /// Sets the schedule of the connection's pull sync (creating its row if needed): `enabled`,
    /// every `interval_secs` seconds ([`MIN_DIRECTORY_SYNC_INTERVAL_SECS`] to
    /// [`MAX_DIRECTORY_SYNC_INTERVAL_SECS`]). Enabling sets the next run to now + the interval
    /// unless one is due sooner; disabling clears it. Returns the new state.
    ///
    /// [`StoreError::NotFound`] for an unknown connection; [`StoreError::InvalidInput`] for an
    /// interval out of bounds.
    pub async fn set_directory_sync_schedule(
        &self,
        connection_id: &str,
        enabled: bool,
        interval_secs: i64,
    ) -> Result<DirectorySyncState, StoreError> {
        if !(MIN_DIRECTORY_SYNC_INTERVAL_SECS..=MAX_DIRECTORY_SYNC_INTERVAL_SECS).contains(&interval_secs) {
            return Err(StoreError::InvalidInput {
                what: "sync interval",
                reason: format!(
                    "{interval_secs} s is not within {MIN_DIRECTORY_SYNC_INTERVAL_SECS} s to {MAX_DIRECTORY_SYNC_INTERVAL_SECS} s"
                ),
            });
        }
        let now = now_ms();
        let upserted: Option<String> = with_pool!(self, write, |pool| {
            sqlx::query_scalar(
                "INSERT INTO directory_sync (connection_id, enabled, interval_secs, next_run_at, updated_at) \
                 SELECT id, $2, $3, CASE WHEN $2 THEN $4 ELSE NULL END, $5 FROM connections WHERE id = $1 \
                 ON CONFLICT (connection_id) DO UPDATE SET enabled = excluded.enabled, \
                     interval_secs = excluded.interval_secs, \
                     next_run_at = CASE WHEN NOT excluded.enabled THEN NULL \
                         WHEN directory_sync.next_run_at IS NULL \
                           OR directory_sync.next_run_at > excluded.next_run_at THEN excluded.next_run_at \
                         ELSE directory_sync.next_run_at END, \
                     updated_at = excluded.updated_at \
                 RETURNING connection_id",
            )
            .bind(connection_id)
            .bind(enabled)
            .bind(interval_secs)
            .bind(now + interval_secs * 1000)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        if upserted.is_none() {
            return Err(StoreError::not_found("connection", connection_id));
        }
        tracing::info!(connection = %connection_id, enabled, interval_secs, "directory sync schedule set");
        self.directory_sync_state(connection_id)
            .await?
            .ok_or_else(|| StoreError::not_found("connection", connection_id))
    }

    /// The connections whose scheduled pull sync is due at `now` (unix ms): enabled, next run
    /// at or before `now` (or never set), and no live lease. Most overdue first.
    pub async fn due_directory_syncs(&self, now: i64) -> Result<Vec<String>, StoreError> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_scalar(
                "SELECT connection_id FROM directory_sync \
                 WHERE enabled AND (next_run_at IS NULL OR next_run_at <= $1) \
                   AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= $1) \
                 ORDER BY COALESCE(next_run_at, 0), connection_id",
            )
            .bind(now)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Takes the sync lease of the connection for `owner` (a replica's name) for `ttl_ms`, if
    /// it is free, expired, or `owner`'s already (then it is extended): one statement, so of
    /// replicas racing for it exactly one wins. `false` if someone else holds it.
    ///
    /// A connection without a sync row (a manual run before any schedule was set) gets one,
    /// **disabled** (`enabled` false, the default interval): the schedule only runs once an
    /// admin sets it ([`Store::set_directory_sync_schedule`]).
    ///
    /// [`StoreError::NotFound`] for an unknown connection; [`StoreError::InvalidInput`] for an
    /// empty or over-long owner, or a non-positive lifetime.
    pub async fn acquire_sync_lease(&self, connection_id: &str, owner: &str, ttl_ms: i64) -> Result<bool, StoreError> {
        check_owner(owner)?;
        check_ttl(ttl_ms)?;
        let now = now_ms();
        let taken = with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO directory_sync (connection_id, enabled, lease_owner, lease_expires_at, updated_at) \
                 SELECT id, $2, $3, $4, $5 FROM connections WHERE id = $1 \
                 ON CONFLICT (connection_id) DO UPDATE SET lease_owner = excluded.lease_owner, \
                     lease_expires_at = excluded.lease_expires_at, updated_at = excluded.updated_at \
                 WHERE directory_sync.lease_owner IS NULL OR directory_sync.lease_expires_at IS NULL \
                    OR directory_sync.lease_expires_at <= $5 OR directory_sync.lease_owner = $3",
            )
            .bind(connection_id)
            .bind(false)
            .bind(owner)
            .bind(now.saturating_add(ttl_ms))
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if taken == 0 {
            self.get_connection(connection_id).await?;
            return Ok(false);
        }
        tracing::debug!(connection = %connection_id, %owner, "directory sync lease taken");
        Ok(true)
    }

    /// Extends `owner`'s sync lease of the connection to `ttl_ms` from now. `false` if `owner`
    /// does not hold it any more (someone took it over after it expired): the run must stop.
    /// A lease that expired but that nobody took is still `owner`'s, and is extended.
    pub async fn renew_sync_lease(&self, connection_id: &str, owner: &str, ttl_ms: i64) -> Result<bool, StoreError> {
        check_ttl(ttl_ms)?;
        let now = now_ms();
        let renewed = with_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE directory_sync SET lease_expires_at = $1, updated_at = $2 \
                 WHERE connection_id = $3 AND lease_owner = $4",
            )
            .bind(now.saturating_add(ttl_ms))
            .bind(now)
            .bind(connection_id)
            .bind(owner)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(renewed == 1)
    }

    /// Gives up `owner`'s sync lease of the connection (nothing happens if `owner` does not
    /// hold it) and schedules the next run: now + the interval if the schedule is enabled.
    /// A pass in progress stays in progress, for the next run to resume.
    pub async fn release_sync_lease(&self, connection_id: &str, owner: &str) -> Result<(), StoreError> {
        let now = now_ms();
        with_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE directory_sync SET lease_owner = NULL, lease_expires_at = NULL, \
                     next_run_at = CASE WHEN enabled THEN $1 + interval_secs * 1000 ELSE NULL END, \
                     updated_at = $1 \
                 WHERE connection_id = $2 AND lease_owner = $3",
            )
            .bind(now)
            .bind(connection_id)
            .bind(owner)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The current sync row, for [`fence_refusal`].
    async fn sync_row(&self, connection_id: &str) -> Result<Option<(Option<String>, Option<i64>, i64, Option<String>)>, StoreError> {
        Ok(with_pool!(self, write, |pool| {
            sqlx::query_as(SYNC_ROW).bind(connection_id).fetch_optional(pool).await?
        }))
    }

    /// Begins a pass of `kind` for the lease owner `owner`, asking first for `cursor` (a delta:
    /// [`DirectorySyncState::resume_cursor`]; a full pass: `None`, or the connector's start):
    /// the pass id is incremented, the page count reset. A pass in progress is replaced (resume
    /// it instead, from [`DirectorySyncState::pass`], to keep its pages).
    ///
    /// [`StoreError::Conflict`] with [`StoreError::is_sync_lease_lost`] if `owner` does not hold
    /// an unexpired lease.
    pub async fn begin_pull_pass(
        &self,
        connection_id: &str,
        owner: &str,
        kind: PassKind,
        cursor: Option<String>,
    ) -> Result<PassInProgress, StoreError> {
        check_cursor("pass cursor", cursor.as_deref())?;
        let now = now_ms();
        let id: Option<i64> = with_pool!(self, write, |pool| {
            sqlx::query_scalar(
                "UPDATE directory_sync SET pass_id = pass_id + 1, pass_kind = $1, pass_cursor = $2, \
                     pass_pages = 0, pass_started_at = $3, updated_at = $3 \
                 WHERE connection_id = $4 AND lease_owner = $5 AND lease_expires_at > $3 \
                 RETURNING pass_id",
            )
            .bind(kind.as_str())
            .bind(&cursor)
            .bind(now)
            .bind(connection_id)
            .bind(owner)
            .fetch_optional(pool)
            .await?
        });
        let Some(id) = id else {
            return Err(fence_refusal(connection_id, owner, now, self.sync_row(connection_id).await?, None));
        };
        tracing::info!(connection = %connection_id, pass = id, %kind, "directory sync pass begun");
        Ok(PassInProgress { id, kind, cursor, pages: 0, started_at: now })
    }

    /// Drops the pass in progress of the connection, and the resume cursor: the next pass is
    /// full. For when the IdP refuses the delta cursor (expired). Only for the lease owner:
    /// [`StoreError::Conflict`] with [`StoreError::is_sync_lease_lost`] otherwise.
    pub async fn abandon_pull_pass(&self, connection_id: &str, owner: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let done = with_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE directory_sync SET pass_kind = NULL, pass_cursor = NULL, resume_cursor = NULL, \
                     updated_at = $1 \
                 WHERE connection_id = $2 AND lease_owner = $3 AND lease_expires_at > $1",
            )
            .bind(now)
            .bind(connection_id)
            .bind(owner)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(fence_refusal(connection_id, owner, now, self.sync_row(connection_id).await?, None));
        }
        tracing::info!(connection = %connection_id, "directory sync pass abandoned; the next pass is full");
        Ok(())
    }

    /// Applies one page of the pass `pass_id` (of `kind`) of the connection, for the lease
    /// owner `owner`, in one transaction with the pass's cursor (see the module docs): users and
    /// groups created, changed, restored or removed, memberships and nested groups, then the
    /// cursor advanced to [`PulledPage::next`] — or, on the pass's last page, the pass completed
    /// (a full pass sweeps what it did not report) and [`PulledPage::resume`] kept for the next.
    ///
    /// Problems with single items are reported, not failures ([`PageApplied::problems`]).
    /// Nothing is applied, and the error is a [`StoreError::Conflict`] with
    /// [`StoreError::is_sync_lease_lost`], if `owner` does not hold an unexpired lease or the
    /// pass is not the one in progress. [`StoreError::InvalidInput`] for a cursor over
    /// [`MAX_SYNC_CURSOR_BYTES`] (nothing applied either).
    pub async fn apply_pull_page(
        &self,
        connection_id: &str,
        owner: &str,
        pass_id: i64,
        kind: PassKind,
        page: &PulledPage,
    ) -> Result<PageApplied, StoreError> {
        let job = PageJob::prepare(connection_id, owner, pass_id, kind, page)?;
        let outcome = match &self.pools {
            Pools::Sqlite { writer, .. } => {
                writer.transaction(move |conn| run_ready(apply_page(&mut SqliteTx { conn }, &job))).await?
            }
            Pools::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let outcome = apply_page(&mut PgTx { conn: &mut *tx }, &job).await?;
                if matches!(outcome, Outcome::Applied(_)) {
                    tx.commit().await?;
                }
                outcome
            }
        };
        match outcome {
            Outcome::Applied(applied) => {
                tracing::debug!(
                    connection = %connection_id, pass = pass_id, %kind,
                    created = applied.created, changed = applied.changed, removed = applied.removed,
                    problems = applied.problems.len(), complete = applied.pass_complete,
                    "directory sync page applied"
                );
                Ok(applied)
            }
            Outcome::Fenced(e) => Err(e),
        }
    }

    /// The ids of the groups nested in the group `group_id` of the connection (its member
    /// groups), in ascending order. [`StoreError::NotFound`] if there is no such group in the
    /// connection.
    pub async fn group_subgroups(&self, connection_id: &str, group_id: &str) -> Result<Vec<String>, StoreError> {
        let (exists, ids): (Option<String>, Vec<String>) = with_pool!(self, read, |pool| {
            let exists: Option<String> = sqlx::query_scalar("SELECT id FROM directory_groups WHERE id = $1 AND connection_id = $2")
                .bind(group_id)
                .bind(connection_id)
                .fetch_optional(pool)
                .await?;
            let ids = if exists.is_some() {
                sqlx::query_scalar(
                    "SELECT member_group_id FROM group_subgroups WHERE group_id = $1 ORDER BY member_group_id",
                )
                .bind(group_id)
                .fetch_all(pool)
                .await?
            } else {
                Vec::new()
            };
            (exists, ids)
        });
        if exists.is_none() {
            return Err(StoreError::not_found("group", group_id));
        }
        Ok(ids)
    }

    // ------------------------------------------------------------ runs and their log

    /// Records the start of a sync run of the connection (`trigger`: `schedule` or `manual`);
    /// returns its id. Call it holding the connection's sync lease: runs of the connection
    /// still `running` are closed as `error` ("interrupted"), their process having stopped.
    /// [`StoreError::NotFound`] for an unknown connection; [`StoreError::InvalidInput`] for
    /// another trigger.
    pub async fn start_sync_run(&self, connection_id: &str, trigger: &str) -> Result<i64, StoreError> {
        if !matches!(trigger, "schedule" | "manual") {
            return Err(StoreError::InvalidInput {
                what: "sync run trigger",
                reason: format!("must be schedule or manual, not {:?}", shown(trigger)),
            });
        }
        let now = now_ms();
        let id: Option<i64> = with_tx!(self, |tx| {
            sqlx::query(
                "UPDATE directory_sync_runs SET outcome = 'error', finished_at = $1, \
                     message = 'interrupted: the process running it stopped before it finished' \
                 WHERE connection_id = $2 AND outcome = 'running'",
            )
            .bind(now)
            .bind(connection_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query_scalar(
                "INSERT INTO directory_sync_runs (connection_id, trigger, started_at, outcome) \
                 SELECT id, $2, $3, 'running' FROM connections WHERE id = $1 RETURNING id",
            )
            .bind(connection_id)
            .bind(trigger)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?
        });
        id.ok_or_else(|| StoreError::not_found("connection", connection_id))
    }

    /// Records the totals of the run `run_id` so far (while it is `running`; a finished run is
    /// left as it is). [`StoreError::NotFound`] for an unknown run.
    pub async fn update_sync_run_progress(&self, run_id: i64, totals: &SyncRunTotals) -> Result<(), StoreError> {
        let done = self.write_run(run_id, None, totals).await?;
        if done == 0 && !self.run_exists(run_id).await? {
            return Err(StoreError::not_found("sync run", run_id.to_string()));
        }
        Ok(())
    }

    /// Finishes the run `run_id` with `outcome` (`ok` or `error`) and its totals.
    /// [`StoreError::NotFound`] for an unknown run; [`StoreError::Conflict`] if it is finished
    /// already; [`StoreError::InvalidInput`] for another outcome.
    pub async fn finish_sync_run(&self, run_id: i64, outcome: &str, totals: &SyncRunTotals) -> Result<(), StoreError> {
        if !matches!(outcome, "ok" | "error") {
            return Err(StoreError::InvalidInput {
                what: "sync run outcome",
                reason: format!("must be ok or error, not {:?}", shown(outcome)),
            });
        }
        if self.write_run(run_id, Some(outcome), totals).await? == 0 {
            return Err(if self.run_exists(run_id).await? {
                StoreError::conflict("sync run", run_id.to_string(), "is finished already")
            } else {
                StoreError::not_found("sync run", run_id.to_string())
            });
        }
        Ok(())
    }

    /// Writes a running run's totals, and finishes it with `outcome` if given; rows changed.
    async fn write_run(&self, run_id: i64, outcome: Option<&str>, totals: &SyncRunTotals) -> Result<u64, StoreError> {
        let message = totals.message.as_deref().map(|m| clean(m, MAX_SYNC_MESSAGE_BYTES));
        let now = now_ms();
        Ok(with_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE directory_sync_runs SET \
                     finished_at = CASE WHEN $1 IS NULL THEN finished_at ELSE $2 END, \
                     outcome = COALESCE($1, outcome), pass_kind = $3, pages = $4, users_seen = $5, \
                     groups_seen = $6, created = $7, changed = $8, removed = $9, errors = $10, \
                     message = $11 \
                 WHERE id = $12 AND outcome = 'running'",
            )
            .bind(outcome)
            .bind(now)
            .bind(totals.pass_kind.map(PassKind::as_str))
            .bind(count(totals.pages))
            .bind(count(totals.users_seen))
            .bind(count(totals.groups_seen))
            .bind(count(totals.created))
            .bind(count(totals.changed))
            .bind(count(totals.removed))
            .bind(count(totals.errors))
            .bind(message)
            .bind(run_id)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }

    async fn run_exists(&self, run_id: i64) -> Result<bool, StoreError> {
        let found: Option<i64> = with_pool!(self, write, |pool| {
            sqlx::query_scalar("SELECT id FROM directory_sync_runs WHERE id = $1")
                .bind(run_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(found.is_some())
    }

    /// Records a problem of the run `run_id` of the connection `connection_id` in the sync log:
    /// `level` `error` or `warning`; the message is scrubbed (control characters, anything
    /// shaped like a credential) and cut to [`MAX_SYNC_MESSAGE_BYTES`]. Returns the line's id.
    /// [`StoreError::NotFound`] if there is no such run of that connection.
    pub async fn record_sync_problem(&self, run_id: i64, connection_id: &str, level: &str, message: &str) -> Result<i64, StoreError> {
        let messages = [message.to_owned()];
        let ids = self.record_sync_problems(run_id, connection_id, level, &messages).await?;
        ids.into_iter().next().ok_or_else(|| StoreError::not_found("sync run", run_id.to_string()))
    }

    /// [`Store::record_sync_problem`] of many messages at once (a page's
    /// [`PageApplied::problems`]), in one transaction; the lines' ids, in order.
    pub async fn record_sync_problems(
        &self,
        run_id: i64,
        connection_id: &str,
        level: &str,
        messages: &[String],
    ) -> Result<Vec<i64>, StoreError> {
        if !matches!(level, "error" | "warning") {
            return Err(StoreError::InvalidInput {
                what: "sync log level",
                reason: format!("must be error or warning, not {:?}", shown(level)),
            });
        }
        let now = now_ms();
        let ids: Vec<i64> = with_tx!(self, |tx| {
            let mut ids = Vec::with_capacity(messages.len());
            for message in messages {
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO directory_sync_log (run_id, connection_id, at, level, message) \
                     SELECT r.id, r.connection_id, $1, $2, $3 FROM directory_sync_runs r \
                     WHERE r.id = $4 AND r.connection_id = $5 RETURNING id",
                )
                .bind(now)
                .bind(level)
                .bind(clean(message, MAX_SYNC_MESSAGE_BYTES))
                .bind(run_id)
                .bind(connection_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(id) = id else {
                    return Err(StoreError::not_found("sync run", run_id.to_string()));
                };
                ids.push(id);
            }
            ids
        });
        Ok(ids)
    }

    /// The connection's most recent runs, newest first, at most `limit` (clamped to 1 ..=
    /// [`MAX_SYNC_RUNS_LIMIT`]). Empty for an unknown connection.
    pub async fn sync_runs(&self, connection_id: &str, limit: u32) -> Result<Vec<SyncRun>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM directory_sync_runs WHERE connection_id = $1 \
             ORDER BY started_at DESC, id DESC LIMIT $2"
        );
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(&sql).bind(connection_id).bind(listing_limit(limit)).fetch_all(pool).await?
        }))
    }

    /// The connection's most recent sync log lines (all runs), newest first, at most `limit`
    /// (clamped as for [`Store::sync_runs`]).
    pub async fn sync_log(&self, connection_id: &str, limit: u32) -> Result<Vec<SyncLogLine>, StoreError> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, run_id, at, level, message FROM directory_sync_log WHERE connection_id = $1 \
                 ORDER BY at DESC, id DESC LIMIT $2",
            )
            .bind(connection_id)
            .bind(listing_limit(limit))
            .fetch_all(pool)
            .await?
        }))
    }

    /// The sync log lines of the run `run_id`, oldest first, at most `limit` (clamped as for
    /// [`Store::sync_runs`]).
    pub async fn sync_run_log(&self, run_id: i64, limit: u32) -> Result<Vec<SyncLogLine>, StoreError> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, run_id, at, level, message FROM directory_sync_log WHERE run_id = $1 \
                 ORDER BY id LIMIT $2",
            )
            .bind(run_id)
            .bind(listing_limit(limit))
            .fetch_all(pool)
            .await?
        }))
    }

    /// Deletes the sync log lines recorded before `older_than_ms` (unix ms; e.g. now −
    /// [`DIRECTORY_SYNC_LOG_DEFAULT_RETENTION_MS`]) and the finished runs started before it
    /// (with their lines), keeping each connection's most recent run; returns how many rows
    /// (lines and runs). One connection at a time, in batches, each its own short write.
    pub async fn prune_directory_sync_log(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        let connections: Vec<String> = with_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT DISTINCT connection_id FROM directory_sync_runs ORDER BY connection_id")
                .fetch_all(pool)
                .await?
        });
        let mut total = 0;
        for connection_id in &connections {
            for sql in [
                "DELETE FROM directory_sync_log WHERE id IN (SELECT id FROM directory_sync_log \
                 WHERE connection_id = $1 AND at < $2 LIMIT $3)",
                "DELETE FROM directory_sync_runs WHERE id IN (SELECT id FROM directory_sync_runs \
                 WHERE connection_id = $1 AND started_at < $2 AND outcome <> 'running' \
                   AND id < (SELECT MAX(id) FROM directory_sync_runs WHERE connection_id = $1) LIMIT $3)",
            ] {
                loop {
                    let deleted = with_pool!(self, write, |pool| {
                        sqlx::query(sql)
                            .bind(connection_id)
                            .bind(older_than_ms)
                            .bind(PRUNE_BATCH)
                            .execute(pool)
                            .await?
                            .rows_affected()
                    });
                    total += deleted;
                    if deleted < PRUNE_BATCH as u64 {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
        }
        if total > 0 {
            tracing::info!(deleted = total, older_than_ms, "directory sync log pruned");
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_tokens_expand_per_dialect() {
        let sql = "SELECT id FROM t WHERE c = $1 AND x IN LIST($2) AND y IN (SELECT value FROM TEXTS($3))";
        assert_eq!(
            dialect_sql(sql, Dialect::Sqlite),
            "SELECT id FROM t WHERE c = $1 AND x IN (SELECT value FROM json_each($2)) \
             AND y IN (SELECT value FROM json_each($3))"
        );
        assert_eq!(
            dialect_sql(sql, Dialect::Postgres),
            "SELECT id FROM t WHERE c = $1 AND x = ANY($2) \
             AND y IN (SELECT value FROM unnest($3::text[]) AS texts(value))"
        );
        assert!(matches!(dialect_sql(FENCE, Dialect::Postgres), Cow::Borrowed(_)));
    }

    #[test]
    fn pass_kinds_round_trip() {
        for kind in [PassKind::Full, PassKind::Delta] {
            assert_eq!(kind.to_string().parse::<PassKind>().unwrap(), kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::json!(kind.as_str()));
        }
        assert!("Full".parse::<PassKind>().is_err());
    }

    #[test]
    fn resources_compare_as_json() {
        assert!(same_json(r#"{"a":1,"b":2}"#, r#"{"b":2,"a":1}"#));
        assert!(!same_json(r#"{"a":1}"#, r#"{"a":2}"#));
        assert_eq!(deactivated_json(r#"{"active":true}"#), r#"{"active":false}"#);
        assert_eq!(deactivated_json("not json"), "not json");
    }
}
