//! `idplex:connector/config`: the configuration values an admin set on the connection, read-only
//! and shared (not copied) by every call of the connection.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::CallState;
use crate::bindings::v1::idplex::connector::config as contract;

/// The config capability's state.
pub(crate) struct Config {
    pub(crate) values: Arc<BTreeMap<String, String>>,
}

impl Config {
    pub(crate) fn new(values: Arc<BTreeMap<String, String>>) -> Config {
        Config { values }
    }
}

impl contract::Host for Config {
    fn get(&mut self, key: String) -> Option<String> {
        self.values.get(&key).cloned()
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        self.values.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

pub(crate) fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    contract::add_to_linker::<CallState, HasSelf<Config>>(linker, |s| &mut s.config)
}
