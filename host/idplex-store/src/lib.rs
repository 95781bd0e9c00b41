//! Persistence for idplex: installed connector modules, connections (directories) and their
//! bindings to connector versions, admin tokens, SCIM tokens (per connection), the SCIM directory
//! (users and groups provisioned by IdPs, [`Store::create_user`] and friends, with each
//! directory's delete policy, [`Store::scim_delete_user`]), users' API tokens and sessions
//! ([`Store::verify_user_api_token`], [`Store::verify_user_session`]), each directory's SCIM
//! sync log ([`Store::record_sync`]), directory pull sync (pages of users and groups pulled from
//! an IdP's directory API, [`Store::apply_pull_page`]), SAML sign-in state
//! ([`Store::saml_settings`], the outstanding AuthnRequests and the replay cache, shared by
//! replicas) and connector events.
//!
//! The store knows nothing of Wasm or HTTP. It runs on SQLite (single node, a file) or
//! PostgreSQL (several replicas sharing one database, module bytes included).
//!
//! # Why an enum of typed pools rather than `AnyPool`
//!
//! [`Store`] holds either SQLite pools or a PostgreSQL pool ([`Pools`]), and every operation is
//! written once, as one SQL string with `$N` placeholders (both sqlx drivers accept them) and one
//! body of Rust, expanded for each backend by the `with_pool!` / `with_tx!` macros below. That
//! keeps the SQL single-sourced wherever the dialects agree (they agree everywhere except the
//! migrations) while keeping what `AnyPool` would lose:
//!
//! * per-backend connection setup: SQLite pragmas (WAL, `synchronous=FULL` on the write path,
//!   foreign keys,
//!   busy timeout) and a separate single-connection write pool beside a multi-connection read
//!   pool, because SQLite admits one writer at a time; `BEGIN IMMEDIATE` for SQLite write
//!   transactions so a transaction never has to upgrade its lock half-way;
//! * native type mapping (`BLOB`/`BYTEA`, `i64`) without the Any driver's reduced type set;
//! * static dispatch and typed errors from the real driver (unique violations and so on).
//!
//! # Timestamps and ids
//!
//! Timestamps are `i64` unix milliseconds taken from the host clock; ids are `TEXT`
//! (`conn_<hex>`, `tok_<hex>`, `stok_<hex>`, `uat_<hex>`, `ses_<hex>`; directory users and groups:
//! 32 bare hex digits; sync log entries: integers), module ids are their sha256 in lowercase hex.

mod error;
mod model;

pub use error::{StoreError, is_invalid_data};
pub use model::*;

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// Knobs for [`Store::open_with`]. `Default` is what [`Store::open`] uses.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// PostgreSQL only: create this schema if missing and put it first on every connection's
    /// `search_path`, so all tables (and sqlx's migration bookkeeping) live in it. Must be a
    /// plain lowercase identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes). Used to isolate tests or tenants.
    /// (A `?options=-c%20search_path%3D...` parameter in the URL is honoured too.)
    pub postgres_schema: Option<String>,
    /// Maximum connections of the PostgreSQL pool, or of the SQLite read pool.
    /// Defaults to 2 × available parallelism, clamped to 4..=16.
    pub max_connections: Option<u32>,
    /// SQLite only: how durable an acknowledged write is ([`SqliteSync`]; default
    /// [`SqliteSync::Full`]).
    pub sqlite_synchronous: SqliteSync,
    /// Open only a database idplex already set up: a SQLite file that does not exist, or a
    /// PostgreSQL database (schema) without idplex's migrations, is [`StoreError::NoDatabase`]
    /// and nothing is created. The admin CLI opens this way, so that run from the wrong
    /// directory it says so instead of creating a new, empty database and reporting success
    /// into it. Existing databases are still migrated forward.
    pub must_exist: bool,
}

/// SQLite's `synchronous` setting on the write path (WAL mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqliteSync {
    /// `FULL`: `COMMIT` returns once the WAL is synced to disk: an acknowledged write survives
    /// a power loss or kernel crash. One `fsync` per transaction (the group committer shares it
    /// among the writes of a batch).
    #[default]
    Full,
    /// `NORMAL`: the WAL is written but synced only at checkpoints: an acknowledged write
    /// survives the process being killed, not a power loss. For benchmarks and disposable data.
    Normal,
}

impl std::str::FromStr for SqliteSync {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(SqliteSync::Full),
            "normal" => Ok(SqliteSync::Normal),
            other => Err(format!("SQLite synchronous must be full or normal, not {other:?}")),
        }
    }
}

/// The connection pools of a [`Store`], one variant per backend.
#[derive(Debug, Clone)]
enum Pools {
    /// `write` has exactly one connection (SQLite admits one writer); `read` has several.
    /// `sqlite::memory:` is a private temporary file, so it runs exactly this code too.
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
        /// Batches user writes into shared transactions on `write` (`group_commit.rs`).
        committer: group_commit::GroupCommit,
        /// Dedicated read connections for the per-request lookups (`readers.rs`).
        readers: std::sync::Arc<readers::Readers>,
        /// Synchronous write transactions under the write pool's lock (`readers.rs`): the
        /// committer's batches and the sync log's.
        writer: std::sync::Arc<readers::Writer>,
        /// The private directory of a `sqlite::memory:` database, removed with the last handle
        /// (held, not read).
        #[allow(dead_code)]
        scratch: Option<std::sync::Arc<tempfile::TempDir>>,
    },
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the backend's pool: `read` or `write` (same pool on PostgreSQL).
/// `$body` is compiled once per backend, so it must be written against sqlx's generic API.
macro_rules! with_pool {
    ($store:expr, read, |$p:ident| $body:expr) => {
        match &$store.pools {
            $crate::Pools::Sqlite { read: $p, .. } => $body,
            $crate::Pools::Postgres($p) => $body,
        }
    };
    ($store:expr, write, |$p:ident| $body:expr) => {
        match &$store.pools {
            $crate::Pools::Sqlite { write: $p, .. } => $body,
            $crate::Pools::Postgres($p) => $body,
        }
    };
}

/// Runs one lookup every request makes: on a SQLite file, `$sync` (an expression of type
/// `rusqlite::Result<T>`) with `$r` bound to a dedicated synchronous reader (`readers.rs`: no
/// thread hand-over); otherwise `$body` (of type `Result<T, sqlx::Error>`, awaited inside) with
/// `$c` bound to the read pool. Gives `Result<T, sqlx::Error>`. Anything else reads through
/// `with_pool!(…, read, …)`.
macro_rules! with_reader {
    ($store:expr, sqlite: |$r:ident| $sync:expr, pool: |$c:ident| $body:expr) => {
        match &$store.pools {
            $crate::Pools::Sqlite { readers, .. } => readers.run(|$r| $sync),
            $crate::Pools::Postgres($c) => $body,
        }
    };
}

/// Runs `$body` (an expression of type `T`, which may use `?`) inside a write transaction
/// bound to `$tx`, then commits. An early return through `?` drops, hence rolls back, the
/// transaction.
macro_rules! with_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.pools {
            $crate::Pools::Sqlite { write, .. } => {
                #[allow(unused_mut)]
                let mut $tx = write.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            $crate::Pools::Postgres(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

mod connections;
pub use connections::{ConnectionChange, ConnectionChanges};
mod directory;
mod directory_sync;
mod events;
mod group_commit;
mod modules;
mod readers;
mod oidc;
mod saml;
mod scim_tokens;
mod sign_in;
mod sync_log;
mod tokens;
mod trust;
mod user_tokens;

pub use directory::{
    DirectoryGroup, DirectoryGroupRef, DirectoryUser, MAX_DIRECTORY_LIST_LIMIT,
    MAX_DIRECTORY_TEXT_BYTES, NewDirectoryGroup, NewDirectoryUser, UserLookup,
};
pub use directory_sync::{
    DIRECTORY_SYNC_DEFAULT_INTERVAL_SECS, DIRECTORY_SYNC_LOG_DEFAULT_RETENTION_MS, DirectorySyncState,
    MAX_DIRECTORY_SYNC_INTERVAL_SECS, MAX_PAGE_PROBLEMS, MAX_SYNC_CURSOR_BYTES,
    MAX_SYNC_LEASE_OWNER_BYTES, MAX_SYNC_MESSAGE_BYTES, MAX_SYNC_RUNS_LIMIT,
    MIN_DIRECTORY_SYNC_INTERVAL_SECS, PageApplied, PassInProgress, PassKind, PulledGroup, PulledMember,
    PulledMembers, PulledPage, PulledUser, SyncLogLine, SyncRun, SyncRunTotals,
};
pub use events::{
    EVENT_COALESCE_WINDOW_MS, EVENT_DEFAULT_MAX_PER_CONNECTION, EVENT_DEFAULT_RETENTION_MS,
    EventRetention, MAX_EVENT_LIST_LIMIT, MAX_EVENT_MESSAGE_BYTES,
};
pub use modules::sha256_hex;
pub use oidc::{
    CodeRedemption, MAX_REDIRECT_URIS, OIDC_ACCESS_TOKEN_PREFIX, OIDC_CLIENT_SECRET_PREFIX, OIDC_CODE_PREFIX, OidcAccessToken,
    OidcClient, OidcCode, OidcSigningKey, OrgSessionPolicy,
};
pub use sign_in::{FinishSignIn, SignInFinished};
pub use saml::{SamlRequest, SamlSessionLink, SamlSettings, SamlSpKey};
pub use scim_tokens::{SCIM_TOKEN_DEFAULT_LIFETIME_MS, SCIM_TOKEN_PREFIX};
pub use sync_log::{
    MAX_SYNC_DETAIL_BYTES, MAX_SYNC_LOG_LIMIT, MAX_SYNC_USER_AGENT_BYTES, OutcomeFilter,
    SYNC_LOG_DEFAULT_LIMIT, SYNC_LOG_DEFAULT_RETENTION_MS, ScimResourceType, SyncLogCursor,
    SyncLogEntry, SyncLogPage, SyncLogQuery, SyncLogRecord, SyncOperation, SyncOutcome,
};
pub use tokens::ADMIN_TOKEN_PREFIX;
pub use trust::{Admission, MAX_PUBLISHER_BYTES, ModulePublisher, NewTrustedKey, TrustPolicy, TrustRule, TrustedKey};
pub use user_tokens::{
    ListedUserApiToken, MAX_USER_TOKEN_LABEL_BYTES, SessionEndReason, USER_API_TOKEN_DEFAULT_TTL_MS,
    MAX_USER_TOKEN_LIMIT, USER_API_TOKEN_PREFIX, USER_SESSION_DEFAULT_TTL_MS, USER_SESSION_PREFIX,
    USER_TOKEN_DEFAULT_LIMIT, UserApiToken, UserApiTokenPage, UserSession, UserTokenCursor,
    UserTokenFilter,
};

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Handle on the idplex database. Cheap to clone (pools are reference-counted).
#[derive(Debug, Clone)]
pub struct Store {
    pools: Pools,
    /// Repeats of a connector event within this many milliseconds of its first occurrence are
    /// coalesced into its row ([`Store::record_event`]); 0 turns coalescing off.
    event_window_ms: i64,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and applies pending migrations.
    ///
    /// * `sqlite://PATH`, `sqlite:PATH`, or a plain file path: SQLite, file created if missing;
    /// * `sqlite::memory:`: a private, temporary database: a SQLite file in a new temporary
    ///   directory, removed when the last handle is dropped (the same code as a file, and
    ///   memory-fast on a tmpfs `TMPDIR`);
    /// * `postgres://...` / `postgresql://...`: PostgreSQL.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, &OpenOptions::default()).await
    }

    /// [`Store::open`] with explicit [`OpenOptions`].
    pub async fn open_with(url: &str, options: &OpenOptions) -> Result<Store, StoreError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(StoreError::InvalidUrl {
                reason: "empty database URL".into(),
            });
        }
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Store::open_postgres(url, options).await?
        } else if url.starts_with("sqlite:") {
            let connect =
                SqliteConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl {
                    reason: format!("cannot parse SQLite URL: {e}"),
                })?;
            if url.contains(":memory:") || url.contains("mode=memory") {
                let scratch = tempfile::Builder::new().prefix("idplex-memory.").tempdir().map_err(|e| {
                    StoreError::InvalidUrl { reason: format!("cannot create a temporary database directory: {e}") }
                })?;
                let file = scratch.path().join("idplex.db");
                Store::open_sqlite(SqliteConnectOptions::new().filename(file), Some(scratch), options).await?
            } else {
                Store::open_sqlite(connect, None, options).await?
            }
        } else if let Some((scheme, _)) = url.split_once("://") {
            return Err(StoreError::InvalidUrl {
                reason: format!(
                    "unsupported scheme {scheme:?}: expected sqlite://, postgres:// or a file path"
                ),
            });
        } else {
            Store::open_sqlite(SqliteConnectOptions::new().filename(url), None, options).await?
        };
        tracing::info!(backend = %store.backend(), "store opened");
        Ok(store)
    }

    async fn open_sqlite(
        connect: SqliteConnectOptions,
        scratch: Option<tempfile::TempDir>,
        options: &OpenOptions,
    ) -> Result<Store, StoreError> {
        if options.postgres_schema.is_some() {
            return Err(StoreError::InvalidUrl {
                reason: "a PostgreSQL schema was requested for a SQLite database".into(),
            });
        }
        if options.must_exist && scratch.is_none() {
            let file = connect.get_filename();
            if !file.is_file() {
                let location = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
                return Err(StoreError::NoDatabase { location: location.display().to_string() });
            }
        }
        let connect = connect
            .create_if_missing(!options.must_exist)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT);
        // Held until the schema is migrated (dropped at the end of this function).
        let _setup = setup_lock(connect.get_filename()).await?;

        // Durable against power loss: every commit on the write path syncs the WAL
        // (`synchronous=FULL`); the group committer amortizes that one fsync over a batch.
        // Checkpoints run on their own thread (`readers.rs`), never inside a commit.
        let connect = connect
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.sqlite_synchronous {
                SqliteSync::Full => SqliteSynchronous::Full,
                SqliteSync::Normal => SqliteSynchronous::Normal,
            })
            .pragma("wal_autocheckpoint", "0");
        // One writer: writes queue in the pool instead of spinning on SQLITE_BUSY.
        // No `test_before_acquire` on either pool: a connection to a local file does not go
        // stale, and the test is a round trip to the connection's worker thread on every
        // acquire, as costly as the query itself (sqlx still checks a connection when it is
        // returned, and discards a broken one).
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(connect.clone())
            .await?;
        // Readers never block the writer under WAL; `query_only` guards against a write
        // slipping onto a read connection.
        let readers = options.max_connections.unwrap_or_else(default_pool_size);
        let read_only = connect.pragma("query_only", "ON");
        let read = SqlitePoolOptions::new()
            .max_connections(readers)
            .test_before_acquire(false)
            .connect_with(read_only.clone())
            .await?;
        // Created after the pools, so the database file exists (and is in WAL mode) by then.
        let readers = readers::Readers::open(read_only.get_filename(), readers as usize, write.clone())?;
        let writer = std::sync::Arc::new(readers::Writer::new(read_only.get_filename(), write.clone(), options.sqlite_synchronous));
        let pools = Pools::Sqlite {
            read,
            committer: group_commit::GroupCommit::start(writer.clone()),
            writer,
            write,
            readers: std::sync::Arc::new(readers),
            scratch: scratch.map(std::sync::Arc::new),
        };
        if let Pools::Sqlite { write, .. } = &pools {
            SQLITE_MIGRATOR.run(write).await?;
        }
        let store = Store { pools, event_window_ms: EVENT_COALESCE_WINDOW_MS };
        store.backfill_display_name_keys().await?;
        Ok(store)
    }

    async fn open_postgres(url: &str, options: &OpenOptions) -> Result<Store, StoreError> {
        let mut connect = PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl {
            reason: format!("cannot parse PostgreSQL URL: {e}"),
        })?;
        if let Some(schema) = &options.postgres_schema {
            if !is_plain_identifier(schema) {
                return Err(StoreError::InvalidInput {
                    what: "PostgreSQL schema name",
                    reason: format!(
                        "{schema:?} is not a plain lowercase identifier ([a-z_][a-z0-9_]*, at most 63 bytes)"
                    ),
                });
            }
            if !options.must_exist {
                // Create it with a throw-away connection, before the pool's connections use it.
                let mut conn: sqlx::PgConnection = sqlx::Connection::connect_with(&connect).await?;
                sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                    .execute(&mut conn)
                    .await?;
                sqlx::Connection::close(conn).await?;
            }
            connect = connect.options([("search_path", schema.as_str())]);
        }
        let location = format!(
            "PostgreSQL database {:?} on {}:{}{}",
            connect.get_database().unwrap_or("(default)"),
            connect.get_host(),
            connect.get_port(),
            options.postgres_schema.as_ref().map(|s| format!(", schema {s:?}")).unwrap_or_default()
        );
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.unwrap_or_else(default_pool_size))
            // No ping (a network round trip) before every statement. A connection that died
            // while idle (server restart, failover) fails the one statement that uses it, is
            // discarded by sqlx's check when it is returned, and replaced.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect)
            .await?;
        if options.must_exist {
            // sqlx's bookkeeping table, resolved through the search_path like every idplex table.
            let set_up: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&pool)
                .await?;
            if !set_up {
                pool.close().await;
                return Err(StoreError::NoDatabase { location });
            }
        }
        POSTGRES_MIGRATOR.run(&pool).await?;
        let store = Store {
            pools: Pools::Postgres(pool),
            event_window_ms: EVENT_COALESCE_WINDOW_MS,
        };
        store.backfill_display_name_keys().await?;
        Ok(store)
    }

    /// This store with connector events coalesced over `window` instead of
    /// [`EVENT_COALESCE_WINDOW_MS`]: a repeat of an event (same connection, connector and kind)
    /// less than `window` after the first occurrence bumps that row's `repeats` instead of
    /// adding a row. `Duration::ZERO` records every event as its own row.
    pub fn with_event_coalescing(mut self, window: Duration) -> Store {
        self.event_window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// Round-trips a trivial query (readiness probes use this).
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, read, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Closes all connections, waiting for those in use to be returned.
    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite {
                read,
                write,
                readers,
                ..
            } => {
                readers.close();
                read.close().await;
                write.close().await;
            }
            Pools::Postgres(pool) => pool.close().await,
        }
    }
}

fn default_pool_size() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
    (cpus * 2).clamp(4, 16)
}

/// Lowercase only: `search_path` folds unquoted names to lowercase, `CREATE SCHEMA "..."` does not.
fn is_plain_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

/// Current time in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `prefix` followed by 16 random bytes in hex.
pub(crate) fn random_id(prefix: &str) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// `text` cut to at most `max_bytes` bytes at a character boundary, marked with `…` when cut.
/// Parses a keyset cursor written `TIME_REST` (unix ms, then the rest of the key, non-empty
/// and parsed as `T`); the error names `what` and the expected `format`, and says it is not a
/// cursor this server returned.
pub(crate) fn parse_cursor<T: std::str::FromStr>(s: &str, what: &'static str, format: &str) -> Result<(i64, T), StoreError> {
    let invalid = || StoreError::InvalidInput {
        what,
        reason: format!("{s:?} is not a cursor this server returned ({format})"),
    };
    let (time, rest) = s.split_once('_').filter(|(_, rest)| !rest.is_empty()).ok_or_else(invalid)?;
    Ok((time.parse().map_err(|_| invalid())?, rest.parse().map_err(|_| invalid())?))
}

pub(crate) fn truncate_utf8(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let mut end = max_bytes.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

pub(crate) fn to_json(
    value: &impl serde::Serialize,
    what: &'static str,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::InvalidInput {
        what,
        reason: e.to_string(),
    })
}

/// Serializes the first-open set-up of a SQLite database file (creating it, WAL mode, the
/// migrations) between processes opening it at once: a server and CLI commands started together
/// on a fresh data directory. SQLite's own locking does not cover it: the migrator reads the
/// applied versions, then applies the missing ones, so two processes could both apply the same
/// migration and the second fail half-way (`duplicate column name`). An exclusive advisory lock
/// on `<database>.setup-lock`, released when the returned file is dropped.
async fn setup_lock(db: &std::path::Path) -> Result<std::fs::File, StoreError> {
    let mut name = db.as_os_str().to_owned();
    name.push(".setup-lock");
    let path = std::path::PathBuf::from(name);
    let locked = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    locked.map_err(|e| StoreError::Database(sqlx::Error::Io(e)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_names_must_be_plain_lowercase_identifiers() {
        for ok in ["t_0a1b", "_x", "idplex"] {
            assert!(super::is_plain_identifier(ok), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "T_upper",
            "a-b",
            "a;drop schema public",
            "x\"y",
            &"a".repeat(64),
        ] {
            assert!(!super::is_plain_identifier(bad), "{bad}");
        }
    }

    /// The `synchronous` level of the connection that commits SCIM user writes (the group
    /// committer's) and of the sqlx write pool: 2 = FULL, 1 = NORMAL.
    async fn write_path_synchronous(store: &super::Store) -> (i64, i64) {
        let super::Pools::Sqlite { writer, write, .. } = &store.pools else { unreachable!() };
        let committer = writer
            .transaction(|c| c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0)).map_err(super::readers::to_sqlx))
            .await
            .unwrap();
        let pool: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(write).await.unwrap();
        (committer, pool)
    }

    #[tokio::test]
    async fn sqlite_writes_are_durable_against_power_loss_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let store = super::Store::open(&url).await.unwrap();
        assert_eq!(write_path_synchronous(&store).await, (2, 2), "synchronous=FULL on the write path");
        store.close().await;

        let url = format!("sqlite://{}", dir.path().join("b.db").display());
        let options = super::OpenOptions { sqlite_synchronous: super::SqliteSync::Normal, ..Default::default() };
        let store = super::Store::open_with(&url, &options).await.unwrap();
        assert_eq!(write_path_synchronous(&store).await, (1, 1), "synchronous=NORMAL when asked for");
        store.close().await;
    }

    #[tokio::test]
    async fn an_in_memory_database_is_a_private_file_removed_with_the_store() {
        let store = super::Store::open("sqlite::memory:").await.unwrap();
        let super::Pools::Sqlite { scratch: Some(scratch), .. } = &store.pools else {
            panic!("sqlite::memory: runs on a scratch file")
        };
        let path = scratch.path().to_owned();
        assert!(path.join("idplex.db").exists());
        // A second in-memory store is another database.
        let other = super::Store::open("sqlite::memory:").await.unwrap();
        let super::Pools::Sqlite { scratch: Some(other_scratch), .. } = &other.pools else { unreachable!() };
        assert_ne!(other_scratch.path(), path);
        store.close().await;
        drop(store);
        assert!(!path.exists(), "the scratch directory goes with the last handle");
    }
}
