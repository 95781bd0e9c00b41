//! The host capabilities a connector may import, one module each. A module owns its capability's
//! per-call state, its linking into the [`Linker`], and what happens to that state when a call
//! starts and ends; [`CallState`] only composes them. A new import, or a new contract version
//! of one, touches its own module (and [`link`]), nothing else.
//!
//! | module | imports | per-call state |
//! |--------|---------|----------------|
//! | [`log`] | `idplex:connector/log` | connector label and connection (for the log lines), lines written this call (capped) |
//! | [`config`] | `idplex:connector/config` | the connection's config values (shared) |
//! | [`clock`] | `idplex:connector/clock`, `wasi:clocks/{wall-clock, monotonic-clock}` | the WASI clocks context |
//! | [`egress`] | `wasi:http/{types, outgoing-handler}`, `wasi:io/*` | the `wasi:http` context and the egress policy's hooks ([`crate::egress`]) |
//!
//! Host resources (`wasi:http` handles, pollables) live in one [`ResourceTable`] shared by the
//! WASI capabilities; [`CallState::start_call`] caps it and [`CallState::end_call`] empties it.
//! Memory limits are the store's [`MemoryLimiter`](crate::call::MemoryLimiter), not an import.

pub(crate) mod clock;
pub(crate) mod config;
pub(crate) mod egress;
pub(crate) mod log;

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceTable};

use crate::bindings::v1::idplex::connector as contract;
use crate::call::{CallContext, EpochState, MemoryLimiter};
use crate::engine::Limits;

/// The `T` of every connector `Store`: what the host imports can see during one call.
pub(crate) struct CallState {
    pub(crate) log: log::Log,
    pub(crate) config: config::Config,
    pub(crate) clock: clock::Clock,
    pub(crate) egress: egress::Egress,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) table: ResourceTable,
    /// The running call's deadline and CPU turn, for the store's epoch callback.
    pub(crate) epoch: EpochState,
}

impl CallState {
    pub(crate) fn new(label: Arc<str>, ctx: &CallContext, memory_limit: u64, epoch: EpochState) -> CallState {
        CallState {
            log: log::Log::new(label, ctx.connection_id.clone()),
            config: config::Config::new(ctx.config.clone()),
            clock: clock::Clock::default(),
            egress: egress::Egress::new(ctx.egress.clone(), &ctx.limits),
            limiter: MemoryLimiter::new(memory_limit),
            table: ResourceTable::new(),
            epoch,
        }
    }

    /// Every capability's state as a new call on this instance begins.
    pub(crate) fn start_call(&mut self, limits: &Limits, max_resources: u32) {
        self.log.start_call();
        self.egress.start_call(limits);
        self.table.set_max_capacity(max_resources as usize);
        self.limiter.start_call();
    }

    /// Ends the call: every host resource it left behind goes now, whatever the outcome
    /// (outgoing requests still in flight are aborted, their sockets closed; bodies, streams and
    /// fields freed), and the log notes the lines it dropped. A kept instance starts its next
    /// call with an empty table (a handle the guest kept across calls no longer resolves: using
    /// it traps, and the instance is discarded).
    pub(crate) fn end_call(&mut self) {
        drop(std::mem::take(&mut self.table));
        self.log.end_call();
    }
}

impl contract::types::Host for CallState {}

/// Links every capability into `linker`: the contract's imports and the WASI ones they need,
/// and nothing else (no filesystem, environment, sockets, random or stdio: a component importing
/// those cannot be instantiated and is refused at install).
pub(crate) fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    contract::types::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    log::link(linker)?;
    config::link(linker)?;
    clock::link(linker)?;
    egress::link(linker)?;
    Ok(())
}
