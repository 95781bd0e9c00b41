//! The wasmtime engine, the linker of host capabilities, and runtime-wide configuration.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::call::CallState;
use crate::reuse::InstanceReuse;

/// The version of the `idplex:connector` contract this host implements (the newest bindings in
/// `crate::bindings`). Components built against any major in
/// [`SUPPORTED_MAJORS`](crate::bindings::SUPPORTED_MAJORS) are accepted; others are refused at
/// install.
pub const CONTRACT_VERSION: &str = crate::bindings::v1::VERSION;

/// Per-call sandbox limits. Defaults suit a connector that maps identities; an admin can raise
/// or lower them per connection (see [`Limits::merged_with`]) up to [`RuntimeConfig::max_memory_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Linear memory a call may use, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock deadline of one call, in milliseconds (covers Wasm execution and egress waits).
    pub deadline_ms: u64,
    /// Largest result a call may return, in bytes of host memory (strings, lists and every
    /// record or operation at least its in-memory size; see `size.rs`).
    pub max_output_bytes: u64,
    /// Most operations (and patch operations, counted together) one `normalize` may return.
    pub max_operations: u64,
    /// Most host resources (`wasi:http` fields, requests, responses, bodies, streams, futures,
    /// pollables) a call may hold at once; a connection without egress gets at most 16.
    pub max_host_resources: u32,
    /// Largest `wasi:http` header section, in bytes: of a `fields` the connector builds
    /// (in-memory size, which also caps the number of entries to about 900) and of a response.
    pub max_header_bytes: u32,
    /// Most outgoing HTTP requests one call may start.
    pub max_requests_per_call: u32,
    /// Most outgoing HTTP requests of one call in flight at once.
    pub max_requests_in_flight: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            deadline_ms: 2_000,
            max_output_bytes: 4 << 20,
            max_operations: 10_000,
            max_host_resources: 128,
            max_header_bytes: 64 << 10,
            max_requests_per_call: 64,
            max_requests_in_flight: 8,
        }
    }
}

impl Limits {
    /// Apply an admin's override (a JSON object with any of the fields) on top of `self`.
    pub fn merged_with(&self, overrides: &serde_json::Value) -> Result<Limits, String> {
        let mut merged = serde_json::to_value(self).expect("limits serialize");
        let Some(obj) = overrides.as_object() else {
            return if overrides.is_null() {
                Ok(*self)
            } else {
                Err("limits must be a JSON object".into())
            };
        };
        for (k, v) in obj {
            merged[k] = v.clone();
        }
        serde_json::from_value(merged).map_err(|e| format!("invalid limits: {e}"))
    }

    /// The limits of a `directory-pull` call: a page may take several API requests, each
    /// waiting on the IdP, and carry hundreds of users, so a pull gets at least a 60 s deadline,
    /// 64 outgoing requests (16 in flight), a 32 MiB result and 256 host resources; memory
    /// stays the connection's (a page is lifted out of it). A SCIM call keeps `self`.
    pub fn for_pull(&self) -> Limits {
        Limits {
            deadline_ms: self.deadline_ms.max(60_000),
            max_requests_per_call: self.max_requests_per_call.max(64),
            max_requests_in_flight: self.max_requests_in_flight.max(16),
            max_output_bytes: self.max_output_bytes.max(32 << 20),
            max_host_resources: self.max_host_resources.max(256),
            ..*self
        }
    }

    /// The deadline as a [`Duration`].
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

/// Runtime-wide settings chosen by the operator at start-up.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled artifacts are cached (`<sha256>-<engine>.cwasm`). Must be writable only by
    /// idplex: artifacts are loaded as trusted native code.
    pub cache_dir: PathBuf,
    /// Limits a connection gets unless its admin overrides them.
    pub default_limits: Limits,
    /// Largest module accepted at install.
    pub max_module_bytes: usize,
    /// Hard ceiling on any connection's memory limit (sizes the pooling allocator's slots).
    pub max_memory_bytes: u64,
    /// How many connector instances may exist at once (pool size); calls beyond it fail fast.
    pub max_concurrent_instances: u32,
    /// Granularity of deadline checks, and the length of a turn on the CPU ([`crate::cpu`]).
    pub epoch_tick: Duration,
    /// Connector calls that may run past a tick at once, on as many cores; the turns rotate
    /// between connections ([`crate::cpu`]). Default: one fewer than the cores (at least 1), so
    /// spinning guests always leave a core to the host's own work.
    pub guest_cpu_slots: usize,
    /// How instances are kept between the SCIM requests of a binding ([`crate::reuse`]).
    pub instance_reuse: InstanceReuse,
    /// Connector instances one connection may hold at once (live calls, a SCIM request's
    /// instance, and its binding's idle instances), so one connection can never take the whole
    /// pool ([`RuntimeConfig::max_concurrent_instances`]) from the others. A call beyond it
    /// waits up to [`RuntimeConfig::instance_wait`] for one of them to be released, then fails
    /// with [`CallError::Busy`](crate::CallError::Busy). Default
    /// [`DEFAULT_MAX_INSTANCES_PER_CONNECTION`].
    pub max_instances_per_connection: u32,
    /// Calls of one connection that may wait for an instance at once; more fail with
    /// [`CallError::Busy`](crate::CallError::Busy) at once. Default
    /// [`DEFAULT_MAX_WAITING_PER_CONNECTION`].
    pub max_waiting_per_connection: u32,
    /// How long a call waits for one of its connection's instances. Default
    /// [`DEFAULT_INSTANCE_WAIT`].
    pub instance_wait: Duration,
    /// Installs that may wait for the compiler at once (one component compiles at a time, on a
    /// blocking thread); more are refused with
    /// [`InstallError::Busy`](crate::InstallError::Busy). Default [`DEFAULT_MAX_PENDING_COMPILES`].
    pub max_pending_compiles: u32,
    /// Refusals remembered by the hash of the uploaded bytes, so the same bad bytes sent again
    /// are refused without being parsed or compiled again. Default [`DEFAULT_REFUSAL_CACHE`].
    pub refusal_cache_entries: usize,
}

/// Default of [`RuntimeConfig::max_instances_per_connection`]: 16 of the 256-slot pool.
pub const DEFAULT_MAX_INSTANCES_PER_CONNECTION: u32 = 16;
/// Default of [`RuntimeConfig::max_waiting_per_connection`].
pub const DEFAULT_MAX_WAITING_PER_CONNECTION: u32 = 64;
/// Default of [`RuntimeConfig::instance_wait`].
pub const DEFAULT_INSTANCE_WAIT: Duration = Duration::from_secs(2);
/// Default of [`RuntimeConfig::max_pending_compiles`].
pub const DEFAULT_MAX_PENDING_COMPILES: u32 = 4;
/// Default of [`RuntimeConfig::refusal_cache_entries`].
pub const DEFAULT_REFUSAL_CACHE: usize = 1024;

/// Default of [`RuntimeConfig::guest_cpu_slots`]: the cores less one, at least one.
pub fn default_guest_cpu_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1)).max(1)
}

impl RuntimeConfig {
    /// Defaults with the given cache directory.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            cache_dir: cache_dir.into(),
            default_limits: Limits::default(),
            max_module_bytes: 16 << 20,
            max_memory_bytes: 512 << 20,
            max_concurrent_instances: 256,
            epoch_tick: Duration::from_millis(5),
            guest_cpu_slots: default_guest_cpu_slots(),
            instance_reuse: InstanceReuse::default(),
            max_instances_per_connection: DEFAULT_MAX_INSTANCES_PER_CONNECTION,
            max_waiting_per_connection: DEFAULT_MAX_WAITING_PER_CONNECTION,
            instance_wait: DEFAULT_INSTANCE_WAIT,
            max_pending_compiles: DEFAULT_MAX_PENDING_COMPILES,
            refusal_cache_entries: DEFAULT_REFUSAL_CACHE,
        }
    }
}

/// The shared, cheap-to-clone runtime. One per process.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<CallState>,
    pub(crate) config: RuntimeConfig,
    /// Identifies the engine configuration in cache file names, so an upgraded wasmtime or a
    /// changed setting never loads a stale artifact.
    pub(crate) engine_key: String,
    pub(crate) compiled: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    /// Instances idle in every binding's [`IdleInstances`](crate::IdleInstances).
    pub(crate) idle_total: AtomicUsize,
    /// Per-connection instance caps ([`crate::gate`]).
    pub(crate) gates: crate::gate::ConnectionGates,
    /// One compilation at a time, and the installs waiting for it.
    pub(crate) compile_gate: Arc<tokio::sync::Semaphore>,
    pub(crate) compiles_waiting: AtomicUsize,
    /// Refusals by hash of the uploaded bytes ([`RuntimeConfig::refusal_cache_entries`]).
    pub(crate) refusals: crate::install::RefusalCache,
    pub(crate) refusals_cached: AtomicU64,
    /// Turns on the CPU for calls that run past a tick ([`crate::cpu`]).
    pub(crate) cpu: Arc<crate::cpu::CpuScheduler>,
    stop_ticker: Arc<AtomicBool>,
}

/// Counters of the compiled-artifact cache, for operators and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Components compiled with Cranelift by this runtime.
    pub compiled: u64,
    /// Components loaded from a cached artifact instead.
    pub cache_hits: u64,
    /// Installs refused from the refusal cache (same bytes refused before), without any work.
    pub refusals_cached: u64,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Build the engine, the linker and the epoch ticker; create the cache directory.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        std::fs::create_dir_all(&config.cache_dir).map_err(|e| {
            anyhow::anyhow!("cannot create cache directory {}: {e}", config.cache_dir.display())
        })?;

        let mut pool = PoolingAllocationConfig::default();
        let n = config.max_concurrent_instances;
        pool.total_component_instances(n)
            .total_core_instances(n * 4)
            .max_core_instances_per_component(16)
            .total_memories(n * 2)
            .max_memories_per_component(2)
            .total_tables(n * 4)
            .max_tables_per_component(8)
            .total_stacks(n)
            .max_memory_size(config.max_memory_bytes as usize)
            // Reset only the pages a call dirtied (PAGEMAP_SCAN on Linux >= 6.7), and keep up to
            // 2 MiB resident so the next instance in the slot takes no page faults.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(16 << 10)
            .decommit_batch_size(16);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(true)
            .max_wasm_stack(1 << 20)
            .async_stack_size(2 << 20)
            // Explicit bounds checks instead of guard pages: a recycled pool slot then stays
            // accessible, so a fresh instance costs no mprotect (and no cross-core TLB
            // shootdown) per call. Connector calls are short; instantiation dominates them.
            .memory_reservation(config.max_memory_bytes)
            .memory_guard_size(0)
            .memory_reservation_for_growth(0)
            .signals_based_traps(false)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&wasm).map_err(|e| anyhow::anyhow!("wasmtime engine: {e}"))?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());

        let linker = build_linker(&engine).map_err(|e| anyhow::anyhow!("linker: {e}"))?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let cpu = crate::cpu::CpuScheduler::new(config.guest_cpu_slots, config.epoch_tick);
        {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            let tick = config.epoch_tick;
            let cpu = cpu.clone();
            std::thread::Builder::new()
                .name("idplex-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                        cpu.tick();
                    }
                })?;
        }

        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                config,
                engine_key,
                compiled: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
                idle_total: AtomicUsize::new(0),
                gates: crate::gate::ConnectionGates::default(),
                compile_gate: Arc::new(tokio::sync::Semaphore::new(1)),
                compiles_waiting: AtomicUsize::new(0),
                refusals: crate::install::RefusalCache::default(),
                refusals_cached: AtomicU64::new(0),
                cpu,
                stop_ticker,
            }),
        })
    }

    /// The settings this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Calls on the CPU past a tick, and calls waiting for their turn ([`crate::cpu`]).
    pub fn cpu_stats(&self) -> crate::cpu::CpuStats {
        self.inner.cpu.stats()
    }

    /// How many components this runtime compiled, and how many it loaded from the cache.
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.inner.compiled.load(Ordering::Relaxed),
            cache_hits: self.inner.cache_hits.load(Ordering::Relaxed),
            refusals_cached: self.inner.refusals_cached.load(Ordering::Relaxed),
        }
    }
}

/// The linker: every capability a connector may import ([`crate::capabilities::link`]), and
/// nothing else.
fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::<CallState>::new(engine);
    crate::capabilities::link(&mut linker)?;
    Ok(linker)
}
