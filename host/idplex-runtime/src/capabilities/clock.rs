//! Time: `idplex:connector/clock` (unix milliseconds, for connectors that compare timestamps)
//! and the `wasi:clocks` interfaces `wasi:http` needs (wall clock, monotonic clock). No timer a
//! guest could sleep on outside its deadline: a pollable from the monotonic clock is a host
//! resource, counted like the others.

use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksCtx, WasiClocksCtxView};
use wasmtime_wasi::p2::bindings::clocks;

use super::CallState;
use crate::bindings::v1::idplex::connector::clock as contract;

/// The clock capability's state.
#[derive(Default)]
pub(crate) struct Clock {
    wasi: WasiClocksCtx,
}

impl contract::Host for Clock {
    fn now_unix_millis(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

fn wasi_view(s: &mut CallState) -> WasiClocksCtxView<'_> {
    WasiClocksCtxView { ctx: &mut s.clock.wasi, table: &mut s.table }
}

pub(crate) fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    contract::add_to_linker::<CallState, HasSelf<Clock>>(linker, |s| &mut s.clock)?;
    clocks::wall_clock::add_to_linker::<CallState, WasiClocks>(linker, wasi_view)?;
    clocks::monotonic_clock::add_to_linker::<CallState, WasiClocks>(linker, wasi_view)?;
    Ok(())
}
