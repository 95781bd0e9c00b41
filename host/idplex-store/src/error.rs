//! The store's error type, named in the caller's terms.

/// Everything that can go wrong in the store.
///
/// `what` names the kind of object ("connection", "connector", "module", "admin token", ...)
/// and `key` the object itself, so messages read e.g.
/// `connection "conn_1f2e" not found` or
/// `connector okta@1.2.0 is already installed with a different sha256 (...)`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("{what} {key} not found")]
    NotFound { what: &'static str, key: String },

    /// The object exists in a state that is incompatible with the request.
    /// `reason` completes the sentence started by `{what} {key}`.
    #[error("{what} {key} {reason}")]
    Conflict {
        what: &'static str,
        key: String,
        reason: String,
    },

    /// A conditional write (`If-Match`, HTTP 412) named a version of the object that is no longer
    /// its current one: someone else changed it in between.
    #[error("{what} {key} is at version {actual}, not the expected {expected}")]
    PreconditionFailed {
        what: &'static str,
        key: String,
        expected: i64,
        actual: i64,
    },

    /// `rollback` was asked for a connection that has no previous version.
    #[error("connection {connection_id} has no previous version to roll back to")]
    NothingToRollBack { connection_id: String },

    /// A binding change kept losing against concurrent changes of the same connection.
    #[error(
        "connection {connection_id} is being changed concurrently; gave up after {attempts} attempts"
    )]
    Contended {
        connection_id: String,
        attempts: u32,
    },

    /// The caller passed a value the store refuses to persist.
    #[error("invalid {what}: {reason}")]
    InvalidInput { what: &'static str, reason: String },

    /// A stored value could not be read back (e.g. a JSON column that no longer parses).
    #[error("stored {what} {key} is corrupt: {reason}")]
    Corrupt {
        what: &'static str,
        key: String,
        reason: String,
    },

    /// `Store::open` got a URL it cannot use. The URL itself is not repeated (it may hold a password).
    #[error("invalid database URL: {reason}")]
    InvalidUrl { reason: String },

    /// The database was opened with [`crate::OpenOptions::must_exist`] and there is none at
    /// `location` (no SQLite file, or a PostgreSQL database idplex never set up). Nothing was
    /// created.
    #[error("no idplex database at {location}")]
    NoDatabase { location: String },

    /// Applying the embedded schema migrations failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),

    /// Any other database failure (connectivity, I/O, constraint we did not anticipate, ...).
    ///
    /// Never a failure caused by the data of the request: `From<sqlx::Error>` turns those
    /// (see [`is_invalid_data`]) into [`StoreError::InvalidInput`], so that a value the
    /// database cannot store is answered as the client's error (HTTP 400), not as an outage
    /// to retry.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),

    /// A write batched with others into one transaction (SQLite group commit) was not committed
    /// because that transaction failed; nothing of the batch was written.
    #[error("database error (batched write not committed): {0}")]
    BatchFailed(std::sync::Arc<sqlx::Error>),
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. } | StoreError::NoDatabase { .. })
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    /// The caller passed a value the store (or the database) refuses: a client error, never
    /// worth retrying as is.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, StoreError::InvalidInput { .. })
    }

    pub fn is_precondition_failed(&self) -> bool {
        matches!(self, StoreError::PreconditionFailed { .. })
    }

    /// A directory pull sync operation was refused because the caller does not hold the
    /// connection's sync lease (any more: it expired, or another replica took it over), or the
    /// page's pass is not the pass in progress. Nothing was written; the run must stop.
    /// (A [`StoreError::Conflict`], so classified as a conflict wherever conflicts are.)
    pub fn is_sync_lease_lost(&self) -> bool {
        matches!(self, StoreError::Conflict { what, .. }
            if *what == crate::directory_sync::SYNC_LEASE || *what == crate::directory_sync::SYNC_PASS)
    }

    pub(crate) fn not_found(what: &'static str, key: impl Into<String>) -> Self {
        StoreError::NotFound {
            what,
            key: key.into(),
        }
    }

    pub(crate) fn conflict(
        what: &'static str,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        StoreError::Conflict {
            what,
            key: key.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(
        what: &'static str,
        key: impl Into<String>,
        reason: impl ToString,
    ) -> Self {
        StoreError::Corrupt {
            what,
            key: key.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    /// A database error, classified: a failure caused by the value written or looked up (see
    /// [`is_invalid_data`]) is [`StoreError::InvalidInput`]; anything else is
    /// [`StoreError::Database`].
    fn from(err: sqlx::Error) -> Self {
        match invalid_data_reason(&err) {
            Some(reason) => StoreError::InvalidInput {
                what: "value",
                reason,
            },
            None => StoreError::Database(err),
        }
    }
}

/// PostgreSQL SQLSTATE `54000` (`program_limit_exceeded`): e.g. an index row larger than the
/// b-tree maximum (about 2.7 KB), which only a too-large value causes.
const PG_PROGRAM_LIMIT_EXCEEDED: &str = "54000";

/// SQLite's `SQLITE_TOOBIG`: a string or blob over the library's length limit.
const SQLITE_TOOBIG: &str = "18";

/// True if the database refused `err`'s statement because of a value it was given: a
/// PostgreSQL data exception (SQLSTATE class `22`: a NUL character `22021`, an untranslatable
/// character `22P05`, a string too long `22001`, ...), a program limit (`54000`: a value too
/// large for a b-tree index row), or SQLite's `SQLITE_TOOBIG`. Such a failure is deterministic:
/// retrying the same request fails the same way.
pub fn is_invalid_data(err: &sqlx::Error) -> bool {
    invalid_data_reason(err).is_some()
}

fn invalid_data_reason(err: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db) = err else {
        return None;
    };
    let code = db.code()?;
    let why = if db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        match code.as_ref() {
            "22021" | "22P05" => "contains a character the database cannot store (such as NUL)",
            "22001" => "is too long for the database",
            PG_PROGRAM_LIMIT_EXCEEDED => "is too large for the database (index row size limit)",
            c if c.starts_with("22") => "is not a value the database accepts",
            _ => return None,
        }
    } else if code.as_ref() == SQLITE_TOOBIG {
        "is too large for the database"
    } else {
        return None;
    };
    Some(format!("{why} (database code {code})"))
}

/// True if `err` is a unique-constraint violation (either backend).
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// True if `err` is a foreign-key violation (either backend).
pub(crate) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}
