//! The SCIM sync log of each directory (connection): one row per SCIM request an IdP made, with
//! what it asked (method, path, the operation as normalized), what it got (status, outcome,
//! `scimType`) and, for failures, a detail an admin can act on. This is what an admin reads when
//! "Okta says provisioning failed".
//!
//! Recording is one `INSERT` ([`Store::record_sync`]), meant to be called after the response is
//! sent. What is recorded is bounded and scrubbed here, whatever the caller passes, in every
//! text field (method, path, resource id, `scimType`, detail, user agent): control characters
//! (NUL included) and bidirectional overrides are replaced, anything shaped like a credential
//! (an idplex secret `idp_<kind>_<hex>`, what follows `Bearer ` or `Basic `, a JWT, a long
//! high-entropy token; see `redact_secrets`) is replaced by `<redacted>`, the path loses any
//! query string, and long fields are cut. A batch ([`Store::record_sync_batch`]) never loses
//! its good entries to a bad one. Callers must still never pass request bodies or credentials.
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

/// Bytes that can make up a bearer-style token (base64, base64url, hex, ...); `/` is left out so
/// that a path's segments are judged one by one, and `=` (base64 padding, taken with a token
/// it ends) so that `key=value` is judged by its value.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'~')
}

/// Shortest run of token bytes mixing upper case, lower case and digits that is taken for a
/// credential (API keys, opaque access tokens, base64 secrets).
const MIN_MIXED_TOKEN_BYTES: usize = 32;

/// Shortest run of hex digits alone that is taken for a credential: longer than the store's own
/// 32-digit ids (users, groups), which the sync log must keep.
const MIN_HEX_TOKEN_BYTES: usize = 48;

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
    for scheme in [&b"bearer "[..], b"basic "] {
        if rest.len() > scheme.len() && rest[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let keep = i + scheme.len();
            let mut end = keep;
            while end < bytes.len()
                && !bytes[end].is_ascii_whitespace()
                && !matches!(bytes[end], b'"' | b'\'' | b'`' | b'<' | b',' | b';')
            {
                end += 1;
            }
            return (end > keep).then_some((keep, end));
        }
    }
    // The rest only at the start of a token, so a long run is judged once, as a whole.
    if i > 0 && is_token_byte(bytes[i - 1]) || !is_token_byte(bytes[i]) {
        return None;
    }
    // A JWT: three base64url parts, the first (a JSON header) starting `eyJ`.
    if rest.starts_with(b"eyJ") {
        let mut end = i;
        let mut dots = 0;
        while end < bytes.len() && (is_token_byte(bytes[end]) || bytes[end] == b'.') {
            dots += usize::from(bytes[end] == b'.');
            end += 1;
        }
        if dots >= 2 {
            return Some((i, end));
        }
    }
    let mut end = i;
    let (mut upper, mut lower, mut digit, mut hex) = (false, false, false, true);
    while end < bytes.len() && is_token_byte(bytes[end]) {
        let b = bytes[end];
        upper |= b.is_ascii_uppercase();
        lower |= b.is_ascii_lowercase();
        digit |= b.is_ascii_digit();
        hex &= b.is_ascii_hexdigit();
        end += 1;
    }
    let len = end - i;
    while end < bytes.len() && bytes[end] == b'=' {
        end += 1;
    }
    let mixed = upper && lower && digit && len >= MIN_MIXED_TOKEN_BYTES;
    (mixed || (hex && len >= MIN_HEX_TOKEN_BYTES)).then_some((i, end))
}

/// `text` with what looks like a credential replaced by `<redacted>`: defence in depth for what
/// ends up in the sync log. Redacted: idplex secrets (`idp_<kind>_<hex>`, their `idp_<kind>_`
/// lead kept), what follows `Bearer ` or `Basic `, JWTs (`eyJ….….…`), runs of 32 or more
/// token characters mixing upper case, lower case and digits, and runs of 48 or more hex
/// digits (idplex's own 32-digit ids are kept).
pub(crate) fn redact_secrets(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut i) = (0, 0);
    while i < bytes.len() {
        // Every pattern starts and ends at an ASCII byte (or the end), so `keep` and `end`
        // are char boundaries.
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

/// Whether `c` is replaced by [`scrub`]: control characters (NUL included, which PostgreSQL
/// cannot store in text) and the bidirectional overrides and isolates that make text shown to
/// an admin read differently from what it is.
fn is_unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` safe to store and show: tabs and line breaks become spaces, other [`is_unsafe_char`]
/// characters U+FFFD.
pub(crate) fn scrub(text: &str) -> String {
    if !text.chars().any(is_unsafe_char) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => ' ',
            c if is_unsafe_char(c) => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// A field as stored: scrubbed, credentials redacted, cut to `max` bytes.
pub(crate) fn clean(text: &str, max: usize) -> String {
    truncate_utf8(&redact_secrets(&scrub(text)), max)
}

/// Inserts one entry; the connection must exist (no row otherwise). `$1..$13` as
/// [`BoundedEntry::values`] orders them.
const INSERT_SYNC: &str = "INSERT INTO scim_sync_log (connection_id, at, method, path, \
         resource_type, resource_id, operation, status, outcome, scim_type, detail, duration_us, \
         user_agent) \
     SELECT c.id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 \
     FROM connections c WHERE c.id = $1 RETURNING id";

/// An entry with its fields bounded and scrubbed, ready to bind: every text field is scrubbed
/// ([`scrub`]), redacted ([`redact_secrets`]) and cut to its bound.
#[derive(Debug, Clone)]
struct BoundedEntry {
    connection_id: String,
    at: i64,
    method: String,
    path: String,
    resource_type: Option<&'static str>,
    resource_id: Option<String>,
    operation: &'static str,
    status: i32,
    outcome: &'static str,
    scim_type: Option<String>,
    detail: Option<String>,
    duration_us: i64,
    user_agent: Option<String>,
}

impl BoundedEntry {
    /// `None` if the entry cannot belong to any connection: its connection id holds a character
    /// no id has (scrubbing it could make it another connection's).
    fn of(e: &SyncLogEntry) -> Option<Self> {
        if e.connection_id.chars().any(is_unsafe_char) {
            return None;
        }
        let path = e.path.split('?').next().unwrap_or_default();
        Some(BoundedEntry {
            connection_id: e.connection_id.clone(),
            at: e.at,
            method: clean(&e.method, MAX_METHOD_BYTES),
            path: clean(path, MAX_PATH_BYTES),
            resource_type: e.resource_type.map(ScimResourceType::as_str),
            resource_id: e.resource_id.as_deref().map(|id| clean(id, MAX_RESOURCE_ID_BYTES)),
            operation: e.operation.as_str(),
            status: i32::from(e.status.clamp(100, 599)),
            outcome: e.outcome.as_str(),
            scim_type: e.scim_type.as_deref().map(|t| clean(t, MAX_SCIM_TYPE_BYTES)),
            detail: e.detail.as_deref().map(|d| clean(d, MAX_SYNC_DETAIL_BYTES)),
            duration_us: i64::try_from(e.duration_us).unwrap_or(i64::MAX),
            user_agent: e.user_agent.as_deref().map(|ua| clean(ua, MAX_SYNC_USER_AGENT_BYTES)),
        })
    }
}

/// The values of [`INSERT_SYNC`]'s parameters, in order.
type SyncValues<'a> = (
    &'a str,
    i64,
    &'a str,
    &'a str,
    Option<&'static str>,
    Option<&'a str>,
    &'static str,
    i32,
    &'static str,
    Option<&'a str>,
    Option<&'a str>,
    i64,
    Option<&'a str>,
);

impl BoundedEntry {
    fn values(&self) -> SyncValues<'_> {
        (
            self.connection_id.as_str(),
            self.at,
            self.method.as_str(),
            self.path.as_str(),
            self.resource_type,
            self.resource_id.as_deref(),
            self.operation,
            self.status,
            self.outcome,
            self.scim_type.as_deref(),
            self.detail.as_deref(),
            self.duration_us,
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

/// [`INSERT_SYNC`] of each of `rows` on a synchronous SQLite connection (inside a
/// transaction): how many were written (an entry of a vanished connection is skipped).
fn insert_sqlite(conn: &rusqlite::Connection, rows: &[BoundedEntry]) -> Result<u64, sqlx::Error> {
    use rusqlite::OptionalExtension;
    let mut insert = conn.prepare_cached(INSERT_SYNC).map_err(crate::readers::to_sqlx)?;
    let mut written = 0u64;
    for row in rows {
        let v = row.values();
        let values: [&dyn rusqlite::ToSql; 13] =
            [&v.0, &v.1, &v.2, &v.3, &v.4, &v.5, &v.6, &v.7, &v.8, &v.9, &v.10, &v.11, &v.12];
        let id: Option<i64> = insert
            .query_row(crate::readers::numbered(&values).as_slice(), |r| r.get(0))
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
        let Some(row) = BoundedEntry::of(entry) else {
            return Err(StoreError::not_found("connection", scrub(&entry.connection_id)));
        };
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
    ///
    /// One bad entry never costs the others: fields are scrubbed first (see [`scrub`]), and if
    /// the database still refuses the batch's transaction, each entry is retried in a
    /// transaction of its own; those the database refuses again are dropped (and logged), the
    /// rest written. An error that is not the database refusing a statement (connection lost,
    /// pool closed) is returned as is.
    pub async fn record_sync_batch(&self, entries: &[SyncLogEntry]) -> Result<u64, StoreError> {
        let rows: Vec<BoundedEntry> = entries.iter().filter_map(BoundedEntry::of).collect();
        if rows.is_empty() {
            return Ok(0);
        }
        let error = match self.insert_sync_rows(rows.clone()).await {
            Ok(written) => return Ok(written),
            Err(e @ sqlx::Error::Database(_)) if rows.len() > 1 => e,
            Err(e) => return Err(e.into()),
        };
        tracing::warn!(error = %error, entries = rows.len(), "sync log batch refused; writing its entries one by one");
        let (mut written, mut dropped) = (0, 0u64);
        for row in rows {
            let connection = row.connection_id.clone();
            match self.insert_sync_rows(vec![row]).await {
                Ok(n) => written += n,
                Err(e @ sqlx::Error::Database(_)) => {
                    dropped += 1;
                    tracing::error!(error = %e, connection = %connection, "sync log entry refused by the database; dropped");
                }
                Err(e) => return Err(e.into()),
            }
        }
        if dropped > 0 {
            tracing::warn!(written, dropped, "sync log batch written entry by entry");
        }
        Ok(written)
    }

    /// [`INSERT_SYNC`] of each of `rows`, in one transaction: how many were written.
    async fn insert_sync_rows(&self, rows: Vec<BoundedEntry>) -> Result<u64, sqlx::Error> {
        if let crate::Pools::Sqlite { writer, .. } = &self.pools {
            return writer.transaction(move |conn| insert_sqlite(conn, &rows)).await;
        }
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
    fn tokens_jwts_and_basic_credentials_are_redacted() {
        let jwt = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        assert_eq!(redact_secrets(&format!("id={jwt}&x")), "id=<redacted>&x");
        assert_eq!(redact_secrets("Authorization: basic dXNlcjpwYXNz"), "Authorization: basic <redacted>");
        let key = "sk_live_4eC39HqLyjWDarjtT1zdp7dc4eC39HqL";
        assert_eq!(redact_secrets(&format!("/Users/{key}/x")), "/Users/<redacted>/x");
        assert_eq!(redact_secrets(&"f0".repeat(24)), "<redacted>");
        // Kept: idplex's 32-hex ids, UUIDs (either case), version strings, words, e-mails.
        for keep in [
            "0123456789abcdef0123456789abcdef",
            "/scim/v2/conn_0123456789abcdef0123456789abcdef/Users",
            "6F9619FF-8B86-D011-B42D-00C04FC964FF",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0.0.0",
            "Okta SCIM Client 1.0.0",
            "Ada.Lovelace1815@example.com",
            "eyJ alone",
        ] {
            assert_eq!(redact_secrets(keep), keep);
        }
    }

    #[test]
    fn control_characters_are_scrubbed() {
        assert_eq!(scrub("plain é"), "plain é");
        assert_eq!(scrub("a\0b\tc\r\nd\u{7f}e\u{85}f\u{202e}g\u{2066}"), "a\u{FFFD}b c  d\u{FFFD}e\u{FFFD}f\u{FFFD}g\u{FFFD}");
        assert_eq!(clean(&format!("x\0{}", "é".repeat(100)), 16).len(), 15);
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
