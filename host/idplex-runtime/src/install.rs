//! From untrusted bytes to a [`LoadedConnector`]: validation, compilation, the compiled-artifact
//! cache, and the typed calls a loaded connector offers.

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::bindings::{
    Capability, ConnectorInfo, ConnectorPre, Operation, ResourceKind, ScimRequest, SsoIdentity,
    SyncPage, VerifiedAssertion,
};
use crate::call::{CallContext, CallError, CallState, Warm, flatten};
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
#[derive(Debug, thiserror::Error)]
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
    #[error("component was built against idplex:connector@{found}; this host implements {CONTRACT_VERSION} and accepts 1.x only: rebuild the connector against a 1.x contract or upgrade idplex")]
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
        }
    }
}

/// A validated, compiled connector ready for calls. Cheap to share (`Arc`); every call gets a
/// fresh instance from the pre-instantiated form.
pub struct LoadedConnector {
    pub(crate) runtime: Runtime,
    pub(crate) pre: ConnectorPre<CallState>,
    pub(crate) label: Arc<str>,
    hash: ModuleHash,
    info: ConnectorInfo,
    contract_version: String,
    component_bytes: Arc<[u8]>,
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
    /// Whether the connector declared `capability`.
    pub fn has(&self, capability: Capability) -> bool {
        self.info.capabilities.contains(&capability)
    }

    /// `metadata.describe`.
    pub async fn describe(&self, ctx: &CallContext) -> Result<ConnectorInfo, CallError> {
        self.run(
            ctx,
            Box::new(|c, s| Box::pin(async move { c.idplex_connector_metadata().call_describe(s).await })),
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
                    Box::pin(async move { c.idplex_connector_provisioning().call_normalize(s, &request).await })
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
    /// byte: the caller's own).
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
        // Rendered unchanged (the common case): the host's own valid JSON, no second check.
        let input = resource.clone();
        let out = self
            .run_in(
                warm,
                ctx,
                Box::new(move |c, s| {
                    Box::pin(async move { c.idplex_connector_provisioning().call_render(s, kind, &resource).await })
                }),
            )
            .await?;
        let json = flatten(&self.label, out)?;
        if json != input {
            self.check_json("rendered resource", &json).inspect_err(|_| warm.discard())?;
        }
        Ok(json)
    }

    /// `directory-sync.pull`.
    pub async fn pull(&self, ctx: &CallContext, cursor: Option<String>) -> Result<SyncPage, CallError> {
        let out = self
            .run(
                ctx,
                Box::new(move |c, s| {
                    Box::pin(async move { c.idplex_connector_directory_sync().call_pull(s, cursor.as_deref()).await })
                }),
            )
            .await?;
        flatten(&self.label, out)
    }

    /// `sso.map-assertion`.
    pub async fn map_assertion(&self, ctx: &CallContext, assertion: VerifiedAssertion) -> Result<SsoIdentity, CallError> {
        let out = self
            .run(
                ctx,
                Box::new(move |c, s| {
                    Box::pin(async move { c.idplex_connector_sso().call_map_assertion(s, &assertion).await })
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
    pub async fn install(&self, bytes: &[u8]) -> Result<LoadedConnector, InstallError> {
        let limit = self.config().max_module_bytes;
        if bytes.len() > limit {
            return Err(InstallError::TooLarge { size: bytes.len(), limit });
        }
        let component_bytes: Vec<u8> = if wasmparser::Parser::is_component(bytes) {
            bytes.to_vec()
        } else if wasmparser::Parser::is_core_wasm(bytes) {
            // Without it, wit-component would wrap the module in an empty component, which
            // would then be refused as "another world": misleading for a plain core module.
            if !has_component_type_metadata(bytes) {
                return Err(InstallError::NotAComponent {
                    detail: "no `component-type` custom section".into(),
                });
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
        self.load(component_bytes.into()).await
    }

    /// Load a component that was installed before (e.g. read back from the store at start-up).
    /// Uses the compiled-artifact cache when it holds an artifact for this hash and engine.
    pub async fn load(&self, component_bytes: Arc<[u8]>) -> Result<LoadedConnector, InstallError> {
        let hash = ModuleHash::of(&component_bytes);
        let (component, from_cache) = self.compile_cached(&hash, &component_bytes)?;
        let contract_version = self.check_component_type(&component)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| InstallError::Mismatch { detail: format!("{e:#}") })?;
        let pre = ConnectorPre::new(pre).map_err(|e| InstallError::Mismatch { detail: format!("{e:#}") })?;

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
            contract_version,
            component_bytes,
        };
        let ctx = CallContext::with_limits(self.config().default_limits);
        let info = loaded.describe(&ctx).await.map_err(|e| InstallError::BadMetadata { detail: e.to_string() })?;
        validate_info(&info)?;
        loaded.label = Arc::from(format!("{}@{}", info.name, info.version));
        loaded.info = info;
        if !from_cache {
            // Only a component that passed every check earns a cached artifact.
            self.write_artifact(&loaded.hash, &component)?;
        }
        Ok(loaded)
    }

    fn cache_path(&self, hash: &ModuleHash) -> PathBuf {
        self.config().cache_dir.join(format!("{}-{}.cwasm", hash.0, self.inner.engine_key))
    }

    /// The compiled component, and whether it came from the artifact cache.
    fn compile_cached(&self, hash: &ModuleHash, bytes: &[u8]) -> Result<(Component, bool), InstallError> {
        let path = self.cache_path(hash);
        // Read the artifact into memory rather than mapping the file: a file changed or
        // truncated under a live mapping would crash the process (SIGBUS).
        if let Ok(artifact) = std::fs::read(&path) {
            // SAFETY: the cache directory is owned by idplex and only ever holds artifacts this
            // engine configuration serialized (the file name carries the engine's compatibility
            // hash); wasmtime still checks the artifact's header against the engine.
            match unsafe { Component::deserialize(&self.inner.engine, &artifact) } {
                Ok(c) => {
                    self.inner.cache_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok((c, true));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable compiled artifact");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(&self.inner.engine, bytes)
            .map_err(|e| InstallError::Invalid { detail: format!("{e:#}") })?;
        self.inner.compiled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        if major_of(&found) != Some(1) {
            return Err(InstallError::IncompatibleContract { found });
        }
        for (import, _) in ty.imports(engine) {
            check_import(import)?;
        }
        Ok(found)
    }
}

fn major_of(version: &str) -> Option<u64> {
    semver::Version::parse(version).ok().map(|v| v.major)
}

/// Imports a connector may have, and the reason for each one it may not.
fn check_import(import: &str) -> Result<(), InstallError> {
    let (name, version) = import.rsplit_once('@').unwrap_or((import, ""));
    let refuse = |reason: &str| {
        Err(InstallError::ForbiddenImport { import: import.to_string(), reason: reason.to_string() })
    };
    let package = name.split('/').next().unwrap_or(name);
    match package {
        "idplex:connector" if major_of(version) == Some(1) => Ok(()),
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

fn validate_info(info: &ConnectorInfo) -> Result<(), InstallError> {
    let bad = |detail: String| Err(InstallError::BadMetadata { detail });
    let name_ok = !info.name.is_empty()
        && info.name.len() <= 64
        && info.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !info.name.starts_with('-');
    if !name_ok {
        return bad(format!("name {:?} must be 1-64 characters of a-z, 0-9 and '-'", info.name));
    }
    if semver::Version::parse(&info.version).is_err() {
        return bad(format!("version {:?} of {} is not a semver version (e.g. 1.2.3)", info.version, info.name));
    }
    if !serde_json::from_str::<serde_json::Value>(&info.config_schema).is_ok_and(|v| v.is_object()) {
        return bad(format!("config-schema of {} is not a JSON object", info.name));
    }
    for host in &info.egress_hosts {
        let ok = !host.is_empty()
            && host.len() <= 253
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if !ok {
            return bad(format!("egress host {host:?} of {} is not a host name or host:port", info.name));
        }
    }
    Ok(())
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
