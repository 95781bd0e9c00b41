//! Synchronous SQLite connections for the statements every SCIM request makes: the dedicated
//! readers (token verification, a user by id or by `userName`, a page's groups) and the
//! [`Writer`] of the group committer (`group_commit.rs`) and the sync log's batches.
//!
//! Why: sqlx-sqlite runs every connection on its own worker thread, so each statement is a
//! round trip between threads — two context switches and futex wake-ups, which on this
//! two-core class of machine cost more than the indexed lookup itself (perf: ~40 % of a
//! filtered GET went to those hand-offs). These connections are plain rusqlite connections on
//! the same `libsqlite3-sys` build as sqlx: a statement runs on the caller's own thread, from
//! a prepared-statement cache. The lookups are single-row index reads (tens of microseconds),
//! short enough to run on an async worker thread, like a mutex-guarded computation.
//!
//! Readers: a fixed set of connections opened `query_only`, each behind a `std::sync::Mutex`,
//! tried in turn and waited on (briefly: a holder is always running one statement, never
//! awaiting) when all are busy. Only single autocommit `SELECT`s run there. Everything else
//! reads through sqlx's pool.
//!
//! WAL checkpoints run here too, off the write path: every write connection has
//! `wal_autocheckpoint` off, and a [`Checkpointer`] thread with its own connection runs a
//! `PASSIVE` checkpoint every [`CHECKPOINT_EVERY`]. With SQLite's default, the commit that takes
//! the WAL past 1000 pages runs the checkpoint itself — copying the WAL into the database and
//! `fsync`ing it — while holding the write lock, so every write queued behind it waited
//! (the p99 of SCIM writes). A passive checkpoint takes no write lock: writers go on appending
//! to the WAL meanwhile.
//!
//! Errors are handed to the rest of the store as `sqlx::Error::Database` with the same
//! [`sqlx::error::ErrorKind`] sqlx itself would give (unique, foreign key, not null, check),
//! so every caller classifies them as before.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, ToSql, ffi};
use sqlx::error::ErrorKind;

/// How long a statement waits for a lock held by another connection (another process, the
/// checkpointer) before failing with `SQLITE_BUSY`; as sqlx's default.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a connection to the SQLite file `path` with the settings of the store's sqlx
/// connections (WAL is a property of the file, already set by the store): foreign keys enforced,
/// a 5 s busy timeout; `query_only` for a reader; `synchronous=FULL` for a writer (a commit
/// returns once the WAL is on disk: acknowledged writes survive a power loss).
pub(crate) fn open(path: &Path, query_only: bool) -> Result<Connection, sqlx::Error> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if !query_only {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(to_sqlx)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(to_sqlx)?;
    conn.execute_batch(if query_only {
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA query_only = ON;"
    } else {
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0;"
    })
    .map_err(to_sqlx)?;
    // Room for the statements of a pull sync page (`directory_sync.rs`) beside the others.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// How often the [`Checkpointer`] copies the WAL into the database.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// WAL size (pages) past which the checkpointer restarts the WAL. Passive checkpoints copy the
/// WAL into the database but never rewind it: only a writer starting after a *complete*
/// checkpoint, with no reader still in the WAL, does — which under steady load may not happen
/// for minutes (a 560 MB WAL was seen in a benchmark). A `RESTART` checkpoint takes the write
/// lock, copies what is left (little, right after a passive one), waits for readers to leave
/// the WAL, and so lets the next writer start at its beginning. Writers wait meanwhile (in
/// the busy handler), a few milliseconds every few seconds of sustained writing.
const WAL_RESTART_PAGES: i64 = 8 * 1024;

/// WAL size (pages) past which a checkpoint that could not restart the WAL is logged: readers
/// or another process keep it from catching up.
const WAL_WARN_PAGES: i64 = 64 * 1024;

/// Names of the numbered placeholders the store's SQL uses (`$1`, `$2`, …).
const NUMBERED: [&str; 16] =
    ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16"];

/// `values` as rusqlite parameters bound by name to `$1`, `$2`, …: SQLite numbers a statement's
/// parameters in order of first appearance, so `$N` is not always the N-th (sqlx binds these
/// names by their number too). At most 16 values.
pub(crate) fn numbered<'a>(values: &[&'a dyn ToSql]) -> Vec<(&'static str, &'a dyn ToSql)> {
    assert!(values.len() <= NUMBERED.len(), "at most {} numbered parameters", NUMBERED.len());
    NUMBERED.iter().copied().zip(values.iter().copied()).collect()
}

/// A fixed set of read connections to one SQLite file, and the file's [`Checkpointer`].
#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    conns: Vec<Mutex<Option<Connection>>>,
    next: AtomicUsize,
    closed: AtomicBool,
    checkpointer: Checkpointer,
}

impl Readers {
    /// Opens `n` (at least 1) `query_only` connections to the file `path`, and starts its
    /// checkpointer (which takes `write_lock`'s only connection to restart the WAL).
    pub(crate) fn open(path: &Path, n: usize, write_lock: sqlx::SqlitePool) -> Result<Readers, sqlx::Error> {
        let mut conns = Vec::with_capacity(n.max(1));
        for _ in 0..n.max(1) {
            conns.push(Mutex::new(Some(open(path, true)?)));
        }
        Ok(Readers {
            path: path.to_owned(),
            conns,
            next: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            checkpointer: Checkpointer::start(path, CHECKPOINT_EVERY, write_lock)?,
        })
    }

    /// Runs `statement` on a free reader (or the next to become free), on this thread.
    /// [`sqlx::Error::PoolClosed`] once [`Readers::close`] was called.
    pub(crate) fn run<T>(
        &self,
        statement: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, sqlx::Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(sqlx::Error::PoolClosed);
        }
        let mut guard = self.take();
        if self.closed.load(Ordering::Acquire) {
            return Err(sqlx::Error::PoolClosed);
        }
        if guard.is_none() {
            *guard = Some(open(&self.path, true)?);
        }
        let conn = guard.as_ref().expect("a reader was just opened");
        statement(conn).map_err(to_sqlx)
    }

    fn take(&self) -> MutexGuard<'_, Option<Connection>> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(g) = self.conns[(start + i) % n].try_lock() {
                return g;
            }
        }
        // A statement never panics midway through a reader's state, so a poisoned lock holds
        // a usable connection.
        self.conns[start % n].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes every connection (waiting for statements in flight); readers are refused from
    /// then on, as a closed pool refuses connections.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for conn in &self.conns {
            conn.lock().unwrap_or_else(PoisonError::into_inner).take();
        }
        self.checkpointer.stop();
    }
}

/// Synchronous write connections to one SQLite file, used only while holding the write pool's
/// only connection — the store's write lock — so they never contend with sqlx's writers (or
/// each other) for SQLite's lock.
#[derive(Debug)]
pub(crate) struct Writer {
    path: PathBuf,
    lock: sqlx::SqlitePool,
    idle: Mutex<Vec<Connection>>,
    sync: crate::SqliteSync,
}

impl Writer {
    pub(crate) fn new(path: &Path, lock: sqlx::SqlitePool, sync: crate::SqliteSync) -> Writer {
        Writer { path: path.to_owned(), lock, idle: Mutex::new(Vec::new()), sync }
    }

    /// Runs `body` inside `BEGIN IMMEDIATE` … `COMMIT` on a synchronous connection, on a
    /// blocking thread, holding the write lock meanwhile. An error from `body` (or the commit)
    /// rolls the transaction back and discards the connection. Dropping the returned future
    /// does not stop a transaction already handed to its thread: it completes, or rolls back.
    pub(crate) async fn transaction<T, F>(&self, body: F) -> Result<T, sqlx::Error>
    where
        F: FnOnce(&Connection) -> Result<T, sqlx::Error> + Send + 'static,
        T: Send + 'static,
    {
        let lock = self.lock.acquire().await?;
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let path = self.path.clone();
        let sync = self.sync;
        let joined = tokio::task::spawn_blocking(move || {
            let conn = match idle {
                Some(c) => c,
                None => {
                    let conn = open(&path, false)?;
                    if sync == crate::SqliteSync::Normal {
                        conn.execute_batch("PRAGMA synchronous = NORMAL").map_err(to_sqlx)?;
                    }
                    conn
                }
            };
            let out = conn.execute_batch("BEGIN IMMEDIATE").map_err(to_sqlx).and_then(|()| {
                let out = body(&conn)?;
                conn.execute_batch("COMMIT").map_err(to_sqlx)?;
                Ok(out)
            });
            match out {
                Ok(out) => Ok((conn, out)),
                Err(e) => {
                    // The connection goes with the failure; the next transaction opens a new one.
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })
        .await;
        drop(lock);
        let (conn, out) = joined.map_err(|e| sqlx::Error::Protocol(format!("SQLite write task failed: {e}")))??;
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        Ok(out)
    }
}

/// A thread running checkpoints (see [`checkpoint`]) on its own connection every interval,
/// until stopped (or dropped).
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Checkpointer {
    /// Must be called on a tokio runtime (the thread uses it to take the write lock).
    pub(crate) fn start(path: &Path, every: Duration, write_lock: sqlx::SqlitePool) -> Result<Checkpointer, sqlx::Error> {
        let conn = open(path, false)?;
        let runtime = tokio::runtime::Handle::current();
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("idplex-checkpoint".into())
            .spawn(move || {
                // Lets the thread take (and give back) a pooled connection.
                let _runtime = runtime.enter();
                let write_lock = WriteLock { runtime: &runtime, pool: &write_lock };
                let (lock, wake) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                loop {
                    stopped = wake.wait_timeout(stopped, every).unwrap_or_else(PoisonError::into_inner).0;
                    if *stopped {
                        break;
                    }
                    drop(stopped);
                    checkpoint(&conn, Some(&write_lock));
                    stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                }
                drop(stopped);
                // Leave as little WAL as possible behind for the next start. Passive only: the
                // runtime may be blocked on this thread's exit, and cannot hand out the lock.
                checkpoint(&conn, None);
            })
            .map_err(sqlx::Error::Io)?;
        Ok(Checkpointer { stop, thread: Mutex::new(Some(thread)) })
    }

    /// Stops the thread after its current checkpoint and a last one; idempotent.
    pub(crate) fn stop(&self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(t) = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The store's write lock (the write pool's only connection), taken from the checkpointer's
/// thread.
struct WriteLock<'a> {
    runtime: &'a tokio::runtime::Handle,
    pool: &'a sqlx::SqlitePool,
}

/// How long the checkpointer waits for the write lock before restarting the WAL without it.
const WRITE_LOCK_WAIT: Duration = Duration::from_secs(2);

/// A passive checkpoint, then a restarting one if the WAL has grown past
/// [`WAL_RESTART_PAGES`] (see there). The restart runs holding the store's write lock, so the
/// store's writers queue for the pool (and start the moment it is done) instead of sleeping in
/// SQLite's busy handler, whose back-off adds tens of milliseconds.
fn checkpoint(conn: &Connection, write_lock: Option<&WriteLock<'_>>) {
    let run = |mode: &str| {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
    };
    let mut result = run("PASSIVE");
    if let Some(write_lock) = write_lock.filter(|_| matches!(result, Ok((_, wal, _)) if wal > WAL_RESTART_PAGES)) {
        let held = write_lock
            .runtime
            .block_on(tokio::time::timeout(WRITE_LOCK_WAIT, write_lock.pool.acquire()));
        result = run("RESTART");
        drop(held);
    }
    match result {
        // `busy` = 1: a RESTART could not finish (a reader or another process held on).
        Ok((busy, wal, copied)) if wal > WAL_WARN_PAGES && (busy != 0 || copied < wal) => tracing::warn!(
            wal_pages = wal,
            checkpointed = copied,
            "SQLite WAL is large and the checkpoint could not catch up (long-running readers?)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "SQLite WAL checkpoint failed; will retry"),
    }
}

/// A failure of a rusqlite statement, as a database error sqlx's callers understand.
#[derive(Debug)]
pub(crate) struct SqliteFailure {
    message: String,
    code: Option<i32>,
    /// Which [`ErrorKind`] (not `Clone`) this is.
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Unique,
    ForeignKey,
    NotNull,
    Check,
    Other,
}

impl std::fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SqliteFailure {}

impl sqlx::error::DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        self.code.map(|c| Cow::Owned(c.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.kind {
            Kind::Unique => ErrorKind::UniqueViolation,
            Kind::ForeignKey => ErrorKind::ForeignKeyViolation,
            Kind::NotNull => ErrorKind::NotNullViolation,
            Kind::Check => ErrorKind::CheckViolation,
            Kind::Other => ErrorKind::Other,
        }
    }
}

/// Whether `e` is a constraint failure, which SQLite undoes for its own statement only (the
/// transaction goes on).
pub(crate) fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// `e` as the `sqlx::Error` sqlx would have returned for the same failure.
pub(crate) fn to_sqlx(e: rusqlite::Error) -> sqlx::Error {
    let (code, kind) = match &e {
        rusqlite::Error::SqliteFailure(f, _) => {
            let kind = match f.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => Kind::Unique,
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Kind::ForeignKey,
                ffi::SQLITE_CONSTRAINT_NOTNULL => Kind::NotNull,
                ffi::SQLITE_CONSTRAINT_CHECK => Kind::Check,
                _ => Kind::Other,
            };
            (Some(f.extended_code), kind)
        }
        _ => (None, Kind::Other),
    };
    sqlx::Error::Database(Box::new(SqliteFailure { message: e.to_string(), code, kind }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraint_failures_keep_their_kind() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("t.db"), false).unwrap();
        conn.execute_batch(
            "CREATE TABLE p (id TEXT PRIMARY KEY); \
             CREATE TABLE c (id TEXT PRIMARY KEY, p TEXT NOT NULL REFERENCES p(id)); \
             INSERT INTO p VALUES ('a');",
        )
        .unwrap();
        let dup = conn.execute("INSERT INTO p VALUES ('a')", []).unwrap_err();
        assert!(is_constraint(&dup));
        assert!(matches!(to_sqlx(dup), sqlx::Error::Database(db) if db.is_unique_violation()));
        let orphan = conn.execute("INSERT INTO c VALUES ('x', 'nope')", []).unwrap_err();
        assert!(matches!(to_sqlx(orphan), sqlx::Error::Database(db) if db.is_foreign_key_violation()));
        let syntax = conn.execute("INSERT INTO nowhere VALUES (1)", []).unwrap_err();
        assert!(!is_constraint(&syntax));
        assert!(matches!(to_sqlx(syntax), sqlx::Error::Database(db) if matches!(db.kind(), ErrorKind::Other)));
    }

    #[test]
    fn numbered_placeholders_bind_by_their_number() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("t.db"), false).unwrap();
        // `$2` appears first, so SQLite makes it parameter 1.
        let got: (i64, String) = conn
            .query_row("SELECT $2, $1", numbered(&[&"one", &2i64]).as_slice(), |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!(got, (2, "one".to_string()));
    }

    #[tokio::test]
    async fn readers_refuse_writes_and_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        open(&path, false).unwrap().execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)").unwrap();
        let write_lock = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&path))
            .await
            .unwrap();
        let readers = Readers::open(&path, 2, write_lock).unwrap();
        let n: i64 = readers.run(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))).unwrap();
        assert_eq!(n, 0);
        let write = readers.run(|c| c.execute("INSERT INTO t VALUES (1)", []));
        assert!(write.is_err(), "a reader is query_only");
        readers.close();
        assert!(matches!(readers.run(|c| c.execute_batch("SELECT 1")), Err(sqlx::Error::PoolClosed)));
    }
}
