//! Connector events: what an admin reads when a connector misbehaves.

use crate::{Event, EventKind, NewEvent, Store, StoreError, now_ms, truncate_utf8};

/// Longer messages are cut (at a character boundary) and marked with `…`: a misbehaving
/// guest must not be able to fill the database through its error strings.
pub const MAX_EVENT_MESSAGE_BYTES: usize = 8 * 1024;

/// Upper bound for `limit` in [`Store::list_events`].
pub const MAX_EVENT_LIST_LIMIT: u32 = 1000;

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    at: i64,
    connection_id: Option<String>,
    connector: String,
    kind: String,
    message: String,
}

impl Store {
    /// Records a connector event and returns its id.
    pub async fn record_event(&self, event: &NewEvent) -> Result<i64, StoreError> {
        if event.kind.as_str().trim().is_empty() {
            return Err(StoreError::InvalidInput {
                what: "event kind",
                reason: "must not be empty".into(),
            });
        }
        let at = event.at.unwrap_or_else(now_ms);
        let (id,): (i64,) = with_pool!(self, write, |pool| {
            sqlx::query_as(
                "INSERT INTO connector_events (at, connection_id, connector, kind, message) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(at)
            .bind(&event.connection_id)
            .bind(&event.connector)
            .bind(event.kind.as_str())
            .bind(truncate_utf8(&event.message, MAX_EVENT_MESSAGE_BYTES))
            .fetch_one(pool)
            .await?
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
                Some(connection_id) => sqlx::query_as(
                    "SELECT id, at, connection_id, connector, kind, message FROM connector_events \
                         WHERE connection_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
                )
                .bind(connection_id)
                .bind(limit)
                .fetch_all(pool)
                .await?,
                None => sqlx::query_as(
                    "SELECT id, at, connection_id, connector, kind, message FROM connector_events \
                         ORDER BY at DESC, id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(pool)
                .await?,
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
            })
            .collect())
    }

    /// Deletes events recorded before `before` (unix ms); returns how many. For retention jobs.
    pub async fn prune_events(&self, before: i64) -> Result<u64, StoreError> {
        let deleted = with_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM connector_events WHERE at < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted)
    }
}
