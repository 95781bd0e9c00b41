//! Group commit of SQLite user writes: concurrent `create_user` / `replace_user` calls (and the
//! writes that finish a SAML sign-in, `sign_in.rs`) are executed by one task, several per
//! transaction on the single write connection.
//!
//! Why: SQLite admits one writer, so under concurrent SCIM load every write queues for the write
//! connection anyway. Committed one by one, each write pays a pool hand-over, `BEGIN`/`COMMIT`,
//! and its own WAL frames for every page it touches (the table and four indexes); the WAL then
//! fills fast and the writer stalls in checkpoints (which `fsync`). Committed together, the
//! writes that queued while the previous batch ran share one transaction: one hand-over, one
//! commit, and pages touched by several rows are written to the WAL once.
//!
//! How: callers send a [`UserWrite`] with a oneshot reply channel; the task takes whatever has
//! queued (up to [`MAX_BATCH`]), runs `BEGIN IMMEDIATE`, each statement, `COMMIT`, and only then
//! answers every caller: a write is never acknowledged before its transaction is committed, and
//! with `synchronous=FULL` `COMMIT` returns only once the WAL is synced to disk, so an
//! acknowledged write survives a power loss, not only the process being killed. The batch pays
//! one `fsync` for all its writes. Nothing waits for a batch to fill: an idle committer runs a
//! lone write at once.
//!
//! Isolation between the writes of a batch: every job is a single statement (a deactivation adds
//! the one that ends the user's sessions, which has no constraint to fail), and SQLite rolls a
//! statement that fails on a constraint (a taken `userName`, ...) back by itself and keeps the
//! transaction (the default `ABORT` conflict resolution), so such a failure answers only its own
//! caller, with the same error as an unbatched write. This gives what a `SAVEPOINT` per job would,
//! without two more statements per job. Any other error (I/O, disk full, ...) may have ended the
//! transaction: the whole batch is rolled back and every caller in it gets the error; none of
//! them was acknowledged.
//!
//! Where: on a SQLite file a batch runs synchronously on a rusqlite connection of the
//! committer's own (`readers.rs`), on a blocking thread, so its statements are plain function
//! calls instead of one round trip each to sqlx's connection thread. While it runs, the
//! committer holds the write pool's only connection: that is the write lock, so sqlx's writers
//! and the batch never contend for SQLite's lock (which would put one of them to sleep in the
//! busy handler). (`sqlite::memory:` is a temporary file: the same path.)
//!
//! Other writes (tokens, groups, bindings) keep taking the write connection from its pool
//! directly; the committer holds it only while a batch runs, so they interleave with batches.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::directory::{UserWrite, UserWritten, execute_user_write_sqlite};
use crate::sign_in::{SignInWrite, SignInWritten, execute_sign_in_sqlite};
use crate::{StoreError, readers};

/// One job of a batch: a user write, or the writes that finish a sign-in (`sign_in.rs`, one
/// unit inside a savepoint).
#[derive(Debug)]
pub(crate) enum Write {
    User(UserWrite),
    SignIn(Box<SignInWrite>),
}

/// What a [`Write`] returned.
#[derive(Debug)]
pub(crate) enum Written {
    User(UserWritten),
    SignIn(SignInWritten),
}

/// Most writes one transaction carries. Bounds the latency a batch adds to its last write.
pub(crate) const MAX_BATCH: usize = 128;

/// Writes waiting for the committer beyond which callers wait to enqueue.
const QUEUE: usize = 4096;

/// Why a write submitted to the committer failed.
#[derive(Debug)]
pub(crate) enum WriteFailure {
    /// The write's own statement failed (e.g. a unique violation); the rest of its batch is
    /// unaffected.
    Statement(sqlx::Error),
    /// The batch's transaction failed: nothing of it was committed.
    Batch(Arc<sqlx::Error>),
    /// The committer is gone (the store is shutting down).
    Closed,
}

impl From<WriteFailure> for StoreError {
    fn from(f: WriteFailure) -> Self {
        match f {
            WriteFailure::Statement(e) => e.into(),
            WriteFailure::Batch(e) => StoreError::BatchFailed(e),
            WriteFailure::Closed => StoreError::Database(sqlx::Error::PoolClosed),
        }
    }
}

struct Job {
    write: Write,
    reply: oneshot::Sender<Result<Written, WriteFailure>>,
}

/// Handle on the committer task of one SQLite write pool. Cheap to clone; the task ends when the
/// last handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.write.fmt(f)
    }
}

impl GroupCommit {
    /// Starts the committer on the current tokio runtime, writing through the file's
    /// synchronous [`readers::Writer`] (see the module docs).
    pub(crate) fn start(writer: Arc<readers::Writer>) -> GroupCommit {
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(run(writer, jobs));
        GroupCommit { queue }
    }

    /// Runs `write` in the next batch; returns once that batch is committed (or failed).
    async fn submit(&self, write: Write) -> Result<Written, WriteFailure> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { write, reply })
            .await
            .map_err(|_| WriteFailure::Closed)?;
        answer.await.map_err(|_| WriteFailure::Closed)?
    }

    /// A user write in the next batch.
    pub(crate) async fn submit_user(&self, write: UserWrite) -> Result<UserWritten, WriteFailure> {
        match self.submit(Write::User(write)).await? {
            Written::User(w) => Ok(w),
            Written::SignIn(_) => unreachable!("the committer answers each job with its own kind"),
        }
    }

    /// A sign-in's writes in the next batch.
    pub(crate) async fn submit_sign_in(&self, write: SignInWrite) -> Result<SignInWritten, WriteFailure> {
        match self.submit(Write::SignIn(Box::new(write))).await? {
            Written::SignIn(w) => Ok(w),
            Written::User(_) => unreachable!("the committer answers each job with its own kind"),
        }
    }
}

type Outcome = Result<Vec<Result<Written, sqlx::Error>>, sqlx::Error>;

async fn run(writer: Arc<readers::Writer>, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (writes, replies): (Vec<Write>, Vec<_>) = batch.drain(..).map(|j| (j.write, j.reply)).unzip();
        let n = writes.len();
        let outcome = writer.transaction(move |conn| commit_sync(conn, &writes)).await;
        if n > 1 {
            tracing::trace!(writes = n, "group commit");
        }
        match outcome {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    // The caller may have gone away (client disconnected): the write stands.
                    let _ = reply.send(result.map_err(WriteFailure::Statement));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = n, "group commit failed; batch rolled back");
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(WriteFailure::Batch(e.clone())));
                }
            }
        }
    }
}

/// Each write on `conn`, inside the transaction [`readers::Writer::transaction`] opened: the
/// per-write results, or the error that must roll the whole batch back.
fn commit_sync(conn: &rusqlite::Connection, writes: &[Write]) -> Outcome {
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        let done = match write {
            Write::User(w) => execute_user_write_sqlite(conn, w).map(Written::User),
            // Its own savepoint: a refusal or a failed statement undoes the whole unit.
            Write::SignIn(w) => execute_sign_in_sqlite(conn, w).map(Written::SignIn),
        };
        match done {
            Ok(written) => results.push(Ok(written)),
            // A constraint failure undid its own statement only (see the module docs).
            Err(e) if readers::is_constraint(&e) => results.push(Err(readers::to_sqlx(e))),
            Err(e) => return Err(readers::to_sqlx(e)),
        }
    }
    Ok(results)
}
