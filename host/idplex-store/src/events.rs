//! Connector events: what an admin reads when a connector misbehaves.
//!
//! Bounded two ways, since a misbehaving connector (or a client making it trap) can raise
//! events as fast as it is called:
//!
//! * coalescing: a repeat of an event (same connection, connector and kind) less than the
//!   store's window ([`EVENT_COALESCE_WINDOW_MS`], [`Store::with_event_coalescing`]) after the
//!   row that opened the window is counted in that row (`repeats`, `last_at`; the first
//!   occurrence's message is kept) instead of adding one. A flood of one kind thus costs a row
//!   per window, not a row per call. Events without a connection (refused installs, made by
//!   admins) are never coalesced. Two replicas (PostgreSQL) may each open a window: at worst a
//!   row each.
//! * retention: [`Store::prune_connector_events`] deletes events older than a maximum age and,
//!   per connection, all but the newest [`EventRetention::max_per_connection`], in small
//!   batches (each its own short write, like the sync log pruner). `idplex serve` runs it
//!   periodically (`Hub::spawn_event_pruner`).

use crate::{Event, EventKind, NewEvent, Store, StoreError, now_ms, truncate_utf8};

/// Longer messages are cut (at a character boundary) and marked with `…`: a misbehaving
/// guest must not be able to fill the database through its error strings.
pub const MAX_EVENT_MESSAGE_BYTES: usize = 8 * 1024;

/// Upper bound for `limit` in [`Store::list_events`].
pub const MAX_EVENT_LIST_LIMIT: u32 = 1000;

/// Default coalescing window of connector events: one minute, in milliseconds (see the module
/// documentation; [`Store::with_event_coalescing`] changes it).
pub const EVENT_COALESCE_WINDOW_MS: i64 = 60 * 1000;

/// How long connector events are kept unless configured otherwise: 30 days, in milliseconds.
pub const EVENT_DEFAULT_RETENTION_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// How many events of one connection are kept unless configured otherwise (the newest).
pub const EVENT_DEFAULT_MAX_PER_CONNECTION: u64 = 10_000;

/// Rows deleted per statement by [`Store::prune_connector_events`].
const PRUNE_BATCH: i64 = 5000;

/// What [`Store::prune_connector_events`] keeps. `Default`: 30 days
/// ([`EVENT_DEFAULT_RETENTION_MS`]), at most [`EVENT_DEFAULT_MAX_PER_CONNECTION`] per
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRetention {
    /// Events older than this many milliseconds (by their first occurrence) are deleted.
    pub max_age_ms: i64,
    /// Only the newest this many events of each connection are kept (and as many of the
    /// events without a connection).
    pub max_per_connection: u64,
}

impl Default for EventRetention {
    fn default() -> Self {
        EventRetention {
            max_age_ms: EVENT_DEFAULT_RETENTION_MS,
            max_per_connection: EVENT_DEFAULT_MAX_PER_CONNECTION,
        }
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    at: i64,
    connection_id: Option<String>,
    connector: String,
    kind: String,
    message: String,
    repeats: i64,
    last_at: Option<i64>,
}

const EVENT_COLUMNS: &str = "id, at, connection_id, connector, kind, message, repeats, last_at";

/// Counts a repeat in the newest row of the connection `$2`, connector `$3` and kind `$4`
/// opened in the window `($5, $1]`; matches nothing if there is none.
const COALESCE_EVENT: &str = "UPDATE connector_events SET repeats = repeats + 1, \
         last_at = CASE WHEN last_at IS NULL OR last_at < $1 THEN $1 ELSE last_at END \
     WHERE id = (SELECT id FROM connector_events \
         WHERE connection_id = $2 AND connector = $3 AND kind = $4 AND at > $5 AND at <= $1 \
         ORDER BY at DESC, id DESC LIMIT 1) \
     RETURNING id";

impl Store {
    /// Records a connector event and returns the id of its row: a new row, or the row this
    /// occurrence was coalesced into (see the module documentation).
    pub async fn record_event(&self, event: &NewEvent) -> Result<i64, StoreError> {
        if event.kind.as_str().trim().is_empty() {
            return Err(StoreError::InvalidInput {
                what: "event kind",
                reason: "must not be empty".into(),
            });
        }
        let at = event.at.unwrap_or_else(now_ms);
        // NUL cannot be stored in PostgreSQL text; these strings come from host code, but the
        // message may quote a guest.
        let clean = |s: &str| s.replace('\0', "\u{FFFD}");
        let connector = clean(&event.connector);
        let kind = clean(event.kind.as_str());
        let message = clean(&truncate_utf8(&event.message, MAX_EVENT_MESSAGE_BYTES));
        let connection_id = event.connection_id.as_deref().map(clean);
        let id: i64 = with_pool!(self, write, |pool| {
            let mut coalesced = None;
            if let Some(connection_id) = &connection_id
                && self.event_window_ms > 0
            {
                coalesced = sqlx::query_scalar(COALESCE_EVENT)
                    .bind(at)
                    .bind(connection_id)
                    .bind(&connector)
                    .bind(&kind)
                    .bind(at.saturating_sub(self.event_window_ms))
                    .fetch_optional(pool)
                    .await?;
            }
            match coalesced {
                Some(id) => id,
                None => sqlx::query_scalar(
                    "INSERT INTO connector_events (at, connection_id, connector, kind, message) \
                         VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .bind(at)
                .bind(&connection_id)
                .bind(&connector)
                .bind(&kind)
                .bind(&message)
                .fetch_one(pool)
                .await?,
            }
        });
        Ok(id)
    }

    /// The most recent events, newest first, optionally only those of one connection.
    /// `limit` is clamped to 1..=[`MAX_EVENT_LIST_LIMIT`].
    pub async fn list_events(
        &self,
        connection_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let limit = i64::from(limit.clamp(1, MAX_EVENT_LIST_LIMIT));
        let rows: Vec<EventRow> = with_pool!(self, read, |pool| {
            match connection_id {
                Some(connection_id) => {
                    sqlx::query_as(&format!(
                        "SELECT {EVENT_COLUMNS} FROM connector_events \
                         WHERE connection_id = $1 ORDER BY at DESC, id DESC LIMIT $2"
                    ))
                    .bind(connection_id)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
                }
                None => {
                    sqlx::query_as(&format!(
                        "SELECT {EVENT_COLUMNS} FROM connector_events \
                         ORDER BY at DESC, id DESC LIMIT $1"
                    ))
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
                }
            }
        });
        Ok(rows
            .into_iter()
            .map(|r| Event {
                id: r.id,
                at: r.at,
                connection_id: r.connection_id,
                connector: r.connector,
                kind: EventKind::parse(&r.kind),
                message: r.message,
                repeats: r.repeats,
                last_at: r.last_at,
            })
            .collect())
    }

    /// Deletes events recorded before `before` (unix ms), in batches; returns how many.
    pub async fn prune_events(&self, before: i64) -> Result<u64, StoreError> {
        self.delete_event_batches(
            "DELETE FROM connector_events WHERE id IN \
             (SELECT id FROM connector_events WHERE at < $1 LIMIT $2)",
            None,
            before,
            0,
        )
        .await
    }

    /// Applies `retention` to the connector events: deletes those older than
    /// `retention.max_age_ms` and, for each connection (and for the events without one), all
    /// but the newest `retention.max_per_connection`. Works in batches of a few thousand rows,
    /// each its own short write, so other writes interleave with a large prune. Returns how
    /// many events were deleted. Idempotent: several replicas may run it.
    pub async fn prune_connector_events(
        &self,
        retention: &EventRetention,
    ) -> Result<u64, StoreError> {
        let cutoff = now_ms().saturating_sub(retention.max_age_ms.max(0));
        let mut total = self.prune_events(cutoff).await?;
        let offset = i64::try_from(retention.max_per_connection).unwrap_or(i64::MAX);
        let connections: Vec<Option<String>> = with_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT DISTINCT connection_id FROM connector_events")
                .fetch_all(pool)
                .await?
        });
        for connection_id in &connections {
            let scope = match connection_id {
                Some(_) => "connection_id = $1",
                // `$1` (bound to NULL) is named so both variants take the same parameters.
                None => "connection_id IS NULL AND $1 IS NULL",
            };
            // The newest event beyond the cap: it and everything older go.
            let sql = format!(
                "SELECT at, id FROM connector_events WHERE {scope} \
                 ORDER BY at DESC, id DESC LIMIT 1 OFFSET {offset}"
            );
            let last: Option<(i64, i64)> = with_pool!(self, read, |pool| {
                sqlx::query_as(&sql)
                    .bind(connection_id)
                    .fetch_optional(pool)
                    .await?
            });
            let Some((at, id)) = last else { continue };
            let delete = format!(
                "DELETE FROM connector_events WHERE id IN (SELECT id FROM connector_events \
                 WHERE {scope} AND (at < $2 OR (at = $2 AND id <= $3)) LIMIT $4)"
            );
            total += self
                .delete_event_batches(&delete, Some(connection_id.as_deref()), at, id)
                .await?;
        }
        if total > 0 {
            tracing::info!(deleted = total, "connector events pruned");
        }
        Ok(total)
    }

    /// Runs `delete` until it deletes fewer than a batch. Its parameters: with `scope`
    /// (`Some(connection)`), `$1` the connection (`None`: events without one), `$2` a time,
    /// `$3` an id, `$4` the batch size; without, `$1` the time and `$2` the batch size.
    async fn delete_event_batches(
        &self,
        delete: &str,
        scope: Option<Option<&str>>,
        at: i64,
        id: i64,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let deleted = with_pool!(self, write, |pool| {
                let query = match scope {
                    Some(connection_id) => sqlx::query(delete)
                        .bind(connection_id)
                        .bind(at)
                        .bind(id)
                        .bind(PRUNE_BATCH),
                    None => sqlx::query(delete).bind(at).bind(PRUNE_BATCH),
                };
                query.execute(pool).await?.rows_affected()
            });
            total += deleted;
            if deleted < PRUNE_BATCH as u64 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}
