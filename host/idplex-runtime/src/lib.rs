//! The idplex connector runtime: everything between a connector's bytes and a finished call.
//!
//! * [`Runtime`] owns the wasmtime [`Engine`](wasmtime::Engine) (pooling allocator, epoch
//!   interruption), the [`Linker`](wasmtime::component::Linker) with exactly the host
//!   capabilities a connector may import, and the on-disk cache of compiled artifacts.
//! * [`Runtime::install`] turns untrusted bytes into a [`LoadedConnector`] or a
//!   [`InstallError`] that says why not (not a component, another world, another contract
//!   major version, too large, imports the host does not grant).
//! * [`LoadedConnector`] calls run under [`Limits`] (memory, deadline, output size) and an
//!   [`EgressPolicy`]; failures come back as [`CallError`]. A call gets a fresh instance, or
//!   continues in a [`Warm`] one: the instance of one SCIM request, which its binding's
//!   [`IdleInstances`] may keep for a later request of the same binding ([`reuse`]).
//! * [`Registry`] binds connections to loaded connectors and swaps them atomically.
//!
//! * [`capabilities`](crate::capabilities) holds the host imports, one module per capability
//!   (log, config, clock, egress), each with its per-call state, linking and reset; the
//!   generated bindings live in `bindings`, one module per contract major (`bindings::v1`).
//! * `cpu` shares the CPU between connections when guests run longer than an epoch tick: the
//!   turns rotate between connections, so one connection's spinning calls cannot take the cores
//!   from the others.
//!
//! This crate knows nothing of HTTP servers, SCIM semantics or storage.

mod bindings;
mod call;
mod capabilities;
mod config_schema;
mod cpu;
mod egress;
mod engine;
mod gate;
mod install;
mod registry;
pub mod reuse;
mod size;

pub use bindings::{
    Capability, CanonicalGroup, CanonicalUser, ConnectorErrorKind, ConnectorInfo, DiagnosticCheck, Email,
    SchemaExtension,
    ListQuery, Operation, PatchOp, PatchOperation, ResourceKind, SamlAttribute, ScimRequest,
    SsoIdentity, SyncPage, VerifiedAssertion, WitConnectorError,
    GroupMembers, Member, PassKind, PullPage, PullRequest,
};
pub use call::{CallContext, CallError, Warm};
pub use cpu::CpuStats;
pub use egress::{Credential, EgressObserver, EgressPolicy, EgressSeen, fill_host_patterns, host_pattern_key};
pub use engine::{
    CONTRACT_VERSION, CacheStats, DEFAULT_INSTANCE_WAIT, DEFAULT_MAX_INSTANCES_PER_CONNECTION,
    DEFAULT_MAX_PENDING_COMPILES, DEFAULT_MAX_WAITING_PER_CONNECTION, DEFAULT_REFUSAL_CACHE, Limits,
    Runtime, RuntimeConfig, default_guest_cpu_slots,
};
pub use config_schema::ConfigViolation;
pub use install::{
    InfoField, InstallError, InstallPolicy, LoadedConnector, check_connector_name, componentize, info_problems, MAX_DECLARED_EXTENSIONS, MAX_DIAGNOSTIC_CHECKS, MAX_PULL_CURSOR_BYTES, ModuleHash, Rendering,
};
pub use registry::{Binding, Registry};
pub use reuse::{IdleInstances, InstanceReuse};
