//! Egress: `wasi:http/outgoing-handler` (and the `wasi:http/types` and `wasi:io` it needs)
//! behind the connection's [`EgressPolicy`]: every outgoing request passes
//! [`EgressHooks`](crate::egress::EgressHooks) (https only, allowed host and port, request
//! count, credential attached by the host and masked in responses); header sections are capped
//! at [`Limits::max_header_bytes`].

use std::sync::Arc;

use wasmtime::component::Linker;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::CallState;
use crate::egress::{EgressHooks, EgressPolicy};
use crate::engine::Limits;

/// The egress capability's state.
pub(crate) struct Egress {
    http: WasiHttpCtx,
    pub(crate) hooks: EgressHooks,
}

impl Egress {
    pub(crate) fn new(policy: Arc<EgressPolicy>, limits: &Limits) -> Egress {
        Egress { http: WasiHttpCtx::new(), hooks: EgressHooks::new(policy, limits) }
    }

    pub(crate) fn start_call(&mut self, limits: &Limits) {
        self.hooks.start_call(limits);
        self.http.set_field_size_limit(limits.max_header_bytes as usize);
    }

    /// The destination the call tried to reach and was refused, if any.
    pub(crate) fn denied(&self) -> Option<&String> {
        self.hooks.denied.as_ref()
    }

    pub(crate) fn policy(&self) -> &Arc<EgressPolicy> {
        &self.hooks.policy
    }
}

impl wasmtime_wasi_io::IoView for CallState {
    fn table(&mut self) -> &mut wasmtime::component::ResourceTable {
        &mut self.table
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.egress.http, table: &mut self.table, hooks: &mut self.egress.hooks }
    }
}

pub(crate) fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi_io::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    Ok(())
}
