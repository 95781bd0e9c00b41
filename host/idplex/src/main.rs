//! `idplex`: the server and the admin CLI.
//!
//! Exit codes (stable, for scripts): 0 success; 1 internal error (database, I/O); 2 usage error;
//! 3 refused input (invalid module, bad config); 4 not found; 5 conflict (e.g. nothing to roll
//! back, same version with other bytes); 6 a connector call failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use idplex_hub::{ErrorClass, Hub, HubError, HubOptions, SecretKey, redacted, rfc3339};
use idplex_hub::runtime::RuntimeConfig;
use idplex_hub::store::{
    NewConnection, OpenOptions, OutcomeFilter, ScimDeletePolicy, StoreError, SyncLogCursor, SyncLogQuery, UserTokenFilter,
};
use serde_json::{Value, json};

mod cmd_check;
mod cmd_kit;
mod cmd_trust;

/// mimalloc instead of the system allocator: a request allocates and frees many small objects on
/// several threads (tokio workers, the SQLite connection threads), where glibc's allocator spent
/// ~13% of the server's CPU time under SCIM load. Without transparent huge pages (`no_thp`),
/// which doubled the resident set for little gain.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "idplex", version, about = "One place to manage users across every identity provider.")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Database: `sqlite://PATH` (embedded default) or `postgres://…` for several replicas.
    #[arg(long, global = true, env = "IDPLEX_DB")]
    db: Option<String>,
    /// Directory for the SQLite file and the compiled-connector cache.
    #[arg(long, global = true, env = "IDPLEX_DATA_DIR", default_value = "idplex-data")]
    data_dir: PathBuf,
    /// SQLite: `full` (default) makes every acknowledged write survive a power loss; `normal`
    /// only the process being killed (faster; for benchmarks and disposable data).
    #[arg(long, global = true, env = "IDPLEX_SQLITE_SYNCHRONOUS", default_value = "full")]
    sqlite_synchronous: idplex_hub::store::SqliteSync,
    /// The URL browsers and IdPs reach this deployment at: SAML entity IDs, ACS and metadata
    /// URLs derive from it (`{URL}/saml/{connection}/acs`), and IdPs compare them byte for byte.
    #[arg(long, global = true, env = "IDPLEX_PUBLIC_URL", default_value = idplex_hub::DEFAULT_PUBLIC_URL)]
    public_url: String,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Log format on stderr.
    #[arg(long, global = true, env = "IDPLEX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (admin API, health and readiness endpoints). Creates the database (and
    /// the key sealing connection secrets) when there is none yet.
    Serve(ServeArgs),
    /// Create the database (migrated) and the secret key, and exit; `serve` installs the
    /// bundled connectors when it starts. The other admin commands never create a database: run
    /// from the wrong directory, they say where they looked instead of answering from an empty one.
    Init,
    /// Install, list, inspect, activate and roll back connector modules.
    #[command(subcommand)]
    Connector(ConnectorCmd),
    /// Create and list IdP connections (directories).
    #[command(subcommand)]
    Connection(ConnectionCmd),
    /// Create, list and revoke admin API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Issue, list, rotate and revoke the SCIM bearer tokens of a connection (what an IdP uses
    /// to provision into `/scim/v2/{connection}`).
    #[command(subcommand)]
    ScimToken(ScimTokenCmd),
    /// Show a connection's SCIM sync log (what its IdP asked and what it got), newest first.
    SyncLog {
        /// Connection id.
        connection: String,
        /// How many entries (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only this outcome: `error` (any failure), `ok`, `client_error`, `connector_error`,
        /// `server_error`.
        #[arg(long, value_parser = parse_outcome)]
        outcome: Option<OutcomeFilter>,
        /// Only entries about this resource (user or group) id.
        #[arg(long)]
        resource: Option<String>,
        /// Only entries older than this cursor (printed at the end of the previous page).
        #[arg(long, value_parser = parse_cursor)]
        before: Option<SyncLogCursor>,
    },
    /// Issue, list and revoke the API tokens of directory users (for `/api/v1`).
    #[command(subcommand)]
    UserToken(UserTokenCmd),
    /// Set up SAML sign-in of a connection: the IdP it trusts (its metadata, or entered by
    /// hand), the switches, and the e-mail domains routed to it.
    #[command(subcommand)]
    Saml(SamlCmd),
    /// Register the downstream apps that receive identities through OpenID Connect (client id,
    /// redirect URIs, secret shown once).
    #[command(subcommand)]
    App(AppCmd),
    /// The OpenID Connect provider's signing keys (list, rotate).
    #[command(subcommand)]
    Oidc(OidcCmd),
    /// An organization's session policy (idle and absolute timeouts).
    #[command(subcommand)]
    Org(OrgCmd),
    /// Directory pull sync of a connection (Google Workspace, Entra ID, …): run it now, its
    /// status, its schedule, its log.
    #[command(subcommand)]
    Sync(SyncCmd),
    /// Show connector events (traps, timeouts, refused installs, ...), newest first.
    Events {
        /// Only events of this connection.
        #[arg(long)]
        connection: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "IDPLEX_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// On first start, also create a demo connection bound to custom-saml (or
    /// `--demo-connector`) and an admin token, and print them.
    #[arg(long)]
    demo: bool,
    /// The bundled connector the `--demo` connection uses (`okta`, `entra-id`, `onelogin`, …).
    #[arg(long, default_value = "custom-saml", requires = "demo")]
    demo_connector: String,
    /// How often to apply binding changes made by other processes (ms).
    #[arg(long, default_value_t = 500)]
    watch_ms: u64,
    /// Days SCIM sync log entries are kept (pruned hourly); 0 keeps them forever.
    #[arg(long, env = "IDPLEX_SYNC_LOG_RETENTION_DAYS", default_value_t = 90)]
    sync_log_retention_days: u32,
    /// Days connector events (traps, timeouts, limits hit, refused installs) are kept; pruned
    /// every 10 minutes, with at most --event-max-per-connection kept per connection.
    #[arg(long, env = "IDPLEX_EVENT_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    event_retention_days: u32,
    /// Newest connector events kept per connection (a connector failing in a loop cannot fill
    /// the database; repeats of one failure are also coalesced into one row).
    #[arg(long, env = "IDPLEX_EVENT_MAX_PER_CONNECTION", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    event_max_per_connection: u64,
    /// BENCHMARKING AID, NEVER FOR PRODUCTION: normalize and render SCIM requests with the
    /// host's native generic RFC 7644 dialect instead of each connection's connector, bypassing
    /// the sandbox and any IdP dialect. `scripts/bench-scim` uses it to measure the connector's
    /// share of request time. Logged loudly at startup.
    #[arg(long)]
    native_scim_passthrough: bool,
    #[command(flatten)]
    egress: EgressDevArgs,
    /// How often to look for directory syncs that are due (seconds); 0 turns the scheduler off
    /// in this process.
    #[arg(long, env = "IDPLEX_SYNC_SCHEDULER_SECS", default_value_t = 30)]
    sync_scheduler_secs: u64,
    /// SCIM requests one connector instance may serve, in sequence and only for its own
    /// connection, before it is retired. 1 gives every request a fresh instance (slower; see
    /// ARCHITECTURE.md, invariant 3).
    #[arg(long, env = "IDPLEX_CONNECTOR_INSTANCE_REUSE", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    connector_instance_reuse: u32,
    /// Sandbox instances one connection may hold at once (running, kept by a request, or
    /// idle), out of the pool of 256: one connection's slow or looping connector cannot take
    /// the others' (ARCHITECTURE.md, invariant 3).
    #[arg(long, env = "IDPLEX_CONNECTOR_MAX_INSTANCES", default_value_t = idplex_hub::runtime::DEFAULT_MAX_INSTANCES_PER_CONNECTION, value_parser = clap::value_parser!(u32).range(1..=256))]
    connector_max_instances: u32,
    /// How long a call waits for one of its connection's instances before answering 503 busy (ms).
    #[arg(long, env = "IDPLEX_CONNECTOR_INSTANCE_WAIT_MS", default_value_t = 2000)]
    connector_instance_wait_ms: u64,
}

#[derive(Subcommand)]
enum ConnectorCmd {
    /// Install a connector module from a `.wasm` file (a component, or a core module with
    /// embedded WIT metadata).
    Install { file: PathBuf },
    /// List installed modules.
    List,
    /// Show one module: `NAME@VERSION`, or `NAME` for all its versions.
    Inspect { target: String },
    /// Bind a connection to `NAME@VERSION` (or just `VERSION` of the connection's connector).
    Activate {
        /// Connection id.
        #[arg(long)]
        connection: String,
        /// `VERSION` or `NAME@VERSION`.
        version: String,
    },
    /// Bind a connection back to its previous version.
    Rollback {
        /// Connection id.
        #[arg(long)]
        connection: String,
    },
    /// Create a connector crate that builds as it is (vendor kit).
    New(cmd_kit::NewArgs),
    /// Build a connector crate to a component (wasm32 build + componentize); no database.
    Build(cmd_kit::BuildArgs),
    /// Build, install as a dev build (VERSION+dev.SHA12) and activate on a connection, again on
    /// every change of the crate's sources.
    Dev(cmd_kit::DevArgs),
    /// Run the host's conformance checks on a module (loaded exactly as install loads it; no
    /// database): one line per case, exit 3 when a case fails.
    Check(cmd_check::CheckArgs),
    /// Make a publisher key pair for signing connector modules (no database).
    Keygen(cmd_trust::KeygenArgs),
    /// Sign a connector module with a publisher key (no database).
    Sign(cmd_trust::SignArgs),
    /// The publisher keys this deployment trusts, and its policy for unsigned modules and
    /// modules signed by untrusted keys.
    #[command(subcommand)]
    Trust(cmd_trust::TrustCmd),
}

#[derive(Subcommand)]
enum SyncCmd {
    /// Pull the connection's directory now (continues an interrupted pass), with progress on
    /// stderr and a summary at the end; exit 3 if the run failed.
    Run {
        /// Connection id.
        connection: String,
        #[command(flatten)]
        egress: EgressDevArgs,
    },
    /// The schedule, the pass in progress and the recent runs of a connection.
    Status {
        /// Connection id.
        connection: String,
        /// How many recent runs.
        #[arg(long, default_value_t = 5)]
        runs: u32,
    },
    /// Turn the scheduled sync on (every --every minutes, default 15) or off (--off).
    Schedule {
        /// Connection id.
        connection: String,
        /// Minutes between runs (at least 1).
        #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
        every: u64,
        /// Turn the schedule off.
        #[arg(long)]
        off: bool,
    },
    /// Failed pages and per-item warnings of the connection's runs, newest first.
    Log {
        /// Connection id.
        connection: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

/// Egress switches for tests and local development (never production).
#[derive(Args, Clone, Default)]
struct EgressDevArgs {
    /// TESTS AND LOCAL DEVELOPMENT ONLY: let connectors reach loopback addresses over plain
    /// http (credential included), and token endpoints be plain http on loopback. Without it
    /// egress is https only. Logged loudly.
    #[arg(long)]
    insecure_egress_http_loopback: bool,
    /// TESTS AND LOCAL DEVELOPMENT ONLY: `HOST[:PORT]=127.0.0.1:PORT` sends a directory pull's
    /// requests to an allowed https host over plain http to that loopback address instead (a
    /// local stand-in of the IdP's API). Repeatable. Logged loudly.
    #[arg(long = "insecure-egress-redirect", value_parser = parse_redirect)]
    redirects: Vec<(String, String)>,
}

fn parse_redirect(s: &str) -> Result<(String, String), String> {
    let (from, to) = s.split_once('=').ok_or("expected HOST=127.0.0.1:PORT")?;
    let addr: std::net::SocketAddr = to.parse().map_err(|_| format!("{to:?} is not an ip:port"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{to} is not a loopback address"));
    }
    Ok((from.trim().to_ascii_lowercase(), to.to_string()))
}

#[derive(Subcommand)]
enum AppCmd {
    /// Register an app of an organization; prints its client id and secret (shown once).
    Create {
        /// The organization whose users sign in to it.
        #[arg(long)]
        org: String,
        /// A name, unique in the organization.
        #[arg(long)]
        name: String,
        /// Where codes may be sent (repeatable; https, or http on localhost).
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
    },
    /// List the apps.
    List,
    /// Show an app (never its secret).
    Show {
        /// Client id.
        app: String,
    },
    /// Rename an app or replace its redirect URIs.
    Update {
        /// Client id.
        app: String,
        #[arg(long)]
        name: Option<String>,
        /// Replaces every redirect URI (repeatable).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
    },
    /// Issue a new client secret (shown once); the old one stops at once.
    RotateSecret {
        /// Client id.
        app: String,
    },
    /// Delete an app and every code and token issued to it.
    Delete {
        /// Client id.
        app: String,
    },
}

#[derive(Subcommand)]
enum OidcCmd {
    /// The signing keys (the one that signs first; retired ones stay published a day).
    Keys,
    /// Generate a new signing key and sign with it from now on.
    RotateKey,
}

#[derive(Subcommand)]
enum OrgCmd {
    /// Show or set an organization's session timeouts. Without options, shows them.
    SessionPolicy {
        /// Organization id.
        org: String,
        /// End sessions after this many minutes without a request (0 turns it off).
        #[arg(long)]
        idle_minutes: Option<i64>,
        /// End sessions this many minutes after sign-in (0 turns it off).
        #[arg(long)]
        absolute_minutes: Option<i64>,
    },
}

#[derive(Subcommand)]
enum SamlCmd {
    /// Show a connection's SAML setup, and what to enter at the IdP (entity ID, ACS URL).
    Show {
        /// Connection id.
        connection: String,
    },
    /// Print the SP metadata of a connection (to upload to the IdP).
    Metadata {
        /// Connection id.
        connection: String,
    },
    /// Take the IdP's entity ID, SSO URL and signing certificates from its metadata XML (a file
    /// you downloaded from the IdP; `-` reads standard input). Switches are kept.
    Import {
        /// Connection id.
        connection: String,
        /// The metadata file.
        file: PathBuf,
        /// Pick this IdP entity of an aggregate (federation metadata).
        #[arg(long)]
        entity_id: Option<String>,
        /// Turn sign-in on as well.
        #[arg(long)]
        enable: bool,
    },
    /// Change settings by hand; options not given are kept.
    Set {
        /// Connection id.
        connection: String,
        /// The IdP's entity ID (the Issuer of its responses).
        #[arg(long)]
        idp_entity_id: Option<String>,
        /// The IdP's SSO URL (HTTP-Redirect binding).
        #[arg(long)]
        sso_url: Option<String>,
        /// An IdP signing certificate file, PEM or DER (repeatable: several during a rollover;
        /// replaces the current ones).
        #[arg(long = "certificate")]
        certificates: Vec<PathBuf>,
        /// Turn sign-in on or off (on needs a certificate).
        #[arg(long)]
        enabled: Option<bool>,
        /// Accept IdP-initiated (unsolicited) responses.
        #[arg(long)]
        allow_idp_initiated: Option<bool>,
        /// Accept a signature over the Response alone (the Assertion unsigned inside it).
        #[arg(long)]
        allow_response_only_signing: Option<bool>,
        /// Sign AuthnRequests with the SP key (`idplex saml sp-key generate` first).
        #[arg(long)]
        sign_authn_requests: Option<bool>,
        /// The IdP's single logout URL (HTTP-Redirect); "" removes it.
        #[arg(long)]
        slo_url: Option<String>,
        /// With --jit: also remove users from the connection's groups their assertion does not
        /// name (the assertion's groups become the memberships).
        #[arg(long)]
        jit_sync_groups: Option<bool>,
        /// Create unknown users at sign-in (just in time), and add them to the groups the
        /// assertion names.
        #[arg(long)]
        jit: Option<bool>,
        /// Lifetime of the sessions sign-in opens, in minutes.
        #[arg(long)]
        session_ttl_minutes: Option<i64>,
    },
    /// Route these e-mail domains to the connection's sign-in (`/sso/login?email=`), replacing
    /// its routes; none clears them.
    Domains {
        /// Connection id.
        connection: String,
        /// Domains, e.g. example.com.
        domains: Vec<String>,
    },
    /// Remove the connection's SAML setup and domain routes: sign-in through it stops.
    Delete {
        /// Connection id.
        connection: String,
    },
    /// The deployment's SP signing key (signs AuthnRequests of connections set to
    /// `--sign-authn-requests true`; its certificate is in every connection's SP metadata).
    #[command(subcommand)]
    SpKey(SpKeyCmd),
}

#[derive(Subcommand)]
enum SpKeyCmd {
    /// Show the SP certificate (subject, fingerprint, validity, PEM).
    Show,
    /// Generate a new key and self-signed certificate (RSA-2048, ten years), replacing the
    /// current one: give the IdPs the new metadata.
    Generate,
    /// Use your own key (PEM or DER, PKCS#8 or PKCS#1 RSA) and certificate (PEM), replacing the
    /// current one.
    Import {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        certificate: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConnectionCmd {
    /// Create a connection.
    Create {
        /// Display name, unique in the organization.
        name: String,
        /// Connector name (e.g. custom-saml).
        #[arg(long)]
        connector: String,
        /// Organization id.
        #[arg(long, default_value = "default")]
        org: String,
        /// Config value `KEY=VALUE` (repeatable). Keys starting with `secret.` are never shown
        /// to the connector; `secret.authorization` is attached to its allowed egress requests.
        #[arg(long = "config", value_parser = parse_kv)]
        config: Vec<(String, String)>,
        /// Host (or host:port) the connector may reach (repeatable).
        #[arg(long = "allow-egress")]
        allow_egress: Vec<String>,
        /// Sandbox limits as JSON, e.g. '{"memory_bytes":33554432,"deadline_ms":500}'.
        #[arg(long)]
        limits: Option<String>,
        /// Activate this version right away.
        #[arg(long)]
        version: Option<String>,
    },
    /// List connections.
    List,
    /// Change a connection's config, egress allow-list or limits (each option given replaces
    /// that whole field; the others are kept). The config is checked against the active
    /// version's config schema; the change is live at once (other servers follow).
    Update {
        /// Connection id.
        connection: String,
        /// The new config, one `KEY=VALUE` per option (repeatable; replaces the whole config).
        #[arg(long = "config", value_parser = parse_kv)]
        config: Vec<(String, String)>,
        /// The new egress allow-list, one host (or host:port) per option (repeatable; replaces
        /// the list).
        #[arg(long = "allow-egress")]
        allow_egress: Vec<String>,
        /// Remove every egress destination.
        #[arg(long, conflicts_with = "allow_egress")]
        no_egress: bool,
        /// The new sandbox limits as JSON (replaces them).
        #[arg(long)]
        limits: Option<String>,
    },
    /// Run the connector's checks on a connection (its config; for a connector that calls its
    /// IdP's API, reachability with the attached credentials). Exit 0 when every check passed,
    /// 3 when one failed.
    Test {
        /// Connection id.
        connection: String,
    },
    /// Set what a SCIM DELETE of a user does in a connection: `deactivate` (default: deactivate
    /// and hide it from SCIM, keeping its data, memberships and history) or `delete` (remove it).
    SetDeletePolicy {
        /// Connection id.
        connection: String,
        #[arg(value_enum)]
        policy: DeletePolicyArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum DeletePolicyArg {
    Deactivate,
    Delete,
}

impl From<DeletePolicyArg> for ScimDeletePolicy {
    fn from(p: DeletePolicyArg) -> Self {
        match p {
            DeletePolicyArg::Deactivate => ScimDeletePolicy::Deactivate,
            DeletePolicyArg::Delete => ScimDeletePolicy::Delete,
        }
    }
}

#[derive(Subcommand)]
enum UserTokenCmd {
    /// Issue an API token to a directory user; the secret is printed once and stored only as a
    /// hash. It works only while the user is active.
    Create {
        /// User id (the SCIM id).
        user_id: String,
        /// What the token is for.
        #[arg(long)]
        label: String,
        /// Days until it expires.
        #[arg(long, default_value_t = 90)]
        ttl_days: u32,
    },
    /// List user API tokens (never their secrets), newest first.
    List {
        /// Only this user's tokens.
        #[arg(long, conflicts_with = "org")]
        user: Option<String>,
        /// Only the tokens of this organization's users.
        #[arg(long)]
        org: Option<String>,
    },
    /// Revoke a token at once, for good.
    Revoke {
        /// Token id (uat_…).
        id: String,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create an admin token; the secret is printed once and stored only as a hash.
    Create {
        name: String,
        /// Days until it expires (default 365; 0 = never).
        #[arg(long, default_value_t = 365)]
        expires_days: u32,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum ScimTokenCmd {
    /// Issue a token; the secret is printed once and stored only as a hash.
    Create {
        /// Connection id.
        #[arg(long)]
        connection: String,
        /// Days until it expires.
        #[arg(long, default_value_t = 365)]
        expires_days: u32,
    },
    /// List a connection's tokens (never their secrets).
    List {
        /// Connection id.
        #[arg(long)]
        connection: String,
    },
    /// Replace a token; the old one keeps working for the overlap window.
    Rotate {
        /// Connection id.
        #[arg(long)]
        connection: String,
        /// Token id (stok_…).
        token: String,
        /// Hours the old token keeps working.
        #[arg(long, default_value_t = 24)]
        overlap_hours: u32,
    },
    /// Revoke a token at once.
    Revoke {
        /// Connection id.
        #[arg(long)]
        connection: String,
        /// Token id (stok_…).
        token: String,
    },
}

fn parse_outcome(s: &str) -> Result<OutcomeFilter, String> {
    s.parse().map_err(|e: StoreError| e.to_string())
}

fn parse_cursor(s: &str) -> Result<SyncLogCursor, String> {
    s.parse().map_err(|e: StoreError| e.to_string())
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.log_format);
    // Worker stacks of 8 MiB (tokio's default is 2 MiB): every recursion on input is bounded
    // (idplex-scim's limits), this is the margin behind those bounds.
    let rt = match tokio::runtime::Builder::new_multi_thread().thread_stack_size(8 << 20).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let json_out = cli.global.json;
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let (code, class) = match e.downcast_ref::<HubError>() {
                Some(h) => (exit_code(h.class()), h.code()),
                None => (1, "error"),
            };
            let message = error_message(&e);
            if json_out {
                println!("{}", json!({"error": class, "message": message}));
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::from(code)
        }
    }
}

/// The error and its causes, `: `-separated, skipping a cause whose text the message already
/// holds (e.g. `connector refused: {0}` displays its source itself; `{:#}` would print it twice).
fn error_message(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    message
}

fn exit_code(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::Internal => 1,
        ErrorClass::Invalid | ErrorClass::ConnectorRefused => 3,
        ErrorClass::NotFound => 4,
        ErrorClass::Conflict => 5,
        ErrorClass::ConnectorFault => 6,
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IDPLEX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    // A panic is one log event in the configured format (one JSON line under --log-format
    // json), its message escaped and bounded: a panic message can hold request input, and the
    // default hook writes it raw and multi-line to stderr.
    std::panic::set_hook(Box::new(log_panic));
}

/// The panic hook: one `error` event with the panic's message (escaped by the formatter, at most
/// 1 KiB), where it happened and on which thread.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".to_string());
    let message = bounded(&message, 1024);
    let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
    let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
    tracing::error!(panic = ?message, location = %location, thread = %thread, "panic (the request failed; the process goes on)");
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn bounded(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Opens the hub over the database the global options name. Only `create` (serve, init) makes a
/// missing database, data directory or secret key; every other command refuses, naming what it
/// looked for and how to point it elsewhere.
async fn open_hub(g: &Global, runtime: RuntimeConfig, options: HubOptions, create: bool) -> anyhow::Result<Arc<Hub>> {
    if create {
        std::fs::create_dir_all(&g.data_dir)
            .with_context(|| format!("cannot create data directory {}", g.data_dir.display()))?;
    }
    let url = match &g.db {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", g.data_dir.join("idplex.db").display()),
    };
    let open = OpenOptions { sqlite_synchronous: g.sqlite_synchronous, must_exist: !create, ..Default::default() };
    // The key sealing connection secrets never enters the database; replicas sharing one
    // PostgreSQL database must share this file.
    let key_file = match std::env::var_os("IDPLEX_SECRET_KEY_FILE") {
        Some(path) => std::path::PathBuf::from(path),
        None => g.data_dir.join("secret.key"),
    };
    let hint = "point it at your deployment with --db URL (or IDPLEX_DB) or --data-dir DIR (or IDPLEX_DATA_DIR); `idplex init` or `idplex serve` creates a new one";
    let where_from = || {
        let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| "?".into());
        match &g.db {
            Some(_) => format!("it looked where --db (or IDPLEX_DB) points, from the working directory {cwd}"),
            None => format!("no --db was given, so it looked in --data-dir {:?} under the working directory {cwd}", g.data_dir.display()),
        }
    };
    let name_the_database = |e: anyhow::Error| match e.downcast_ref::<HubError>() {
        Some(HubError::Store(idplex_hub::store::StoreError::NoDatabase { .. })) => {
            e.context(format!("this command never creates a database ({}); {hint}", where_from()))
        }
        _ => e,
    };
    let secrets = if create {
        SecretKey::load_or_create(&key_file).map_err(HubError::from)?
    } else {
        match SecretKey::load(&key_file) {
            Ok(key) => key,
            Err(missing) => {
                // Say which is missing: the database (the usual case: the wrong directory), or
                // only its key.
                drop(Hub::connect(&url, &open, runtime, options, SecretKey::ephemeral()).await.map_err(name_the_database)?);
                return Err(anyhow::Error::from(HubError::from(missing)).context(format!("the database exists but not its secret key; {hint}")));
            }
        }
    };
    Hub::connect(&url, &open, runtime, options, secrets).await.map_err(name_the_database)
}

/// Print `value` as JSON, or `text` for people.
fn emit(json_out: bool, value: &Value, text: impl FnOnce() -> String) {
    if json_out {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    } else {
        println!("{}", text());
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    // The vendor kit's `connector new|build` need no database.
    match &cli.command {
        Command::Connector(ConnectorCmd::New(args)) => return cmd_kit::new(args, g.json),
        Command::Connector(ConnectorCmd::Build(args)) => return cmd_kit::build(args, g.json).await,
        Command::Connector(ConnectorCmd::Check(args)) => return cmd_check::run(g.json, args).await,
        Command::Connector(ConnectorCmd::Keygen(args)) => return cmd_trust::keygen(args, g.json),
        Command::Connector(ConnectorCmd::Sign(args)) => return cmd_trust::sign(args, g.json).await,
        _ => {}
    }
    let mut runtime = RuntimeConfig::new(g.data_dir.join("cache"));
    let options = match &cli.command {
        Command::Serve(args) => {
            runtime.instance_reuse.max_requests = args.connector_instance_reuse;
            runtime.max_instances_per_connection = args.connector_max_instances;
            runtime.instance_wait = Duration::from_millis(args.connector_instance_wait_ms);
            HubOptions {
                native_scim_passthrough: args.native_scim_passthrough,
                egress_plain_http_loopback: args.egress.insecure_egress_http_loopback,
                egress_redirects: args.egress.redirects.clone(),
            }
        }
        Command::Sync(SyncCmd::Run { egress, .. }) => {
            warn_insecure(egress);
            HubOptions {
                egress_plain_http_loopback: egress.insecure_egress_http_loopback,
                egress_redirects: egress.redirects.clone(),
                ..HubOptions::default()
            }
        }
        _ => HubOptions::default(),
    };
    let creates = matches!(cli.command, Command::Serve(_) | Command::Init);
    let hub = open_hub(g, runtime, options, creates).await?;
    hub.set_public_url(&g.public_url)?;
    match cli.command {
        Command::Serve(args) => serve(hub, g, args).await,
        Command::Init => init(g).await,
        Command::Connector(cmd) => connector(&hub, g.json, cmd).await,
        Command::Connection(cmd) => connection(&hub, g.json, cmd).await,
        Command::Token(cmd) => token(&hub, g.json, cmd).await,
        Command::ScimToken(cmd) => scim_token(&hub, g.json, cmd).await,
        Command::SyncLog { connection, limit, outcome, resource, before } => {
            let query = SyncLogQuery { limit: Some(limit), before, outcome, resource_id: resource };
            sync_log(&hub, g.json, &connection, &query).await
        }
        Command::UserToken(cmd) => user_token(&hub, g.json, cmd).await,
        Command::Saml(cmd) => saml(&hub, g.json, cmd).await,
        Command::App(cmd) => app(&hub, g.json, cmd).await,
        Command::Oidc(cmd) => oidc(&hub, g.json, cmd).await,
        Command::Org(cmd) => org(&hub, g.json, cmd).await,
        Command::Sync(cmd) => sync(&hub, g.json, cmd).await,
        Command::Events { connection, limit } => {
            let events = hub.events(connection.as_deref(), limit).await?;
            emit(g.json, &json!({ "events": events }), || {
                events
                    .iter()
                    .map(|e| {
                        format!(
                            "{}  {:<16} {:<24} {:<18} {}",
                            e.at,
                            e.kind,
                            e.connector,
                            e.connection_id.as_deref().unwrap_or("-"),
                            e.message
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
    }
}

async fn init(g: &Global) -> anyhow::Result<()> {
    let location = match &g.db {
        Some(url) => without_password(url),
        None => g.data_dir.join("idplex.db").display().to_string(),
    };
    emit(g.json, &json!({ "database": location, "data_dir": g.data_dir }), || {
        format!("database ready at {location} (data directory {})", g.data_dir.display())
    });
    Ok(())
}

/// A database URL fit to print: a password in its user info is replaced by `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_string(),
    }
}

async fn serve(hub: Arc<Hub>, g: &Global, args: ServeArgs) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    warn_insecure(&args.egress);
    if args.native_scim_passthrough {
        println!("WARNING: --native-scim-passthrough: SCIM requests bypass the connectors and their sandbox (benchmarking aid, never for production)");
    }
    let installed = hub.install_bundled().await?;
    for r in &installed {
        tracing::info!(connector = %format!("{}@{}", r.name, r.version), outcome = r.outcome, "bundled connector");
    }
    let demo = if args.demo { demo_setup(&hub, &installed, &args.demo_connector).await? } else { None };
    let bound = hub.sync_bindings().await?;
    tracing::info!(bound, startup_ms = t0.elapsed().as_millis() as u64, "connectors loaded");

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, db = %hub.backend_name(), data_dir = %g.data_dir.display(), "idplex listening");
    if let Some((connection, secret)) = demo {
        println!("SCIM base URL: http://{addr}/scim/v2/{connection}");
        println!("SCIM bearer token (shown once): {secret}");
    }
    println!("idplex listening on http://{addr}");
    tracing::info!(public_url = %hub.public_url(), "SAML entity IDs and ACS URLs derive from the public URL");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sign_in_pruner = hub.spawn_sign_in_pruner(Duration::from_secs(300));
    let sync_scheduler = (args.sync_scheduler_secs > 0)
        .then(|| hub.spawn_directory_sync_scheduler(Duration::from_secs(args.sync_scheduler_secs), 2, stop_rx.clone()));
    let watcher = hub.spawn_watcher(Duration::from_millis(args.watch_ms), stop_rx.clone());
    let pruner = (args.sync_log_retention_days > 0).then(|| {
        let retention = Duration::from_secs(u64::from(args.sync_log_retention_days) * 86_400);
        hub.spawn_sync_log_pruner(retention, Duration::from_secs(3600), stop_rx.clone())
    });
    let event_pruner = hub.spawn_event_pruner(
        idplex_hub::store::EventRetention {
            max_age_ms: i64::from(args.event_retention_days) * 86_400_000,
            max_per_connection: args.event_max_per_connection,
        },
        Duration::from_secs(600),
        stop_rx,
    );
    let shutdown = async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
    };
    idplex_server::serve(hub.clone(), listener, shutdown).await?;
    sign_in_pruner.abort();
    if let Some(s) = sync_scheduler {
        s.abort();
    }
    let _ = watcher.await;
    let _ = event_pruner.await;
    if let Some(pruner) = pruner {
        let _ = pruner.await;
    }
    hub.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// First start with `--demo`: a connection bound to the bundled connector `connector`, an admin
/// token and a SCIM token, printed. Returns the connection id and the SCIM secret.
async fn demo_setup(
    hub: &Hub,
    installed: &[idplex_hub::InstallReport],
    connector: &str,
) -> anyhow::Result<Option<(String, String)>> {
    if hub.connections().await?.iter().any(|c| c.name == "demo") {
        println!("demo connection already exists; tokens are shown only once (idplex token create NAME, idplex scim-token create --connection ID make new ones)");
        return Ok(None);
    }
    let bundled = installed.iter().find(|r| r.name == connector).with_context(|| {
        let names: Vec<&str> = installed.iter().map(|r| r.name.as_str()).collect();
        format!("the connector `{connector}` is not bundled in this build (bundled: {})", names.join(", "))
    })?;
    let conn = hub
        .create_connection(NewConnection {
            id: None,
            org_id: "default".into(),
            name: "demo".into(),
            connector_name: bundled.name.clone(),
            config: json!({}),
            egress_allow: vec![],
            limits: json!({}),
        })
        .await?;
    hub.activate(&conn.id, &bundled.version, "demo").await?;
    let (_, secret) = hub.create_admin_token("demo", Some(365)).await?;
    println!("demo connection: {} ({}@{})", conn.id, bundled.name, bundled.version);
    println!("admin token (shown once): {secret}");
    let (_, scim_secret) = hub.create_scim_token(&conn.id, None).await?;
    Ok(Some((conn.id, scim_secret)))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

async fn connector(hub: &Hub, json_out: bool, cmd: ConnectorCmd) -> anyhow::Result<()> {
    match cmd {
        ConnectorCmd::Install { file } => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let report = hub.install(&bytes).await?;
            emit(json_out, &serde_json::to_value(&report)?, || {
                format!(
                    "{} {}@{} (sha256 {}, {} bytes, contract {}; publisher {})",
                    report.outcome,
                    report.name,
                    report.version,
                    report.sha256,
                    report.size_bytes,
                    report.contract_version,
                    report.publisher
                )
            });
        }
        ConnectorCmd::List => {
            let modules = hub.connectors().await?;
            emit(json_out, &json!({ "connectors": modules }), || {
                modules
                    .iter()
                    .map(|m| {
                        let publisher = m.publisher.as_ref().map_or_else(|| "unknown (installed before signatures were checked)".to_string(), |p| p.to_string());
                        format!("{}@{}  sha256:{}  {} bytes  publisher: {publisher}", m.name, m.version, &m.sha256[..16], m.size_bytes)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ConnectorCmd::Inspect { target } => {
            let value = match target.split_once('@') {
                Some((name, version)) => {
                    serde_json::to_value(hub.connector_module(name, version).await?)?
                }
                None => {
                    let versions = hub.connector_versions(&target).await?;
                    json!({ "name": target, "versions": versions })
                }
            };
            emit(json_out, &value, || serde_json::to_string_pretty(&value).unwrap_or_default());
        }
        ConnectorCmd::Activate { connection, version } => {
            let conn = hub.connection(&connection).await?;
            let version = match version.split_once('@') {
                Some((name, v)) if name == conn.connector_name => v.to_string(),
                Some((name, _)) => {
                    return Err(HubError::Invalid {
                        what: "version",
                        reason: format!(
                            "connection {connection} uses connector {}, not {name}",
                            conn.connector_name
                        ),
                    }
                    .into());
                }
                None => version,
            };
            let conn = hub.activate(&connection, &version, &actor()).await?;
            emit(json_out, &redacted(&conn), || {
                format!("connection {} now runs {}@{}", conn.id, conn.connector_name, version)
            });
        }
        ConnectorCmd::Rollback { connection } => {
            let conn = hub.rollback(&connection, &actor()).await?;
            emit(json_out, &redacted(&conn), || {
                format!(
                    "connection {} rolled back to {}@{}",
                    conn.id,
                    conn.connector_name,
                    conn.active_version.as_deref().unwrap_or("-")
                )
            });
        }
        ConnectorCmd::New(_) | ConnectorCmd::Build(_) | ConnectorCmd::Check(_) => {
            unreachable!("connector new|build|check run before the database is opened")
        }
        ConnectorCmd::Dev(args) => cmd_kit::dev(hub, json_out, args).await?,
        ConnectorCmd::Keygen(_) | ConnectorCmd::Sign(_) => {
            unreachable!("connector keygen|sign run before the database is opened")
        }
        ConnectorCmd::Trust(cmd) => cmd_trust::trust(hub, json_out, cmd).await?,
    }
    Ok(())
}

fn actor() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

async fn connection(hub: &Hub, json_out: bool, cmd: ConnectionCmd) -> anyhow::Result<()> {
    match cmd {
        ConnectionCmd::Update { connection, config, allow_egress, no_egress, limits } => {
            let limits: Option<Value> = match limits {
                Some(text) => Some(serde_json::from_str(&text).map_err(|e| HubError::Invalid {
                    what: "limits",
                    reason: format!("not JSON: {e}"),
                })?),
                None => None,
            };
            let config = (!config.is_empty())
                .then(|| Value::Object(config.into_iter().map(|(k, v)| (k, Value::String(v))).collect()));
            // An update with nothing to change is refused by the hub.
            let egress_allow = if no_egress { Some(Vec::new()) } else { (!allow_egress.is_empty()).then_some(allow_egress) };
            let conn = hub
                .update_connection(&connection, idplex_hub::store::ConnectionUpdate { config, egress_allow, limits })
                .await?;
            emit(json_out, &redacted(&conn), || format!("updated connection {} ({})", conn.id, conn.name));
        }
        ConnectionCmd::Create { name, connector, org, config, allow_egress, limits, version } => {
            let limits: Value = match limits {
                Some(text) => serde_json::from_str(&text).map_err(|e| HubError::Invalid {
                    what: "limits",
                    reason: format!("not JSON: {e}"),
                })?,
                None => json!({}),
            };
            let config: serde_json::Map<String, Value> =
                config.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            let conn = hub
                .create_connection(NewConnection {
                    id: None,
                    org_id: org,
                    name,
                    connector_name: connector,
                    config: Value::Object(config),
                    egress_allow: allow_egress,
                    limits,
                })
                .await?;
            let conn = match version {
                Some(v) => hub.activate(&conn.id, &v, &actor()).await?,
                None => conn,
            };
            emit(json_out, &redacted(&conn), || format!("created connection {} ({})", conn.id, conn.name));
        }
        ConnectionCmd::List => {
            let conns = hub.connections().await?;
            let value = json!({ "connections": conns.iter().map(redacted).collect::<Vec<_>>() });
            emit(json_out, &value, || {
                conns
                    .iter()
                    .map(|c| {
                        format!(
                            "{}  {:<20} {:<32} scim-delete={}",
                            c.id,
                            c.name,
                            format!("{}@{}", c.connector_name, c.active_version.as_deref().unwrap_or("(none)")),
                            c.scim_delete_policy
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ConnectionCmd::Test { connection } => {
            let report = hub.test_connection(&connection).await?;
            emit(json_out, &serde_json::to_value(&report)?, || {
                let mut lines = vec![format!("{} on connection {}: {}", report.connector, report.connection_id, report.message)];
                lines.extend(report.checks.iter().map(|c| {
                    format!("  {} {:<20} {}", if c.ok { "ok  " } else { "FAIL" }, c.name, c.detail)
                }));
                lines.join("\n")
            });
            if report.available && !report.ok {
                return Err(HubError::Invalid { what: "connection", reason: report.message }.into());
            }
        }
        ConnectionCmd::SetDeletePolicy { connection, policy } => {
            let conn = hub.set_scim_delete_policy(&connection, policy.into()).await?;
            emit(json_out, &redacted(&conn), || {
                format!("connection {}: a SCIM DELETE of a user now does {:?}", conn.id, conn.scim_delete_policy.as_str())
            });
        }
    }
    Ok(())
}

fn warn_insecure(egress: &EgressDevArgs) {
    if egress.insecure_egress_http_loopback {
        tracing::warn!("--insecure-egress-http-loopback: connectors may send credentials over plain http to loopback; never use this in production");
    }
    for (from, to) in &egress.redirects {
        tracing::warn!(%from, %to, "--insecure-egress-redirect: pull requests to this host go over plain http to loopback; never use this in production");
    }
}

async fn sync(hub: &Hub, json_out: bool, cmd: SyncCmd) -> anyhow::Result<()> {
    match cmd {
        SyncCmd::Run { connection, .. } => {
            let interactive = !json_out;
            let progress = move |p: &idplex_hub::SyncProgress| {
                if interactive {
                    eprint!(
                        "\r{} pass: {} pages, {} users, {} groups seen; {} created, {} changed, {} removed, {} warnings   ",
                        p.pass_kind.as_deref().unwrap_or("?"),
                        p.pages, p.users_seen, p.groups_seen, p.created, p.changed, p.removed, p.errors
                    );
                }
            };
            let report = hub.run_directory_sync(&connection, idplex_hub::SyncTrigger::Manual, Some(&progress)).await?;
            if interactive {
                eprintln!();
            }
            emit(json_out, &serde_json::to_value(&report)?, || {
                let t = &report.totals;
                let mut line = format!(
                    "sync run {} of {}: {} in {:.1} s — {} pass, {} pages, {} users and {} groups seen, {} created, {} changed, {} removed, {} warnings/errors",
                    report.run_id, report.connection_id, report.outcome, report.duration_ms as f64 / 1000.0,
                    t.pass_kind.as_deref().unwrap_or("?"), t.pages, t.users_seen, t.groups_seen, t.created, t.changed, t.removed, t.errors
                );
                if let Some(m) = &report.message {
                    line.push_str(&format!("\n  error: {m}\n  (idplex sync log {} shows every problem)", report.connection_id));
                }
                line
            });
            if report.outcome != "ok" {
                return Err(HubError::Invalid { what: "directory sync", reason: report.message.unwrap_or_default() }.into());
            }
        }
        SyncCmd::Status { connection, runs } => {
            let status = hub.directory_sync_status(&connection, runs).await?;
            emit(json_out, &serde_json::to_value(&status)?, || {
                let mut lines = Vec::new();
                match &status.state {
                    None => lines.push(format!("connection {connection}: never synced, no schedule")),
                    Some(st) => {
                        lines.push(format!(
                            "connection {connection}: schedule {}{}",
                            if st.enabled { format!("every {} min", st.interval_secs / 60) } else { "off".into() },
                            st.next_run_at.map(|t| format!(", next run {}", rfc3339(t))).unwrap_or_default()
                        ));
                        if let Some(p) = &st.pass {
                            lines.push(format!("  pass {} ({}) in progress since {}: {} pages applied", p.id, p.kind, rfc3339(p.started_at), p.pages));
                        }
                        lines.push(format!("  next pass: {}", if st.resume_cursor.is_some() { "delta" } else { "full" }));
                    }
                }
                for r in &status.recent_runs {
                    lines.push(format!(
                        "  run {} {} {:<8} {} {:>7.1} s  {} pages, {} users, {} groups; +{} ~{} -{}; {} problems{}",
                        r.id, rfc3339(r.started_at), r.outcome, r.pass_kind.as_deref().unwrap_or("-"),
                        r.finished_at.map_or(0.0, |f| (f - r.started_at) as f64 / 1000.0),
                        r.pages, r.users_seen, r.groups_seen, r.created, r.changed, r.removed, r.errors,
                        r.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
                    ));
                }
                lines.join("\n")
            });
        }
        SyncCmd::Schedule { connection, every, off } => {
            let state = hub.set_directory_sync_schedule(&connection, !off, Duration::from_secs(every * 60)).await?;
            emit(json_out, &serde_json::to_value(&state)?, || {
                if state.enabled {
                    format!("connection {connection}: pulled every {} minutes", state.interval_secs / 60)
                } else {
                    format!("connection {connection}: scheduled sync off")
                }
            });
        }
        SyncCmd::Log { connection, limit } => {
            let lines = hub.directory_sync_log(&connection, limit).await?;
            emit(json_out, &json!({ "connection_id": connection, "log": lines }), || {
                lines.iter().map(|l| format!("{} run {} {:<7} {}", rfc3339(l.at), l.run_id, l.level, l.message)).collect::<Vec<_>>().join("\n")
            });
        }
    }
    Ok(())
}

async fn sync_log(hub: &Hub, json_out: bool, connection: &str, query: &SyncLogQuery) -> anyhow::Result<()> {
    let page = hub.sync_log(connection, query).await?;
    let value = json!({ "connection_id": connection, "entries": page.entries, "next": page.next });
    emit(json_out, &value, || {
        if page.entries.is_empty() {
            return format!("no SCIM requests recorded for connection {connection}");
        }
        let mut lines = vec![format!(
            "{:<24}  {:<8} {:<48} {:>6}  {:<15} {}",
            "TIME", "OP", "REQUEST", "STATUS", "OUTCOME", "DETAIL"
        )];
        for r in &page.entries {
            let e = &r.entry;
            let detail = match (&e.scim_type, &e.detail) {
                (Some(t), Some(d)) => format!("{t}: {d}"),
                (None, Some(d)) => d.clone(),
                (Some(t), None) => t.clone(),
                (None, None) => "-".into(),
            };
            lines.push(format!(
                "{:<24}  {:<8} {:<48} {:>6}  {:<15} {}",
                rfc3339(e.at),
                e.operation.as_str(),
                format!("{} {}", e.method, e.path),
                e.status,
                e.outcome.as_str(),
                detail.replace('\n', " ")
            ));
        }
        if let Some(next) = page.next {
            lines.push(format!("(more: --before {next})"));
        }
        lines.join("\n")
    });
    Ok(())
}

async fn user_token(hub: &Hub, json_out: bool, cmd: UserTokenCmd) -> anyhow::Result<()> {
    match cmd {
        UserTokenCmd::Create { user_id, label, ttl_days } => {
            let (tok, secret) = hub.create_user_api_token(&user_id, &label, Some(ttl_days)).await?;
            emit(json_out, &json!({ "token": tok, "secret": secret }), || {
                format!(
                    "API token {} for user {} (expires {}); secret (shown once):\n{secret}",
                    tok.id,
                    tok.user_id,
                    rfc3339(tok.expires_at)
                )
            });
        }
        UserTokenCmd::List { user, org } => {
            let filter = match (&user, &org) {
                (Some(u), _) => UserTokenFilter::User(u),
                (None, Some(o)) => UserTokenFilter::Org(o),
                (None, None) => UserTokenFilter::All,
            };
            // Every page: the CLI lists them all.
            let mut toks = Vec::new();
            let mut before = None;
            loop {
                let page = hub.user_api_tokens(filter, None, before.as_ref()).await?;
                toks.extend(page.tokens);
                match page.next {
                    Some(next) => before = Some(next),
                    None => break,
                }
            }
            emit(json_out, &json!({ "tokens": toks }), || {
                toks.iter()
                    .map(|t| {
                        let state = if t.token.revoked_at.is_some() {
                            "revoked"
                        } else if t.token.expires_at <= now_ms() {
                            "expired"
                        } else if t.user_scim_deleted_at.is_some() || !t.user_active {
                            "suspended (user inactive)"
                        } else {
                            "active"
                        };
                        format!(
                            "{}  {}…  {:<20} user {} ({})  last used {}  expires {}  {state}",
                            t.token.id,
                            t.token.prefix,
                            t.token.label,
                            t.user_name,
                            t.token.user_id,
                            t.token.last_used_at.map_or_else(|| "never".into(), rfc3339),
                            rfc3339(t.token.expires_at)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        UserTokenCmd::Revoke { id } => {
            let tok = hub.revoke_user_api_token(&id).await?;
            emit(json_out, &json!({ "token": tok }), || format!("revoked {}", tok.id));
        }
    }
    Ok(())
}

async fn token(hub: &Hub, json_out: bool, cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create { name, expires_days } => {
            let (tok, secret) = hub.create_admin_token(&name, (expires_days > 0).then_some(expires_days)).await?;
            emit(json_out, &json!({ "token": tok, "secret": secret }), || {
                format!("admin token {} created; secret (shown once):\n{secret}", tok.id)
            });
        }
        TokenCmd::List => {
            let toks = hub.admin_tokens().await?;
            emit(json_out, &json!({ "tokens": toks }), || {
                toks.iter()
                    .map(|t| format!("{}  {:<20} revoked={}", t.id, t.name, t.revoked_at.is_some()))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        TokenCmd::Revoke { id } => {
            let tok = hub.revoke_admin_token(&id).await?;
            emit(json_out, &json!({ "token": tok }), || format!("revoked {}", tok.id));
        }
    }
    Ok(())
}

async fn scim_token(hub: &Hub, json_out: bool, cmd: ScimTokenCmd) -> anyhow::Result<()> {
    match cmd {
        ScimTokenCmd::Create { connection, expires_days } => {
            let expires = now_ms() + i64::from(expires_days.max(1)) * 86_400_000;
            let (tok, secret) = hub.create_scim_token(&connection, Some(expires)).await?;
            emit(json_out, &json!({ "token": tok, "secret": secret, "scim_path": format!("/scim/v2/{connection}") }), || {
                format!("SCIM token {} for /scim/v2/{connection}; secret (shown once):\n{secret}", tok.id)
            });
        }
        ScimTokenCmd::List { connection } => {
            let toks = hub.scim_tokens(&connection).await?;
            emit(json_out, &json!({ "tokens": toks }), || {
                toks.iter()
                    .map(|t| format!("{}  expires {}  revoked={}", t.id, t.expires_at, t.revoked_at.is_some()))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ScimTokenCmd::Rotate { connection, token, overlap_hours } => {
            let overlap = i64::from(overlap_hours) * 3_600_000;
            let (tok, secret) = hub.rotate_scim_token(&connection, &token, overlap).await?;
            emit(json_out, &json!({ "token": tok, "secret": secret }), || {
                format!("new SCIM token {} (old one works for {overlap_hours} h more); secret (shown once):\n{secret}", tok.id)
            });
        }
        ScimTokenCmd::Revoke { connection, token } => {
            let tok = hub.revoke_scim_token(&connection, &token).await?;
            emit(json_out, &json!({ "token": tok }), || format!("revoked {}", tok.id));
        }
    }
    Ok(())
}

fn saml_text(v: &idplex_hub::SamlView) -> String {
    let mut out = vec![
        format!("connection        {}", v.connection_id),
        format!("sign-in           {}", if v.enabled { "enabled" } else { "disabled" }),
        String::new(),
        "Enter at the IdP:".to_owned(),
        format!("  SP entity ID    {}", v.sp_entity_id),
        format!("  ACS URL         {}", v.acs_url),
        format!("  SP metadata     {}", v.metadata_url),
        String::new(),
        format!("IdP entity ID     {}", v.idp_entity_id),
        format!("IdP SSO URL       {}", v.sso_url),
    ];
    if v.certificates.is_empty() {
        out.push("certificates      none (sign-in cannot be enabled)".to_owned());
    }
    for c in &v.certificates {
        out.push(format!(
            "certificate       {} sha256 {} until {}{}",
            c.subject,
            c.sha256_fingerprint,
            c.not_after,
            if c.expired { " (EXPIRED: roll it over)" } else { "" }
        ));
    }
    out.push(format!("IdP-initiated     {}", if v.allow_idp_initiated { "accepted" } else { "refused" }));
    out.push(format!("response-only sig {}", if v.allow_response_only_signing { "accepted" } else { "refused" }));
    out.push(format!("JIT provisioning  {}", if v.jit { "on" } else { "off" }));
    out.push(format!(
        "session lifetime  {}",
        v.session_ttl_minutes.map_or_else(|| "default".to_owned(), |m| format!("{m} min"))
    ));
    if let Some(until) = &v.metadata_valid_until {
        out.push(format!("metadata valid    until {until}"));
    }
    out.push(format!("domains           {}", if v.domains.is_empty() { "-".to_owned() } else { v.domains.join(", ") }));
    out.push(format!("login URL         {}", v.login_url));
    out.join("\n")
}

fn app_text(app: &idplex_hub::AppView) -> String {
    format!("{}  {}  org {}  redirect {}", app.client_id, app.name, app.org_id, app.redirect_uris.join(" "))
}

async fn app(hub: &Hub, json_out: bool, cmd: AppCmd) -> anyhow::Result<()> {
    let show = |app: &idplex_hub::AppView| -> anyhow::Result<()> {
        emit(json_out, &serde_json::to_value(app)?, || match &app.client_secret {
            Some(secret) => format!(
                "{}\nclient_id:     {}\nclient_secret: {secret}  (shown once: store it in the app now)\n\
                 issuer:        {}",
                app_text(app),
                app.client_id,
                hub.oidc_issuer()
            ),
            None => app_text(app),
        });
        Ok(())
    };
    match cmd {
        AppCmd::Create { org, name, redirect_uris } => {
            show(&hub.create_app(idplex_hub::NewApp { org_id: org, name, redirect_uris }).await?)?;
        }
        AppCmd::List => {
            let apps = hub.apps().await?;
            emit(json_out, &json!({ "apps": apps }), || {
                if apps.is_empty() { "no apps".to_owned() } else { apps.iter().map(app_text).collect::<Vec<_>>().join("\n") }
            });
        }
        AppCmd::Show { app } => show(&hub.app(&app).await?)?,
        AppCmd::Update { app, name, redirect_uris } => {
            let update = idplex_hub::AppUpdate { name, redirect_uris: (!redirect_uris.is_empty()).then_some(redirect_uris) };
            show(&hub.update_app(&app, update).await?)?;
        }
        AppCmd::RotateSecret { app } => show(&hub.rotate_app_secret(&app).await?)?,
        AppCmd::Delete { app } => {
            hub.delete_app(&app).await?;
            emit(json_out, &json!({ "deleted": app }), || format!("deleted app {app}"));
        }
    }
    Ok(())
}

async fn oidc(hub: &Hub, json_out: bool, cmd: OidcCmd) -> anyhow::Result<()> {
    let keys = match cmd {
        OidcCmd::Keys => hub.oidc_keys().await?,
        OidcCmd::RotateKey => vec![hub.rotate_oidc_key().await?],
    };
    emit(json_out, &json!({ "keys": keys }), || {
        if keys.is_empty() {
            return "no signing key yet (one is made at the first sign-in, or with `idplex oidc rotate-key`)".to_owned();
        }
        keys.iter()
            .map(|k| match k.retired_at {
                None => format!("{}  {}  signing", k.kid, k.alg),
                Some(at) => format!("{}  {}  retired at {at}", k.kid, k.alg),
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

async fn org(hub: &Hub, json_out: bool, cmd: OrgCmd) -> anyhow::Result<()> {
    let OrgCmd::SessionPolicy { org, idle_minutes, absolute_minutes } = cmd;
    let mut policy = hub.org_session_policy(&org).await?;
    if idle_minutes.is_some() || absolute_minutes.is_some() {
        let off_if_zero = |v: i64| (v != 0).then_some(v);
        if let Some(v) = idle_minutes {
            policy.session_idle_minutes = off_if_zero(v);
        }
        if let Some(v) = absolute_minutes {
            policy.session_absolute_minutes = off_if_zero(v);
        }
        policy = hub.set_org_session_policy(&org, policy).await?;
    }
    let show = |v: Option<i64>| v.map_or("off".to_owned(), |m| format!("{m} min"));
    emit(json_out, &serde_json::to_value(&policy)?, || {
        format!(
            "organization {org}: idle timeout {}, absolute timeout {}",
            show(policy.session_idle_minutes),
            show(policy.session_absolute_minutes)
        )
    });
    Ok(())
}

async fn saml(hub: &Hub, json_out: bool, cmd: SamlCmd) -> anyhow::Result<()> {
    let view = match cmd {
        SamlCmd::Show { connection } => hub.saml(&connection).await?,
        SamlCmd::Metadata { connection } => {
            print!("{}", hub.saml_sp_metadata(&connection).await?);
            return Ok(());
        }
        SamlCmd::Import { connection, file, entity_id, enable } => {
            let xml = if file.as_os_str() == "-" {
                let mut buf = String::new();
                std::io::Read::read_to_string(&mut std::io::Read::take(std::io::stdin(), 4 << 20), &mut buf)?;
                buf
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("cannot read metadata file {}", file.display()))?
            };
            hub.import_saml_metadata(&connection, &xml, entity_id.as_deref(), enable).await?
        }
        SamlCmd::Set {
            connection,
            idp_entity_id,
            sso_url,
            certificates,
            enabled,
            allow_idp_initiated,
            allow_response_only_signing,
            sign_authn_requests,
            slo_url,
            jit_sync_groups,
            jit,
            session_ttl_minutes,
        } => {
            let certificates = if certificates.is_empty() {
                None
            } else {
                let mut texts = Vec::new();
                for path in &certificates {
                    let bytes = std::fs::read(path).with_context(|| format!("cannot read certificate {}", path.display()))?;
                    texts.push(match String::from_utf8(bytes) {
                        Ok(text) => text,
                        Err(e) => base64::Engine::encode(&base64::engine::general_purpose::STANDARD, e.as_bytes()),
                    });
                }
                Some(texts)
            };
            let update = idplex_hub::SamlUpdate {
                idp_entity_id,
                sso_url,
                certificates,
                enabled,
                allow_idp_initiated,
                allow_response_only_signing,
                sign_authn_requests,
                slo_url,
                jit_sync_groups,
                jit,
                session_ttl_minutes: session_ttl_minutes.map(Some),
            };
            hub.set_saml(&connection, update).await?
        }
        SamlCmd::Domains { connection, domains } => {
            let set = hub.set_sso_domains(&connection, &domains).await?;
            emit(json_out, &json!({ "domains": set }), || {
                if set.is_empty() { "no domains routed".to_owned() } else { format!("routed: {}", set.join(", ")) }
            });
            return Ok(());
        }
        SamlCmd::Delete { connection } => {
            hub.delete_saml(&connection).await?;
            emit(json_out, &json!({ "deleted": connection }), || format!("SAML sign-in removed from {connection}"));
            return Ok(());
        }
        SamlCmd::SpKey(cmd) => {
            let key = match cmd {
                SpKeyCmd::Show => hub.saml_sp_key().await?,
                SpKeyCmd::Generate => Some(hub.generate_saml_sp_key().await?),
                SpKeyCmd::Import { key, certificate } => {
                    let key = std::fs::read(&key).with_context(|| format!("cannot read key {}", key.display()))?;
                    let cert = std::fs::read_to_string(&certificate)
                        .with_context(|| format!("cannot read certificate {}", certificate.display()))?;
                    Some(hub.import_saml_sp_key(&key, &cert).await?)
                }
            };
            emit(json_out, &json!({ "sp_key": key }), || match &key {
                None => "no SP signing key (idplex saml sp-key generate)".to_owned(),
                Some(k) => format!(
                    "SP signing key {}\nsubject:     {}\nsha256:      {}\nvalid:       {} to {}\n{}",
                    k.id, k.subject, k.sha256_fingerprint, k.not_before, k.not_after, k.certificate_pem
                ),
            });
            return Ok(());
        }
    };
    emit(json_out, &serde_json::to_value(&view).unwrap_or_default(), || saml_text(&view));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_panic_is_one_bounded_escaped_json_log_line() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().json().with_writer(move || writer.clone()).finish();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(super::log_panic));
        let outcome = tracing::subscriber::with_default(subscriber, || {
            std::panic::catch_unwind(|| {
                panic!("bad input {}\n{{\"forged\": \"log line\"}}{}", "\u{1b}[31m", "x".repeat(10_000))
            })
        });
        std::panic::set_hook(previous);
        assert!(outcome.is_err());
        let out = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "one line, whatever the message holds: {out}");
        let event: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(event["level"], "ERROR");
        let fields = &event["fields"];
        assert!(fields["message"].as_str().unwrap().starts_with("panic"), "{event}");
        assert!(fields["location"].as_str().unwrap().contains("main.rs"), "{event}");
        let panic = fields["panic"].as_str().unwrap();
        assert!(panic.contains("bad input"), "{panic}");
        assert!(panic.len() < 1200, "the message is cut at 1 KiB: {} bytes", panic.len());
        assert!(!lines[0].contains('\u{1b}'), "control characters are escaped");
    }
}
