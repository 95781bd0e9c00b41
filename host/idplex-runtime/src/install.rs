//! From untrusted bytes to a [`LoadedConnector`]: validation, compilation, the compiled-artifact
//! cache, and the typed calls a loaded connector offers.

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::bindings::{
    Capability, ConnectorInfo, ConnectorPre, DiagnosticCheck, Operation, ResourceKind, SchemaExtension, ScimRequest,
    SsoIdentity,
    GroupMembers, Member, PassKind, PullPage, PullRequest, SyncPage, VerifiedAssertion,
};
use crate::call::{CallContext, CallError, CallState, Warm, flatten};
use crate::config_schema::{ConfigSchema, ConfigViolation};
use crate::engine::{CONTRACT_VERSION, Runtime};

/// Hex SHA-256 of a component's bytes: the content address of an installed module.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleHash(pub String);

impl ModuleHash {
    /// Hash `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ModuleHash(hex::encode(Sha256::digest(bytes)))
    }
}

impl std::fmt::Display for ModuleHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a module was refused. Each message says what is wrong and what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InstallError {
    /// Bigger than the runtime accepts.
    #[error("module is {size} bytes; the limit is {limit} bytes (RuntimeConfig::max_module_bytes)")]
    TooLarge { size: usize, limit: usize },
    /// Not WebAssembly at all.
    #[error("not a WebAssembly binary (expected the \\0asm magic number); build the connector with `cargo build --target wasm32-unknown-unknown` and componentize it")]
    NotWasm,
    /// A core module that carries no WIT metadata to turn it into a component.
    #[error("this is a core WebAssembly module, not a component, and it carries no component-type metadata to convert it ({detail}); build it with wit-bindgen against wit/connector.wit and run `wasm-tools component new`")]
    NotAComponent { detail: String },
    /// The component failed validation or compilation.
    #[error("invalid component: {detail}")]
    Invalid { detail: String },
    /// The component does not export the idplex connector contract.
    #[error("component implements another world: it exports [{exports}] but no `idplex:connector/*` interface; build it against world `idplex:connector/connector@{CONTRACT_VERSION}`")]
    WrongWorld { exports: String },
    /// Built against a contract major version this host does not speak.
    #[error("component was built against idplex:connector@{found}; this host implements {CONTRACT_VERSION} and accepts {} only: rebuild the connector against one of those or upgrade idplex", supported_majors())]
    IncompatibleContract { found: String },
    /// Imports something the sandbox does not grant.
    #[error("component imports `{import}`, which idplex does not provide to connectors: {reason}")]
    ForbiddenImport { import: String, reason: String },
    /// Exports the interfaces but not with the expected functions/types.
    #[error("component does not match world idplex:connector/connector@{CONTRACT_VERSION}: {detail}")]
    Mismatch { detail: String },
    /// `metadata.describe` failed or returned unusable facts.
    #[error("connector metadata is unusable: {detail}")]
    BadMetadata { detail: String },
    /// The compiled-artifact cache could not be written or read.
    #[error("compiled-artifact cache at {path}: {detail}")]
    Cache { path: PathBuf, detail: String },
    /// The compiler is busy with other installs ([`RuntimeConfig::max_pending_compiles`]), or no
    /// instance could be started for `describe`: nothing is wrong with the module, retry later.
    ///
    /// [`RuntimeConfig::max_pending_compiles`]: crate::RuntimeConfig::max_pending_compiles
    #[error("cannot install now: {detail}; retry later")]
    Busy { detail: String },
    /// The connector's name belongs to a first-party connector shipped with idplex, and these
    /// are not its bytes.
    #[error("connector name `{name}` is reserved for the first-party connector shipped with idplex; this component ({version}, sha256 {sha256}) is not it: give your connector another name")]
    ReservedName { name: String, version: String, sha256: String },
}

impl InstallError {
    /// A short, stable name of the refusal class.
    pub fn kind(&self) -> &'static str {
        match self {
            InstallError::TooLarge { .. } => "too_large",
            InstallError::NotWasm => "not_wasm",
            InstallError::NotAComponent { .. } => "not_a_component",
            InstallError::Invalid { .. } => "invalid",
            InstallError::WrongWorld { .. } => "wrong_world",
            InstallError::IncompatibleContract { .. } => "incompatible_contract",
            InstallError::ForbiddenImport { .. } => "forbidden_import",
            InstallError::Mismatch { .. } => "mismatch",
            InstallError::BadMetadata { .. } => "bad_metadata",
            InstallError::Cache { .. } => "cache",
            InstallError::Busy { .. } => "install_busy",
            InstallError::ReservedName { .. } => "reserved_name",
        }
    }

    /// Whether the same bytes would be refused again for the same reason (remembered in the
    /// refusal cache); not for the cache's own I/O errors or a busy compiler.
    fn is_permanent(&self) -> bool {
        !matches!(self, InstallError::Cache { .. } | InstallError::Busy { .. })
    }
}

/// Refusals by hash of the uploaded bytes ([`crate::RuntimeConfig::refusal_cache_entries`]),
/// oldest forgotten first.
#[derive(Default)]
pub(crate) struct RefusalCache {
    inner: std::sync::Mutex<(std::collections::HashMap<ModuleHash, InstallError>, std::collections::VecDeque<ModuleHash>)>,
}

impl RefusalCache {
    fn get(&self, hash: &ModuleHash) -> Option<InstallError> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0.get(hash).cloned()
    }

    fn put(&self, hash: ModuleHash, error: InstallError, capacity: usize) {
        if capacity == 0 {
            return;
        }
        let mut guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, order) = &mut *guard;
        if map.insert(hash.clone(), error).is_none() {
            order.push_back(hash);
        }
        while order.len() > capacity {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }
}

/// A check of a connector's self-description an install must pass before anything is kept
/// (e.g. the hub's reservation of first-party names); see [`Runtime::install_with`].
pub type InstallPolicy<'a> = &'a (dyn Fn(&ConnectorInfo, &ModuleHash) -> Result<(), InstallError> + Sync);

/// Stack of the thread that compiles a component (Cranelift on large, deeply nested code).
const COMPILER_STACK: usize = 64 << 20;

/// Run `f` on a thread of its own with a large stack; a panic there refuses the module instead
/// of taking the process down.
async fn on_compiler_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, InstallError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("idplex-compile".into())
        .stack_size(COMPILER_STACK)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| InstallError::Busy { detail: format!("cannot start a compiler thread: {e}") })?;
    rx.await.map_err(|_| InstallError::Invalid { detail: "the compiler failed on this component".into() })
}

/// A validated, compiled connector ready for calls. Cheap to share (`Arc`). A call runs in an
/// instance started from the pre-instantiated form: a fresh one, or the [`Warm`] instance of its
/// unit of work (one SCIM request, possibly kept for the binding's next request: [`crate::reuse`]).
pub struct LoadedConnector {
    pub(crate) runtime: Runtime,
    pub(crate) pre: ConnectorPre<CallState>,
    pub(crate) label: Arc<str>,
    hash: ModuleHash,
    info: ConnectorInfo,
    contract_version: String,
    /// Whether `render` answering `unsupported` means "serve this kind unchanged" (contract
    /// 1.1 and later) rather than an error (1.0).
    keeps_unrendered: bool,
    /// Whether the component exports `schemas` / `diagnostics` (contract 1.1).
    exports_schemas: bool,
    exports_diagnostics: bool,
    /// Whether the component exports `directory-pull` (contract 1.2).
    exports_directory_pull: bool,
    /// Whether the component exports `scim-reads` (contract 1.3).
    exports_scim_reads: bool,
    component_bytes: Arc<[u8]>,
    /// The compiled `config-schema`, or why it is unusable (only for a module installed before
    /// schemas were checked at install; such a config cannot be changed until it is replaced).
    config_schema: Result<Arc<ConfigSchema>, String>,
}

impl std::fmt::Debug for LoadedConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedConnector").field("label", &self.label).field("hash", &self.hash).finish()
    }
}

impl LoadedConnector {
    /// Content address of the component.
    pub fn hash(&self) -> &ModuleHash {
        &self.hash
    }
    /// What the connector said about itself at install.
    pub fn info(&self) -> &ConnectorInfo {
        &self.info
    }
    /// The runtime that loaded it.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }
    /// `name@version`.
    pub fn label(&self) -> &str {
        &self.label
    }
    /// The contract version the component was built against.
    pub fn contract_version(&self) -> &str {
        &self.contract_version
    }
    /// The component's bytes (what gets stored).
    pub fn component_bytes(&self) -> &Arc<[u8]> {
        &self.component_bytes
    }
    /// Check a connection's config (secrets in clear, before sealing) against the connector's
    /// `config-schema`. The error names the offending fields and never shows a `secret.*` value.
    pub fn check_config(&self, config: &serde_json::Value) -> Result<(), ConfigViolation> {
        let empty = serde_json::Value::Object(Default::default());
        let config = if config.is_null() { &empty } else { config };
        match &self.config_schema {
            Ok(schema) => schema.check(&self.label, config),
            Err(reason) => Err(ConfigViolation {
                connector: self.label.to_string(),
                fields: Vec::new(),
                detail: format!("its config-schema is unusable ({reason}); install a fixed version"),
            }),
        }
    }

    /// Why the connector's `config-schema` does not compile as JSON Schema, if it does not (only
    /// possible for a connector loaded without the install checks, [`Runtime::load`]).
    pub fn config_schema_error(&self) -> Option<&str> {
        self.config_schema.as_ref().err().map(String::as_str)
    }

    /// Whether the connector declared `capability`.
    pub fn has(&self, capability: Capability) -> bool {
        self.info.capabilities.contains(&capability)
    }

    /// `metadata.describe`.
    pub async fn describe(&self, ctx: &CallContext) -> Result<ConnectorInfo, CallError> {
        self.describe_in(&mut Warm::default(), ctx).await
    }

    /// [`LoadedConnector::describe`] in `warm`'s instance (see [`Warm`]): with a fresh `Warm`,
    /// the caller can read the memory the call used ([`Warm::memory_bytes`]).
    pub async fn describe_in(&self, warm: &mut Warm, ctx: &CallContext) -> Result<ConnectorInfo, CallError> {
        self.run_in(
            warm,
            ctx,
            Box::new(|c, s| Box::pin(async move { c.metadata(&mut *s)?.call_describe(s).await })),
        )
        .await
    }

    /// `provisioning.normalize`, with the JSON in the returned operations checked (a body the
    /// connector hands back byte for byte is the caller's own and is not checked again).
    pub async fn normalize(&self, ctx: &CallContext, request: ScimRequest) -> Result<Vec<Operation>, CallError> {
        self.normalize_in(&mut Warm::default(), ctx, request).await
    }

    /// [`LoadedConnector::normalize`] in `warm`'s instance (see [`Warm`]).
    pub async fn normalize_in(
        &self,
        warm: &mut Warm,
        ctx: &CallContext,
        request: ScimRequest,
    ) -> Result<Vec<Operation>, CallError> {
        // A body handed back unchanged (what a dialect with nothing to rewrite does) was the
        // host's own valid JSON: it needs no second check.
        let body = request.body.clone();
        let out = self
            .run_in(
                warm,
                ctx,
                Box::new(move |c, s| {
                    Box::pin(async move { c.provisioning(&mut *s)?.call_normalize(s, &request).await })
                }),
            )
            .await?;
        let ops = flatten(&self.label, out)?;
        let checked = ops.iter().try_for_each(|op| match op {
            Operation::Create(j) | Operation::Replace((_, j)) if body.as_ref() != Some(j) => {
                self.check_json("resource", j)
            }
            Operation::Patch((_, patch)) => patch
                .iter()
                .filter_map(|p| p.value.as_deref())
                .try_for_each(|v| self.check_json("patch operation value", v)),
            _ => Ok(()),
        });
        // An instance that answered something unusable is not trusted with the next call.
        checked.inspect_err(|_| warm.discard())?;
        Ok(ops)
    }

    /// `provisioning.render`, with the returned JSON checked (unless it is `resource` byte for
    /// byte: the caller's own). A connector built against 1.1 or later that answers
    /// `unsupported` serves the kind unchanged: the answer is `resource`.
    pub async fn render(&self, ctx: &CallContext, kind: ResourceKind, resource: String) -> Result<String, CallError> {
        self.render_in(&mut Warm::default(), ctx, kind, resource).await
    }

    /// [`LoadedConnector::render`] in `warm`'s instance (see [`Warm`]).
    pub async fn render_in(
        &self,
        warm: &mut Warm,
        ctx: &CallContext,
        kind: ResourceKind,
        resource: String,
    ) -> Result<String, CallError> {
        Ok(match self.render_or_keep_in(warm, ctx, kind, resource).await? {
            Rendering::Rendered(s) | Rendering::Unchanged(s) => s,
        })
    }

    /// [`LoadedConnector::render_in`], telling a rendering from the connector's answer that it
    /// serves this kind unchanged (`unsupported`, from a component built against contract 1.1
    /// or later; from a 1.0 one it stays an error, as 1.0 documented it): a caller may then
    /// stop asking for this kind.
    pub async fn render_or_keep_in(
        &self,
        warm: &mut Warm,
        ctx: &CallContext,
        kind: ResourceKind,
        resource: String,
    ) -> Result<Rendering, CallError> {
        // Rendered unchanged (the common case): the host's own valid JSON, no second check.
        let input = resource.clone();
        let out = self
            .run_in(
                warm,
                ctx,
                Box::new(move |c, s| {
                    Box::pin(async move { c.provisioning(&mut *s)?.call_render(s, kind, &resource).await })
                }),
            )
            .await?;
        let json = match out {
            Err(e) if e.kind == crate::bindings::ConnectorErrorKind::Unsupported && self.keeps_unrendered => {
                return Ok(Rendering::Unchanged(input));
            }
            out => flatten(&self.label, out)?,
        };
        if json != input {
            self.check_json("rendered resource", &json).inspect_err(|_| warm.discard())?;
        }
        Ok(Rendering::Rendered(json))
    }

    /// `directory-sync.pull` (the 1.0 form).
    pub async fn pull(&self, ctx: &CallContext, cursor: Option<String>) -> Result<SyncPage, CallError> {
        let out = self
            .run(
                ctx,
                Box::new(move |c, s| {
                    Box::pin(async move { c.directory_sync(&mut *s)?.call_pull(s, cursor.as_deref()).await })
                }),
            )
            .await?;
        flatten(&self.label, out)
    }

    /// Whether the component exports `directory-pull` (contract 1.2); without it,
    /// [`LoadedConnector::pull_page`] calls the 1.0 `directory-sync.pull`.
    pub fn exports_directory_pull(&self) -> bool {
        self.exports_directory_pull
    }

    /// One page of a directory pull under `ctx` (give it [`Limits::for_pull`]): `directory-pull`
    /// when the component exports it (1.2); otherwise `directory-sync.pull`, its page read as
    /// part of a full pass (each group's `members` as the user members present; no resume
    /// cursor). A cursor over [`MAX_PULL_CURSOR_BYTES`] returned by the connector is invalid
    /// output.
    pub async fn pull_page(&self, ctx: &CallContext, cursor: Option<String>) -> Result<PullPage, CallError> {
        let page = if self.exports_directory_pull {
            let request = PullRequest { cursor };
            let out = self
                .run(
                    ctx,
                    Box::new(move |c, s| {
                        Box::pin(async move {
                            match c.directory_pull(&mut *s)? {
                                Some(p) => p.call_pull(s, &request).await,
                                None => Err(wasmtime::Error::msg("directory-pull export vanished")),
                            }
                        })
                    }),
                )
                .await?;
            flatten(&self.label, out)?
        } else {
            let old = self.pull(ctx, cursor).await?;
            let members = old
                .groups
                .iter()
                .filter_map(|g| {
                    let group = g.external_id.clone()?;
                    Some(GroupMembers { group, added: g.members.iter().cloned().map(Member::User).collect(), removed: Vec::new() })
                })
                .collect();
            PullPage {
                kind: PassKind::Full,
                users: old.users,
                groups: old.groups,
                members,
                removed_users: old.removed_users,
                removed_groups: old.removed_groups,
                next: old.next_cursor,
                resume: None,
            }
        };
        for (what, cursor) in [("next", &page.next), ("resume", &page.resume)] {
            if cursor.as_ref().is_some_and(|c| c.len() > MAX_PULL_CURSOR_BYTES) {
                return Err(CallError::InvalidOutput {
                    connector: self.label.to_string(),
                    detail: format!("the page's `{what}` cursor is over {MAX_PULL_CURSOR_BYTES} bytes"),
                });
            }
        }
        Ok(page)
    }

    /// `sso.map-assertion`.
    pub async fn map_assertion(&self, ctx: &CallContext, assertion: VerifiedAssertion) -> Result<SsoIdentity, CallError> {
        self.map_assertion_in(&mut Warm::default(), ctx, assertion).await
    }

    /// [`LoadedConnector::map_assertion`] in `warm`'s instance (see [`Warm`]): with a fresh
    /// `Warm`, the caller can read the memory the call used ([`Warm::memory_bytes`]).
    pub async fn map_assertion_in(
        &self,
        warm: &mut Warm,
        ctx: &CallContext,
        assertion: VerifiedAssertion,
    ) -> Result<SsoIdentity, CallError> {
        let out = self
            .run_in(
                warm,
                ctx,
                Box::new(move |c, s| {
                    Box::pin(async move { c.sso(&mut *s)?.call_map_assertion(s, &assertion).await })
                }),
            )
            .await?;
        let identity = flatten(&self.label, out)?;
        if identity.user.user_name.trim().is_empty() {
            return Err(CallError::InvalidOutput {
                connector: self.label.to_string(),
                detail: "sso identity has an empty user-name".into(),
            });
        }
        Ok(identity)
    }

    /// `schemas.extensions` (contract 1.1): the SCIM schema extensions the connector declares
    /// with `ctx`'s config. A component built against 1.0 declares none (no call is made).
    /// Their definitions are checked by the caller (the SCIM layer); here only their number.
    pub async fn extensions(&self, ctx: &CallContext) -> Result<Vec<SchemaExtension>, CallError> {
        if !self.exports_schemas {
            return Ok(Vec::new());
        }
        let out = self
            .run(
                ctx,
                Box::new(|c, s| {
                    Box::pin(async move {
                        match c.schemas(&mut *s)? {
                            Some(schemas) => schemas.call_extensions(s).await,
                            None => Ok(Ok(Vec::new())),
                        }
                    })
                }),
            )
            .await?;
        let out = flatten(&self.label, out)?;
        if out.len() > MAX_DECLARED_EXTENSIONS {
            return Err(CallError::InvalidOutput {
                connector: self.label.to_string(),
                detail: format!("{} schema extensions declared: at most {MAX_DECLARED_EXTENSIONS}", out.len()),
            });
        }
        Ok(out)
    }

    /// `scim-reads.as-sent` (contract 1.3) with `ctx`'s config: the resource kinds whose `GET`
    /// requests the host decodes itself instead of calling `normalize`, each once. Empty for a
    /// component built against an earlier minor.
    pub async fn reads_as_sent(&self, ctx: &CallContext) -> Result<Vec<ResourceKind>, CallError> {
        if !self.exports_scim_reads {
            return Ok(Vec::new());
        }
        let mut kinds = self
            .run(
                ctx,
                Box::new(|c, s| {
                    Box::pin(async move {
                        match c.scim_reads(&mut *s)? {
                            Some(reads) => reads.call_as_sent(s).await,
                            None => Ok(Vec::new()),
                        }
                    })
                }),
            )
            .await?;
        if kinds.len() > 2 {
            return Err(CallError::InvalidOutput {
                connector: self.label.to_string(),
                detail: format!("scim-reads.as-sent listed {} resource kinds; there are two (user, group)", kinds.len()),
            });
        }
        kinds.dedup();
        Ok(kinds)
    }

    /// `diagnostics.test-connection` (contract 1.1) with `ctx`'s config and egress: the checks
    /// the connector made, each name and detail bounded. `None` for a component built against
    /// 1.0, which has no such call.
    pub async fn test_connection(&self, ctx: &CallContext) -> Result<Option<Vec<DiagnosticCheck>>, CallError> {
        if !self.exports_diagnostics {
            return Ok(None);
        }
        let out = self
            .run(
                ctx,
                Box::new(|c, s| {
                    Box::pin(async move {
                        match c.diagnostics(&mut *s)? {
                            Some(d) => d.call_test_connection(s).await,
                            None => Ok(Ok(Vec::new())),
                        }
                    })
                }),
            )
            .await?;
        let mut checks = flatten(&self.label, out)?;
        if checks.len() > MAX_DIAGNOSTIC_CHECKS {
            return Err(CallError::InvalidOutput {
                connector: self.label.to_string(),
                detail: format!("{} checks returned: at most {MAX_DIAGNOSTIC_CHECKS}", checks.len()),
            });
        }
        for c in &mut checks {
            truncate_utf8(&mut c.name, 128);
            truncate_utf8(&mut c.detail, 2048);
        }
        Ok(Some(checks))
    }

    fn check_json(&self, what: &str, text: &str) -> Result<(), CallError> {
        serde_json::from_str::<serde::de::IgnoredAny>(text).map(|_| ()).map_err(|e| CallError::InvalidOutput {
            connector: self.label.to_string(),
            detail: format!("{what} is not valid JSON: {e}"),
        })
    }
}

impl Runtime {
    /// Validate and compile untrusted bytes (a component, or a core module with embedded WIT
    /// metadata, which is componentized first), call `describe`, and cache the compiled artifact.
    /// See [`Runtime::install_with`].
    pub async fn install(&self, bytes: &[u8]) -> Result<LoadedConnector, InstallError> {
        self.install_with(bytes, &|_, _| Ok(())).await
    }

    /// [`Runtime::install`], with `policy` asked about the connector's self-description before
    /// its artifact is cached.
    ///
    /// Order, cheapest first, so that bad bytes cost little: size; the refusal cache (the same
    /// bytes refused before are refused again at once, by their SHA-256); componentization of a
    /// core module and the world, contract version and imports read from the component's own
    /// type information with `wasmparser` (no compilation); then compilation, one at a time on a
    /// compiler thread ([`RuntimeConfig::max_pending_compiles`]); `describe` in the sandbox; the
    /// metadata and its config schema; `policy`. Every refusal but a busy compiler or a cache
    /// I/O error is remembered ([`RuntimeConfig::refusal_cache_entries`]).
    ///
    /// [`RuntimeConfig::max_pending_compiles`]: crate::RuntimeConfig::max_pending_compiles
    /// [`RuntimeConfig::refusal_cache_entries`]: crate::RuntimeConfig::refusal_cache_entries
    pub async fn install_with(&self, bytes: &[u8], policy: InstallPolicy<'_>) -> Result<LoadedConnector, InstallError> {
        let limit = self.config().max_module_bytes;
        if bytes.len() > limit {
            return Err(InstallError::TooLarge { size: bytes.len(), limit });
        }
        let upload: Arc<[u8]> = Arc::from(bytes);
        let rt = self.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let hash = ModuleHash::of(&upload);
            if let Some(refused) = rt.inner.refusals.get(&hash) {
                rt.inner.refusals_cached.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return (hash, Err((refused, true)));
            }
            let prepared = componentize(&upload, limit).and_then(|c| {
                check_world(&c)?;
                Ok(c)
            });
            (hash, prepared.map_err(|e| (e, false)))
        })
        .await
        .map_err(|e| InstallError::Invalid { detail: format!("the module could not be read: {e}") })?;
        let (upload_hash, component_bytes) = match prepared {
            (_, Err((refused, true))) => return Err(refused),
            (hash, Err((refused, _))) => (hash, Err(refused)),
            (hash, Ok(c)) => (hash, Ok(c)),
        };
        let outcome = match component_bytes {
            Ok(c) => self.load_checked(c.into(), Some(policy)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &outcome {
            if e.is_permanent() {
                self.inner.refusals.put(upload_hash, e.clone(), self.config().refusal_cache_entries);
            }
        }
        outcome
    }

    /// Load a component that was installed before (e.g. read back from the store at start-up).
    /// Uses the compiled-artifact cache when it holds an artifact for this hash and engine.
    pub async fn load(&self, component_bytes: Arc<[u8]>) -> Result<LoadedConnector, InstallError> {
        let bytes = component_bytes.clone();
        tokio::task::spawn_blocking(move || check_world(&bytes))
            .await
            .map_err(|e| InstallError::Invalid { detail: format!("the module could not be read: {e}") })??;
        self.load_checked(component_bytes, None).await
    }

    /// Compile (or read the artifact of) a component whose world was checked, describe it and
    /// check what it says; `policy` is `Some` for a new install (whose config schema must then
    /// be usable).
    async fn load_checked(&self, component_bytes: Arc<[u8]>, policy: Option<InstallPolicy<'_>>) -> Result<LoadedConnector, InstallError> {
        let hash = {
            let bytes = component_bytes.clone();
            tokio::task::spawn_blocking(move || ModuleHash::of(&bytes))
                .await
                .map_err(|e| InstallError::Invalid { detail: format!("the module could not be read: {e}") })?
        };
        let (component, from_cache) = self.compile_cached(&hash, component_bytes.clone()).await?;
        let contract_version = self.check_component_type(&component)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| InstallError::Mismatch { detail: format!("{e:#}") })?;
        let pre = ConnectorPre::new(pre).map_err(|e| InstallError::Mismatch { detail: format!("{e:#}") })?;
        let (exports_schemas, exports_diagnostics) = (pre.has_schemas(), pre.has_diagnostics());
        let exports_directory_pull = pre.has_directory_pull();
        let exports_scim_reads = pre.has_scim_reads();

        let mut loaded = LoadedConnector {
            runtime: self.clone(),
            pre,
            label: Arc::from(format!("module {}", &hash.0[..12])),
            hash,
            info: ConnectorInfo {
                name: String::new(),
                vendor: String::new(),
                version: String::new(),
                description: String::new(),
                capabilities: Vec::new(),
                config_schema: String::new(),
                egress_hosts: Vec::new(),
            },
            keeps_unrendered: semver::Version::parse(&contract_version).is_ok_and(|v| v >= semver::Version::new(1, 1, 0)),
            contract_version,
            exports_schemas,
            exports_diagnostics,
            exports_directory_pull,
            exports_scim_reads,
            component_bytes,
            config_schema: Err("not described yet".into()),
        };
        let ctx = CallContext::with_limits(self.config().default_limits);
        let info = loaded.describe(&ctx).await.map_err(|e| match e {
            // No slot for the instance: nothing to hold against the module.
            CallError::Instantiate { .. } | CallError::Busy { .. } => InstallError::Busy { detail: e.to_string() },
            e => InstallError::BadMetadata { detail: e.to_string() },
        })?;
        validate_info(&info)?;
        loaded.config_schema = ConfigSchema::compile(&info.config_schema).map(Arc::new);
        if let Some(policy) = policy {
            if let Err(reason) = &loaded.config_schema {
                return Err(InstallError::BadMetadata { detail: format!("{} of {}", reason, info.name) });
            }
            policy(&info, &loaded.hash)?;
        }
        loaded.label = Arc::from(format!("{}@{}", info.name, info.version));
        loaded.info = info;
        if !from_cache {
            // Only a component that passed every check earns a cached artifact.
            let rt = self.clone();
            let hash = loaded.hash.clone();
            tokio::task::spawn_blocking(move || rt.write_artifact(&hash, &component))
                .await
                .map_err(|e| InstallError::Cache { path: self.cache_path(&loaded.hash), detail: e.to_string() })??;
        }
        Ok(loaded)
    }

    fn cache_path(&self, hash: &ModuleHash) -> PathBuf {
        self.config().cache_dir.join(format!("{}-{}.cwasm", hash.0, self.inner.engine_key))
    }

    /// The cached artifact of `hash`, if there is a usable one.
    fn read_artifact(&self, hash: &ModuleHash) -> Option<Component> {
        let path = self.cache_path(hash);
        // Read the artifact into memory rather than mapping the file: a file changed or
        // truncated under a live mapping would crash the process (SIGBUS).
        let artifact = std::fs::read(&path).ok()?;
        // SAFETY: the cache directory is owned by idplex and only ever holds artifacts this
        // engine configuration serialized (the file name carries the engine's compatibility
        // hash); wasmtime still checks the artifact's header against the engine.
        match unsafe { Component::deserialize(&self.inner.engine, &artifact) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding unusable compiled artifact");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// The compiled component, and whether it came from the artifact cache. Compilation runs
    /// one at a time, on a compiler thread, never on an async worker.
    async fn compile_cached(&self, hash: &ModuleHash, bytes: Arc<[u8]>) -> Result<(Component, bool), InstallError> {
        let rt = self.clone();
        let h = hash.clone();
        if let Ok(Some(c)) = tokio::task::spawn_blocking(move || rt.read_artifact(&h)).await {
            self.inner.cache_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok((c, true));
        }
        let inner = &self.inner;
        let max_waiting = self.config().max_pending_compiles as usize;
        if inner.compiles_waiting.fetch_add(1, std::sync::atomic::Ordering::AcqRel) >= max_waiting {
            inner.compiles_waiting.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            return Err(InstallError::Busy {
                detail: format!("{max_waiting} installs are already waiting for the compiler"),
            });
        }
        let permit = inner.compile_gate.clone().acquire_owned().await;
        inner.compiles_waiting.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        let permit = permit.map_err(|_| InstallError::Busy { detail: "the compiler is shutting down".into() })?;
        let engine = inner.engine.clone();
        // The permit goes with the compilation: an install given up meanwhile still holds the
        // compiler until its compilation ends.
        let component = on_compiler_thread(move || {
            let _permit = permit;
            Component::new(&engine, &bytes)
        })
        .await?
        .map_err(|e| InstallError::Invalid { detail: format!("{e:#}") })?;
        inner.compiled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok((component, false))
    }

    /// Persist a compiled component atomically (temp file + rename: readers never see half).
    fn write_artifact(&self, hash: &ModuleHash, component: &Component) -> Result<(), InstallError> {
        let path = self.cache_path(hash);
        let artifact = component
            .serialize()
            .map_err(|e| InstallError::Cache { path: path.clone(), detail: format!("{e:#}") })?;
        // Unique per writer: concurrent installs of the same module must not share a temp file.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
        std::fs::write(&tmp, &artifact)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| InstallError::Cache { path: path.clone(), detail: e.to_string() })
    }

    /// Check exports and imports by name before linking, to refuse with a precise reason.
    fn check_component_type(&self, component: &Component) -> Result<String, InstallError> {
        let engine = &self.inner.engine;
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        let ours: Vec<&String> = exports.iter().filter(|n| n.starts_with("idplex:connector/")).collect();
        let Some(first) = ours.first() else {
            return Err(InstallError::WrongWorld {
                exports: if exports.is_empty() { "nothing".into() } else { exports.join(", ") },
            });
        };
        let found = first.rsplit_once('@').map(|(_, v)| v.to_string()).unwrap_or_default();
        if !is_supported(&found) {
            return Err(InstallError::IncompatibleContract { found });
        }
        for (import, _) in ty.imports(engine) {
            check_import(import)?;
        }
        Ok(found)
    }
}

/// The component of uploaded bytes: as they are, or a core module with WIT metadata
/// componentized; refused if neither, or larger than `limit`. Public for the vendor kit
/// (`idplex connector build` componentizes with exactly what install does).
pub fn componentize(bytes: &[u8], limit: usize) -> Result<Vec<u8>, InstallError> {
    let component_bytes: Vec<u8> = if wasmparser::Parser::is_component(bytes) {
        bytes.to_vec()
    } else if wasmparser::Parser::is_core_wasm(bytes) {
        // Without it, wit-component would wrap the module in an empty component, which
        // would then be refused as "another world": misleading for a plain core module.
        if !has_component_type_metadata(bytes) {
            return Err(InstallError::NotAComponent { detail: "no `component-type` custom section".into() });
        }
        wit_component::ComponentEncoder::default()
            .validate(true)
            .module(bytes)
            .and_then(|mut e| e.encode())
            .map_err(|e| InstallError::NotAComponent { detail: format!("{e:#}") })?
    } else {
        return Err(InstallError::NotWasm);
    };
    if component_bytes.len() > limit {
        return Err(InstallError::TooLarge { size: component_bytes.len(), limit });
    }
    Ok(component_bytes)
}

/// The world check of [`Runtime::check_component_type`], from the component's own top-level
/// import and export sections (`wasmparser`, no compilation): refuses another world, another
/// contract major, or an import the sandbox does not grant before any compilation.
fn check_world(component: &[u8]) -> Result<(), InstallError> {
    use wasmparser::{Parser, Payload};
    let malformed = |e: wasmparser::BinaryReaderError| InstallError::Invalid { detail: format!("malformed component: {e}") };
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(component) {
        match payload.map_err(malformed)? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(import.map_err(malformed)?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(export.map_err(malformed)?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    let Some(ours) = exports.iter().find(|n| n.starts_with("idplex:connector/")) else {
        return Err(InstallError::WrongWorld {
            exports: if exports.is_empty() { "nothing".into() } else { exports.join(", ") },
        });
    };
    let found = ours.rsplit_once('@').map(|(_, v)| v.to_string()).unwrap_or_default();
    if !is_supported(&found) {
        return Err(InstallError::IncompatibleContract { found });
    }
    imports.iter().try_for_each(|i| check_import(i))
}

fn major_of(version: &str) -> Option<u64> {
    semver::Version::parse(version).ok().map(|v| v.major)
}

/// Whether `version` of the contract is one this host links ([`crate::bindings::SUPPORTED_MAJORS`]).
fn is_supported(version: &str) -> bool {
    major_of(version).is_some_and(|m| crate::bindings::SUPPORTED_MAJORS.contains(&m))
}

/// "1.x" (or "1.x, 2.x"): the contract versions this host accepts, for messages.
fn supported_majors() -> String {
    crate::bindings::SUPPORTED_MAJORS.iter().map(|m| format!("{m}.x")).collect::<Vec<_>>().join(", ")
}

/// Imports a connector may have, and the reason for each one it may not.
fn check_import(import: &str) -> Result<(), InstallError> {
    let (name, version) = import.rsplit_once('@').unwrap_or((import, ""));
    let refuse = |reason: &str| {
        Err(InstallError::ForbiddenImport { import: import.to_string(), reason: reason.to_string() })
    };
    let package = name.split('/').next().unwrap_or(name);
    match package {
        "idplex:connector" if is_supported(version) => Ok(()),
        "idplex:connector" => {
            Err(InstallError::IncompatibleContract { found: version.to_string() })
        }
        "wasi:http" | "wasi:io" | "wasi:clocks" => {
            let v = semver::Version::parse(version).ok();
            if v.is_some_and(|v| v.major == 0 && v.minor == 2) {
                Ok(())
            } else {
                refuse("only WASI 0.2.x (wasi:http, wasi:io, wasi:clocks) is provided")
            }
        }
        "wasi:filesystem" => refuse("connectors get no filesystem; pass data through the contract"),
        "wasi:sockets" => refuse("connectors get no sockets; use wasi:http/outgoing-handler for egress"),
        "wasi:cli" => refuse("connectors get no environment, arguments, exit or stdio; use the log and config imports (build for wasm32-unknown-unknown, not wasm32-wasip2)"),
        "wasi:random" => refuse("connectors get no randomness source; a mapping must be deterministic"),
        _ => refuse("it is not part of the idplex:connector world"),
    }
}

/// The rule for a connector's `name` (what `describe` may answer): 1-64 characters of `a-z`,
/// `0-9` and `-`, not starting with `-`. The error names the name and the rule.
pub fn check_connector_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok { Ok(()) } else { Err(format!("name {name:?} must be 1-64 characters of a-z, 0-9 and '-'")) }
}

fn validate_info(info: &ConnectorInfo) -> Result<(), InstallError> {
    match info_problems(info).into_iter().next() {
        Some((_, detail)) => Err(InstallError::BadMetadata { detail }),
        None => Ok(()),
    }
}

/// The field of a `connector-info` that one of the host's metadata checks is about
/// ([`info_problems`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InfoField {
    /// `name` ([`check_connector_name`]).
    Name,
    /// `version`: semver.
    Version,
    /// `config-schema`: a JSON object (its compilation as JSON Schema is checked apart).
    ConfigSchema,
    /// `egress-hosts`: host names, `host:port`, or patterns `{config-key}.domain.tld`.
    EgressHosts,
}

/// Every problem the install checks find in a connector's self-description, in the order they
/// check them (install refuses with the first, [`InstallError::BadMetadata`]); empty when it
/// passes. The config schema's compilation as JSON Schema is not part of it.
pub fn info_problems(info: &ConnectorInfo) -> Vec<(InfoField, String)> {
    let mut problems = Vec::new();
    if let Err(reason) = check_connector_name(&info.name) {
        problems.push((InfoField::Name, reason));
    }
    if semver::Version::parse(&info.version).is_err() {
        problems.push((
            InfoField::Version,
            format!("version {:?} of {} is not a semver version (e.g. 1.2.3)", info.version, info.name),
        ));
    }
    if !serde_json::from_str::<serde_json::Value>(&info.config_schema).is_ok_and(|v| v.is_object()) {
        problems.push((InfoField::ConfigSchema, format!("config-schema of {} is not a JSON object", info.name)));
    }
    for host in &info.egress_hosts {
        let ok = !host.is_empty()
            && host.len() <= 253
            && (host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
                || crate::egress::host_pattern_key(host).is_some());
        if !ok {
            problems.push((
                InfoField::EgressHosts,
                format!(
                    "egress host {host:?} of {} is not a host name, host:port, or a pattern `{{config-key}}.domain.tld`",
                    info.name
                ),
            ));
        }
    }
    problems
}

/// Whether a core module carries wit-bindgen's `component-type*` custom section (the WIT
/// metadata needed to componentize it). Unparseable modules answer `true`, so the encoder
/// reports their real error.
fn has_component_type_metadata(module: &[u8]) -> bool {
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        match payload {
            Ok(wasmparser::Payload::CustomSection(s)) if s.name().starts_with("component-type") => return true,
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    false
}

/// What `render` made of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendering {
    /// The connector's rendering (possibly byte for byte the input).
    Rendered(String),
    /// The connector serves this kind unchanged (it answered `unsupported`, contract 1.1): the
    /// input itself.
    Unchanged(String),
}

/// At most this many schema extensions a connector may declare (all resource types together).
pub const MAX_DECLARED_EXTENSIONS: usize = 16;

/// At most this many checks in a `test-connection` answer.
pub const MAX_DIAGNOSTIC_CHECKS: usize = 64;

/// Longest cursor (`next`, `resume`) a `directory-pull` page may carry, in bytes (the contract
/// says 8 KiB).
pub const MAX_PULL_CURSOR_BYTES: usize = 8 << 10;

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut with `…`.
fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}
