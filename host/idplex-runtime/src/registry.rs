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
use crate::reuse::IdleInstances;

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
    /// Instances of this binding waiting for its next SCIM request ([`crate::reuse`]). They
    /// leave with the binding: a swap starts the new version with none.
    pub idle: IdleInstances,
    /// What the application derived from this binding when it made it (the hub: the
    /// connection's SCIM resource types with the connector's declared extensions). Opaque to
    /// the runtime; published and swapped with the binding, so a request never mixes one
    /// version's connector with another's derived data.
    pub derived: Arc<dyn std::any::Any + Send + Sync>,
}

impl Binding {
    /// A binding of `connection_id` to `connector` with `context`, with no idle instances and
    /// nothing derived.
    pub fn new(connection_id: String, connector: Arc<LoadedConnector>, context: Arc<CallContext>, stamp: i64) -> Self {
        let idle = IdleInstances::new(connector.runtime());
        Binding { connection_id, connector, context, stamp, idle, derived: Arc::new(()) }
    }

    /// This binding with `derived` (see [`Binding::derived`]).
    pub fn with_derived(mut self, derived: Arc<dyn std::any::Any + Send + Sync>) -> Self {
        self.derived = derived;
        self
    }
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
        self.publish(binding, |_| true).1
    }

    /// Publish `binding` unless the connection's current binding is at least as new (its
    /// [`Binding::stamp`] is not lower): two paths that heard of the same change (the request
    /// that made it and the watcher) then publish it once, so the instances of the first
    /// publication are not thrown away by the second, and an older row read late never
    /// replaces a newer binding. Whether it was published.
    pub fn bind_if_newer(&self, binding: Binding) -> bool {
        let stamp = binding.stamp;
        self.publish(binding, |current| current.stamp < stamp).0
    }

    fn publish(&self, binding: Binding, replaces: impl Fn(&Binding) -> bool) -> (bool, Option<Arc<Binding>>) {
        let binding = Arc::new(binding);
        let mut outcome = (false, None);
        self.bindings.rcu(|map| {
            if let Some(current) = map.get(&binding.connection_id) {
                if !replaces(current) {
                    outcome = (false, None);
                    return map.clone();
                }
            }
            let mut map = HashMap::clone(map);
            outcome = (true, map.insert(binding.connection_id.clone(), binding.clone()));
            Arc::new(map)
        });
        outcome
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

    /// Release the idle instances of every binding that have waited longer than their timeout.
    /// Returns how many were released.
    pub fn sweep_idle(&self) -> usize {
        self.bindings.load().values().map(|b| b.idle.sweep()).sum()
    }

    /// Every connection id currently bound.
    pub fn connection_ids(&self) -> Vec<String> {
        self.bindings.load().keys().cloned().collect()
    }
}
