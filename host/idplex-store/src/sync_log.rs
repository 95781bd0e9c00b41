//! The SCIM sync log of each directory (connection): one row per SCIM request an IdP made, with
//! what it asked (method, path, the operation as normalized), what it got (status, outcome,
//! `scimType`) and, for failures, a detail an admin can act on. This is what an admin reads when
//! "Okta says provisioning failed".
//!
//! Recording is one `INSERT` ([`Store::record_sync`]), meant to be called after the response is
//! sent. What is recorded is bounded and scrubbed here, whatever the caller passes: the path
//! loses any query string, long fields are cut, and anything shaped like an idplex secret
//! (`idp_<kind>_<hex>`) or following `Bearer ` in `detail` or `path` is replaced by `<redacted>`.
//! Callers must still never pass request bodies or credentials.
//!
//! Reading is newest first, by pages ([`Store::list_sync_log`], keyset paging on `(at, id)`
//! through the index `(connection_id, at DESC, id DESC)`), filtered by outcome or resource.
//!
//! Retention: [`SYNC_LOG_DEFAULT_RETENTION_MS`] (90 days) by default; [`Store::prune_sync_log`]
//! deletes older entries in small batches, one directory at a time, so it never holds SQLite's
//! write lock for long. `idplex serve` runs it hourly (`Hub::spawn_sync_log_pruner`). Entries
//! go with their connection.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::is_foreign_key_violation;
use crate::{Store, StoreError, truncate_utf8};

/// How long sync log entries are kept unless configured otherwise: 90 days, in milliseconds.
pub const SYNC_LOG_DEFAULT_RETENTION_MS: i64 = 90 * 24 * 60 * 60 * 1000;

/// Page size of [`Store::list_sync_log`] when the query does not say.
pub const SYNC_LOG_DEFAULT_LIMIT: u32 = 100;

/// Largest page of [`Store::list_sync_log`]; larger limits are clamped to it.
pub const MAX_SYNC_LOG_LIMIT: u32 = 1000;

/// Longest stored `detail`, in bytes (longer ones are cut and end with `…`).
pub const MAX_SYNC_DETAIL_BYTES: usize = 2048;

/// Longest stored user agent, in bytes.
pub const MAX_SYNC_USER_AGENT_BYTES: usize = 200;

const MAX_METHOD_BYTES: usize = 16;
const MAX_PATH_BYTES: usize = 512;
const MAX_RESOURCE_ID_BYTES: usize = 256;
const MAX_SCIM_TYPE_BYTES: usize = 64;

/// Rows deleted per statement by [`Store::prune_sync_log`].
const PRUNE_BATCH: i64 = 5000;

/// The SCIM resource type a request addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScimResourceType {
    User,
    Group,
}

impl ScimResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScimResourceType::User => "User",
            ScimResourceType::Group => "Group",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "User" => Some(ScimResourceType::User),
            "Group" => Some(ScimResourceType::Group),
            _ => None,
        }
    }
}

/// What the IdP asked for, as the connector normalized it (or, for a request that never reached
/// the connector, as its method and path say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncOperation {
    Create,
    Get,
    Query,
    Replace,
    Patch,
    Delete,
    /// `POST .../.search`.
    Search,
    /// Anything else (discovery endpoints, unknown paths, unsupported methods).
    Other,
}

impl SyncOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncOperation::Create => "create",
            SyncOperation::Get => "get",
            SyncOperation::Query => "query",
            SyncOperation::Replace => "replace",
            SyncOperation::Patch => "patch",
            SyncOperation::Delete => "delete",
            SyncOperation::Search => "search",
            SyncOperation::Other => "other",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "create" => SyncOperation::Create,
            "get" => SyncOperation::Get,
            "query" => SyncOperation::Query,
            "replace" => SyncOperation::Replace,
            "patch" => SyncOperation::Patch,
            "delete" => SyncOperation::Delete,
            "search" => SyncOperation::Search,
            _ => SyncOperation::Other,
        }
    }
}

/// How a SCIM request ended, for filtering the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncOutcome {
    /// 1xx to 3xx.
    Ok,
    /// 4xx: the IdP sent something idplex refuses (or its token is wrong).
    ClientError,
    /// The connector failed (trap, timeout, invalid output, ...): a connector or idplex problem.
    ConnectorError,
    /// 5xx other than a connector failure.
    ServerError,
}

impl SyncOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncOutcome::Ok => "ok",
            SyncOutcome::ClientError => "client_error",
            SyncOutcome::ConnectorError => "connector_error",
            SyncOutcome::ServerError => "server_error",
        }
    }

    /// `ok` below 400, `client_error` for 4xx, `server_error` from 500. A connector failure
    /// cannot be told from the status alone: the caller that knows says
    /// [`SyncOutcome::ConnectorError`].
    pub fn for_status(status: u16) -> Self {
        match status {
            0..=399 => SyncOutcome::Ok,
            400..=499 => SyncOutcome::ClientError,
            _ => SyncOutcome::ServerError,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(SyncOutcome::Ok),
            "client_error" => Some(SyncOutcome::ClientError),
            "connector_error" => Some(SyncOutcome::ConnectorError),
            "server_error" => Some(SyncOutcome::ServerError),
            _ => None,
        }
    }
}

/// Which outcomes [`Store::list_sync_log`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeFilter {
    /// Exactly this outcome.
    Is(SyncOutcome),
    /// Every outcome but `ok`.
    AnyError,
}

impl FromStr for OutcomeFilter {
    type Err = StoreError;

    /// `ok`, `client_error`, `connector_error`, `server_error`, or `error` for any of the last three.
    fn from_str(s: &str) -> Result<Self, StoreError> {
        if s == "error" {
            return Ok(OutcomeFilter::AnyError);
        }
        SyncOutcome::parse(s)
            .map(OutcomeFilter::Is)
            .ok_or_else(|| StoreError::InvalidInput {
                what: "outcome filter",
                reason: format!(
                    "{s:?} is not one of error, ok, client_error, connector_error, server_error"
                ),
            })
    }
}

/// One SCIM request, to record with [`Store::record_sync`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncLogEntry {
    /// The directory the request addressed.
    pub connection_id: String,
    /// When the request arrived (unix ms).
    pub at: i64,
    /// HTTP method.
    pub method: String,
    /// Request path, without the query string (stripped here if present).
    pub path: String,
    /// `User` or `Group`, if the request addressed one of them.
    pub resource_type: Option<ScimResourceType>,
    /// The resource's id, if the request named one or created one.
    pub resource_id: Option<String>,
    /// The operation, as the connector normalized it.
    pub operation: SyncOperation,
    /// HTTP status answered.
    pub status: u16,
    pub outcome: SyncOutcome,
    /// The SCIM `scimType` of an error answer.
    pub scim_type: Option<String>,
    /// What went wrong, for an admin to act on: the error's detail. Never secrets, tokens or
    /// request bodies. Cut to [`MAX_SYNC_DETAIL_BYTES`].
    pub detail: Option<String>,
    /// Time to answer, in microseconds.
    pub duration_us: u64,
    /// The client's `User-Agent` (which IdP, which version), cut to [`MAX_SYNC_USER_AGENT_BYTES`].
    pub user_agent: Option<String>,
}

/// A recorded [`SyncLogEntry`] with its id (increasing in recording order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncLogRecord {
    pub id: i64,
    #[serde(flatten)]
    pub entry: SyncLogEntry,
}

/// Where a page of [`Store::list_sync_log`] ends: the next page holds the entries strictly
/// older than this one in `(at, id)` order. Written `AT_ID` (e.g. `1732000000000_4711`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncLogCursor {
    pub at: i64,
    pub id: i64,
}

impl fmt::Display for SyncLogCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.at, self.id)
    }
}

impl FromStr for SyncLogCursor {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, StoreError> {
        let (at, id) = crate::parse_cursor(s, "sync log cursor", "AT_ID")?;
        Ok(SyncLogCursor { at, id })
    }
}

impl Serialize for SyncLogCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SyncLogCursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What [`Store::list_sync_log`] returns. `Default` is the newest [`SYNC_LOG_DEFAULT_LIMIT`]
/// entries, all outcomes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncLogQuery {
    /// Page size: default [`SYNC_LOG_DEFAULT_LIMIT`], clamped to 1..=[`MAX_SYNC_LOG_LIMIT`].
    pub limit: Option<u32>,
    /// Only entries older than this (the `next` of the previous page).
    pub before: Option<SyncLogCursor>,
    pub outcome: Option<OutcomeFilter>,
    /// Only entries about this resource id.
    pub resource_id: Option<String>,
}

/// A page of the sync log, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncLogPage {
    pub entries: Vec<SyncLogRecord>,
    /// The cursor of the next (older) page; `None` on the last page.
    pub next: Option<SyncLogCursor>,
}

#[derive(sqlx::FromRow)]
struct SyncRow {
    id: i64,
    connection_id: String,
    at: i64,
    method: String,
    path: String,
    resource_type: Option<String>,
    resource_id: Option<String>,
    operation: String,
    status: i32,
    outcome: String,
    scim_type: Option<String>,
    detail: Option<String>,
    duration_us: i64,
    user_agent: Option<String>,
}

impl SyncRow {
    fn into_record(self) -> Result<SyncLogRecord, StoreError> {
        let corrupt = |what: &str| {
            StoreError::corrupt("sync log entry", self.id.to_string(), format!("unknown {what}"))
        };
        let resource_type = match &self.resource_type {
            None => None,
            Some(t) => Some(ScimResourceType::parse(t).ok_or_else(|| corrupt("resource type"))?),
        };
        let outcome = SyncOutcome::parse(&self.outcome).ok_or_else(|| corrupt("outcome"))?;
        let status = u16::try_from(self.status).map_err(|_| corrupt("status"))?;
        Ok(SyncLogRecord {
            id: self.id,
            entry: SyncLogEntry {
                connection_id: self.connection_id,
                at: self.at,
                method: self.method,
                path: self.path,
                resource_type,
                resource_id: self.resource_id,
                operation: SyncOperation::parse(&self.operation),
                status,
                outcome,
                scim_type: self.scim_type,
                detail: self.detail,
                duration_us: u64::try_from(self.duration_us).unwrap_or(0),
                user_agent: self.user_agent,
            },
        })
    }
}

const SELECT_COLUMNS: &str = "id, connection_id, at, method, path, resource_type, resource_id, \
     operation, status, outcome, scim_type, detail, duration_us, user_agent";

/// Where in `bytes`, starting at `i`, a secret begins: `(keep, end)` means `bytes[i..keep]` is
/// its harmless lead (`idp_scim_`, `Bearer `) and `bytes[keep..end]` the secret itself.
fn secret_at(bytes: &[u8], i: usize) -> Option<(usize, usize)> {
    let rest = &bytes[i..];
    if rest.starts_with(b"idp_") {
        let mut j = i + 4;
        while j < bytes.len() && bytes[j].is_ascii_lowercase() {
            j += 1;
        }
        if j == i + 4 || j >= bytes.len() || bytes[j] != b'_' {
            return None;
        }
        let keep = j + 1;
        let mut end = keep;
        while end < bytes.len() && bytes[end].is_ascii_hexdigit() {
            end += 1;
        }
        return (end - keep >= 8).then_some((keep, end));
    }
    if rest.len() > 7 && rest[..7].eq_ignore_ascii_case(b"bearer ") {
        let keep = i + 7;
        let mut end = keep;
        while end < bytes.len()
            && !bytes[end].is_ascii_whitespace()
            && !matches!(bytes[end], b'"' | b'\'' | b'`' | b'<' | b',' | b';')
        {
            end += 1;
        }
        return (end > keep).then_some((keep, end));
    }
    None
}

/// `text` with idplex secrets (`idp_<kind>_<hex>`) and bearer credentials replaced by
/// `<redacted>`: defence in depth for what ends up in the sync log.
pub(crate) fn redact_secrets(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut i) = (0, 0);
    while i < bytes.len() {
        // Both patterns start with an ASCII byte, so `keep` and `end` are char boundaries.
        match secret_at(bytes, i) {
            Some((keep, end)) => {
                out.push_str(&text[copied..keep]);
                out.push_str("<redacted>");
                copied = end;
                i = end;
            }
            None => i += 1,
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Inserts one entry; the connection must exist (no row otherwise). `$1..$13` as
/// [`bind_entry!`] binds them.
const INSERT_SYNC: &str = "INSERT INTO scim_sync_log (connection_id, at, method, path, \
         resource_type, resource_id, operation, status, outcome, scim_type, detail, duration_us, \
         user_agent) \
     SELECT c.id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 \
     FROM connections c WHERE c.id = $1 RETURNING id";

/// An entry with its fields bounded and scrubbed, ready to bind.
struct BoundedEntry<'a> {
    entry: &'a SyncLogEntry,
    path: String,
    detail: Option<String>,
    user_agent: Option<String>,
}

impl<'a> BoundedEntry<'a> {
    fn of(entry: &'a SyncLogEntry) -> Self {
        let path = entry.path.split('?').next().unwrap_or_default();
        BoundedEntry {
            entry,
            path: truncate_utf8(&redact_secrets(path), MAX_PATH_BYTES),
            detail: entry
                .detail
                .as_deref()
                .map(|d| truncate_utf8(&redact_secrets(d), MAX_SYNC_DETAIL_BYTES)),
            user_agent: entry.user_agent.as_deref().map(|ua| truncate_utf8(ua, MAX_SYNC_USER_AGENT_BYTES)),
        }
    }
}

/// Binds a [`BoundedEntry`] to an [`INSERT_SYNC`] query (a macro: the query's database type
/// differs between the two backends).
/// The values of [`INSERT_SYNC`]'s parameters, in order.
type SyncValues<'a> = (
    &'a str,
    i64,
    String,
    &'a str,
    Option<&'static str>,
    Option<String>,
    &'static str,
    i32,
    &'static str,
    Option<String>,
    Option<&'a str>,
    i64,
    Option<&'a str>,
);

impl BoundedEntry<'_> {
    fn values(&self) -> SyncValues<'_> {
        let e = self.entry;
        (
            e.connection_id.as_str(),
            e.at,
            truncate_utf8(&e.method, MAX_METHOD_BYTES),
            self.path.as_str(),
            e.resource_type.map(ScimResourceType::as_str),
            e.resource_id.as_deref().map(|id| truncate_utf8(id, MAX_RESOURCE_ID_BYTES)),
            e.operation.as_str(),
            i32::from(e.status.clamp(100, 599)),
            e.outcome.as_str(),
            e.scim_type.as_deref().map(|t| truncate_utf8(t, MAX_SCIM_TYPE_BYTES)),
            self.detail.as_deref(),
            i64::try_from(e.duration_us).unwrap_or(i64::MAX),
            self.user_agent.as_deref(),
        )
    }
}

/// Binds [`BoundedEntry::values`] of `$row` to the sqlx query `$query`.
macro_rules! bind_entry {
    ($query:expr, $row:expr) => {{
        let v = BoundedEntry::values($row);
        $query
            .bind(v.0)
            .bind(v.1)
            .bind(v.2)
            .bind(v.3)
            .bind(v.4)
            .bind(v.5)
            .bind(v.6)
            .bind(v.7)
            .bind(v.8)
            .bind(v.9)
            .bind(v.10)
            .bind(v.11)
            .bind(v.12)
    }};
}

/// [`INSERT_SYNC`] of each of `entries` on a synchronous SQLite connection (inside a
/// transaction): how many were written (an entry of a vanished connection is skipped).
fn insert_sqlite(conn: &rusqlite::Connection, entries: &[SyncLogEntry]) -> Result<u64, sqlx::Error> {
    use rusqlite::OptionalExtension;
    let mut insert = conn.prepare_cached(INSERT_SYNC).map_err(crate::readers::to_sqlx)?;
    let mut written = 0u64;
    for entry in entries {
        let row = BoundedEntry::of(entry);
        let v = row.values();
        let values: [&dyn rusqlite::ToSql; 13] =
            [&v.0, &v.1, &v.2, &v.3, &v.4, &v.5, &v.6, &v.7, &v.8, &v.9, &v.10, &v.11, &v.12];
        let id: Option<i64> = insert
            .query_row(
                crate::readers::numbered(&values).as_slice(),
                |r| r.get(0),
            )
            .optional()
            .map_err(crate::readers::to_sqlx)?;
        written += u64::from(id.is_some());
    }
    Ok(written)
}

impl Store {
    /// Records one SCIM request of a directory: a single `INSERT`. Returns the entry's id.
    /// Fields are bounded and scrubbed as the module documentation says.
    /// [`StoreError::NotFound`] if the connection does not exist.
    pub async fn record_sync(&self, entry: &SyncLogEntry) -> Result<i64, StoreError> {
        let row = BoundedEntry::of(entry);
        let result = with_pool!(self, write, |pool| {
            bind_entry!(sqlx::query_scalar(INSERT_SYNC), &row).fetch_optional(pool).await
        });
        match result {
            Ok(Some(id)) => Ok(id),
            Ok(None) => Err(StoreError::not_found("connection", &entry.connection_id)),
            Err(e) if is_foreign_key_violation(&e) => {
                Err(StoreError::not_found("connection", &entry.connection_id))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records many SCIM requests in one transaction (how the server's sync log writer drains
    /// its queue). Entries of connections that no longer exist are skipped. Returns how many
    /// were written.
    pub async fn record_sync_batch(&self, entries: &[SyncLogEntry]) -> Result<u64, StoreError> {
        if let crate::Pools::Sqlite { writer: Some(writer), .. } = &self.pools {
            let entries = entries.to_vec();
            return Ok(writer.transaction(move |conn| insert_sqlite(conn, &entries)).await?);
        }
        let rows: Vec<BoundedEntry> = entries.iter().map(BoundedEntry::of).collect();
        let written = with_tx!(self, |tx| {
            let mut written = 0u64;
            for row in &rows {
                let id: Option<i64> =
                    bind_entry!(sqlx::query_scalar(INSERT_SYNC), row).fetch_optional(&mut *tx).await?;
                written += u64::from(id.is_some());
            }
            written
        });
        Ok(written)
    }

    /// A page of the sync log of the connection `connection_id`, newest first (by `at`, then
    /// id), as `query` says; [`SyncLogPage::next`] pages on. Empty for an unknown connection.
    pub async fn list_sync_log(
        &self,
        connection_id: &str,
        query: &SyncLogQuery,
    ) -> Result<SyncLogPage, StoreError> {
        let limit = query
            .limit
            .unwrap_or(SYNC_LOG_DEFAULT_LIMIT)
            .clamp(1, MAX_SYNC_LOG_LIMIT);
        let mut sql = format!("SELECT {SELECT_COLUMNS} FROM scim_sync_log WHERE connection_id = $1");
        let mut n = 1;
        if query.before.is_some() {
            // `at <= $2` bounds the index range; the rest breaks ties on the id.
            sql.push_str(" AND at <= $2 AND (at < $2 OR id < $3)");
            n = 3;
        }
        let outcome = match query.outcome {
            Some(OutcomeFilter::Is(outcome)) => {
                n += 1;
                sql.push_str(&format!(" AND outcome = ${n}"));
                Some(outcome.as_str())
            }
            Some(OutcomeFilter::AnyError) => {
                sql.push_str(" AND outcome <> 'ok'");
                None
            }
            None => None,
        };
        if query.resource_id.is_some() {
            n += 1;
            sql.push_str(&format!(" AND resource_id = ${n}"));
        }
        sql.push_str(&format!(" ORDER BY at DESC, id DESC LIMIT ${}", n + 1));
        // One more than the page: whether there is a next page, without another query.
        let fetch = i64::from(limit) + 1;
        let rows: Vec<SyncRow> = with_pool!(self, read, |pool| {
            let mut q = sqlx::query_as(&sql).bind(connection_id);
            if let Some(c) = query.before {
                q = q.bind(c.at).bind(c.id);
            }
            if let Some(outcome) = outcome {
                q = q.bind(outcome);
            }
            if let Some(resource_id) = &query.resource_id {
                q = q.bind(resource_id);
            }
            q.bind(fetch).fetch_all(pool).await?
        });
        let more = rows.len() > limit as usize;
        let mut entries = rows
            .into_iter()
            .map(SyncRow::into_record)
            .collect::<Result<Vec<_>, _>>()?;
        entries.truncate(limit as usize);
        let next = if more {
            entries.last().map(|r| SyncLogCursor {
                at: r.entry.at,
                id: r.id,
            })
        } else {
            None
        };
        Ok(SyncLogPage { entries, next })
    }

    /// Deletes the sync log entries recorded before `older_than_ms` (a unix-ms timestamp, e.g.
    /// now − [`SYNC_LOG_DEFAULT_RETENTION_MS`]) in every directory; returns how many. Works one
    /// directory at a time, in batches of a few thousand rows, each its own short write, so
    /// SCIM writes interleave with a large prune.
    pub async fn prune_sync_log(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        let connections: Vec<String> = with_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT id FROM connections ORDER BY id")
                .fetch_all(pool)
                .await?
        });
        let mut total = 0;
        for connection_id in &connections {
            loop {
                let deleted = with_pool!(self, write, |pool| {
                    sqlx::query(
                        "DELETE FROM scim_sync_log WHERE id IN (SELECT id FROM scim_sync_log \
                         WHERE connection_id = $1 AND at < $2 LIMIT $3)",
                    )
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
        if total > 0 {
            tracing::info!(deleted = total, older_than_ms, "sync log pruned");
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let scim = format!("idp_scim_{}", "ab12".repeat(16));
        assert_eq!(
            redact_secrets(&format!("token \"{scim}\" refused; Bearer abc.def-ghi, ok")),
            "token \"idp_scim_<redacted>\" refused; Bearer <redacted>, ok"
        );
        assert_eq!(
            redact_secrets("missing `Authorization: Bearer <token>`"),
            "missing `Authorization: Bearer <token>`"
        );
        // Not secrets: too short, no kind, or plain words.
        for keep in ["idp_x_12", "idp__abcdef0123", "idp_scim", "bearer", "héllo idp_ wörld"] {
            assert_eq!(redact_secrets(keep), keep);
        }
        assert_eq!(
            redact_secrets("ünïcode idp_uat_0123456789abcdef€"),
            "ünïcode idp_uat_<redacted>€"
        );
    }

    #[test]
    fn cursors_round_trip() {
        let c = SyncLogCursor { at: 1_732_000_000_000, id: 4711 };
        assert_eq!(c.to_string(), "1732000000000_4711");
        assert_eq!("1732000000000_4711".parse::<SyncLogCursor>().unwrap(), c);
        for bad in ["", "12", "a_1", "1_b", "1_2_3"] {
            assert!(bad.parse::<SyncLogCursor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn outcomes_by_status() {
        assert_eq!(SyncOutcome::for_status(201), SyncOutcome::Ok);
        assert_eq!(SyncOutcome::for_status(304), SyncOutcome::Ok);
        assert_eq!(SyncOutcome::for_status(409), SyncOutcome::ClientError);
        assert_eq!(SyncOutcome::for_status(503), SyncOutcome::ServerError);
        assert_eq!("error".parse::<OutcomeFilter>().unwrap(), OutcomeFilter::AnyError);
        assert_eq!(
            "connector_error".parse::<OutcomeFilter>().unwrap(),
            OutcomeFilter::Is(SyncOutcome::ConnectorError)
        );
        assert!("bad".parse::<OutcomeFilter>().is_err());
    }
}
