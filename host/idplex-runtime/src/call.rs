//! One connector call: an instance (a fresh one, or the [`Warm`] one of the unit of work it
//! belongs to), the sandbox limits, and the classification of whatever went wrong into a
//! [`CallError`] an admin can act on. The host imports themselves are in
//! [`crate::capabilities`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use wasmtime::component::ResourceTableError;
use wasmtime::{ResourceLimiter, Store, Trap};

use crate::bindings::{Connector, WitConnectorError};
pub(crate) use crate::capabilities::CallState;
use crate::egress::EgressPolicy;
use crate::engine::Limits;
use crate::install::LoadedConnector;
use crate::size::OutputSize;

/// Everything a call on one connection needs besides the connector itself.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The connection (directory) the call serves, for logs and events.
    pub connection_id: Option<String>,
    /// The connection's config values, served through the `config` import (shared, not copied,
    /// by every call).
    pub config: Arc<BTreeMap<String, String>>,
    /// Where the connector may send HTTP requests, with which credential.
    pub egress: Arc<EgressPolicy>,
    /// Sandbox limits of this connection.
    pub limits: Limits,
}

impl CallContext {
    /// A context with no config, no egress and the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        CallContext { limits, egress: Arc::new(EgressPolicy::deny_all()), ..Default::default() }
    }
}

/// Why a connector call failed. Every variant names the connector (`name@version`) and says
/// what limit or rule was hit, so the message can go straight into the admin's event log.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The guest trapped (panic, unreachable, out-of-bounds access, ...).
    #[error("connector {connector} crashed (trap): {detail}")]
    Trap { connector: String, detail: String },
    /// The call ran past its deadline and was interrupted.
    #[error("connector {connector} exceeded its deadline of {limit_ms} ms and was stopped")]
    Timeout { connector: String, limit_ms: u64 },
    /// The guest tried to grow its memory past the connection's limit.
    #[error(
        "connector {connector} exceeded its memory limit of {limit} bytes (asked for {requested} bytes)"
    )]
    MemoryLimit { connector: String, limit: u64, requested: u64 },
    /// The guest returned more data than a call may return.
    #[error("connector {connector} returned {size} bytes, over the limit of {limit} bytes")]
    OutputTooLarge { connector: String, size: u64, limit: u64 },
    /// The guest returned more operations than one `normalize` may return.
    #[error(
        "connector {connector} returned {count} operations (patch operations included), over the limit of {limit} (Limits::max_operations)"
    )]
    TooManyOperations { connector: String, count: u64, limit: u64 },
    /// The guest held more host resources (`wasi:http` handles) at once than a call may.
    #[error(
        "connector {connector} exceeded its limit of {limit} live host resources (wasi:http fields, requests, responses, bodies, streams, pollables; Limits::max_host_resources)"
    )]
    HostResources { connector: String, limit: u32 },
    /// The guest built a `wasi:http` header section larger than a call may.
    #[error(
        "connector {connector} built HTTP headers over the limit of {limit} bytes (Limits::max_header_bytes)"
    )]
    HeadersTooLarge { connector: String, limit: u32 },
    /// The guest tried to reach a destination not allowed for this connection.
    #[error(
        "connector {connector} tried to reach {destination}, which is not allowed for this connection (allowed: {allowed})"
    )]
    EgressDenied { connector: String, destination: String, allowed: String },
    /// The connector ran fine and refused the input with its own error.
    #[error("connector {connector} refused the request ({}): {}", kind_name(.error.kind), .error.message)]
    Connector { connector: String, error: WitConnectorError },
    /// The connector returned something the host cannot accept (e.g. invalid JSON).
    #[error("connector {connector} returned invalid output: {detail}")]
    InvalidOutput { connector: String, detail: String },
    /// No instance could be created (e.g. every pool slot is busy).
    #[error("connector {connector} could not be started: {detail}")]
    Instantiate { connector: String, detail: String },
    /// The connection already holds as many instances as it may
    /// ([`RuntimeConfig::max_instances_per_connection`](crate::RuntimeConfig)) and none was
    /// released in time: retry later (the server answers 503 with `Retry-After`).
    #[error("connection {connection} is busy: its {limit} connector instances ({connector}) are all in use; retry later")]
    Busy { connector: String, connection: String, limit: u32 },
}

impl CallError {
    /// A short, stable name of the failure class, for event logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Trap { .. } => "trap",
            CallError::Timeout { .. } => "timeout",
            CallError::MemoryLimit { .. } => "memory",
            CallError::OutputTooLarge { .. } | CallError::TooManyOperations { .. } => "output_too_large",
            CallError::HostResources { .. } | CallError::HeadersTooLarge { .. } => "memory",
            CallError::EgressDenied { .. } => "egress_denied",
            CallError::Connector { .. } => "connector_error",
            CallError::InvalidOutput { .. } => "invalid_output",
            CallError::Instantiate { .. } => "instantiate",
            CallError::Busy { .. } => "busy",
        }
    }

    /// Whether the connector misbehaved (as opposed to refusing bad input on purpose).
    pub fn is_connector_fault(&self) -> bool {
        // Busy is the connection's load, not a fault of this call (and not worth an event each).
        !matches!(self, CallError::Connector { .. } | CallError::Busy { .. })
    }
}

fn kind_name(kind: crate::bindings::ConnectorErrorKind) -> &'static str {
    use crate::bindings::ConnectorErrorKind as K;
    match kind {
        K::InvalidRequest => "invalid request",
        K::Unsupported => "unsupported",
        K::Config => "configuration",
        K::Upstream => "upstream",
        K::Internal => "internal error",
    }
}

/// Caps linear memory growth and remembers a refusal so it can be reported as such.
pub(crate) struct MemoryLimiter {
    limit: u64,
    refused: Option<u64>,
    /// The largest size a memory of the instance has grown to.
    current: u64,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> MemoryLimiter {
        MemoryLimiter { limit, refused: None, current: 0 }
    }

    pub(crate) fn start_call(&mut self) {
        self.refused = None;
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit {
            self.refused.get_or_insert(desired as u64);
            return Ok(false);
        }
        self.current = self.current.max(desired as u64);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 16)
    }
}

/// Host resources a call may hold when its connection has no egress at all: enough for
/// `wasi:clocks`/`wasi:io` pollables, not for piles of `wasi:http` fields.
const HOST_RESOURCES_WITHOUT_EGRESS: u32 = 16;

/// The body of one call, given the instance and its store.
pub(crate) type CallFn<'a, R> = Box<
    dyn for<'s> FnOnce(
            &'s Connector,
            &'s mut Store<CallState>,
        ) -> Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 's>>
        + Send
        + 'a,
>;

/// A connector instance kept between the calls of one unit of work — one SCIM request's
/// `normalize` and its `render`s — so that unit pays for one instantiation, not one per call.
///
/// Every call still runs under its own deadline, output limit and egress accounting; the
/// memory limit covers the instance's whole life. An instance that failed in any way (trap,
/// timeout, memory, egress, invalid output) is discarded, and the next call gets a fresh one.
/// A `Warm` belongs to one connector and one [`CallContext`]: used with another, it starts a
/// fresh instance. Guest state (its linear memory) survives between the calls of one `Warm`.
/// When the unit of work ends, drop it, or hand it to its binding's
/// [`IdleInstances`](crate::IdleInstances), which may give it to a later request of the same
/// binding (see [`crate::reuse`]).
#[derive(Default)]
pub struct Warm {
    pub(crate) live: Option<Live>,
    /// The idle set this was taken from ([`IdleInstances::take`](crate::IdleInstances::take)),
    /// if any: a first call that must wait for an instance permit looks there again once it is
    /// registered as waiting (see [`crate::gate`]).
    pub(crate) home: Option<std::sync::Weak<crate::reuse::IdleSet>>,
}

/// A started (or starting) instance with its store and its connection's permit.
pub(crate) struct Live {
    store: Store<CallState>,
    instance: Option<Connector>,
    /// Requests this instance has completed (counted by [`IdleInstances`](crate::IdleInstances)).
    requests: u32,
    /// The connection's permit for this instance ([`crate::gate`]), released with it.
    permit: Option<crate::gate::InstancePermit>,
}

impl Warm {
    /// Drops the instance (if any): the next call starts a fresh one.
    pub(crate) fn discard(&mut self) {
        self.live = None;
    }

    /// Whether this holds an instance that has been started and has not failed since.
    pub fn is_started(&self) -> bool {
        self.live.as_ref().is_some_and(|l| l.instance.is_some())
    }

    /// The size the instance's linear memory has grown to (0 before it is started).
    pub fn memory_bytes(&self) -> u64 {
        self.live.as_ref().map_or(0, |l| l.store.data().limiter.current)
    }

    /// The gate of the instance's connection (none without an instance or a connection).
    pub(crate) fn gate(&self) -> Option<Arc<crate::gate::Gate>> {
        self.live.as_ref().and_then(|l| l.permit.as_ref()).map(|p| p.gate().clone())
    }

    /// Hands the instance to a call of its connection waiting for a permit
    /// ([`crate::gate::hand_over`]); gives it back when no call waits any more.
    pub(crate) fn hand_over(self) -> Option<Warm> {
        let live = self.live?;
        let Some(gate) = live.permit.as_ref().map(|p| p.gate().clone()) else {
            return Some(Warm { live: Some(live), home: None });
        };
        crate::gate::hand_over(&gate, live).map(|live| Warm { live: Some(live), home: None })
    }

    /// Count one more request completed by the instance, and return the count (0 without one).
    pub(crate) fn count_request(&mut self) -> u32 {
        self.live.as_mut().map_or(0, |l| {
            l.requests += 1;
            l.requests
        })
    }
}

impl std::fmt::Debug for Warm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warm").field("instantiated", &self.live.as_ref().is_some_and(|l| l.instance.is_some())).finish()
    }
}

impl LoadedConnector {
    /// Run `body` in a fresh instance under `ctx`'s limits and classify the outcome.
    pub(crate) async fn run<R>(&self, ctx: &CallContext, body: CallFn<'_, R>) -> Result<R, CallError>
    where
        R: OutputSize + Send,
    {
        self.run_in(&mut Warm::default(), ctx, body).await
    }

    /// Run `body` in `warm`'s instance (a fresh one if it has none, or one of another connector
    /// or context) under `ctx`'s limits and classify the outcome; keep the instance in `warm`
    /// only if the call succeeded.
    pub(crate) async fn run_in<R>(&self, warm: &mut Warm, ctx: &CallContext, body: CallFn<'_, R>) -> Result<R, CallError>
    where
        R: OutputSize + Send,
    {
        let limits = ctx.limits;
        let deadline = limits.deadline();
        let mut live = match warm.live.take() {
            Some(live) if self.owns(&live, ctx) => live,
            stale => {
                drop(stale);
                // Once registered as waiting, the call looks in the idle set it took from again:
                // an instance parked there after it looked, while nobody waited yet, would
                // otherwise hold the permit it waits for (`crate::gate::Runtime::admit`).
                let home = warm.home.clone();
                let reclaim = move || home.as_ref().and_then(std::sync::Weak::upgrade).and_then(|set| set.take_live());
                match self.runtime.admit(&self.label, ctx, &|live| self.owns(live, ctx), &reclaim).await? {
                    crate::gate::Admission::Adopted(live) => live,
                    crate::gate::Admission::Permit(permit) => {
                        Live { store: self.new_store(ctx), instance: None, requests: 0, permit }
                    }
                }
            }
        };
        let max_resources = host_resources_cap(ctx);
        live.store.data_mut().start_call(&limits, max_resources);
        // The deadline the store's epoch callback enforces in the guest (see `new_store`); the
        // wall-clock timeout below covers host waits (egress) and the wait for a CPU turn.
        live.store.data_mut().epoch.ends = std::time::Instant::now() + deadline;
        live.store.set_epoch_deadline(1);
        let outcome = {
            let pre = &self.pre;
            let Live { store, instance, .. } = &mut live;
            let work = async move {
                if instance.is_none() {
                    *instance = Some(pre.instantiate_async(&mut *store).await.map_err(CallFailure::Start)?);
                }
                let instance = instance.as_ref().expect("instantiated above");
                body(instance, store).await.map_err(CallFailure::Run)
            };
            tokio::time::timeout(deadline, work).await
        };
        // The call is off the CPU: its turn (if it reached a tick) goes to the next waiter.
        live.store.data().epoch.end_turn();
        let connector = || self.label.to_string();
        let resources_exhausted = matches!(&outcome, Ok(Err(CallFailure::Run(e))) if table_full(e))
            || (matches!(&outcome, Ok(Err(_))) && live.store.data_mut().table.iter_mut().count() >= max_resources as usize);
        live.store.data_mut().end_call();
        let state = live.store.data();
        if let Some(destination) = state.egress.denied() {
            return Err(CallError::EgressDenied {
                connector: connector(),
                destination: destination.clone(),
                allowed: if ctx.egress.allowed().is_empty() {
                    "no destinations".into()
                } else {
                    ctx.egress.allowed().join(", ")
                },
            });
        }
        let value = match outcome {
            Err(_elapsed) => {
                return Err(CallError::Timeout { connector: connector(), limit_ms: limits.deadline_ms });
            }
            Ok(Err(CallFailure::Start(e) | CallFailure::Run(e))) if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) => {
                return Err(CallError::Timeout { connector: connector(), limit_ms: limits.deadline_ms });
            }
            Ok(Err(CallFailure::Start(e))) => {
                return Err(CallError::Instantiate { connector: connector(), detail: format!("{e:#}") });
            }
            Ok(Err(CallFailure::Run(e))) => {
                if resources_exhausted {
                    return Err(CallError::HostResources { connector: connector(), limit: max_resources });
                }
                if headers_too_large(&e) {
                    return Err(CallError::HeadersTooLarge { connector: connector(), limit: limits.max_header_bytes });
                }
                if let Some(requested) = state.limiter.refused {
                    return Err(CallError::MemoryLimit {
                        connector: connector(),
                        limit: state.limiter.limit,
                        requested,
                    });
                }
                let mut detail = match e.downcast_ref::<Trap>() {
                    Some(trap) => trap.to_string(),
                    None => format!("{e:#}"),
                };
                // What the connector's panic hook logged just before the trap (its message and
                // where it panicked), so the admin reads why, not only `unreachable`.
                if let Some(panic) = state.log.panic() {
                    detail = format!("{detail}; {panic}");
                }
                return Err(CallError::Trap { connector: connector(), detail });
            }
            Ok(Ok(value)) => value,
        };
        let operations = value.operations();
        if operations > limits.max_operations {
            return Err(CallError::TooManyOperations { connector: connector(), count: operations, limit: limits.max_operations });
        }
        let size = value.output_size();
        if size > limits.max_output_bytes {
            return Err(CallError::OutputTooLarge { connector: connector(), size, limit: limits.max_output_bytes });
        }
        warm.live = Some(live);
        Ok(value)
    }

    /// Whether `live` was started by this connector for `ctx` (the `Arc`s it holds keep those
    /// addresses from being reused while it lives).
    fn owns(&self, live: &Live, ctx: &CallContext) -> bool {
        let state = live.store.data();
        Arc::ptr_eq(&state.log.label, &self.label)
            && Arc::ptr_eq(&state.config.values, &ctx.config)
            && Arc::ptr_eq(state.egress.policy(), &ctx.egress)
            && state.log.connection == ctx.connection_id
            && state.limiter.limit == ctx.limits.memory_bytes.min(self.runtime.config().max_memory_bytes)
    }

    pub(crate) fn new_store(&self, ctx: &CallContext) -> Store<CallState> {
        let runtime = &self.runtime;
        let memory = ctx.limits.memory_bytes.min(runtime.config().max_memory_bytes);
        let epoch = EpochState::new(ctx, runtime.inner.cpu.clone());
        let state = CallState::new(self.label.clone(), ctx, memory, epoch);
        let mut store = Store::new(&runtime.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        // At every epoch tick: past the deadline, trap (in the guest, whether or not anything
        // polls the timeout of `run_in`); otherwise give up the CPU turn (if this call holds
        // one) and wait for the next ([`crate::cpu`]): the turns rotate between connections, so
        // a connection's spinning guests share one turn among themselves, not the machine. The
        // wait is also a yield to the async executor, so a busy guest never monopolizes a
        // worker thread. The wall-clock timeout of `run_in` covers host waits (egress) and the
        // wait for a turn. Registered once per store: each call only sets its deadline.
        store.epoch_deadline_callback(|ctx| ctx.data().epoch.on_tick());
        store
    }
}

/// What the epoch callback of a store needs ([`LoadedConnector::new_store`]): the running
/// call's deadline, the CPU turn it holds, and its connection's place in the CPU rotation.
pub(crate) struct EpochState {
    /// When the running call must stop (set by each call).
    ends: std::time::Instant,
    /// The CPU turn the running call holds, once it has run past a tick ([`crate::cpu`]).
    turn: Arc<std::sync::Mutex<Option<crate::cpu::Turn>>>,
    connection: Arc<str>,
    cpu: Arc<crate::cpu::CpuScheduler>,
}

impl EpochState {
    fn new(ctx: &CallContext, cpu: Arc<crate::cpu::CpuScheduler>) -> Self {
        EpochState {
            ends: std::time::Instant::now(),
            turn: Arc::default(),
            connection: Arc::from(ctx.connection_id.as_deref().unwrap_or("")),
            cpu,
        }
    }

    /// The call is off the CPU: its turn (if it reached a tick) goes to the next waiter.
    fn end_turn(&self) {
        drop(self.turn.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
    }

    fn on_tick(&self) -> wasmtime::Result<wasmtime::UpdateDeadline> {
        if std::time::Instant::now() >= self.ends {
            return Ok(wasmtime::UpdateDeadline::Interrupt);
        }
        self.end_turn();
        let (turn, cpu, connection) = (self.turn.clone(), self.cpu.clone(), self.connection.clone());
        Ok(wasmtime::UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                let (next, waited) = cpu.turn(&connection).await;
                *turn.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(next);
                if !waited {
                    tokio::task::yield_now().await;
                }
            }),
        ))
    }
}

/// The host resources a call under `ctx` may hold at once.
fn host_resources_cap(ctx: &CallContext) -> u32 {
    if ctx.egress.allowed().is_empty() {
        ctx.limits.max_host_resources.min(HOST_RESOURCES_WITHOUT_EGRESS)
    } else {
        ctx.limits.max_host_resources
    }
}

/// Whether a guest failure is a host resource table that refused another entry.
fn table_full(e: &wasmtime::Error) -> bool {
    e.chain().any(|c| matches!(c.downcast_ref::<ResourceTableError>(), Some(ResourceTableError::Full)))
}

/// Whether a guest failure is a `wasi:http` fields over its size limit (a trap, in wasi:http).
fn headers_too_large(e: &wasmtime::Error) -> bool {
    use wasmtime_wasi_http::FieldMapError as F;
    e.chain().any(|c| matches!(c.downcast_ref::<F>(), Some(F::TotalSizeTooBig | F::TooManyFields)))
}

enum CallFailure {
    Start(wasmtime::Error),
    Run(wasmtime::Error),
}

/// Unwrap a connector's `result<T, connector-error>` into the host's error type.
pub(crate) fn flatten<T>(label: &str, r: Result<T, WitConnectorError>) -> Result<T, CallError> {
    r.map_err(|error| CallError::Connector { connector: label.to_string(), error })
}
