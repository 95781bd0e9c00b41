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

    /// Applying the embedded schema migrations failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),

    /// Any other database failure (connectivity, I/O, constraint we did not anticipate, ...).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),

    /// A write batched with others into one transaction (SQLite group commit) was not committed
    /// because that transaction failed; nothing of the batch was written.
    #[error("database error (batched write not committed): {0}")]
    BatchFailed(std::sync::Arc<sqlx::Error>),
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    pub fn is_precondition_failed(&self) -> bool {
        matches!(self, StoreError::PreconditionFailed { .. })
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

/// True if `err` is a unique-constraint violation (either backend).
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// True if `err` is a foreign-key violation (either backend).
pub(crate) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}
