//! Per-connection caps on connector instances, so one connection cannot take the whole pool.
//!
//! The pooling allocator has [`RuntimeConfig::max_concurrent_instances`] slots for the whole
//! process. Without a cap, one connection whose calls are slow (a connector sleeping on a timer,
//! or spinning until its deadline) holds every slot, and the other connections' calls fail to
//! instantiate. So every instance started for a connection holds one of that connection's
//! [`RuntimeConfig::max_instances_per_connection`] permits for its whole life: while a call runs,
//! while its SCIM request keeps it for the next call, and while it waits idle in its binding
//! ([`crate::reuse`]). A call that needs a new instance beyond the cap waits (at most
//! [`RuntimeConfig::max_waiting_per_connection`] calls wait, each at most
//! [`RuntimeConfig::instance_wait`]) and then fails with [`CallError::Busy`], which the server
//! answers with 503 and `Retry-After`. While calls wait, an instance whose request is done is
//! dropped instead of kept idle, so its permit goes to a waiter (an idle instance is only found
//! by requests that start later: the waiters would otherwise time out behind it).
//!
//! The cap is per connection id, not per binding: a hot swap does not give a connection a second
//! set of permits. Calls without a connection (install-time `describe`, tests) are not capped.
//!
//! [`RuntimeConfig::max_concurrent_instances`]: crate::RuntimeConfig::max_concurrent_instances
//! [`RuntimeConfig::max_instances_per_connection`]: crate::RuntimeConfig::max_instances_per_connection
//! [`RuntimeConfig::max_waiting_per_connection`]: crate::RuntimeConfig::max_waiting_per_connection
//! [`RuntimeConfig::instance_wait`]: crate::RuntimeConfig::instance_wait

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::call::{CallContext, CallError};
use crate::engine::Runtime;

/// One connection's permits.
struct Gate {
    permits: Arc<Semaphore>,
    waiting: AtomicU32,
}

/// Every connection's [`Gate`], by connection id.
#[derive(Default)]
pub(crate) struct ConnectionGates {
    gates: Mutex<HashMap<String, Arc<Gate>>>,
}

/// A connection's permit for one live instance; released when the instance is dropped.
pub(crate) struct InstancePermit {
    _permit: OwnedSemaphorePermit,
    gate: Arc<Gate>,
}

impl InstancePermit {
    /// Whether calls of this connection are waiting for a permit: then an instance that is
    /// done should be dropped (its permit going to a waiter), not kept idle in its binding,
    /// where a waiting call would never find it.
    pub(crate) fn contended(&self) -> bool {
        self.gate.waiting.load(Ordering::Acquire) > 0
    }
}

impl ConnectionGates {
    fn gate(&self, connection: &str, cap: u32) -> Arc<Gate> {
        let mut gates = self.gates.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(g) = gates.get(connection) {
            return g.clone();
        }
        // Forget the gates of connections with nothing live and nobody waiting (deleted
        // connections, or simply idle ones: a new gate starts full, which is the same state).
        if gates.len() >= 1024 {
            gates.retain(|_, g| Arc::strong_count(g) > 1 || g.permits.available_permits() < cap as usize);
        }
        let g = Arc::new(Gate { permits: Arc::new(Semaphore::new(cap as usize)), waiting: AtomicU32::new(0) });
        gates.insert(connection.to_string(), g.clone());
        g
    }
}

impl Runtime {
    /// A permit for one more instance of `ctx`'s connection (none needed without a connection):
    /// at once if the connection is under its cap, else after waiting for one to be released.
    pub(crate) async fn admit(&self, label: &str, ctx: &CallContext) -> Result<Option<InstancePermit>, CallError> {
        let Some(connection) = ctx.connection_id.as_deref() else {
            return Ok(None);
        };
        let config = self.config();
        let cap = config.max_instances_per_connection.max(1);
        let gate = self.inner.gates.gate(connection, cap);
        if let Ok(p) = gate.permits.clone().try_acquire_owned() {
            return Ok(Some(InstancePermit { _permit: p, gate }));
        }
        let busy = || CallError::Busy {
            connector: label.to_string(),
            connection: connection.to_string(),
            limit: cap,
        };
        if gate.waiting.fetch_add(1, Ordering::AcqRel) >= config.max_waiting_per_connection {
            gate.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(busy());
        }
        let waited = tokio::time::timeout(config.instance_wait, gate.permits.clone().acquire_owned()).await;
        gate.waiting.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(p)) => Ok(Some(InstancePermit { _permit: p, gate })),
            _ => Err(busy()),
        }
    }
}
