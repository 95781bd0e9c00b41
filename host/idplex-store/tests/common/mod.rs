//! Runs one test body against SQLite (a real temp file) and against PostgreSQL (a fresh schema).
//!
//! PostgreSQL: `IDPLEX_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Each test gets its own schema `t_<random>`, passed to the store as
//! `OpenOptions::postgres_schema` (so it is first on every connection's search_path, migrations
//! bookkeeping included), and dropped afterwards, even if the test panicked. An unreachable
//! server fails the test unless `IDPLEX_SKIP_POSTGRES=1`.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use idplex_store::{Connection, NewConnection, OpenOptions, Store};
use rand::RngCore;
use sqlx::postgres::PgPoolOptions;

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Clone)]
pub enum TestDb {
    Sqlite {
        path: PathBuf,
        _dir: Arc<tempfile::TempDir>,
    },
    Postgres {
        url: String,
        schema: String,
    },
}

impl TestDb {
    /// Opens (or reopens) the test database, running migrations.
    pub async fn open(&self) -> Store {
        match self {
            TestDb::Sqlite { path, .. } => Store::open(&format!("sqlite://{}", path.display()))
                .await
                .expect("open SQLite store"),
            TestDb::Postgres { url, schema } => Store::open_with(
                url,
                &OpenOptions {
                    postgres_schema: Some(schema.clone()),
                    max_connections: Some(4),
                    ..Default::default()
                },
            )
            .await
            .expect("open PostgreSQL store"),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, TestDb::Postgres { .. })
    }
}

pub async fn run_sqlite<F, Fut>(test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TestDb::Sqlite {
        path: dir.path().join("idplex.db"),
        _dir: Arc::new(dir),
    };
    test(db).await;
}

pub async fn run_postgres<F, Fut>(test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if std::env::var("IDPLEX_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
        eprintln!("IDPLEX_SKIP_POSTGRES=1: skipping the PostgreSQL variant of this test");
        return;
    }
    let url = std::env::var("IDPLEX_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL test database {url} is unreachable: {e}. Start PostgreSQL, point \
                 IDPLEX_TEST_POSTGRES_URL at one, or set IDPLEX_SKIP_POSTGRES=1 to skip the PostgreSQL tests."
            )
        });
    let mut raw = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let schema = format!("t_{}", hex::encode(raw));
    let outcome = tokio::spawn(test(TestDb::Postgres {
        url,
        schema: schema.clone(),
    }))
    .await;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&admin)
        .await
        .unwrap_or_else(|e| panic!("dropping test schema {schema}: {e}"));
    admin.close().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

/// Declares, for each `async fn name(db: TestDb)`, the tests `name::sqlite` and `name::postgres`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                crate::common::run_sqlite(super::$name).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                crate::common::run_postgres(super::$name).await
            }
        }
    )*};
}

/// A connection `name` of organization `org` (connector `okta`, empty config), created directly.
#[allow(dead_code)]
pub async fn connection(store: &Store, org: &str, name: &str) -> Connection {
    store
        .create_connection(&NewConnection {
            id: None,
            org_id: org.into(),
            name: name.into(),
            connector_name: "okta".into(),
            config: serde_json::json!({}),
            egress_allow: vec![],
            limits: serde_json::json!({}),
        })
        .await
        .unwrap()
}

/// Runs one statement on the test database behind the store's back (to move a row's clock):
/// `sql` with the integers bound as `$1…$n`, then `text` as the last parameter.
#[allow(dead_code)]
pub async fn execute(db: &TestDb, sql: &str, ints: &[i64], text: &str) {
    match db {
        TestDb::Sqlite { path, .. } => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
            let mut q = sqlx::query(sql);
            for i in ints {
                q = q.bind(*i);
            }
            q.bind(text).execute(&pool).await.unwrap();
            pool.close().await;
        }
        TestDb::Postgres { url, schema } => {
            let pool = PgPoolOptions::new().max_connections(1).connect(url).await.unwrap();
            let mut conn = pool.acquire().await.unwrap();
            sqlx::query(&format!("SET search_path TO \"{schema}\"")).execute(&mut *conn).await.unwrap();
            let mut q = sqlx::query(sql);
            for i in ints {
                q = q.bind(*i);
            }
            q.bind(text).execute(&mut *conn).await.unwrap();
            drop(conn);
            pool.close().await;
        }
    }
}
