//! The per-directory sync log: one entry per SCIM provisioning request (time, IdP operation,
//! outcome, and the error an admin can act on), read through `GET
//! /admin/v1/connections/{id}/sync-log` and `idplex sync-log`.
//!
//! Entries are written off the request path: [`super::ScimService`] hands them to [`SyncLogger`], whose task
//! writes them in batches (one transaction per batch, at most one per 50 ms), so logging costs a
//! SCIM request a channel send rather than a database write. The channel is bounded; when the store falls so
//! far behind that it fills, entries are dropped and counted, and the count is logged. An
//! entry still in the channel when the process is killed is lost (the provisioning write
//! itself is not: it was committed before the response); graceful shutdown flushes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use idplex_scim::ScimError;
use idplex_store::{ScimResourceType, Store, SyncLogEntry, SyncOperation, SyncOutcome};
use tokio::sync::{mpsc, oneshot};

use super::ScimReply;
use crate::now_ms;

/// Entries waiting to be written, at most.
const QUEUE: usize = 20_000;
/// Entries written in one transaction, at most.
const BATCH: usize = 500;
/// How long the writer lets entries gather before writing a batch.
const GATHER: Duration = Duration::from_millis(50);
/// Longest `User-Agent` carried to the store (characters; the store bounds it again).
const MAX_USER_AGENT: usize = 200;

/// What the service learns about a request while serving it.
pub(crate) struct SyncNote {
    method: String,
    path: String,
    resource_type: Option<ScimResourceType>,
    /// The resource the request addressed or created.
    pub resource_id: Option<String>,
    /// The IdP operation as the connector normalized it; `Other` until the connector has spoken.
    pub operation: SyncOperation,
    user_agent: Option<String>,
}

impl SyncNote {
    pub(crate) fn new(
        method: &str,
        path: String,
        resource_type: Option<ScimResourceType>,
        resource_id: Option<String>,
        user_agent: Option<&str>,
    ) -> Self {
        let user_agent = user_agent.map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
        SyncNote { method: method.to_string(), path, resource_type, resource_id, operation: SyncOperation::Other, user_agent }
    }
}

/// Logs a served request in its directory's sync log.
pub(crate) fn record(
    log: &SyncLogger,
    connection: &str,
    note: SyncNote,
    result: &Result<ScimReply, ScimError>,
    started: Instant,
) {
    let (status, scim_type, detail) = match result {
        Ok(r) => (r.status.as_u16(), None, None),
        Err(e) => (e.status, e.scim_type.map(|t| t.as_str().to_string()), Some(e.detail.clone())),
    };
    let outcome = match status {
        // The connector trapped, timed out, answered something unusable, failed upstream, or
        // does not do what was asked.
        501 | 502 | 504 => SyncOutcome::ConnectorError,
        _ => SyncOutcome::for_status(status),
    };
    log.push(SyncLogEntry {
        connection_id: connection.to_string(),
        at: now_ms(),
        method: note.method,
        path: note.path,
        resource_type: note.resource_type,
        resource_id: note.resource_id,
        operation: note.operation,
        status,
        outcome,
        scim_type,
        detail,
        duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        user_agent: note.user_agent,
    });
}


enum Msg {
    Entry(SyncLogEntry),
    Flush(oneshot::Sender<()>),
}

/// The sending side of the sync log writer (cheap to clone).
///
/// Owned by [`super::ScimService`]; flush it at shutdown ([`super::ScimService::flush_sync_log`]).
#[derive(Clone)]
pub struct SyncLogger {
    tx: mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl SyncLogger {
    /// Starts the writer task on the current Tokio runtime.
    pub fn spawn(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_loop(store, rx, dropped.clone()));
        SyncLogger { tx, dropped }
    }

    /// Queues an entry; never waits. A full queue drops the entry and counts it.
    pub fn push(&self, entry: SyncLogEntry) {
        if self.tx.try_send(Msg::Entry(entry)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every entry queued before this call is written (or failed to be).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), wait).await;
        }
    }

    /// Entries dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Msg>, dropped: Arc<AtomicU64>) {
    let mut reported = 0;
    while let Some(first) = rx.recv().await {
        // Let a batch gather for a moment: under load this turns one small write transaction
        // per few requests into one per GATHER, leaving SQLite's single writer to provisioning.
        if !matches!(first, Msg::Flush(_)) {
            tokio::time::sleep(GATHER).await;
        }
        let mut batch = Vec::new();
        let mut waiters = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Entry(e) => batch.push(e),
                Msg::Flush(w) => waiters.push(w),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty()
            && let Err(e) = store.record_sync_batch(&batch).await
        {
            tracing::error!(error = %e, entries = batch.len(), "could not write SCIM sync log entries");
        }
        let now = dropped.load(Ordering::Relaxed);
        if now != reported {
            tracing::warn!(dropped = now - reported, "SCIM sync log queue full; entries dropped");
            reported = now;
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}
