//! Helpers for idplex's end-to-end tests.
//!
//! The tests themselves live in `host/idplex/tests/` (integration tests of the `idplex` package),
//! because only there does Cargo build the binary and expose its path as
//! `env!("CARGO_BIN_EXE_idplex")`; they pass that path to [`TestEnv::new`]. This crate holds what
//! they share: a private data directory and database per test ([`TestEnv`]), running the CLI
//! ([`TestEnv::cli`]), running `idplex serve` and talking to it over HTTP ([`Server`]), and the
//! module fixtures the installer must refuse ([`fixtures`]), and a SAML IdP that signs fresh
//! responses with `xmlsec1` ([`saml_idp`]), and an in-process idplex wired to it for the sign-in
//! tests ([`sso_app`]).
//!
//! Database: SQLite in the test's temp directory by default. When `IDPLEX_TEST_DATABASE_URL` is
//! a `postgres://` URL, every [`TestEnv`] gets its own schema `t_<random>` on that server
//! (created through the store's own `postgres_schema` option, passed to the binary as
//! `?options=-c search_path=...`) and drops it when the env is dropped.
//!
//! Every wait is bounded: a CLI run, server start-up, an HTTP request or a shutdown that takes
//! too long fails the test instead of hanging it.

pub mod directory_apis;
pub mod saml_idp;
pub mod sso_app;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long one CLI invocation may take (it may compile a component on a busy 2-core machine).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `idplex serve` may take to print its listening line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one HTTP request may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variable naming a PostgreSQL server to run the tests on instead of SQLite.
pub const DATABASE_URL_VAR: &str = "IDPLEX_TEST_DATABASE_URL";

/// One test's world: a temp data directory and a database nobody else uses.
pub struct TestEnv {
    bin: PathBuf,
    dir: tempfile::TempDir,
    db_url: String,
    pg: Option<PgSchema>,
}

/// The result of one CLI run.
#[derive(Debug)]
pub struct CliOutput {
    /// Exit code (`-1` if killed by a signal).
    pub code: i32,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr (logs and, without `--json`, the error message).
    pub stderr: String,
}

impl CliOutput {
    /// stdout parsed as JSON (the CLI prints exactly one JSON document with `--json`).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panic with all the output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit code {code}, got {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Shorthand for `expect_code(0).json()`.
    #[track_caller]
    pub fn ok_json(&self) -> Value {
        self.expect_code(0).json()
    }
}

impl TestEnv {
    /// A fresh env running the binary at `bin` (pass `env!("CARGO_BIN_EXE_idplex")`), its
    /// database created by `idplex init`.
    pub async fn new(bin: &str) -> TestEnv {
        let env = TestEnv::without_database(bin).await;
        // The admin commands never create a database (only `init` and `serve` do).
        env.cli(&["init"]).await.expect_code(0);
        // The test fixtures are unsigned and a new deployment refuses unsigned modules: allow
        // them here (the tests of that refusal set the policy back to refuse).
        env.cli(&["connector", "trust", "policy", "--unsigned", "allow"]).await.expect_code(0);
        env
    }

    /// A fresh env whose database does not exist yet (for tests of what creates one): no
    /// SQLite file, or an empty PostgreSQL schema.
    pub async fn without_database(bin: &str) -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("idplex-e2e-")
            .tempdir()
            .expect("temp dir");
        let (db_url, pg) = match std::env::var(DATABASE_URL_VAR)
            .ok()
            .filter(|u| !u.trim().is_empty())
        {
            Some(base) => {
                let schema = PgSchema::create_empty(&base).await;
                let sep = if base.contains('?') { '&' } else { '?' };
                (
                    format!("{base}{sep}options=-c%20search_path%3D{}", schema.name),
                    Some(schema),
                )
            }
            None => (
                format!("sqlite://{}", dir.path().join("idplex.db").display()),
                None,
            ),
        };
        TestEnv {
            bin: PathBuf::from(bin),
            dir,
            db_url,
            pg,
        }
    }

    /// The data directory passed as `--data-dir`.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database URL passed as `--db`.
    pub fn db_url(&self) -> &str {
        &self.db_url
    }

    /// Whether this env runs on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// Write `bytes` to `name` in the data directory and return its path.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).expect("write fixture");
        path
    }

    /// The command `idplex --db … --data-dir … ARGS`, not started (for a test that kills it).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--db")
            .arg(&self.db_url)
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(args)
            .env_remove("IDPLEX_DB")
            .env_remove("IDPLEX_DATA_DIR")
            .env_remove("IDPLEX_LISTEN")
            .env("IDPLEX_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Run `idplex --db … --data-dir … ARGS` to completion (bounded by [`CLI_TIMEOUT`]).
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn idplex");
        let out = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "`idplex {}` did not finish within {CLI_TIMEOUT:?}",
                    args.join(" ")
                )
            })
            .expect("wait for idplex");
        CliOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `idplex --json ARGS`.
    pub async fn cli_json(&self, args: &[&str]) -> CliOutput {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.cli(&all).await
    }

    /// Write `bytes` to a file and `idplex --json connector install FILE`.
    pub async fn install(&self, file_name: &str, bytes: &[u8]) -> CliOutput {
        let path = self.write_file(file_name, bytes);
        self.cli_json(&["connector", "install", path.to_str().unwrap()])
            .await
    }

    /// A new admin token's secret, made with `idplex token create`.
    pub async fn admin_token(&self) -> String {
        let v = self.cli_json(&["token", "create", "e2e"]).await.ok_json();
        v["secret"].as_str().expect("token secret").to_string()
    }

    /// Start `idplex serve --listen 127.0.0.1:0 [--watch-ms 200] EXTRA…` (the poll interval
    /// unless EXTRA sets one) and wait for its listening line.
    pub async fn serve(&self, extra: &[&str]) -> Server {
        let log_path = self.dir.path().join(format!("server-{}.log", unique()));
        let log = std::fs::File::create(&log_path).expect("server log file");
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        if !extra.contains(&"--watch-ms") {
            args.extend_from_slice(&["--watch-ms", "200"]);
        }
        args.extend_from_slice(extra);
        let mut child = self
            .command(&args)
            .env("IDPLEX_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn idplex serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        // Keep draining stdout for the server's whole life.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // Keep reading even when nobody listens any more: closing the pipe would make
                // the server's next print fail.
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut admin_token = None;
        let mut printed = Vec::new();
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some(line)) => {
                    if let Some(t) = line.strip_prefix("admin token (shown once): ") {
                        admin_token = Some(t.trim().to_string());
                    }
                    if let Some(addr) = line.strip_prefix("idplex listening on ") {
                        break addr.trim().to_string();
                    }
                    printed.push(line);
                }
                Ok(None) | Err(_) => {
                    let _ = child.start_kill();
                    panic!(
                        "idplex serve did not print its listening line within {STARTUP_TIMEOUT:?}\nstdout:\n{}\nlog:\n{}",
                        printed.join("\n"),
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
            }
        };
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .expect("http client");
        Server {
            child,
            base,
            admin_token,
            stdout_lines: printed,
            log_path,
            http,
        }
    }
}

/// A running `idplex serve`. Killed when dropped; [`Server::terminate`] stops it gracefully.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The token printed by `--demo` on first start.
    pub admin_token: Option<String>,
    /// Lines printed before the listening line.
    pub stdout_lines: Vec<String>,
    log_path: PathBuf,
    http: reqwest::Client,
}

/// An HTTP answer: status and body (JSON when it parses, else a JSON string).
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Value,
}

impl Resp {
    /// The `error` code of a JSON error body.
    pub fn error_code(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
    /// The `message` of a JSON error body.
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
    /// Panic with the body unless the status is `status`.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "expected HTTP {status}, got {}: {}",
            self.status, self.body
        );
        self
    }
}

impl Server {
    /// The server's log (stderr) so far: useful in assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("server still running")
    }

    /// A request builder for `METHOD BASE+PATH`, with `Authorization: Bearer TOKEN` when given.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Send a request and read the answer.
    pub async fn send(rb: reqwest::RequestBuilder) -> Resp {
        let resp = rb.send().await.expect("HTTP request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("HTTP body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp { status, body }
    }

    /// Unauthenticated `GET`.
    pub async fn get_anon(&self, path: &str) -> Resp {
        Self::send(self.request(reqwest::Method::GET, path, None)).await
    }

    fn token(&self) -> &str {
        self.admin_token
            .as_deref()
            .expect("this server has no admin token (start it with --demo)")
    }

    /// `GET` with the admin token.
    pub async fn get(&self, path: &str) -> Resp {
        Self::send(self.request(reqwest::Method::GET, path, Some(self.token()))).await
    }

    /// `POST` a JSON body with the admin token.
    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        Self::send(
            self.request(reqwest::Method::POST, path, Some(self.token()))
                .json(body),
        )
        .await
    }

    /// `POST` raw bytes (`application/wasm`) with the admin token.
    pub async fn post_wasm(&self, path: &str, bytes: &[u8]) -> Resp {
        Self::send(
            self.request(reqwest::Method::POST, path, Some(self.token()))
                .header("content-type", "application/wasm")
                .body(bytes.to_vec()),
        )
        .await
    }

    /// `POST /admin/v1/connections` and return the new connection's id (asserts 201).
    /// The newest installed version of the connector `name` (the bundled one on a fresh server).
    pub async fn newest_version(&self, name: &str) -> String {
        let r = self.get(&format!("/admin/v1/connectors/{name}")).await;
        r.expect(200);
        let v = r.body.clone();
        let versions = v["versions"].as_array().unwrap_or_else(|| panic!("versions of {name}: {v}"));
        versions.last().and_then(|m| m["version"].as_str()).unwrap_or_else(|| panic!("no version of {name}: {v}")).to_string()
    }

    pub async fn create_connection(&self, body: &Value) -> String {
        let r = self.post_json("/admin/v1/connections", body).await;
        r.expect(201);
        r.body["id"].as_str().expect("connection id").to_string()
    }

    /// `POST /admin/v1/connections/{id}/dry-run/scim` with a SCIM envelope.
    pub async fn dry_run_scim(&self, connection_id: &str, envelope: &Value) -> Resp {
        self.post_json(
            &format!("/admin/v1/connections/{connection_id}/dry-run/scim"),
            envelope,
        )
        .await
    }

    /// Send SIGKILL (no shutdown of any kind: what a crash or the OOM killer does) and wait
    /// (bounded) until the process is gone, so its files and port can be reused.
    pub async fn kill(mut self, within: Duration) {
        self.child.start_kill().expect("send SIGKILL");
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("server did not die within {within:?} after SIGKILL"))
            .expect("wait for server");
    }

    /// Send SIGTERM and wait (bounded) for the process to exit; returns its exit code.
    pub async fn terminate(mut self, within: Duration) -> i32 {
        let pid = self.pid();
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait for server").code().unwrap_or(-1),
            Err(_) => {
                let _ = self.child.start_kill();
                panic!(
                    "server did not stop within {within:?} after SIGTERM\nlog:\n{}",
                    self.log()
                );
            }
        }
    }
}

/// Poll `check` every 100 ms until it returns `Some`, for at most `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A process-unique suffix.
pub fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A PostgreSQL schema owned by one test; dropped (with everything in it) on drop.
struct PgSchema {
    base_url: String,
    name: String,
}

impl PgSchema {
    /// A new schema, empty: what a PostgreSQL database looks like before idplex set it up.
    async fn create_empty(base_url: &str) -> PgSchema {
        use sqlx::Connection;
        let name = format!("t_{}", unique());
        let mut conn = sqlx::PgConnection::connect(base_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach {DATABASE_URL_VAR}: {e}"));
        sqlx::query(&format!("CREATE SCHEMA \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create schema {name}: {e}"));
        let _ = conn.close().await;
        PgSchema { base_url: base_url.to_string(), name }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, name) = (self.base_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: use a thread with its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&url).await.ok()?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .execute(&mut conn)
                    .await
                    .ok()?;
                conn.close().await.ok()
            })
        })
        .join();
        if !matches!(done, Ok(Some(()))) {
            eprintln!("warning: could not drop test schema {}", self.name);
        }
    }
}

/// Modules the installer must refuse, and the bundled ones it must accept.
pub mod fixtures {
    /// `n` bytes of deterministic noise (never starts with the `\0asm` magic).
    pub fn random_bytes(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(n);
        out[0] = 0xff;
        out
    }

    /// The smallest valid core module: magic and version, no sections, no component metadata.
    pub fn bare_core_module() -> Vec<u8> {
        b"\0asm\x01\0\0\0".to_vec()
    }

    /// A valid component of another world: it imports `foo:bar/baz` and exports nothing of idplex.
    pub fn foreign_world_component() -> Vec<u8> {
        wat::parse_str(r#"(component (import "foo:bar/baz" (instance)))"#).expect("valid WAT")
    }

    /// A component exporting `idplex:connector/metadata@2.0.0`: another major of the contract.
    pub fn contract_v2_component() -> Vec<u8> {
        wat::parse_str(
            r#"(component
                 (instance $m)
                 (export "idplex:connector/metadata@2.0.0" (instance $m)))"#,
        )
        .expect("valid WAT")
    }

    /// `\0asm` followed by zeros, `mib` MiB in total.
    pub fn oversized_module(mib: usize) -> Vec<u8> {
        let mut v = vec![0u8; mib << 20];
        v[..8].copy_from_slice(b"\0asm\x01\0\0\0");
        v
    }

    /// The bundled first-party `custom-saml` component.
    pub fn custom_saml() -> &'static [u8] {
        idplex_bundled::FIRST_PARTY
            .iter()
            .find(|b| b.crate_name == "custom-saml")
            .expect("custom-saml is bundled")
            .component
    }
}
