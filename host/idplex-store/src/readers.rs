//! Dedicated SQLite read connections for the lookups every SCIM request makes (token
//! verification, a user by id or by `userName`), outside sqlx's pool.
//!
//! Why: with sqlx-sqlite every connection runs on its own worker thread, so a statement is a
//! round trip between threads; sqlx's pool adds a second round trip each time a connection goes
//! back to the pool (a `ping`, run in a freshly spawned task), which for a one-row lookup is as
//! costly as the lookup. A reader here is taken and given back without any of that: a
//! `tokio::sync::Mutex` per connection, tried in turn, waited on when all are busy.
//!
//! Only single autocommit `SELECT`s run on readers (no transaction can be left open by a
//! cancelled caller), on connections opened with `query_only`. A connection whose worker
//! died is replaced on next use.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::sync::{Mutex, MutexGuard};

/// A fixed set of read connections to one SQLite file.
#[derive(Debug)]
pub(crate) struct Readers {
    connect: SqliteConnectOptions,
    conns: Vec<Mutex<Option<SqliteConnection>>>,
    next: AtomicUsize,
    closed: AtomicBool,
}

/// A reader, held for one statement.
pub(crate) struct Reader<'a>(MutexGuard<'a, Option<SqliteConnection>>);

impl Readers {
    /// Opens `n` (at least 1) connections with `connect` (which should be `query_only`).
    pub(crate) async fn open(
        connect: SqliteConnectOptions,
        n: usize,
    ) -> Result<Readers, sqlx::Error> {
        let mut conns = Vec::with_capacity(n.max(1));
        for _ in 0..n.max(1) {
            conns.push(Mutex::new(Some(connect.connect().await?)));
        }
        Ok(Readers {
            connect,
            conns,
            next: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        })
    }

    /// A free reader, or the next one to become free. [`sqlx::Error::PoolClosed`] once
    /// [`Readers::close`] was called.
    pub(crate) async fn get(&self) -> Result<Reader<'_>, sqlx::Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(sqlx::Error::PoolClosed);
        }
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut guard = 'found: {
            for i in 0..n {
                if let Ok(g) = self.conns[(start + i) % n].try_lock() {
                    break 'found g;
                }
            }
            self.conns[start % n].lock().await
        };
        if self.closed.load(Ordering::Acquire) {
            return Err(sqlx::Error::PoolClosed);
        }
        if guard.is_none() {
            *guard = Some(self.connect.connect().await?);
        }
        Ok(Reader(guard))
    }

    /// Closes every connection, waiting for the statements in flight; readers are refused from
    /// then on (as a closed pool refuses connections).
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for conn in &self.conns {
            if let Some(c) = conn.lock().await.take() {
                let _ = sqlx::Connection::close(c).await;
            }
        }
    }
}

impl Reader<'_> {
    /// The connection, for one statement.
    pub(crate) fn conn(&mut self) -> &mut SqliteConnection {
        self.0.as_mut().expect("a reader always holds a connection")
    }

    /// Passes `result` on; drops the connection first if the error says it is unusable, so the
    /// next caller gets a new one.
    pub(crate) fn check<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if matches!(result, Err(sqlx::Error::WorkerCrashed | sqlx::Error::Io(_))) {
            self.0.take();
        }
        result
    }
}
