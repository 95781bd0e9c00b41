//! Bindings of connections to connector versions, swapped atomically.
//!
//! A call takes a snapshot (`Arc<Binding>`) and runs to completion on it; an activation or a
//! rollback publishes a new snapshot. New calls see the new version at once, calls in flight
//! finish on the old one, nothing waits and nothing fails.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::call::CallContext;
use crate::install::LoadedConnector;

/// What a connection is bound to right now.
pub struct Binding {
    /// The connection (directory) this binding serves.
    pub connection_id: String,
    /// The active connector version.
    pub connector: Arc<LoadedConnector>,
    /// Config, egress policy and limits for calls on this connection.
    pub context: Arc<CallContext>,
    /// The stored connection's `updated_at` this binding reflects; a watcher rebinds when the
    /// store holds a newer one (a change made by another process or replica).
    pub stamp: i64,
}

/// connection id → current binding. Reads are lock-free; writes copy the (small) map.
#[derive(Default)]
pub struct Registry {
    bindings: ArcSwap<HashMap<String, Arc<Binding>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current binding of `connection_id`, if any. Hold on to it for the whole call.
    pub fn get(&self, connection_id: &str) -> Option<Arc<Binding>> {
        self.bindings.load().get(connection_id).cloned()
    }

    /// Publish `binding` for its connection, replacing any previous one atomically. Returns the
    /// binding it replaced.
    pub fn bind(&self, binding: Binding) -> Option<Arc<Binding>> {
        let binding = Arc::new(binding);
        let mut previous = None;
        self.bindings.rcu(|map| {
            let mut map = HashMap::clone(map);
            previous = map.insert(binding.connection_id.clone(), binding.clone());
            map
        });
        previous
    }

    /// Remove a connection's binding (its calls then fail with "not bound").
    pub fn unbind(&self, connection_id: &str) -> Option<Arc<Binding>> {
        let mut previous = None;
        self.bindings.rcu(|map| {
            let mut map = HashMap::clone(map);
            previous = map.remove(connection_id);
            map
        });
        previous
    }

    /// Every connection id currently bound.
    pub fn connection_ids(&self) -> Vec<String> {
        self.bindings.load().keys().cloned().collect()
    }
}
