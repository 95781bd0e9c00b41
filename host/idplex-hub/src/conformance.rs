//! The connector conformance check (`idplex connector check FILE.wasm`): loads a module exactly
//! as the host does, then runs the calls the host makes and judges each answer by the host's own
//! rules. Nothing here needs a database.
//!
//! What it does, in order (each step a [`CheckCase`], passed, failed or skipped with a reason):
//!
//! * **Loading**: [`Runtime::install_with`] with the hub's install policy (the first-party names
//!   are reserved), on a runtime of its own whose compiled-artifact cache is a private temporary
//!   directory: size, componentization of a core module with embedded WIT, world and contract
//!   version, imports, compilation, `describe`, the metadata and its config schema. Each refusal
//!   is reported on the case it is about (`component`, `world and contract version`, `imports`,
//!   `metadata: …`). When install refuses the metadata, the component is loaded again without the
//!   install policy ([`Runtime::load`]) so that every metadata problem is reported, not only the
//!   first, and the behaviour cases still run (the report fails either way).
//! * **Metadata**: the host's checks of each field ([`idplex_runtime::info_problems`], the
//!   reserved names, the config schema compiled as JSON Schema), a non-empty vendor and
//!   description, and tenant egress patterns naming a key of the config schema.
//!   `describe is deterministic`: two more calls, each in a fresh instance, answer what install
//!   stored.
//! * **Config**: the connection config the cases run with, [`CheckOptions::config`] (empty by
//!   default, as a new connection's: the schema's `default`s are not written in, the hub never
//!   does), must satisfy the schema as the hub checks a connection's. The call context is made
//!   by the hub's own [`crate::call_context`] (secrets withheld, host patterns filled), with no
//!   egress allowed: a check never reaches the network.
//! * **Capabilities**: each declared one must answer (not trap, time out or return what the
//!   host refuses); each undeclared one must answer `unsupported`.
//!   - provisioning: generic RFC 7644 requests, normalized by the connector and by the host's
//!     native generic dialect ([`crate::native_scim`]), must give the same operations (or both
//!     refuse, with the same error kind and `scimType`); the hub's rules on what a request may
//!     become apply ([`crate::operations_allowed`], exactly one operation). `render` of a valid
//!     resource must keep it valid: the hub's rendering rules (a JSON object, the same `id`, the
//!     host-owned attributes restored) and then [`idplex_scim::prepare_resource`] accept it.
//!   - sso: canonical verified assertions map to identities the hub accepts at sign-in: a
//!     non-empty, canonical `userName`, active, and a JIT user resource
//!     ([`crate::sso::merged_resource`]) that `prepare_resource` accepts.
//!   - directory-sync: a page of a full pass ([`LoadedConnector::pull_page`]); with egress off,
//!     a connector that reaches for one of its declared hosts answers as it should.
//!   - `schemas.extensions` must be usable by the hub ([`crate::provisioning::ScimTypes::with_declared`]),
//!     `diagnostics.test-connection` must answer.
//! * **Limits**: every call runs under [`CheckOptions::limits`] (the runtime's defaults unless a
//!   caller chooses others; a page pull too: offline it has no reason to need the wider
//!   `Limits::for_pull`). A call that exceeds its deadline, its memory or its output cap fails
//!   its case with the runtime's reason, and the `limits` case sums them up with the slowest call
//!   and the largest memory seen.
//!
//! A call that answers a `config` error (the connector needs a config key it was not given) is
//! reported as skipped with the connector's message: give the key with `--config KEY=VALUE`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idplex_runtime::{
    CallContext, CallError, Capability, ConnectorErrorKind, ConnectorInfo, InfoField, InstallError, LoadedConnector, ModuleHash, Operation, Rendering, ResourceKind, Runtime, RuntimeConfig, SamlAttribute,
    ScimRequest, VerifiedAssertion, Warm, WitConnectorError,
};
use idplex_scim::{GROUP_RESOURCE_TYPE, PatchOptions, USER_RESOURCE_TYPE};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use idplex_runtime::Limits;

use crate::provisioning::{KindExt, operation_json};
use crate::{RequestShape, SecretKey};

/// How to check a component.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// The connection config the cases run with, as an admin gives it (`KEY=VALUE` strings, or
    /// JSON values from a file); empty by default, as a new connection's.
    pub config: Map<String, Value>,
    /// The per-call limits (default: the runtime's defaults, what a connection gets unless its
    /// admin overrides them).
    pub limits: Limits,
    /// Where compiled artifacts are cached; `None`: a private temporary directory, removed
    /// when the check ends.
    pub cache_dir: Option<PathBuf>,
}

/// The verdict of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseOutcome {
    /// The component does what the host expects.
    Pass,
    /// It does not; the detail says why.
    Fail,
    /// The case could not run (missing config, or an earlier step failed); the detail says why.
    Skip,
}

impl std::fmt::Display for CaseOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CaseOutcome::Pass => "PASS",
            CaseOutcome::Fail => "FAIL",
            CaseOutcome::Skip => "SKIP",
        })
    }
}

/// One case of a [`CheckReport`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckCase {
    /// Stable name (`provisioning: POST /Users (create)`), for people and scripts.
    pub name: String,
    /// Pass, fail or skip.
    pub outcome: CaseOutcome,
    /// What was found; for a failure, what is wrong; for a skip, why it did not run.
    pub detail: String,
    /// Wall-clock time of the case's connector call(s), instantiation included, in
    /// milliseconds (for a case of several calls, the slowest); `None` when no call was made.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub time_ms: Option<f64>,
    /// The linear memory the call's instance grew to, in bytes, where the runtime reports it
    /// (calls that succeeded, of `describe`, `normalize`, `render` and `map-assertion`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub memory_bytes: Option<u64>,
}

/// The outcome of [`check_component`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReport {
    /// The connector's name, when `describe` answered.
    pub name: Option<String>,
    /// Its version, when `describe` answered.
    pub version: Option<String>,
    /// The contract version the component was built against, when it loaded.
    pub contract_version: Option<String>,
    /// The capabilities it declares (`provisioning`, `directory-sync`, `sso`), when it loaded.
    pub capabilities: Vec<String>,
    /// SHA-256 of the component as it would be installed (the bytes given, or the component
    /// made of a core module), or of the bytes given when they are not a usable component.
    pub sha256: String,
    /// The size of the bytes given.
    pub size_bytes: usize,
    /// The limits every call ran under.
    pub limits: Limits,
    /// The cases, in the order they ran.
    pub cases: Vec<CheckCase>,
}

impl CheckReport {
    /// Whether no case failed (skipped cases do not fail a check).
    pub fn passed(&self) -> bool {
        !self.cases.iter().any(|c| c.outcome == CaseOutcome::Fail)
    }

    /// The failed cases.
    pub fn failures(&self) -> impl Iterator<Item = &CheckCase> {
        self.cases.iter().filter(|c| c.outcome == CaseOutcome::Fail)
    }

    /// The case named `name`, if it ran.
    pub fn case(&self, name: &str) -> Option<&CheckCase> {
        self.cases.iter().find(|c| c.name == name)
    }

    /// How many cases had `outcome`.
    pub fn count(&self, outcome: CaseOutcome) -> usize {
        self.cases.iter().filter(|c| c.outcome == outcome).count()
    }

    /// `name@version`, or a placeholder when `describe` never answered.
    pub fn label(&self) -> String {
        match (&self.name, &self.version) {
            (Some(n), Some(v)) => format!("{n}@{v}"),
            _ => format!("module {}", &self.sha256[..self.sha256.len().min(12)]),
        }
    }
}

/// Instances the check's runtime may hold at once (it runs one call at a time).
const CHECK_POOL_INSTANCES: u32 = 16;

/// The connection id the check's calls run under (logs, the per-connection instance gate).
const CHECK_CONNECTION: &str = "connector-check";

/// Checks `bytes` (a component, or a core module with embedded WIT metadata) as described in
/// the module documentation. The error is the check's own environment failing (the cache
/// directory or the engine could not be made), never the component's fault: that is a failed
/// case of the report.
pub async fn check_component(bytes: &[u8], options: &CheckOptions) -> anyhow::Result<CheckReport> {
    let scratch;
    let cache_dir = match &options.cache_dir {
        Some(dir) => dir.clone(),
        None => {
            scratch = ScratchDir::new()?;
            scratch.path().to_path_buf()
        }
    };
    let mut config = RuntimeConfig::new(cache_dir);
    config.default_limits = options.limits;
    config.max_concurrent_instances = CHECK_POOL_INSTANCES;
    config.max_instances_per_connection = config.max_instances_per_connection.min(CHECK_POOL_INSTANCES);
    let runtime = Runtime::new(config)?;
    let mut check = Checker {
        runtime,
        options,
        report: CheckReport {
            name: None,
            version: None,
            contract_version: None,
            capabilities: Vec::new(),
            sha256: ModuleHash::of(bytes).0,
            size_bytes: bytes.len(),
            limits: options.limits,
            cases: Vec::new(),
        },
        calls: Vec::new(),
    };
    check.run(bytes).await;
    Ok(check.report)
}

/// A private directory under the system's temporary directory (mode 0700 on Unix: compiled
/// artifacts are loaded as native code), removed with everything in it when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> std::io::Result<ScratchDir> {
        static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        loop {
            let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("idplex-check-{}-{nanos:08x}-{n}", std::process::id()));
            let mut builder = std::fs::DirBuilder::new();
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            match builder.create(&path) {
                Ok(()) => return Ok(ScratchDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1_000_000 => continue,
                Err(e) => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("cannot create a cache directory {} for the check: {e}", path.display()),
                    ));
                }
            }
        }
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// -- case names ----------------------------------------------------------------------------------

/// The case names that do not depend on the connector (the capability cases are in their
/// tables below).
pub mod cases {
    /// The bytes are a component (or a core module with WIT metadata), within the size limit,
    /// and compile.
    pub const COMPONENT: &str = "component";
    /// It exports the `idplex:connector` world of a contract major this host speaks.
    pub const WORLD: &str = "world and contract version";
    /// It imports only what the sandbox grants.
    pub const IMPORTS: &str = "imports";
    /// `metadata.describe` answered at load.
    pub const DESCRIBE: &str = "metadata: describe";
    /// The host's naming rules, reserved first-party names included.
    pub const NAME: &str = "metadata: name";
    /// A semver version.
    pub const VERSION: &str = "metadata: version";
    /// A vendor and a description for the admin console.
    pub const DESCRIPTION: &str = "metadata: vendor and description";
    /// Well-formed egress hosts; tenant patterns name a key of the config schema.
    pub const EGRESS: &str = "metadata: egress hosts";
    /// A JSON object that compiles as JSON Schema, offline.
    pub const CONFIG_SCHEMA: &str = "metadata: config schema";
    /// Two more `describe` calls in fresh instances answer what install stored.
    pub const DETERMINISM: &str = "describe is deterministic";
    /// The config the cases run with satisfies the schema.
    pub const CONFIG: &str = "config";
    /// `schemas.extensions` answers declarations the hub can use.
    pub const SCHEMAS: &str = "schemas: extensions are usable";
    /// `diagnostics.test-connection` answers.
    pub const DIAGNOSTICS: &str = "diagnostics: test-connection answers";
    /// `scim-reads.as-sent` answers kinds the host may decode itself (contract 1.3).
    pub const SCIM_READS: &str = "scim-reads: reads the host decodes";
    /// No call exceeded its deadline, memory or output cap.
    pub const LIMITS: &str = "limits";

    /// The case of an undeclared capability (`provisioning`, `sso`, `directory-sync`).
    pub fn undeclared(capability: &str) -> String {
        format!("{capability}: undeclared, answers unsupported")
    }
}

// -- the check -----------------------------------------------------------------------------------

/// One connector call, for the `limits` case.
struct CallRecord {
    what: String,
    elapsed: Duration,
    memory: Option<u64>,
    /// The runtime's reason when the call hit a limit (deadline, memory, output, host resources).
    limit_hit: Option<String>,
}

struct Checker<'o> {
    runtime: Runtime,
    options: &'o CheckOptions,
    report: CheckReport,
    calls: Vec<CallRecord>,
}

/// What a call's answer means for a case.
enum Answer<T> {
    /// A value.
    Value(T),
    /// The connector refused with its own error.
    Refused(WitConnectorError),
    /// The call failed in the sandbox (trap, limits, invalid output, egress) or could not start.
    Failed(CallError),
}

impl<T> From<Result<T, CallError>> for Answer<T> {
    fn from(r: Result<T, CallError>) -> Self {
        match r {
            Ok(v) => Answer::Value(v),
            Err(CallError::Connector { error, .. }) => Answer::Refused(error),
            Err(e) => Answer::Failed(e),
        }
    }
}

/// Time and memory of a case's call(s).
#[derive(Clone, Copy, Default)]
struct Measure {
    time: Option<Duration>,
    memory: Option<u64>,
}

impl Measure {
    fn max(self, other: Measure) -> Measure {
        Measure {
            time: self.time.max(other.time),
            memory: self.memory.max(other.memory),
        }
    }
}

impl Checker<'_> {
    fn push(&mut self, name: impl Into<String>, outcome: CaseOutcome, detail: impl Into<String>, m: Measure) {
        self.report.cases.push(CheckCase {
            name: name.into(),
            outcome,
            detail: detail.into(),
            time_ms: m.time.map(|t| (t.as_secs_f64() * 100_000.0).round() / 100.0),
            memory_bytes: m.memory,
        });
    }

    fn pass(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.push(name, CaseOutcome::Pass, detail, Measure::default());
    }

    fn fail(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.push(name, CaseOutcome::Fail, detail, Measure::default());
    }

    fn skip(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.push(name, CaseOutcome::Skip, detail, Measure::default());
    }

    /// Records a finished call for the `limits` case and returns its measure.
    fn record<T>(&mut self, what: String, started: Instant, memory: Option<u64>, out: &Result<T, CallError>) -> Measure {
        let elapsed = started.elapsed();
        let limit_hit = match out {
            Err(
                e @ (CallError::Timeout { .. }
                | CallError::MemoryLimit { .. }
                | CallError::OutputTooLarge { .. }
                | CallError::TooManyOperations { .. }
                | CallError::HostResources { .. }
                | CallError::HeadersTooLarge { .. }),
            ) => Some(e.to_string()),
            _ => None,
        };
        let memory = memory.filter(|_| out.is_ok());
        self.calls.push(CallRecord { what, elapsed, memory, limit_hit });
        Measure { time: Some(elapsed), memory }
    }

    async fn run(&mut self, bytes: &[u8]) {
        let Some((loaded, install_error)) = self.load(bytes).await else {
            for name in [
                cases::DESCRIBE,
                cases::NAME,
                cases::VERSION,
                cases::DESCRIPTION,
                cases::EGRESS,
                cases::CONFIG_SCHEMA,
                cases::DETERMINISM,
                cases::CONFIG,
                "provisioning",
                "sso",
                "directory-sync",
                cases::SCHEMAS,
                cases::SCIM_READS,
                cases::DIAGNOSTICS,
                cases::LIMITS,
            ] {
                if self.report.case(name).is_none() {
                    self.skip(name, "not run: the module did not load (see the failed case above)");
                }
            }
            return;
        };
        let info = loaded.info().clone();
        self.report.name = Some(info.name.clone());
        self.report.version = Some(info.version.clone());
        self.report.contract_version = Some(loaded.contract_version().to_string());
        self.report.capabilities = info.capabilities.iter().map(ToString::to_string).collect();
        self.report.sha256 = loaded.hash().0.clone();
        self.metadata(&loaded, &info, install_error.as_ref());
        self.determinism(&loaded, &info).await;
        let ctx = self.config(&loaded, &info);
        self.provisioning(&loaded, &ctx).await;
        self.sso(&loaded, &ctx).await;
        self.directory_sync(&loaded, &ctx).await;
        self.schemas(&loaded, &ctx).await;
        self.scim_reads(&loaded, &ctx).await;
        self.diagnostics(&loaded, &ctx).await;
        self.limits();
    }

    /// Install as the host does; on a metadata refusal, load without the install policy so the
    /// remaining cases can run. `None` when nothing could be loaded (the cases say why).
    async fn load(&mut self, bytes: &[u8]) -> Option<(LoadedConnector, Option<InstallError>)> {
        let core = !bytes.starts_with(b"\0asm\x0d\0\x01\0");
        let error = match self.runtime.install_with(bytes, &crate::reserve_first_party_names).await {
            Ok(loaded) => {
                let made = if core { "a core module, componentized to" } else { "a WebAssembly component of" };
                self.pass(
                    cases::COMPONENT,
                    format!("{made} {} bytes; compiled", loaded.component_bytes().len()),
                );
                self.pass(cases::WORLD, world_detail(loaded.contract_version()));
                self.pass(cases::IMPORTS, IMPORTS_GRANTED);
                return Some((loaded, None));
            }
            Err(e) => e,
        };
        let reason = format!("{error} [{}]", error.kind());
        let not_run = "not checked: an earlier step refused the module";
        match &error {
            InstallError::WrongWorld { .. } | InstallError::IncompatibleContract { .. } => {
                self.pass(cases::COMPONENT, "a WebAssembly component (not compiled: its world is refused first)");
                self.fail(cases::WORLD, reason);
                self.skip(cases::IMPORTS, not_run);
                return None;
            }
            InstallError::Mismatch { .. } => {
                self.pass(cases::COMPONENT, "a WebAssembly component; compiled");
                self.fail(cases::WORLD, reason);
                self.pass(cases::IMPORTS, IMPORTS_GRANTED);
                return None;
            }
            InstallError::ForbiddenImport { .. } => {
                self.pass(cases::COMPONENT, "a WebAssembly component (not compiled: its imports are refused first)");
                self.pass(cases::WORLD, "exports the idplex:connector world of a contract this host speaks");
                self.fail(cases::IMPORTS, reason);
                return None;
            }
            InstallError::BadMetadata { .. } | InstallError::ReservedName { .. } => {}
            InstallError::TooLarge { .. }
            | InstallError::NotWasm
            | InstallError::NotAComponent { .. }
            | InstallError::Invalid { .. }
            | InstallError::Cache { .. }
            | InstallError::Busy { .. } => {
                self.fail(cases::COMPONENT, reason);
                self.skip(cases::WORLD, not_run);
                self.skip(cases::IMPORTS, not_run);
                return None;
            }
        }
        // Refused for what `describe` said: everything before it passed. Load it without the
        // install policy to report every metadata problem, not only the first.
        let component = match idplex_runtime::componentize(bytes, self.runtime.config().max_module_bytes) {
            Ok(c) => c,
            Err(e) => {
                self.fail(cases::COMPONENT, format!("{e} [{}]", e.kind()));
                return None;
            }
        };
        self.pass(cases::COMPONENT, format!("{} bytes; compiled", component.len()));
        let contract = "exports the idplex:connector world of a contract this host speaks";
        match self.runtime.load(Arc::from(component)).await {
            Ok(loaded) => {
                self.report.cases.last_mut().expect("component case").detail =
                    format!("{} bytes; compiled", loaded.component_bytes().len());
                self.pass(cases::WORLD, world_detail(loaded.contract_version()));
                self.pass(cases::IMPORTS, IMPORTS_GRANTED);
                Some((loaded, Some(error)))
            }
            Err(_) => {
                // `describe` itself failed (trapped, timed out, answered nonsense).
                self.pass(cases::WORLD, contract);
                self.pass(cases::IMPORTS, IMPORTS_GRANTED);
                self.fail(cases::DESCRIBE, reason);
                None
            }
        }
    }

    fn metadata(&mut self, loaded: &LoadedConnector, info: &ConnectorInfo, install_error: Option<&InstallError>) {
        let first = self.report.cases.len();
        let capabilities: Vec<String> = info.capabilities.iter().map(ToString::to_string).collect();
        self.pass(
            cases::DESCRIBE,
            format!(
                "{}@{} by {:?}; capabilities [{}]",
                info.name,
                info.version,
                info.vendor,
                capabilities.join(", ")
            ),
        );
        let problems = idplex_runtime::info_problems(info);
        let of = |field: InfoField| -> Vec<String> {
            problems.iter().filter(|(f, _)| *f == field).map(|(_, d)| d.clone()).collect()
        };

        let mut name = of(InfoField::Name);
        if name.is_empty()
            && let Err(reserved) = crate::reserve_first_party_names(info, loaded.hash())
        {
            name.push(reserved.to_string());
        }
        self.verdict(cases::NAME, name, format!("{:?} follows the host's naming rules and is not reserved", info.name));

        self.verdict(cases::VERSION, of(InfoField::Version), format!("{:?} is a semver version", info.version));

        let mut description = Vec::new();
        if info.vendor.trim().is_empty() {
            description.push("`vendor` is empty: say who publishes and supports the connector".to_string());
        }
        if info.description.trim().is_empty() {
            description.push("`description` is empty: give one sentence for the admin console".to_string());
        }
        self.verdict(cases::DESCRIPTION, description, format!("vendor {:?}; {:?}", info.vendor, info.description));

        let schema: Option<Value> = serde_json::from_str(&info.config_schema).ok();
        let properties = schema.as_ref().and_then(|s| s.get("properties")).and_then(Value::as_object);
        let mut egress = of(InfoField::EgressHosts);
        for host in &info.egress_hosts {
            if let Some(key) = idplex_runtime::host_pattern_key(host)
                && !properties.is_some_and(|p| p.contains_key(key))
            {
                egress.push(format!(
                    "egress host pattern {host:?} is filled from config key `{key}`, which the config schema does not declare"
                ));
            }
        }
        let hosts = if info.egress_hosts.is_empty() { "none declared".to_string() } else { info.egress_hosts.join(", ") };
        self.verdict(cases::EGRESS, egress, hosts);

        let mut schema_problems = of(InfoField::ConfigSchema);
        if schema_problems.is_empty()
            && let Some(reason) = loaded.config_schema_error()
        {
            schema_problems.push(format!("{reason} (of {})", info.name));
        }
        let keys = properties.map(|p| p.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default();
        self.verdict(
            cases::CONFIG_SCHEMA,
            schema_problems,
            format!("compiles as JSON Schema (offline); keys: {}", if keys.is_empty() { "none" } else { &keys }),
        );

        // A refusal none of the cases above explains would otherwise go unreported.
        if let Some(e) = install_error
            && self.report.cases[first..].iter().all(|c| c.outcome != CaseOutcome::Fail)
        {
            let describe = &mut self.report.cases[first];
            describe.outcome = CaseOutcome::Fail;
            describe.detail = format!("install refused it: {e}");
        }
    }

    /// Fails `name` with `problems`, or passes it with `ok`.
    fn verdict(&mut self, name: &str, problems: Vec<String>, ok: String) {
        if problems.is_empty() {
            self.pass(name, ok);
        } else {
            self.fail(name, problems.join("; "));
        }
    }

    async fn determinism(&mut self, loaded: &LoadedConnector, stored: &ConnectorInfo) {
        let ctx = CallContext::with_limits(self.options.limits);
        let mut measure = Measure::default();
        let mut answers = Vec::new();
        for n in 1..=2 {
            let mut warm = Warm::default();
            let started = Instant::now();
            let out = loaded.describe_in(&mut warm, &ctx).await;
            let m = self.record(format!("describe #{n}"), started, Some(warm.memory_bytes()), &out);
            measure = measure.max(m);
            match out {
                Ok(info) => answers.push(info),
                Err(e) => {
                    self.push(cases::DETERMINISM, CaseOutcome::Fail, format!("describe call #{n} failed: {e}"), measure);
                    return;
                }
            }
        }
        let mut differences = Vec::new();
        for (n, answer) in answers.iter().enumerate() {
            for field in info_differences(stored, answer) {
                differences.push(format!("call #{} answered another `{field}` than the first", n + 1));
            }
        }
        if differences.is_empty() {
            self.push(
                cases::DETERMINISM,
                CaseOutcome::Pass,
                "two more calls, each in a fresh instance, answered the same connector-info",
                measure,
            );
        } else {
            differences.dedup();
            self.push(cases::DETERMINISM, CaseOutcome::Fail, differences.join("; "), measure);
        }
    }

    /// The config the cases run with ([`CheckOptions::config`]), checked, and the call context
    /// made from it as the hub makes a connection's.
    ///
    /// The `default`s of the config schema are not filled in: the hub never does (a default is
    /// an annotation; a connection's config holds what its admin set, and the connector applies
    /// its own defaults to the keys left out), and a config with every default written out is
    /// one no admin has (`okta`'s `groups_filter_mode` has a default and needs `groups_filter`
    /// once it is set).
    fn config(&mut self, loaded: &LoadedConnector, info: &ConnectorInfo) -> CallContext {
        let config = Value::Object(self.options.config.clone());
        let given: Vec<&String> = self.options.config.keys().collect();
        let described = if given.is_empty() {
            "no keys given: the cases run with an empty config, as a new connection's".to_string()
        } else {
            format!("keys given: {}", list_or_none(&given))
        };
        match loaded.check_config(&config) {
            Ok(()) => self.pass(cases::CONFIG, format!("accepted by the config schema: {described}")),
            Err(violation) => {
                let missing = !violation.fields.is_empty()
                    && violation.fields.iter().all(|f| config.get(f).is_none());
                if missing && loaded.config_schema_error().is_none() {
                    self.skip(
                        cases::CONFIG,
                        format!(
                            "the config schema requires {}: give them with --config KEY=VALUE (or --config-file); cases that need them are skipped",
                            violation.fields.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
                        ),
                    );
                } else if loaded.config_schema_error().is_some() {
                    self.skip(cases::CONFIG, "not checked: the config schema does not compile (see above)");
                } else {
                    self.fail(cases::CONFIG, format!("{}: {}", described, violation.detail));
                }
            }
        }
        let conn = idplex_store::Connection {
            id: CHECK_CONNECTION.to_string(),
            org_id: String::new(),
            name: CHECK_CONNECTION.to_string(),
            connector_name: info.name.clone(),
            active_version: Some(info.version.clone()),
            previous_version: None,
            config: config.clone(),
            egress_allow: Vec::new(),
            limits: Value::Null,
            generation: 0,
            created_at: 0,
            updated_at: 0,
            scim_delete_policy: Default::default(),
        };
        match crate::call_context(&self.runtime, &conn, loaded, &SecretKey::ephemeral()) {
            Ok(mut ctx) => {
                ctx.limits = self.options.limits;
                ctx
            }
            Err(e) => {
                // The hub would not bind this config; run the cases with its plain values.
                let last = self.report.cases.last_mut().expect("config case");
                last.outcome = CaseOutcome::Fail;
                last.detail = format!("the hub cannot make a call context of it: {e}");
                let values = config
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| !k.starts_with(crate::SECRET_PREFIX))
                    .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                    .collect::<BTreeMap<_, _>>();
                CallContext {
                    connection_id: Some(CHECK_CONNECTION.to_string()),
                    config: Arc::new(values),
                    ..CallContext::with_limits(self.options.limits)
                }
            }
        }
    }

    async fn provisioning(&mut self, loaded: &LoadedConnector, ctx: &CallContext) {
        if !loaded.has(Capability::Provisioning) {
            let request = scim_cases().into_iter().next().expect("a SCIM case").request;
            let mut warm = Warm::default();
            let started = Instant::now();
            let out = loaded.normalize_in(&mut warm, ctx, request).await;
            let m = self.record("normalize (undeclared)".into(), started, Some(warm.memory_bytes()), &out);
            self.undeclared("provisioning", "normalize of POST /Users", Answer::from(out), m);
            return;
        }
        for case in scim_cases() {
            self.scim_case(loaded, ctx, case).await;
        }
        for kind in [ResourceKind::User, ResourceKind::Group] {
            self.render_case(loaded, ctx, kind).await;
        }
    }

    async fn scim_case(&mut self, loaded: &LoadedConnector, ctx: &CallContext, case: ScimCase) {
        let request = case.request;
        let expected = crate::native_scim::normalize(&request);
        let shape = RequestShape { method: request.method.clone(), resource: request.resource, id: request.id.clone() };
        let mut warm = Warm::default();
        let started = Instant::now();
        let out = loaded.normalize_in(&mut warm, ctx, request).await;
        let m = self.record(format!("normalize: {}", case.name), started, Some(warm.memory_bytes()), &out);
        let (outcome, detail) = match (expected, Answer::from(out)) {
            (_, Answer::Failed(e)) => (CaseOutcome::Fail, e.to_string()),
            (_, Answer::Refused(e)) if e.kind == ConnectorErrorKind::Config => (CaseOutcome::Skip, needs_config(&e)),
            (Ok(want), Answer::Value(got)) => {
                if got.len() != 1 {
                    (
                        CaseOutcome::Fail,
                        format!("turned one request into {} operations; idplex applies exactly one", got.len()),
                    )
                } else if let Err(reason) = crate::operations_allowed(&shape, &got) {
                    (CaseOutcome::Fail, format!("the hub refuses the answer: it {reason}"))
                } else {
                    let (want, got) = (ops_json(&want), ops_json(&got));
                    if want == got {
                        (CaseOutcome::Pass, format!("→ {} (as the generic RFC 7644 dialect)", summary(&got)))
                    } else {
                        (
                            CaseOutcome::Fail,
                            format!(
                                "the generic RFC 7644 dialect makes {} of it, the connector {}",
                                shorten(&want.to_string()),
                                shorten(&got.to_string())
                            ),
                        )
                    }
                }
            }
            (Ok(want), Answer::Refused(e)) => (
                CaseOutcome::Fail,
                format!(
                    "refused a valid RFC 7644 request ({}): {}; the generic dialect makes {} of it",
                    kind_name(e.kind),
                    e.message,
                    summary(&ops_json(&want))
                ),
            ),
            (Err(want), Answer::Value(got)) => (
                CaseOutcome::Fail,
                format!(
                    "accepted what RFC 7644 refuses ({}{}: {}), making {}",
                    kind_name(want.kind),
                    scim_type_note(&want),
                    want.message,
                    shorten(&ops_json(&got).to_string())
                ),
            ),
            (Err(want), Answer::Refused(got)) => {
                if got.kind == want.kind && got.scim_type == want.scim_type {
                    (
                        CaseOutcome::Pass,
                        format!("refused as RFC 7644 requires ({}{}): {}", kind_name(got.kind), scim_type_note(&got), got.message),
                    )
                } else {
                    (
                        CaseOutcome::Fail,
                        format!(
                            "refused as {}{} ({}); RFC 7644 wants {}{}",
                            kind_name(got.kind),
                            scim_type_note(&got),
                            got.message,
                            kind_name(want.kind),
                            scim_type_note(&want)
                        ),
                    )
                }
            }
        };
        self.push(case.name, outcome, detail, m);
    }

    async fn render_case(&mut self, loaded: &LoadedConnector, ctx: &CallContext, kind: ResourceKind) {
        let name = format!("provisioning: render keeps a {} valid", kind.name().to_lowercase());
        let resource = stored_resource(kind);
        let mut warm = Warm::default();
        let started = Instant::now();
        let out = loaded.render_or_keep_in(&mut warm, ctx, kind, resource.to_string()).await;
        let m = self.record(format!("render {}", kind.name()), started, Some(warm.memory_bytes()), &out);
        let (outcome, detail) = match Answer::from(out) {
            Answer::Failed(e) => (CaseOutcome::Fail, e.to_string()),
            Answer::Refused(e) if e.kind == ConnectorErrorKind::Config => (CaseOutcome::Skip, needs_config(&e)),
            Answer::Refused(e) => (CaseOutcome::Fail, format!("render refused a valid {} ({}): {}", kind.name(), kind_name(e.kind), e.message)),
            Answer::Value(Rendering::Unchanged(_)) => (
                CaseOutcome::Pass,
                format!("serves {}s unchanged (answered `unsupported`, contract 1.1): the host's own resource is served", kind.name()),
            ),
            Answer::Value(Rendering::Rendered(text)) => match rendered_valid(kind, &resource, &text) {
                Ok(()) => (CaseOutcome::Pass, "the rendering, with the host-owned attributes restored, is a valid resource".into()),
                Err(reason) => (CaseOutcome::Fail, reason),
            },
        };
        self.push(name, outcome, detail, m);
    }

    async fn sso(&mut self, loaded: &LoadedConnector, ctx: &CallContext) {
        let assertions = canonical_assertions();
        if !loaded.has(Capability::Sso) {
            let (_, assertion) = assertions.into_iter().next().expect("an assertion");
            let mut warm = Warm::default();
            let started = Instant::now();
            let out = loaded.map_assertion_in(&mut warm, ctx, assertion).await;
            let m = self.record("map-assertion (undeclared)".into(), started, Some(warm.memory_bytes()), &out);
            self.undeclared("sso", "map-assertion", Answer::from(out), m);
            return;
        }
        for (name, assertion) in assertions {
            let mut warm = Warm::default();
            let started = Instant::now();
            let out = loaded.map_assertion_in(&mut warm, ctx, assertion).await;
            let m = self.record(format!("map-assertion: {name}"), started, Some(warm.memory_bytes()), &out);
            let (outcome, detail) = match Answer::from(out) {
                Answer::Failed(e) => (CaseOutcome::Fail, e.to_string()),
                Answer::Refused(e) if e.kind == ConnectorErrorKind::Config => (CaseOutcome::Skip, needs_config(&e)),
                Answer::Refused(e) => (
                    CaseOutcome::Fail,
                    format!("refused a verified assertion ({}): {}", kind_name(e.kind), e.message),
                ),
                Answer::Value(identity) => match identity_valid(&identity) {
                    Ok(detail) => (CaseOutcome::Pass, detail),
                    Err(reason) => (CaseOutcome::Fail, reason),
                },
            };
            self.push(name, outcome, detail, m);
        }
    }

    async fn directory_sync(&mut self, loaded: &LoadedConnector, ctx: &CallContext) {
        let declared = loaded.has(Capability::DirectorySync);
        let started = Instant::now();
        let out = loaded.pull_page(ctx, None).await;
        let m = self.record("directory pull".into(), started, None, &out);
        if !declared {
            self.undeclared("directory-sync", "a directory pull", Answer::from(out), m);
            return;
        }
        let name = "directory-sync: a full pass answers";
        let hosts = idplex_runtime::fill_host_patterns(&loaded.info().egress_hosts, |k| ctx.config.get(k).cloned())
            .unwrap_or_default();
        let (outcome, detail) = match out {
            Ok(page) => (
                CaseOutcome::Pass,
                format!(
                    "a {} page of {} users, {} groups{}",
                    match page.kind {
                        idplex_runtime::PassKind::Full => "full",
                        idplex_runtime::PassKind::Delta => "delta (for a pass started without a cursor?)",
                    },
                    page.users.len(),
                    page.groups.len(),
                    if page.next.is_some() { ", more to come" } else { "" }
                ),
            ),
            Err(e) => egress_or(e, &hosts, "directory-sync"),
        };
        self.push(name, outcome, detail, m);
    }

    async fn schemas(&mut self, loaded: &LoadedConnector, ctx: &CallContext) {
        let started = Instant::now();
        let out = loaded.extensions(ctx).await;
        let m = self.record("schemas.extensions".into(), started, None, &out);
        let (outcome, detail) = match Answer::from(out) {
            Answer::Failed(e) => (CaseOutcome::Fail, e.to_string()),
            Answer::Refused(e) if e.kind == ConnectorErrorKind::Config => (CaseOutcome::Skip, needs_config(&e)),
            Answer::Refused(e) => (
                CaseOutcome::Fail,
                format!("refused ({}): {}; a connector without extensions answers an empty list", kind_name(e.kind), e.message),
            ),
            Answer::Value(declared) => match crate::provisioning::ScimTypes::with_declared(&declared) {
                Ok(_) if declared.is_empty() => (CaseOutcome::Pass, "none declared".to_string()),
                Ok(_) => (
                    CaseOutcome::Pass,
                    format!("{} declared and usable: {}", declared.len(), declared.iter().map(|d| d.id.as_str()).collect::<Vec<_>>().join(", ")),
                ),
                Err(reason) => (CaseOutcome::Fail, format!("the hub cannot use a declared extension: {reason}")),
            },
        };
        self.push(cases::SCHEMAS, outcome, detail, m);
    }

    /// The kinds a connector takes as sent are decoded by the host instead of its `normalize`:
    /// sound when the `GET` cases above pass (the connector answers them as the host would).
    async fn scim_reads(&mut self, loaded: &LoadedConnector, ctx: &CallContext) {
        let started = Instant::now();
        let out = loaded.reads_as_sent(ctx).await;
        let m = self.record("scim-reads.as-sent".into(), started, None, &out);
        let (outcome, detail) = match out {
            Err(e) => (CaseOutcome::Fail, e.to_string()),
            Ok(kinds) if kinds.is_empty() => (CaseOutcome::Pass, "none: every GET goes through normalize".to_string()),
            Ok(_) if !loaded.has(Capability::Provisioning) => (
                CaseOutcome::Fail,
                "lists kinds whose reads the host should decode, without the provisioning capability".to_string(),
            ),
            Ok(kinds) => {
                let names: Vec<&str> = kinds.iter().map(|k| k.endpoint()).collect();
                let failed: Vec<String> = self
                    .report
                    .failures()
                    .filter(|c| c.name.strip_prefix("provisioning: GET /").is_some_and(|rest| names.iter().any(|n| rest.starts_with(n))))
                    .map(|c| c.name.clone())
                    .collect();
                if failed.is_empty() {
                    (
                        CaseOutcome::Pass,
                        format!("GET /{} decoded by the host, as the connector's own answers to the GET cases above", names.join(", GET /")),
                    )
                } else {
                    (
                        CaseOutcome::Fail,
                        format!("takes reads as sent, yet answers {} otherwise than the host decodes them", failed.join(", ")),
                    )
                }
            }
        };
        self.push(cases::SCIM_READS, outcome, detail, m);
    }

    async fn diagnostics(&mut self, loaded: &LoadedConnector, ctx: &CallContext) {
        let hosts = idplex_runtime::fill_host_patterns(&loaded.info().egress_hosts, |k| ctx.config.get(k).cloned())
            .unwrap_or_default();
        let started = Instant::now();
        let out = loaded.test_connection(ctx).await;
        let m = self.record("diagnostics.test-connection".into(), started, None, &out);
        let (outcome, detail) = match out {
            Ok(None) => (CaseOutcome::Skip, "built against contract 1.0, which has no test-connection".to_string()),
            Ok(Some(checks)) => {
                let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
                (
                    CaseOutcome::Pass,
                    format!(
                        "{} check{} ({} failed{}{})",
                        checks.len(),
                        if checks.len() == 1 { "" } else { "s" },
                        failed.len(),
                        if failed.is_empty() { "" } else { ": " },
                        failed.join(", ")
                    ),
                )
            }
            Err(e) => egress_or(e, &hosts, "diagnostics"),
        };
        self.push(cases::DIAGNOSTICS, outcome, detail, m);
    }

    /// The case of an undeclared capability: the call must answer `unsupported`.
    fn undeclared(&mut self, capability: &str, call: &str, answer: Answer<impl Sized>, m: Measure) {
        let name = cases::undeclared(capability);
        let (outcome, detail) = match answer {
            Answer::Refused(e) if e.kind == ConnectorErrorKind::Unsupported => {
                (CaseOutcome::Pass, format!("{call} answered unsupported: {}", e.message))
            }
            Answer::Refused(e) => (
                CaseOutcome::Fail,
                format!(
                    "{capability} is not declared, so {call} must answer `unsupported`; it answered {}: {}",
                    kind_name(e.kind),
                    e.message
                ),
            ),
            Answer::Value(_) => (
                CaseOutcome::Fail,
                format!("{capability} is not declared, so {call} must answer `unsupported`; it answered a result (declare the capability?)"),
            ),
            Answer::Failed(e) => (
                CaseOutcome::Fail,
                format!("{capability} is not declared, so {call} must answer `unsupported`; it failed: {e}"),
            ),
        };
        self.push(name, outcome, detail, m);
    }

    fn limits(&mut self) {
        let limits = self.options.limits;
        let hits: Vec<String> = self
            .calls
            .iter()
            .filter_map(|c| c.limit_hit.as_ref().map(|why| format!("{}: {why}", c.what)))
            .collect();
        let slowest = self.calls.iter().max_by_key(|c| c.elapsed);
        let largest = self.calls.iter().filter(|c| c.memory.is_some()).max_by_key(|c| c.memory);
        let mut seen = format!("{} calls", self.calls.len());
        if let Some(c) = slowest {
            seen.push_str(&format!(
                "; slowest {:.1} ms of {} ms ({})",
                c.elapsed.as_secs_f64() * 1000.0,
                limits.deadline_ms,
                c.what
            ));
        }
        if let Some(c) = largest {
            seen.push_str(&format!(
                "; most memory {:.1} MiB of {} MiB ({})",
                c.memory.unwrap_or_default() as f64 / (1 << 20) as f64,
                limits.memory_bytes >> 20,
                c.what
            ));
        }
        let measure = Measure { time: slowest.map(|c| c.elapsed), memory: largest.and_then(|c| c.memory) };
        if hits.is_empty() {
            self.push(cases::LIMITS, CaseOutcome::Pass, seen, measure);
        } else {
            self.push(
                cases::LIMITS,
                CaseOutcome::Fail,
                format!("{} calls exceeded a limit: {} ({seen})", hits.len(), hits.join("; ")),
                measure,
            );
        }
    }
}

const IMPORTS_GRANTED: &str = "imports only what the sandbox grants (the contract's log, config and clock; wasi:http, wasi:io, wasi:clocks 0.2.x)";

fn world_detail(contract: &str) -> String {
    let host = idplex_runtime::CONTRACT_VERSION;
    let older = semver_lt(contract, host);
    format!(
        "exports idplex:connector@{contract}; this host implements {host} and runs 1.x{}",
        if older { " (interfaces added since are answered with their documented defaults)" } else { "" }
    )
}

/// Whether dotted version `a` is below `b` (numeric, major.minor.patch).
fn semver_lt(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> { v.split(['.', '-', '+']).take(3).map(|p| p.parse().unwrap_or(0)).collect() };
    parts(a) < parts(b)
}

/// The fields of two `connector-info`s that differ.
fn info_differences(a: &ConnectorInfo, b: &ConnectorInfo) -> Vec<&'static str> {
    let mut out = Vec::new();
    if a.name != b.name {
        out.push("name");
    }
    if a.vendor != b.vendor {
        out.push("vendor");
    }
    if a.version != b.version {
        out.push("version");
    }
    if a.description != b.description {
        out.push("description");
    }
    if a.capabilities != b.capabilities {
        out.push("capabilities");
    }
    if a.config_schema != b.config_schema {
        out.push("config-schema");
    }
    if a.egress_hosts != b.egress_hosts {
        out.push("egress-hosts");
    }
    out
}

fn list_or_none<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.iter().map(|s| s.as_ref()).collect::<Vec<_>>().join(", ")
    }
}

fn kind_name(kind: ConnectorErrorKind) -> &'static str {
    match kind {
        ConnectorErrorKind::InvalidRequest => "invalid-request",
        ConnectorErrorKind::Unsupported => "unsupported",
        ConnectorErrorKind::Config => "config",
        ConnectorErrorKind::Upstream => "upstream",
        ConnectorErrorKind::Internal => "internal",
    }
}

fn scim_type_note(e: &WitConnectorError) -> String {
    e.scim_type.as_deref().map(|t| format!(", scimType {t}")).unwrap_or_default()
}

fn needs_config(e: &WitConnectorError) -> String {
    format!(
        "needs config the check was not given ({}); give it with --config KEY=VALUE or --config-file",
        e.message
    )
}

/// A failed call of `capability` that reached for the network: with egress off during a check,
/// a request to one of the connector's declared `hosts` is what a working connector does.
fn egress_or(e: CallError, hosts: &[String], capability: &str) -> (CaseOutcome, String) {
    match e {
        CallError::EgressDenied { destination, .. } => {
            // A reason after the destination (`(only https is allowed)`, too many requests) is a
            // request the host refuses whatever the admin allows.
            let refused_anyway = destination.contains(" (");
            let host = destination
                .split_once("://")
                .map_or(destination.as_str(), |(_, rest)| rest)
                .split([' ', '/'])
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let declared = hosts.iter().any(|h| {
                let h = h.to_ascii_lowercase();
                h == host || (!h.contains(':') && host.split(':').next() == Some(h.as_str()))
            });
            if declared && !refused_anyway {
                (
                    CaseOutcome::Pass,
                    format!("reached for its declared host {destination} (egress is off during a check, so the answer itself is not checked)"),
                )
            } else if declared {
                (CaseOutcome::Fail, format!("sent a request the host refuses to any connection: {destination}"))
            } else {
                (
                    CaseOutcome::Fail,
                    format!(
                        "tried to reach {destination}, which is not among its declared egress hosts ({})",
                        list_or_none(hosts)
                    ),
                )
            }
        }
        CallError::Connector { error, .. } => match error.kind {
            ConnectorErrorKind::Config => (CaseOutcome::Skip, needs_config(&error)),
            ConnectorErrorKind::Upstream => (
                CaseOutcome::Pass,
                format!("answered an upstream error (egress is off during a check): {}", error.message),
            ),
            ConnectorErrorKind::Unsupported => (
                CaseOutcome::Fail,
                format!("{capability} is declared, but the call answered unsupported: {}", error.message),
            ),
            kind => (CaseOutcome::Fail, format!("answered an error ({}): {}", kind_name(kind), error.message)),
        },
        e => (CaseOutcome::Fail, e.to_string()),
    }
}

// -- provisioning ---------------------------------------------------------------------------------

/// A generic RFC 7644 request and its case name.
struct ScimCase {
    name: String,
    request: ScimRequest,
}

const USER_ID: &str = "2819c223-7f76-453a-919d-413861904646";
const OTHER_USER_ID: &str = "902c246b-6245-4190-8e05-00816be7344a";
const GROUP_ID: &str = "e9e30dba-f08f-4109-8486-d5c6a331660a";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn user_body() -> Value {
    json!({
        "schemas": [idplex_scim::USER_SCHEMA_URN, idplex_scim::ENTERPRISE_USER_URN],
        "userName": "bjensen@example.com",
        "externalId": "701984",
        "name": {"givenName": "Barbara", "familyName": "Jensen", "formatted": "Ms. Barbara J Jensen III"},
        "displayName": "Babs Jensen",
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
        "active": true,
        (idplex_scim::ENTERPRISE_USER_URN): {"employeeNumber": "701984", "department": "Tour Operations"},
    })
}

fn group_body() -> Value {
    json!({
        "schemas": [idplex_scim::GROUP_SCHEMA_URN],
        "displayName": "Tour Guides",
        "externalId": "tour-guides",
        "members": [{"value": USER_ID, "display": "Babs Jensen"}],
    })
}

fn patch(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

/// The generic RFC 7644 requests every provisioning connector must take, as the hub hands them
/// to `normalize` (the body as compact JSON, the query decoded).
fn scim_cases() -> Vec<ScimCase> {
    use ResourceKind::{Group, User};
    let case = |name: &str, method: &str, resource: ResourceKind, id: Option<&str>, query: &[(&str, &str)], body: Option<Value>| ScimCase {
        name: format!("provisioning: {name}"),
        request: ScimRequest {
            method: method.to_string(),
            resource,
            id: id.map(str::to_string),
            query: query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.map(|b| b.to_string()),
        },
    };
    let mut replaced = user_body();
    replaced["displayName"] = json!("Barbara Jensen");
    vec![
        case("POST /Users (create)", "POST", User, None, &[], Some(user_body())),
        case("PUT /Users/{id} (replace)", "PUT", User, Some(USER_ID), &[], Some(replaced)),
        case(
            "PATCH /Users/{id} add with path",
            "PATCH",
            User,
            Some(USER_ID),
            &[],
            Some(patch(json!([{"op": "add", "path": "emails", "value": [{"value": "babs@example.org", "type": "home"}]}]))),
        ),
        case(
            "PATCH /Users/{id} add without path",
            "PATCH",
            User,
            Some(USER_ID),
            &[],
            Some(patch(json!([{"op": "add", "value": {"nickName": "Babs", "title": "Tour Guide"}}]))),
        ),
        case(
            "PATCH /Users/{id} replace with path",
            "PATCH",
            User,
            Some(USER_ID),
            &[],
            Some(patch(json!([{"op": "replace", "path": "active", "value": false}]))),
        ),
        case(
            "PATCH /Users/{id} replace without path",
            "PATCH",
            User,
            Some(USER_ID),
            &[],
            Some(patch(json!([{"op": "replace", "value": {"active": false, "displayName": "Barbara Jensen"}}]))),
        ),
        case(
            "PATCH /Users/{id} remove with path",
            "PATCH",
            User,
            Some(USER_ID),
            &[],
            Some(patch(json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]))),
        ),
        case(
            "PATCH /Users/{id} remove without path (refused)",
            "PATCH",
            User,
            Some(USER_ID),
            &[],
            Some(patch(json!([{"op": "remove"}]))),
        ),
        case("DELETE /Users/{id}", "DELETE", User, Some(USER_ID), &[], None),
        case("GET /Users/{id}", "GET", User, Some(USER_ID), &[], None),
        case(
            "GET /Users?filter=userName eq",
            "GET",
            User,
            None,
            &[("filter", "userName eq \"bjensen@example.com\""), ("startIndex", "1"), ("count", "100")],
            None,
        ),
        case("POST /Groups (create)", "POST", Group, None, &[], Some(group_body())),
        case("GET /Groups/{id}", "GET", Group, Some(GROUP_ID), &[("excludedAttributes", "members")], None),
        case(
            "GET /Groups?filter=displayName eq",
            "GET",
            Group,
            None,
            &[("filter", "displayName eq \"Tour Guides\""), ("excludedAttributes", "members")],
            None,
        ),
        case(
            "PATCH /Groups/{id} add members",
            "PATCH",
            Group,
            Some(GROUP_ID),
            &[],
            Some(patch(json!([{"op": "add", "path": "members", "value": [{"value": OTHER_USER_ID}]}]))),
        ),
        case(
            "PATCH /Groups/{id} remove members",
            "PATCH",
            Group,
            Some(GROUP_ID),
            &[],
            Some(patch(json!([{"op": "remove", "path": format!("members[value eq \"{USER_ID}\"]")}]))),
        ),
    ]
}

/// Operations as JSON with their embedded JSON parsed (key order and spacing do not matter).
fn ops_json(ops: &[Operation]) -> Value {
    Value::Array(ops.iter().map(operation_json).collect())
}

/// `create`, `patch (2 operations)`, … of the operations JSON [`ops_json`] made.
fn summary(ops: &Value) -> String {
    let parts: Vec<String> = ops
        .as_array()
        .into_iter()
        .flatten()
        .map(|op| {
            let name = op["op"].as_str().unwrap_or("?");
            match name {
                "patch" => format!("patch ({} operations)", op["operations"].as_array().map_or(0, Vec::len)),
                "query" => format!("query (filter {})", op["filter"]),
                other => other.to_string(),
            }
        })
        .collect();
    parts.join(", ")
}

/// At most 400 characters of `s`.
fn shorten(s: &str) -> String {
    const MAX: usize = 400;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A valid resource of `kind` as the hub hands it to `render`: prepared by the host's
/// validation, with its `id`, derived attribute and `meta`.
fn stored_resource(kind: ResourceKind) -> Value {
    let base = "https://idplex.example/scim/v2/connector-check";
    let (rt, body, id) = match kind {
        ResourceKind::User => (&USER_RESOURCE_TYPE, user_body(), USER_ID),
        ResourceKind::Group => (&GROUP_RESOURCE_TYPE, group_body(), GROUP_ID),
    };
    let mut resource = idplex_scim::prepare_resource(rt, &body, &PatchOptions::HOST).expect("the check's own resources are valid");
    resource["id"] = json!(id);
    match kind {
        ResourceKind::User => {
            resource["groups"] = json!([{"value": GROUP_ID, "$ref": format!("{base}/Groups/{GROUP_ID}"), "display": "Tour Guides", "type": "direct"}]);
        }
        ResourceKind::Group => {
            resource["members"] = json!([{"value": USER_ID, "$ref": format!("{base}/Users/{USER_ID}"), "type": "User"}]);
        }
    }
    resource["meta"] = json!({
        "resourceType": kind.name(),
        "created": "2024-05-01T09:30:00.000Z",
        "lastModified": "2024-05-02T10:00:00.000Z",
        "location": format!("{base}/{}/{id}", kind.endpoint()),
        "version": "W/\"3\"",
    });
    resource
}

/// Whether the hub serves `rendered` as a rendering of `input`, and the result is still a valid
/// resource of `kind`.
fn rendered_valid(kind: ResourceKind, input: &Value, rendered: &str) -> Result<(), String> {
    let mut out: Value = serde_json::from_str(rendered).map_err(|e| format!("the rendering is not JSON: {e}"))?;
    if out.get("id") != input.get("id") {
        return Err("the rendering changed the resource id; the hub answers such a rendering 502".into());
    }
    crate::provisioning::keep_host_owned(kind, input, &mut out).map_err(|e| format!("the hub refuses the rendering: {}", e.detail))?;
    let rt = match kind {
        ResourceKind::User => &USER_RESOURCE_TYPE,
        ResourceKind::Group => &GROUP_RESOURCE_TYPE,
    };
    idplex_scim::prepare_resource(rt, &out, &PatchOptions::HOST)
        .map(drop)
        .map_err(|e| format!("the rendered {} is not a valid resource: {}", kind.name(), e.detail))
}

// -- sso -------------------------------------------------------------------------------------------

const EMAIL_FORMAT: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
const PERSISTENT_FORMAT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";

fn attribute(name: &str, values: &[&str]) -> SamlAttribute {
    SamlAttribute { name: name.to_string(), values: values.iter().map(|v| v.to_string()).collect() }
}

/// Verified assertions as the hub hands them to `map-assertion` (after signature, audience,
/// time and replay checks), in the shapes IdPs commonly send.
fn canonical_assertions() -> Vec<(String, VerifiedAssertion)> {
    let assertion = |name_id: &str, format: &str, attributes: Vec<SamlAttribute>| VerifiedAssertion {
        issuer: "https://idp.example.com/saml/metadata".to_string(),
        name_id: name_id.to_string(),
        name_id_format: Some(format.to_string()),
        session_index: Some("_be9967abd904ddcae3c0eb4189adbe3f71e327cf93".to_string()),
        authn_context: None,
        attributes,
    };
    vec![
        ("sso: NameID e-mail address, no attributes".to_string(), assertion("bjensen@example.com", EMAIL_FORMAT, Vec::new())),
        (
            "sso: NameID e-mail address with common attribute names".to_string(),
            assertion(
                "bjensen@example.com",
                EMAIL_FORMAT,
                vec![
                    attribute("email", &["bjensen@example.com"]),
                    attribute("firstName", &["Barbara"]),
                    attribute("lastName", &["Jensen"]),
                    attribute("displayName", &["Babs Jensen"]),
                    attribute("groups", &["Tour Guides", "Employees"]),
                ],
            ),
        ),
        (
            "sso: persistent NameID with claim URIs".to_string(),
            assertion(
                "AAAAAAAAAAAAAAAAAAAAAO6f5Cc3-9Yc8pCFcc7ntMA",
                PERSISTENT_FORMAT,
                vec![
                    attribute("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", &["bjensen@example.com"]),
                    attribute("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress", &["bjensen@example.com"]),
                    attribute("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname", &["Barbara"]),
                    attribute("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname", &["Jensen"]),
                    attribute("http://schemas.microsoft.com/identity/claims/displayname", &["Babs Jensen"]),
                    attribute("http://schemas.microsoft.com/identity/claims/objectidentifier", &["0b5dc2a4-7d7b-4b7e-9b1f-1c1f4e0e4a11"]),
                    attribute("http://schemas.microsoft.com/ws/2008/06/identity/claims/groups", &["Tour Guides"]),
                ],
            ),
        ),
    ]
}

/// Whether the hub accepts `identity` at sign-in (the checks of `complete_sign_in`, and the user
/// resource a just-in-time sign-in would store); a description of it when it does.
fn identity_valid(identity: &idplex_runtime::SsoIdentity) -> Result<String, String> {
    let user = &identity.user;
    if user.user_name.trim().is_empty() {
        return Err("mapped to an empty userName".into());
    }
    if !user.active {
        return Err("mapped an active user's assertion to an inactive user; the hub refuses the sign-in".into());
    }
    let canonical = idplex_scim::canonical_user_name(&user.user_name).map_err(|e| format!("userName: {}", e.detail))?;
    let resource = crate::sso::merged_resource(&json!({"schemas": [idplex_scim::USER_SCHEMA_URN]}), user)
        .map_err(|e| format!("the hub cannot make a user of it: {e}"))?;
    idplex_scim::prepare_resource(&USER_RESOURCE_TYPE, &resource, &PatchOptions::HOST)
        .map_err(|e| format!("the user a sign-in would provision is not a valid resource: {}", e.detail))?;
    Ok(format!(
        "→ userName {canonical:?}{}, {} e-mails, {} groups",
        user.external_id.as_deref().map(|x| format!(", externalId {x:?}")).unwrap_or_default(),
        user.emails.len(),
        identity.groups.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checks_own_requests_are_valid_rfc_7644() {
        // Every case but the one meant to be refused is accepted by the host's generic dialect.
        for case in scim_cases() {
            let refused = case.name.contains("(refused)");
            let out = crate::native_scim::normalize(&case.request);
            assert_eq!(out.is_err(), refused, "{}: {out:?}", case.name);
        }
        for kind in [ResourceKind::User, ResourceKind::Group] {
            let resource = stored_resource(kind);
            rendered_valid(kind, &resource, &resource.to_string()).expect("an unchanged rendering is valid");
        }
    }

    #[test]
    fn a_rendering_that_breaks_the_resource_fails() {
        let input = stored_resource(ResourceKind::User);
        let mut other_id = input.clone();
        other_id["id"] = json!("someone-else");
        assert!(rendered_valid(ResourceKind::User, &input, &other_id.to_string()).unwrap_err().contains("id"));
        let mut unknown = input.clone();
        unknown["favouriteColour"] = json!("teal");
        assert!(rendered_valid(ResourceKind::User, &input, &unknown.to_string()).unwrap_err().contains("favouriteColour"));
        // Host-owned attributes are the host's: a forged userName is put back, not a failure.
        let mut forged = input.clone();
        forged["userName"] = json!("root@forged");
        rendered_valid(ResourceKind::User, &input, &forged.to_string()).expect("host-owned attributes are restored");
    }

    #[test]
    fn egress_to_a_declared_host_is_an_answer() {
        let denied = |d: &str| CallError::EgressDenied { connector: "x@1.0.0".into(), destination: d.into(), allowed: "no destinations".into() };
        let hosts = vec!["graph.microsoft.com".to_string()];
        assert_eq!(egress_or(denied("https://graph.microsoft.com"), &hosts, "directory-sync").0, CaseOutcome::Pass);
        assert_eq!(egress_or(denied("https://evil.example"), &hosts, "directory-sync").0, CaseOutcome::Fail);
        assert_eq!(egress_or(denied("http://graph.microsoft.com (only https is allowed)"), &hosts, "directory-sync").0, CaseOutcome::Fail);
    }
}
