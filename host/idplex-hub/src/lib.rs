//! The application services of idplex, shared by the CLI and the HTTP server.
//!
//! [`Hub`] ties the [`Store`] (what is installed and bound, durably) to the connector
//! [`Runtime`] (what is compiled and callable, in this process): it installs modules, binds
//! connections to connector versions and swaps them atomically, keeps the in-process bindings in
//! step with the store (so a change made by another process or replica takes effect without a
//! restart), and records every connector failure where an admin reads it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idplex_runtime::{
    Binding, CallContext, CallError, ConfigViolation, ConnectorInfo, Credential, EgressPolicy,
    InstallError, LoadedConnector, ModuleHash, Operation, Registry, Runtime, ScimRequest,
    SsoIdentity, VerifiedAssertion,
};
use idplex_store::{
    Connection, ConnectionUpdate, EventKind, InsertOutcome, ModuleSummary, NewConnection, NewEvent,
    NewModule, Store, StoreError,
};
use serde::Serialize;

pub use secrets::{SecretError, SecretKey};

mod admin;
pub mod conformance;
pub mod directory_sync;
pub mod native_scim;
pub mod provisioning;
pub mod secrets;
pub mod oidc;
pub mod sso;
pub mod sp_key;
pub mod trust;
mod users;
pub mod vendor;

pub use provisioning::{ScimCall, ScimReply, ScimService, ScimTarget, ScimTypes};
pub use oidc::{AppUpdate, AppView, AuthorizeOutcome, AuthorizeParams, BasicCredentials, NewApp, OidcError, SigningKeyView, TokenForm};
pub use sp_key::SpKeyView;
pub use sso::{SamlUpdate, SamlView, SignInStart, SignedIn, SignedOut, SingleLogout, SsoError, SsoErrorClass};
pub use users::UserCredential;
pub use directory_sync::{SyncProgress, SyncReport, SyncStatus, Trigger as SyncTrigger};
pub use admin::{CheckOutcome, ConnectionTest, MAX_ADMIN_TOKEN_TTL_DAYS, MAX_SESSION_TTL_MINUTES, MAX_USER_TOKEN_TTL_DAYS};
pub use conformance::{CaseOutcome, CheckCase, CheckOptions, CheckReport, check_component};

/// The store's plain data types and settings that front ends name (records they show, queries
/// and filters they decode, retention settings). The store itself is reached through [`Hub`].
pub mod store {
    pub use idplex_store::{
        Connection, ConnectionUpdate, DirectoryGroup, DirectoryUser, EventRetention, MAX_DIRECTORY_LIST_LIMIT,
        NewConnection, NewDirectoryGroup, NewDirectoryUser, OpenOptions, OrgSessionPolicy, OutcomeFilter, ScimDeletePolicy, SqliteSync,
        StoreError,
        SyncLogCursor, SyncLogQuery, UserTokenCursor, UserTokenFilter,
    };
    pub use idplex_store::{Admission, ModulePublisher, TrustPolicy, TrustRule, TrustedKey};
}

/// The connector runtime's data types and settings that front ends name (the contract's
/// request and operation records, the runtime's configuration).
pub mod runtime {
    pub use idplex_runtime::{
        CONTRACT_VERSION, CallError, DEFAULT_MAX_INSTANCES_PER_CONNECTION, InstallError, ListQuery, Operation, PatchOp, ResourceKind,
        RuntimeConfig, SamlAttribute, ScimRequest, VerifiedAssertion,
    };
}

/// The public URL a hub assumes until [`Hub::set_public_url`].
pub const DEFAULT_PUBLIC_URL: &str = "http://localhost:8080";

/// Config keys with this prefix are secrets: never handed to a connector, never listed back.
/// `secret.authorization` is attached by the host as the `Authorization` header of allowed
/// egress requests.
pub const SECRET_PREFIX: &str = "secret.";

/// What went wrong, in the admin's terms. [`HubError::class`] groups the variants for exit codes
/// and HTTP statuses.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The module was refused at install.
    #[error("connector refused: {0}")]
    Refused(#[from] InstallError),
    /// The store failed or the object does not exist / conflicts.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A connector call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The connection has no active connector version.
    #[error("connection {0} is not bound to any connector version; activate one first (idplex connector activate)")]
    NotBound(String),
    /// The connection has an active version, but this process could not bind it (the module
    /// failed to load, its config or limits are invalid, a secret cannot be opened).
    #[error("connection {connection} could not be bound: {reason}")]
    BindFailed { connection: String, reason: String },
    /// The bound connector does not implement what was asked.
    #[error("connector {connector} does not declare the {capability} capability")]
    MissingCapability { connector: String, capability: &'static str },
    /// Input the hub refuses.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// A connection secret could not be opened, or the key could not be loaded.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A connection's config does not satisfy its connector's `config-schema` (the message names
    /// the fields, never a `secret.*` value).
    #[error(transparent)]
    Config(#[from] ConfigViolation),
    /// The module's signature is invalid, or the deployment's trust policy refuses its publisher
    /// (or its lack of a signature) ([`trust`]).
    #[error("connector refused: {0}")]
    Trust(#[from] trust::TrustRefusal),
}

/// Coarse classes of [`HubError`], for CLI exit codes and HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The named object does not exist.
    NotFound,
    /// The request conflicts with the current state.
    Conflict,
    /// The input (module, config, request) is unacceptable.
    Invalid,
    /// A connector misbehaved (trap, timeout, limits, egress).
    ConnectorFault,
    /// The connector ran and refused the input.
    ConnectorRefused,
    /// Anything else (database down, I/O).
    Internal,
}

impl HubError {
    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            HubError::Refused(InstallError::Busy { .. }) => ErrorClass::Internal,
            HubError::Refused(_)
            | HubError::Invalid { .. }
            | HubError::MissingCapability { .. }
            | HubError::Config(_)
            | HubError::Trust(_) => ErrorClass::Invalid,
            HubError::NotBound(_) | HubError::BindFailed { .. } => ErrorClass::Conflict,
            HubError::Store(e) if e.is_not_found() => ErrorClass::NotFound,
            HubError::Store(StoreError::NothingToRollBack { .. }) => ErrorClass::Conflict,
            HubError::Store(e) if e.is_conflict() => ErrorClass::Conflict,
            HubError::Store(StoreError::InvalidInput { .. }) => ErrorClass::Invalid,
            HubError::Store(_) | HubError::Secret(_) => ErrorClass::Internal,
            HubError::Call(CallError::Connector { .. }) => ErrorClass::ConnectorRefused,
            HubError::Call(_) => ErrorClass::ConnectorFault,
        }
    }

    /// A short, stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            HubError::Refused(e) => e.kind(),
            HubError::Call(e) => e.kind(),
            HubError::NotBound(_) => "not_bound",
            HubError::BindFailed { .. } => "bind_failed",
            HubError::MissingCapability { .. } => "missing_capability",
            HubError::Invalid { .. } => "invalid",
            HubError::Secret(_) => "secret",
            HubError::Config(_) => "config_invalid",
            HubError::Trust(e) => e.kind(),
            HubError::Store(_) => match self.class() {
                ErrorClass::NotFound => "not_found",
                ErrorClass::Conflict => "conflict",
                ErrorClass::Invalid => "invalid",
                _ => "store",
            },
        }
    }
}

/// The outcome of an install, as shown to admins and scripts.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    /// `installed`, or `already_installed` when the same bytes were there.
    pub outcome: &'static str,
    /// Content address.
    pub sha256: String,
    /// Connector name.
    pub name: String,
    /// Connector version.
    pub version: String,
    /// Contract version it was built against.
    pub contract_version: String,
    /// Size of the component.
    pub size_bytes: usize,
    /// The connector's self-description.
    pub info: serde_json::Value,
    /// Who published it, as the trust policy judged it ([`trust`]).
    pub publisher: idplex_store::ModulePublisher,
}

/// Diagnostic switches of a [`Hub`]. `Default` is what production runs.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// **Benchmarking aid, never for production.** SCIM requests of every bound connection are
    /// normalized and rendered by the host's native generic RFC 7644 dialect ([`native_scim`])
    /// instead of the connection's connector: no sandbox, no IdP dialect. Exists so that
    /// `scripts/bench-scim` can measure what the connector costs (`idplex serve
    /// --native-scim-passthrough`).
    pub native_scim_passthrough: bool,
    /// **Tests and local development only.** Connectors may reach loopback destinations over
    /// plain `http://`, the credential included (`idplex serve
    /// --insecure-egress-http-loopback`). Off: egress is https only.
    pub egress_plain_http_loopback: bool,
    /// **Tests and local development only.** Egress to an allowed https destination
    /// (`host[:port]`) goes over plain http to a loopback `ip:port` instead, credential
    /// included, on directory pulls (`idplex serve|sync run --insecure-egress-redirect
    /// graph.microsoft.com=127.0.0.1:PORT`): a local stand-in of the IdP's API, the connector
    /// unchanged.
    pub egress_redirects: Vec<(String, String)>,
}

/// Store + runtime + the live bindings of this process.
pub struct Hub {
    store: Store,
    runtime: Runtime,
    registry: Registry,
    loaded: Mutex<HashMap<String, Arc<LoadedConnector>>>,
    options: HubOptions,
    /// Seals `secret.*` config values at rest ([`secrets`]).
    secrets: SecretKey,
    /// Connections whose active version this process could not bind: the connection's
    /// `updated_at` that failed, and why (answered instead of "not bound", and recorded as an
    /// event once per change).
    bind_failures: Mutex<HashMap<String, (i64, String)>>,
    /// The URL browsers and IdPs reach this deployment at (SAML entity IDs and ACS URLs derive
    /// from it): `http://localhost:8080` until [`Hub::set_public_url`].
    public_url: std::sync::RwLock<String>,
    /// Each SAML connection's trusted IdP, parsed once per settings change ([`sso`]).
    sso_idps: Mutex<HashMap<String, (i64, Arc<idplex_saml::IdpConfig>)>>,
    /// How many SAML refusals each connection recorded as events this minute ([`sso`]).
    sso_refusals: sso::RefusalBudget,
    /// Sign-ins each connection may start (a token bucket per connection, [`sso`]).
    sso_starts: sso::StartBudget,
    /// The SP signing key's signer, parsed once per key ([`sp_key`]).
    sp_signer: Mutex<Option<(String, Arc<idplex_saml::authn_request::RedirectSigner>, Arc<idplex_saml::cert::Certificate>)>>,
    /// Access tokens of the connections' credential providers ([`directory_sync::credentials`]).
    credentials: directory_sync::credentials::CredentialCache,
}

impl Hub {
    /// A hub over `store` and `runtime` with no bindings yet (see [`Hub::sync_bindings`]).
    pub fn new(store: Store, runtime: Runtime) -> Arc<Hub> {
        Hub::with_options(store, runtime, HubOptions::default())
    }

    /// [`Hub::new`] with diagnostic [`HubOptions`]. Secrets are sealed with a key that lives
    /// only in this process ([`SecretKey::ephemeral`]): use [`Hub::open`] to keep them.
    pub fn with_options(store: Store, runtime: Runtime, options: HubOptions) -> Arc<Hub> {
        Hub::open(store, runtime, options, SecretKey::ephemeral())
    }

    /// A hub whose connection secrets are sealed with `secrets` (the key file every process
    /// sharing the store loads, see [`secrets`]).
    pub fn open(store: Store, runtime: Runtime, options: HubOptions, secrets: SecretKey) -> Arc<Hub> {
        if options.native_scim_passthrough {
            tracing::warn!(
                "NATIVE SCIM PASS-THROUGH ENABLED: SCIM requests bypass the connectors and their \
                 sandbox (benchmarking aid only, never use in production)"
            );
        }
        Arc::new(Hub {
            store,
            runtime,
            registry: Registry::new(),
            loaded: Mutex::default(),
            options,
            secrets,
            bind_failures: Mutex::default(),
            public_url: std::sync::RwLock::new(DEFAULT_PUBLIC_URL.to_owned()),
            sso_idps: Mutex::default(),
            sso_refusals: sso::RefusalBudget::default(),
            sso_starts: sso::StartBudget::default(),
            credentials: Default::default(),
            sp_signer: Mutex::default(),
        })
    }

    /// A hub over the database at `db_url` (`sqlite://PATH` or `postgres://…`, migrated, opened
    /// with `open`) and a new runtime with `runtime`: what `idplex` opens for every command.
    pub async fn connect(
        db_url: &str,
        open: &idplex_store::OpenOptions,
        runtime: idplex_runtime::RuntimeConfig,
        options: HubOptions,
        secrets: SecretKey,
    ) -> anyhow::Result<Arc<Hub>> {
        let store = Store::open_with(db_url, open).await.map_err(HubError::from)?;
        let runtime = Runtime::new(runtime)?;
        Ok(Hub::open(store, runtime, options, secrets))
    }

    /// Sets the URL browsers and IdPs reach this deployment at (`https://idplex.example.com`,
    /// no trailing slash, no path query or fragment): SAML entity IDs and ACS URLs derive from
    /// it, and an IdP checks them byte for byte.
    pub fn set_public_url(&self, url: &str) -> Result<(), HubError> {
        let url = url.trim_end_matches('/');
        let invalid = |reason: &str| HubError::Invalid { what: "public URL", reason: format!("{url:?}: {reason}") };
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| invalid("must start with https:// (or http:// for local testing)"))?;
        if rest.is_empty() || rest.contains(['?', '#', '@']) || !url.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("must be a scheme and a host (and port, and path), nothing else"));
        }
        *self.public_url.write().unwrap_or_else(std::sync::PoisonError::into_inner) = url.to_owned();
        Ok(())
    }

    /// The URL this deployment is reached at ([`Hub::set_public_url`]).
    pub fn public_url(&self) -> String {
        self.public_url.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The store, for tests and benchmarks that seed or inspect it (feature `test-support`):
    /// the server and the CLI reach it only through the services (`tests/layers.rs` holds them
    /// to it).
    #[cfg(feature = "test-support")]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The runtime, for tests and benchmarks (feature `test-support`).
    #[cfg(feature = "test-support")]
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Create a connection, its `secret.*` config values sealed ([`secrets`]).
    ///
    /// The config must satisfy the `config-schema` of at least one installed version of the
    /// connector (the newest one's objections are reported otherwise); activating a version
    /// checks it against that version's schema ([`Hub::activate`]). With no version installed
    /// yet, the check waits for the activation.
    pub async fn create_connection(&self, new: NewConnection) -> Result<Connection, HubError> {
        let config = secrets_as_strings(new.config);
        let versions = self.store.list_versions(&new.connector_name).await?;
        if versions.is_empty() {
            return Err(HubError::Invalid {
                what: "connection",
                reason: format!(
                    "connector `{}` is not installed: install it first (`idplex connector install FILE.wasm`), \
                     or pick one of the installed connectors (`idplex connector list`)",
                    new.connector_name
                ),
            });
        }
        let mut refusal = None;
        for summary in versions.iter().rev() {
            let loaded = self.connector(&summary.sha256).await?;
            match check_connection_config(&loaded, &config) {
                Ok(()) => {
                    refusal = None;
                    break;
                }
                Err(e) => {
                    refusal.get_or_insert(e);
                }
            }
        }
        if let Some(e) = refusal {
            return Err(e.into());
        }
        // Checked for shape here; a token endpoint on plain http (loopback only) is refused when
            // used, unless this process allows it (tests).
            directory_sync::credentials::CredentialSpec::from_config(&config, true)?;
        let new = NewConnection { config: self.secrets.seal_config(config), ..new };
        Ok(self.store.create_connection(&new).await?)
    }

    /// Replace parts of a connection's admin configuration: its config (checked against the
    /// active version's `config-schema`, `secret.*` values sealed), egress allow-list or limits;
    /// then rebind it in this process (other processes follow through the watcher).
    pub async fn update_connection(&self, id: &str, update: ConnectionUpdate) -> Result<Connection, HubError> {
        if update.config.is_none() && update.egress_allow.is_none() && update.limits.is_none() {
            return Err(HubError::Invalid {
                what: "connection update",
                reason: "nothing to change: give config, egress_allow or limits".into(),
            });
        }
        let mut update = update;
        let current = self.store.get_connection(id).await?;
        if let Some(config) = update.config.take() {
            let config = secrets_as_strings(config);
            // Checked for shape here; a token endpoint on plain http (loopback only) is refused when
            // used, unless this process allows it (tests).
            directory_sync::credentials::CredentialSpec::from_config(&config, true)?;
            if let Some(version) = &current.active_version {
                let (_, loaded) = self.connector_version(&current.connector_name, version).await?;
                check_connection_config(&loaded, &config)?;
            }
            update.config = Some(self.secrets.seal_config(config));
        }
        // The binding the change leads to is made before the change is written: a config the
        // active version cannot serve with (its declared schema extensions unusable, a secret
        // that cannot be opened) is refused, and the connection keeps working as it was.
        let prepared = match &current.active_version {
            Some(version) => {
                let candidate = Connection {
                    config: update.config.clone().unwrap_or_else(|| current.config.clone()),
                    egress_allow: update.egress_allow.clone().unwrap_or_else(|| current.egress_allow.clone()),
                    limits: update.limits.clone().unwrap_or_else(|| current.limits.clone()),
                    ..current.clone()
                };
                Some(self.prepare_binding(&candidate, version).await?)
            }
            None => None,
        };
        let conn = self.store.update_connection_config(id, &update).await?;
        match prepared {
            // Changed again by someone else in between: bind what the store holds now.
            Some(prepared) if conn.active_version == current.active_version => {
                self.publish(&conn, prepared);
            }
            Some(_) => {
                if let Err(e) = self.bind(&conn).await {
                    self.bind_failed(&conn, &e).await;
                    return Err(e);
                }
            }
            None => {}
        }
        Ok(conn)
    }

    /// A stored config with its `secret.*` values opened, to check it against a schema.
    fn opened_config(&self, config: &serde_json::Value) -> Result<serde_json::Value, HubError> {
        let Some(map) = config.as_object() else {
            return Ok(config.clone());
        };
        let mut out = serde_json::Map::new();
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(text) if k.starts_with(SECRET_PREFIX) => {
                    serde_json::Value::String(self.secrets.open(k, text)?)
                }
                other => other.clone(),
            };
            out.insert(k.clone(), v);
        }
        Ok(serde_json::Value::Object(out))
    }

    /// Validate, compile and persist a module. The same bytes twice is not an error.
    ///
    /// The names of the first-party connectors shipped in this binary ([`idplex_bundled`]) are
    /// reserved: a component describing itself under one of them is refused
    /// ([`InstallError::ReservedName`]) unless it is byte for byte the bundled one.
    ///
    /// Then the deployment's trust policy judges the module ([`trust`]): a signature that does
    /// not verify is refused, and so is an unsigned module or one signed by a key the deployment
    /// does not trust unless the policy allows it ([`HubError::Trust`], recorded as an
    /// `install_refused` event). The bytes are stored as sent (signature included), with who
    /// published them.
    pub async fn install(&self, bytes: &[u8]) -> Result<InstallReport, HubError> {
        let (loaded, publisher) = self.admit(bytes, "upload").await?;
        let version = loaded.info().version.clone();
        let report = self.store_module(loaded, publisher, version).await?;
        tracing::info!(connector = %format!("{}@{}", report.name, report.version), sha256 = %report.sha256, outcome = report.outcome, "connector installed");
        Ok(report)
    }

    /// What every install goes through: the runtime's validation (with the reserved first-party
    /// names), then the trust policy. A refusal of either is recorded as an `install_refused`
    /// event naming `what` (an upload, a dev build) or the module.
    pub(crate) async fn admit(&self, bytes: &[u8], what: &str) -> Result<(Arc<LoadedConnector>, idplex_store::ModulePublisher), HubError> {
        let refused = |connector: String, message: String| NewEvent {
            at: None,
            connection_id: None,
            connector,
            kind: EventKind::InstallRefused,
            message,
        };
        let loaded = match self.runtime.install_with(bytes, &reserve_first_party_names).await {
            Ok(l) => Arc::new(l),
            Err(e) => {
                if let Err(store_err) = self.store.record_event(&refused(format!("{what} of {} bytes", bytes.len()), e.to_string())).await {
                    tracing::error!(error = %store_err, "could not record refused install");
                }
                tracing::warn!(reason = %e, "connector {what} refused");
                return Err(e.into());
            }
        };
        match self.judge(bytes, &loaded).await {
            Ok(publisher) => Ok((loaded, publisher)),
            Err(e) => {
                if let HubError::Trust(refusal) = &e {
                    if let Err(store_err) = self.store.record_event(&refused(loaded.label().to_string(), refusal.to_string())).await {
                        tracing::error!(error = %store_err, "could not record refused install");
                    }
                    tracing::warn!(reason = %refusal, "connector {what} refused by the trust policy");
                }
                Err(e)
            }
        }
    }

    /// Stores an admitted module as `name@version` with who published it, and keeps its loaded
    /// form. The same bytes again are `already_installed`.
    pub(crate) async fn store_module(
        &self,
        loaded: Arc<LoadedConnector>,
        publisher: idplex_store::ModulePublisher,
        version: String,
    ) -> Result<InstallReport, HubError> {
        let info = loaded.info();
        let outcome = self
            .store
            .insert_module_with_publisher(
                &NewModule {
                    name: info.name.clone(),
                    version: version.clone(),
                    contract_version: loaded.contract_version().to_string(),
                    info: info_json(info),
                    component: loaded.component_bytes().to_vec(),
                },
                Some(&publisher),
            )
            .await?;
        let report = InstallReport {
            outcome: match outcome {
                InsertOutcome::Inserted { .. } => "installed",
                InsertOutcome::AlreadyPresent { .. } => "already_installed",
            },
            sha256: loaded.hash().0.clone(),
            name: info.name.clone(),
            version,
            contract_version: loaded.contract_version().to_string(),
            size_bytes: loaded.component_bytes().len(),
            info: info_json(info),
            publisher,
        };
        self.loaded.lock().unwrap().insert(report.sha256.clone(), loaded);
        Ok(report)
    }

    /// Install every first-party connector compiled into this binary (idempotent). They are
    /// trusted as part of the binary, whatever the trust policy ([`trust`]).
    pub async fn install_bundled(&self) -> Result<Vec<InstallReport>, HubError> {
        let mut reports = Vec::new();
        for bundled in idplex_bundled::FIRST_PARTY {
            reports.push(self.install(bundled.component).await?);
        }
        Ok(reports)
    }

    /// The loaded form of an installed module, compiling (or reading the artifact cache) once.
    pub async fn connector(&self, sha256: &str) -> Result<Arc<LoadedConnector>, HubError> {
        if let Some(c) = self.loaded.lock().unwrap().get(sha256) {
            return Ok(c.clone());
        }
        let bytes = self.store.module_bytes(sha256).await?;
        let loaded = Arc::new(self.runtime.load(bytes.into()).await?);
        self.loaded.lock().unwrap().insert(sha256.to_string(), loaded.clone());
        Ok(loaded)
    }

    /// The module `name@version`, loaded.
    pub async fn connector_version(&self, name: &str, version: &str) -> Result<(ModuleSummary, Arc<LoadedConnector>), HubError> {
        let summary = self.store.get_module(name, version).await?;
        let loaded = self.connector(&summary.sha256).await?;
        Ok((summary, loaded))
    }

    /// Bind `connection_id` to `version` of its connector: durably in the store, then in this
    /// process. The module is loaded first, so a version that cannot run is never activated.
    ///
    /// The connection's config must satisfy that version's `config-schema`
    /// ([`HubError::Config`] otherwise). A rollback does not check it: the previous version
    /// ran with this config, and a rollback must not be blocked in an emergency.
    pub async fn activate(&self, connection_id: &str, version: &str, actor: &str) -> Result<Connection, HubError> {
        let conn = self.store.get_connection(connection_id).await?;
        let (_, loaded) = self.connector_version(&conn.connector_name, version).await?;
        check_connection_config(&loaded, &self.opened_config(&conn.config)?)?;
        // Everything the binding needs (its declared schema extensions too) is made before the
        // activation is written: a version that cannot serve this connection is never active.
        let prepared = self.prepare_binding(&conn, version).await?;
        let conn = self.store.activate(connection_id, version, actor).await?;
        self.publish(&conn, prepared);
        tracing::info!(connection = connection_id, version, actor, "connector version activated");
        Ok(conn)
    }

    /// Go back to the previously active version, durably and in this process.
    pub async fn rollback(&self, connection_id: &str, actor: &str) -> Result<Connection, HubError> {
        let conn = self.store.get_connection(connection_id).await?;
        if let Some(previous) = &conn.previous_version {
            self.connector_version(&conn.connector_name, previous).await?;
        }
        let conn = self.store.rollback(connection_id, actor).await?;
        self.bind(&conn).await?;
        tracing::info!(connection = connection_id, version = ?conn.active_version, actor, "connector version rolled back");
        Ok(conn)
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, String)>> {
        self.bind_failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remember why `conn` could not be bound; log it and record it as an event the first time
    /// for this state of the connection (the watcher retries every tick).
    async fn bind_failed(&self, conn: &Connection, error: &HubError) {
        let reason = error.to_string();
        let new = {
            let mut failures = self.lock_failures();
            let seen = failures.get(&conn.id).is_some_and(|(stamp, r)| *stamp == conn.updated_at && *r == reason);
            failures.insert(conn.id.clone(), (conn.updated_at, reason.clone()));
            !seen
        };
        if !new {
            return;
        }
        tracing::error!(connection = %conn.id, error = %reason, "could not bind connection");
        let event = NewEvent {
            at: None,
            connection_id: Some(conn.id.clone()),
            connector: match &conn.active_version {
                Some(v) => format!("{}@{v}", conn.connector_name),
                None => conn.connector_name.clone(),
            },
            kind: EventKind::Other("bind_failed".into()),
            message: format!("connection {} could not be bound: {reason}", conn.id),
        };
        if let Err(e) = self.store.record_event(&event).await {
            tracing::error!(error = %e, "could not record a binding failure");
        }
    }

    /// Publish the binding `conn` describes in this process (atomic swap), unless a binding at
    /// least as new is already published (the request that made a change and the watcher that
    /// heard of it both bind it: once is kept). Whether the binding changed.
    pub async fn bind(&self, conn: &Connection) -> Result<bool, HubError> {
        let Some(version) = &conn.active_version else {
            self.lock_failures().remove(&conn.id);
            return Ok(self.registry.unbind(&conn.id).is_some());
        };
        let prepared = self.prepare_binding(conn, version).await?;
        Ok(self.publish(conn, prepared))
    }

    /// Everything a binding of `conn` to `version` needs, made without publishing anything:
    /// the loaded connector, the call context (config, secrets, egress, limits) and the SCIM
    /// resource types with the schema extensions the connector declares for this config
    /// (contract 1.1). A declaration the host cannot use fails it, naming the extension.
    async fn prepare_binding(&self, conn: &Connection, version: &str) -> Result<PreparedBinding, HubError> {
        let (_, connector) = self.connector_version(&conn.connector_name, version).await?;
        let mut context = call_context(&self.runtime, conn, &connector, &self.secrets)?;
        if self.options.egress_plain_http_loopback {
            context.egress = Arc::new((*context.egress).clone().allow_plain_http_to_loopback());
        }
        let declared = connector.extensions(&context).await?;
        let types = provisioning::ScimTypes::with_declared(&declared).map_err(|reason| HubError::Invalid {
            what: "schema extensions",
            reason: format!("{} declares one the host cannot use: {reason}", connector.label()),
        })?;
        let reads_as_sent = connector.reads_as_sent(&context).await?;
        Ok(PreparedBinding { connector, context: Arc::new(context), types, reads_as_sent })
    }

    /// Publishes a prepared binding of `conn` in this process unless one at least as new is
    /// (see [`Hub::bind`]); whether it was published.
    fn publish(&self, conn: &Connection, prepared: PreparedBinding) -> bool {
        let PreparedBinding { connector, context, types, reads_as_sent } = prepared;
        let extras = provisioning::BindingExtras::new(types, &reads_as_sent);
        let binding = Binding::new(conn.id.clone(), connector, context, conn.updated_at).with_derived(Arc::new(extras));
        let published = self.registry.bind_if_newer(binding);
        self.lock_failures().remove(&conn.id);
        published
    }

    /// A connection's SCIM resource types as its binding serves them (the declared schema
    /// extensions included), for `/Schemas` and `/ResourceTypes`.
    pub fn scim_types(&self, connection_id: &str) -> Result<provisioning::ScimTypes, HubError> {
        Ok(provisioning::ScimTypes::of_binding(&*self.binding(connection_id)?))
    }

    /// Bring this process's bindings in line with the store: bind what changed since we last
    /// looked, unbind what disappeared. Returns how many bindings changed.
    pub async fn sync_bindings(&self) -> Result<usize, HubError> {
        let connections = self.store.list_connections().await?;
        let mut changed = 0;
        for conn in &connections {
            changed += usize::from(self.apply(conn).await);
        }
        for id in self.registry.connection_ids() {
            if connections.iter().any(|c| c.id == id) {
                continue;
            }
            // Not in the list: deleted, or created (and bound) by this process after the list
            // was read. Only the store can tell which.
            match self.store.get_connection(&id).await {
                Err(StoreError::NotFound { .. }) => {
                    self.registry.unbind(&id);
                    changed += 1;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(connection = %id, error = %e, "could not re-read a connection missing from the list"),
            }
        }
        Ok(changed)
    }

    /// Rebind `conn` in this process if the store's row is newer than the live binding;
    /// whether the binding changed.
    async fn apply(&self, conn: &Connection) -> bool {
        let current = self.registry.get(&conn.id);
        let up_to_date = match (&current, &conn.active_version) {
            // A binding at least as new as what we read was published meanwhile (by this
            // process, after the row was read): the row is the stale side — also when the stale
            // row shows the connection before its first activation (it would unbind a
            // connection the admin API just created and activated).
            (Some(b), _) if b.stamp >= conn.updated_at => true,
            (Some(_), Some(_)) => false,
            (None, None) => true,
            _ => false,
        };
        if up_to_date {
            return false;
        }
        match self.bind(conn).await {
            Ok(changed) => changed,
            Err(e) => {
                self.bind_failed(conn, &e).await;
                false
            }
        }
    }

    /// Bring this process's binding of one connection in line with the store (after hearing
    /// that it changed): rebind it if the store is newer, unbind it if it was deleted. Whether
    /// the binding changed.
    pub async fn sync_connection(&self, id: &str) -> Result<bool, HubError> {
        match self.store.get_connection(id).await {
            Ok(conn) => Ok(self.apply(&conn).await),
            Err(StoreError::NotFound { .. }) => Ok(self.registry.unbind(id).is_some()),
            Err(e) => Err(e.into()),
        }
    }

    /// Follow changes made elsewhere (the CLI, another replica) until `shutdown` resolves:
    /// poll the store every `every`, and on PostgreSQL also listen for the change
    /// notifications every commit to `connections` sends (`LISTEN/NOTIFY`), so a swap through
    /// one replica reaches the others within milliseconds; polling remains the fallback (a lost
    /// notification connection, SQLite). Each poll also releases connector instances that have
    /// been idle for longer than [`idplex_runtime::InstanceReuse::idle_timeout`].
    pub fn spawn_watcher(
        self: &Arc<Self>,
        every: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        self.spawn_listener(shutdown.clone());
        let hub = self.clone();
        spawn_periodic(every, shutdown, move || {
            let hub = hub.clone();
            async move {
                hub.runtime.expire_handed_over();
                let released = hub.registry.sweep_idle();
                if released > 0 {
                    tracing::debug!(released, "released idle connector instances");
                }
                match hub.sync_bindings().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(changed = n, "applied binding changes from the store"),
                    Err(e) => tracing::warn!(error = %e, "binding watcher could not read the store"),
                }
            }
        })
    }

    /// On PostgreSQL: rebind each connection as soon as the store notifies a change of it.
    fn spawn_listener(self: &Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut changes = loop {
                match hub.store.listen_connection_changes().await {
                    Ok(Some(changes)) => break changes,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for connection changes; polling only, retrying in 5 s");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                            _ = shutdown.changed() => return,
                        }
                    }
                }
            };
            tracing::debug!("listening for connection changes");
            loop {
                let change = tokio::select! {
                    change = changes.next() => change,
                    _ = shutdown.changed() => return,
                };
                let outcome = match change {
                    Ok(idplex_store::ConnectionChange::Connection(id)) => hub.sync_connection(&id).await.map(usize::from),
                    Ok(idplex_store::ConnectionChange::Resync) => hub.sync_bindings().await,
                    Err(e) => {
                        tracing::warn!(error = %e, "connection change feed interrupted; polling until it is back");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = shutdown.changed() => return,
                        }
                        continue;
                    }
                };
                match outcome {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(changed = n, "applied a binding change notified by the store"),
                    Err(e) => tracing::warn!(error = %e, "could not apply a notified connection change"),
                }
            }
        });
    }

    /// Every `every`, delete the SCIM sync log entries older than `retention` (see
    /// [`Store::prune_sync_log`]; the default retention is
    /// [`idplex_store::SYNC_LOG_DEFAULT_RETENTION_MS`]), until `shutdown` changes. Runs once at
    /// start. Several replicas may each run one: pruning is idempotent.
    pub fn spawn_sync_log_pruner(
        self: &Arc<Self>,
        retention: Duration,
        every: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        spawn_periodic(every, shutdown, move || {
            let hub = hub.clone();
            async move {
                let cutoff = now_ms().saturating_sub(retention_ms);
                if let Err(e) = hub.store.prune_sync_log(cutoff).await {
                    tracing::warn!(error = %e, "could not prune the SCIM sync log");
                }
                // The directory sync log (pull runs and their problems) keeps the same retention.
                if let Err(e) = hub.store.prune_directory_sync_log(cutoff).await {
                    tracing::warn!(error = %e, "could not prune the directory sync log");
                }
            }
        })
    }

    /// Every `every`, apply `retention` to the connector events (see
    /// [`Store::prune_connector_events`]: a maximum age, default
    /// [`idplex_store::EVENT_DEFAULT_RETENTION_MS`], and a cap per connection, default
    /// [`idplex_store::EVENT_DEFAULT_MAX_PER_CONNECTION`]), until `shutdown` changes. Runs once
    /// at start. Several replicas may each run one: pruning is idempotent.
    pub fn spawn_event_pruner(
        self: &Arc<Self>,
        retention: idplex_store::EventRetention,
        every: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        spawn_periodic(every, shutdown, move || {
            let hub = hub.clone();
            async move {
                if let Err(e) = hub.store.prune_connector_events(&retention).await {
                    tracing::warn!(error = %e, "could not prune connector events");
                }
            }
        })
    }

    /// The live binding of a connection.
    pub fn binding(&self, connection_id: &str) -> Result<Arc<Binding>, HubError> {
        self.registry.get(connection_id).ok_or_else(|| {
            let failed = self.lock_failures().get(connection_id).map(|(_, reason)| reason.clone());
            match failed {
                Some(reason) => HubError::BindFailed { connection: connection_id.to_string(), reason },
                None => HubError::NotBound(connection_id.to_string()),
            }
        })
    }

    /// The connection's provisioning dialect for one SCIM request: its live binding, pinned for
    /// the whole request (a connector swapped meanwhile serves the next request, never half of
    /// this one), with one connector instance shared by the request's `normalize` and `render`
    /// calls ([`idplex_runtime::Warm`]): one a previous request of the same binding left in
    /// good health, or a fresh one ([`idplex_runtime::reuse`]). Dropping the `Provisioning`
    /// returns the instance to the binding; [`Provisioning::release_instance`] does it earlier
    /// (the binding stays pinned).
    pub fn provisioning(&self, connection_id: &str) -> Result<Provisioning<'_>, HubError> {
        let binding = self.binding(connection_id)?;
        require(&binding, idplex_runtime::Capability::Provisioning, "provisioning")?;
        // No instance yet: the first call takes one of the binding's idle ones
        // (`reclaim_instance`). A request that makes no call (a read the connector takes as
        // sent) never holds one, nor counts toward an instance's retirement.
        Ok(Provisioning { hub: self, binding, warm: idplex_runtime::Warm::default() })
    }

    /// Normalize a SCIM request through the connection's connector (or, with
    /// [`HubOptions::native_scim_passthrough`], the native generic dialect).
    pub async fn normalize(&self, connection_id: &str, request: ScimRequest) -> Result<Vec<Operation>, HubError> {
        self.provisioning(connection_id)?.normalize(request).await
    }

    /// Render a stored resource the way the connection's IdP expects it (or, with
    /// [`HubOptions::native_scim_passthrough`], unchanged).
    pub async fn render(&self, connection_id: &str, kind: idplex_runtime::ResourceKind, resource: String) -> Result<String, HubError> {
        self.provisioning(connection_id)?.render(kind, resource).await
    }

    /// Map a verified SAML assertion through the connection's connector.
    pub async fn map_assertion(&self, connection_id: &str, assertion: VerifiedAssertion) -> Result<SsoIdentity, HubError> {
        let b = self.binding(connection_id)?;
        require(&b, idplex_runtime::Capability::Sso, "sso")?;
        let out = b.connector.map_assertion(&b.context, assertion).await;
        self.observe(&b, out).await
    }

    /// Record a connector fault as an event an admin sees, and pass the result on.
    async fn observe<T>(&self, b: &Binding, out: Result<T, CallError>) -> Result<T, HubError> {
        match out {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_connector_fault() {
                    tracing::warn!(connection = %b.connection_id, connector = b.connector.label(), kind = e.kind(), error = %e, "connector call failed");
                    let event = NewEvent {
                        at: None,
                        connection_id: Some(b.connection_id.clone()),
                        connector: b.connector.label().to_string(),
                        kind: EventKind::parse(e.kind()),
                        message: e.to_string(),
                    };
                    if let Err(store_err) = self.store.record_event(&event).await {
                        tracing::error!(error = %store_err, "could not record connector event");
                    }
                }
                Err(e.into())
            }
        }
    }
}

/// A binding made but not yet published ([`Hub::prepare_binding`]).
struct PreparedBinding {
    connector: Arc<LoadedConnector>,
    context: Arc<CallContext>,
    types: provisioning::ScimTypes,
    /// The kinds whose reads the host decodes itself (contract 1.3 `scim-reads`).
    reads_as_sent: Vec<idplex_runtime::ResourceKind>,
}

/// One SCIM request's view of its connection's connector: see [`Hub::provisioning`].
pub struct Provisioning<'h> {
    hub: &'h Hub,
    binding: Arc<Binding>,
    warm: idplex_runtime::Warm,
}

impl Drop for Provisioning<'_> {
    fn drop(&mut self) {
        self.binding.idle.put(std::mem::take(&mut self.warm));
    }
}

impl Provisioning<'_> {
    /// The SCIM resource types of this binding (its connector's declared extensions included).
    pub fn scim_types(&self) -> provisioning::ScimTypes {
        provisioning::ScimTypes::of_binding(&self.binding)
    }

    /// The connector (`name@version`) serving this request.
    pub fn connector_label(&self) -> &str {
        self.binding.connector.label()
    }

    /// Gives this request's instance back to its binding's idle ones (or to a call waiting for
    /// one) while the request goes on, e.g. while it waits for the store; the binding stays
    /// pinned, and a later call of the request takes an instance again.
    pub fn release_instance(&mut self) {
        self.binding.idle.put(std::mem::take(&mut self.warm));
    }

    /// Before a call: after [`Provisioning::release_instance`] (or when the request started
    /// with none), take one of the binding's idle instances again.
    fn reclaim_instance(&mut self) {
        if !self.warm.is_started() {
            self.warm = self.binding.idle.take();
        }
    }

    /// Whether no later call of this request can need the instance: the binding serves every
    /// kind unchanged, so no `render` will run.
    pub fn renders_nothing(&self) -> bool {
        self.serves_unchanged(idplex_runtime::ResourceKind::User) && self.serves_unchanged(idplex_runtime::ResourceKind::Group)
    }

    /// `provisioning.normalize` of the request's envelope; a `GET` of a kind the connector
    /// takes as sent (contract 1.3 `scim-reads`) is decoded by the host without a call.
    pub async fn normalize(&mut self, request: ScimRequest) -> Result<Vec<Operation>, HubError> {
        if self.hub.options.native_scim_passthrough {
            return native_scim::normalize(&request).map_err(native_refusal);
        }
        if self.reads_as_sent(&request) {
            return provisioning::read_as_sent(&request).map(|op| vec![op]).map_err(|e| HubError::Call(CallError::Connector {
                connector: self.binding.connector.label().to_string(),
                error: e,
            }));
        }
        self.reclaim_instance();
        let b = &self.binding;
        let shape = RequestShape { method: request.method.clone(), resource: request.resource, id: request.id.clone() };
        let out = b.connector.normalize_in(&mut self.warm, &b.context, request).await;
        // The request's method bounds what the connector may ask for (a GET of one user never
        // deletes another): a violation is the connector's fault, recorded like the others.
        let out = out.and_then(|ops| match operations_allowed(&shape, &ops) {
            Ok(()) => Ok(ops),
            Err(detail) => Err(CallError::InvalidOutput { connector: b.connector.label().to_string(), detail }),
        });
        self.hub.observe(b, out).await
    }

    /// Whether `request` is a read its connector takes as sent (see [`Provisioning::normalize`]).
    pub fn reads_as_sent(&self, request: &ScimRequest) -> bool {
        request.method == "GET"
            && provisioning::BindingExtras::of(&self.binding).is_some_and(|e| e.reads_as_sent(request.resource))
    }

    /// `provisioning.render` of a stored resource.
    pub async fn render(&mut self, kind: idplex_runtime::ResourceKind, resource: String) -> Result<String, HubError> {
        // The native pass-through always serves unchanged (see `serves_unchanged`).
        if self.serves_unchanged(kind) {
            return Ok(resource);
        }
        self.reclaim_instance();
        let b = &self.binding;
        let out = b.connector.render_or_keep_in(&mut self.warm, &b.context, kind, resource).await;
        match self.hub.observe(b, out).await? {
            idplex_runtime::Rendering::Rendered(s) => Ok(s),
            idplex_runtime::Rendering::Unchanged(s) => {
                if let Some(extras) = provisioning::BindingExtras::of(b) {
                    extras.mark_unchanged(kind);
                }
                Ok(s)
            }
        }
    }

    /// Whether this binding serves resources of `kind` without rendering them: its connector
    /// said so (a 1.1 `render` answering `unsupported`), or, with
    /// [`HubOptions::native_scim_passthrough`], always (the native generic dialect renders
    /// nothing, and the baseline must skip what the generic connectors skip).
    pub fn serves_unchanged(&self, kind: idplex_runtime::ResourceKind) -> bool {
        self.hub.options.native_scim_passthrough
            || provisioning::BindingExtras::of(&self.binding).is_some_and(|e| e.serves_unchanged(kind))
    }
}

/// What a SCIM request addresses: its method, endpoint and resource id.
#[derive(Clone, Debug)]
pub struct RequestShape {
    pub method: String,
    pub resource: idplex_runtime::ResourceKind,
    pub id: Option<String>,
}

/// Whether `ops` are what `request` may become: each HTTP method maps to one operation kind, and
/// an operation on a resource addresses the resource of the request's path.
///
/// | request | operations |
/// |---|---|
/// | `GET /Users` (and `.search`) | `query` |
/// | `GET /Users/{id}` | `get(id)` |
/// | `POST /Users` | `create` |
/// | `PUT /Users/{id}` | `replace(id, …)` |
/// | `PATCH /Users/{id}` | `patch(id, …)` |
/// | `DELETE /Users/{id}` | `delete(id)` |
pub fn operations_allowed(request: &RequestShape, ops: &[Operation]) -> Result<(), String> {
    let id = request.id.as_deref();
    for op in ops {
        let (kind, target) = match op {
            Operation::Create(_) => ("create", None),
            Operation::Get(t) => ("get", Some(t.as_str())),
            Operation::Replace((t, _)) => ("replace", Some(t.as_str())),
            Operation::Patch((t, _)) => ("patch", Some(t.as_str())),
            Operation::Delete(t) => ("delete", Some(t.as_str())),
            Operation::Query(_) => ("query", None),
        };
        let expected = match (request.method.as_str(), id) {
            ("GET" | "HEAD", None) => "query",
            ("GET" | "HEAD", Some(_)) => "get",
            ("POST", None) => "create",
            ("PUT", Some(_)) => "replace",
            ("PATCH", Some(_)) => "patch",
            ("DELETE", Some(_)) => "delete",
            (method, _) => {
                return Err(format!(
                    "answered {method} {} with a `{kind}` operation; that request has no operation",
                    request_path(request)
                ));
            }
        };
        if kind != expected {
            return Err(format!(
                "turned {} {} into a `{kind}` operation; that request may only become `{expected}`",
                request.method,
                request_path(request)
            ));
        }
        if target != id {
            return Err(format!(
                "turned {} {} into a `{kind}` of resource {:?}; it may only address the resource of the request's path",
                request.method,
                request_path(request),
                target.unwrap_or_default()
            ));
        }
    }
    Ok(())
}

fn request_path(request: &RequestShape) -> String {
    use provisioning::KindExt;
    let endpoint = request.resource.endpoint();
    match &request.id {
        Some(id) => format!("/{endpoint}/{id:?}"),
        None => format!("/{endpoint}"),
    }
}

/// A refusal of the native dialect, in the shape a connector's refusal has.
fn native_refusal(error: idplex_runtime::WitConnectorError) -> HubError {
    HubError::Call(CallError::Connector { connector: native_scim::NATIVE_LABEL.to_string(), error })
}

fn require(b: &Binding, capability: idplex_runtime::Capability, name: &'static str) -> Result<(), HubError> {
    if b.connector.has(capability) {
        Ok(())
    } else {
        Err(HubError::MissingCapability { connector: b.connector.label().to_string(), capability: name })
    }
}

/// `config` with its `secret.*` values as strings, as they are stored (and checked).
/// A connection config as `loaded` needs it: valid by its `config-schema`, and filling each of
/// its egress host patterns with a host name (see [`idplex_runtime::fill_host_patterns`]).
fn check_connection_config(loaded: &LoadedConnector, config: &serde_json::Value) -> Result<(), HubError> {
    loaded.check_config(config)?;
    let value = |key: &str| {
        config.get(key).filter(|_| !key.starts_with(SECRET_PREFIX)).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    idplex_runtime::fill_host_patterns(&loaded.info().egress_hosts, value)
        .map(drop)
        .map_err(|reason| HubError::Invalid { what: "connection config", reason })
}

fn secrets_as_strings(config: serde_json::Value) -> serde_json::Value {
    match config {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .map(|(k, v)| match v {
                    v if !k.starts_with(SECRET_PREFIX) || v.is_string() => (k, v),
                    other => {
                        let text = other.to_string();
                        (k, serde_json::Value::String(text))
                    }
                })
                .collect(),
        ),
        other => other,
    }
}

/// The install policy of [`Hub::install`]: the names of the first-party connectors are theirs.
fn reserve_first_party_names(info: &ConnectorInfo, hash: &ModuleHash) -> Result<(), InstallError> {
    static BUNDLED: std::sync::OnceLock<Vec<(&'static str, ModuleHash)>> = std::sync::OnceLock::new();
    let bundled = BUNDLED.get_or_init(|| {
        idplex_bundled::FIRST_PARTY.iter().map(|b| (b.crate_name, ModuleHash::of(b.component))).collect()
    });
    let reserved = bundled.iter().any(|(name, _)| *name == info.name);
    if reserved && !bundled.iter().any(|(_, h)| h == hash) {
        return Err(InstallError::ReservedName {
            name: info.name.clone(),
            version: info.version.clone(),
            sha256: hash.0.clone(),
        });
    }
    Ok(())
}

/// Build the per-call context of a connection: its non-secret config, its egress policy (the
/// intersection of what the connector declared and the admin allowed, with the credential from
/// `secret.authorization`), and its limits (runtime defaults with the admin's overrides).
pub fn call_context(
    runtime: &Runtime,
    conn: &Connection,
    connector: &LoadedConnector,
    secrets: &SecretKey,
) -> Result<CallContext, HubError> {
    let mut config = BTreeMap::new();
    let mut credential = None;
    match &conn.config {
        serde_json::Value::Null => {}
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if k == "secret.authorization" {
                    let text = secrets.open(k, &text)?;
                    let value = http::HeaderValue::from_str(&text).map_err(|_| HubError::Invalid {
                        what: "secret.authorization",
                        reason: "not a valid HTTP header value".into(),
                    })?;
                    let mut value = value;
                    value.set_sensitive(true);
                    credential = Some(Credential { header: http::header::AUTHORIZATION, value });
                } else if !k.starts_with(SECRET_PREFIX) && !k.starts_with(directory_sync::credentials::CREDENTIAL_PREFIX) {
                    // `credential.*` keys configure the host's credential provider: not the
                    // connector's business.
                    config.insert(k.clone(), text);
                }
            }
        }
        _ => {
            return Err(HubError::Invalid {
                what: "connection config",
                reason: format!("connection {} config must be a JSON object", conn.id),
            });
        }
    }
    let limits = runtime
        .config()
        .default_limits
        .merged_with(&conn.limits)
        .map_err(|reason| HubError::Invalid { what: "connection limits", reason })?;
    // Declared hosts such as `{org}.okta.com` are filled from the (non-secret) config.
    let declared = idplex_runtime::fill_host_patterns(&connector.info().egress_hosts, |key| config.get(key).cloned())
        .map_err(|reason| HubError::Invalid { what: "connection config", reason })?;
    Ok(CallContext {
        connection_id: Some(conn.id.clone()),
        config: Arc::new(config),
        egress: Arc::new(EgressPolicy::new(&declared, &conn.egress_allow, credential)),
        limits,
    })
}

/// Runs `work` every `every` (the first time at once) until `shutdown` changes; a run that
/// overruns delays the next instead of bunching them up.
fn spawn_periodic<F, Fut>(
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut work: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            work().await;
        }
    })
}

/// Current time in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix milliseconds as an RFC 3339 UTC timestamp (`2026-11-25T16:17:59.070Z`), for people.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// A connection as shown to admins: secret config values are replaced by `"<redacted>"`.
pub fn redacted(conn: &Connection) -> serde_json::Value {
    let mut v = serde_json::to_value(conn).unwrap_or_default();
    if let Some(cfg) = v.get_mut("config").and_then(|c| c.as_object_mut()) {
        for (k, val) in cfg.iter_mut() {
            if k.starts_with(SECRET_PREFIX) {
                *val = serde_json::Value::String("<redacted>".into());
            }
        }
    }
    v
}

/// A connector's self-description as JSON (what the store keeps and admins read).
pub fn info_json(info: &ConnectorInfo) -> serde_json::Value {
    serde_json::json!({
        "name": info.name,
        "vendor": info.vendor,
        "version": info.version,
        "description": info.description,
        "capabilities": info.capabilities.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "config_schema": serde_json::from_str::<serde_json::Value>(&info.config_schema).unwrap_or_default(),
        "egress_hosts": info.egress_hosts,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(super::rfc3339(1_732_000_001_000), "2024-11-19T07:06:41.000Z");
        assert_eq!(super::rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn a_request_becomes_only_the_operation_its_method_allows() {
        use idplex_runtime::{ListQuery, Operation, ResourceKind};
        use super::{RequestShape, operations_allowed};
        let shape = |method: &str, id: Option<&str>| RequestShape {
            method: method.into(),
            resource: ResourceKind::User,
            id: id.map(str::to_string),
        };
        let query = || {
            Operation::Query(ListQuery {
                filter: None,
                start_index: None,
                count: None,
                sort_by: None,
                sort_descending: false,
                attributes: vec![],
                excluded_attributes: vec![],
            })
        };
        let ok = [
            (shape("GET", None), query()),
            (shape("GET", Some("a")), Operation::Get("a".into())),
            (shape("HEAD", Some("a")), Operation::Get("a".into())),
            (shape("POST", None), Operation::Create("{}".into())),
            (shape("PUT", Some("a")), Operation::Replace(("a".into(), "{}".into()))),
            (shape("PATCH", Some("a")), Operation::Patch(("a".into(), vec![]))),
            (shape("DELETE", Some("a")), Operation::Delete("a".into())),
        ];
        for (req, op) in ok {
            assert_eq!(operations_allowed(&req, &[op]), Ok(()), "{req:?}");
        }
        let refused = [
            (shape("GET", Some("a")), Operation::Delete("b".into()), "`delete`"),
            (shape("GET", Some("a")), Operation::Get("b".into()), "resource \"b\""),
            (shape("PATCH", Some("a")), Operation::Patch(("b".into(), vec![])), "resource \"b\""),
            (shape("GET", None), Operation::Create("{}".into()), "`create`"),
            (shape("PUT", Some("a")), Operation::Delete("a".into()), "may only become `replace`"),
            (shape("POST", None), Operation::Delete("a".into()), "`delete`"),
            (shape("POST", Some("a")), Operation::Create("{}".into()), "has no operation"),
        ];
        for (req, op, says) in refused {
            let e = operations_allowed(&req, &[op]).expect_err("refused");
            assert!(e.contains(says), "{req:?}: {e}");
        }
    }
}
