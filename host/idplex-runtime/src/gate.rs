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
//! handed to a waiting call, its permit with it, instead of being kept idle (an idle instance is
//! only found by requests that start later: the waiters would otherwise time out behind it). The
//! waiter continues in that instance if it was started by the same connector for the same call
//! context — the same binding, as for idle reuse (`LoadedConnector::owns`) — and otherwise drops
//! it, which frees its permit. So a connection at its cap under sustained load reuses its
//! instances instead of paying a fresh instantiation per request. An instance nobody took
//! within [`RuntimeConfig::instance_wait`] is dropped by the next call or sweep that looks.
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
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::call::{CallContext, CallError, Live};
use crate::engine::Runtime;

/// One connection's permits.
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
    waiting: AtomicU32,
    /// Instances handed over by requests that ended while calls waited, with when.
    handed: Mutex<Vec<(Live, Instant)>>,
    /// Wakes the waiters when an instance is handed over.
    handed_over: Notify,
}

impl Gate {
    fn lock_handed(&self) -> std::sync::MutexGuard<'_, Vec<(Live, Instant)>> {
        self.handed.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A handed-over instance `fits` (the newest first), dropping those that do not fit or
    /// waited longer than `max_wait` (which frees their permits).
    fn take_handed(&self, fits: &(dyn Fn(&Live) -> bool + Sync), max_wait: Duration) -> Option<Live> {
        let (found, dropped) = {
            let mut handed = self.lock_handed();
            if handed.is_empty() {
                return None;
            }
            // Stale ones and those that fit no call of this connection any more (an instance of
            // a binding swapped out) leave; of the others the newest is taken and the rest stay
            // for the next waiters. (Dropping those too freed their permits, and the waiters
            // started fresh instances beside them.)
            let mut found = None;
            let mut dropped = Vec::new();
            let mut kept = Vec::new();
            while let Some((live, since)) = handed.pop() {
                if since.elapsed() >= max_wait || !fits(&live) {
                    dropped.push(live);
                } else if found.is_none() {
                    found = Some(live);
                } else {
                    kept.push((live, since));
                }
            }
            kept.reverse();
            *handed = kept;
            (found, dropped)
        };
        drop(dropped);
        found
    }

    /// Drops the handed-over instances nobody took within `max_wait`.
    fn expire_handed(&self, max_wait: Duration) {
        let expired: Vec<(Live, Instant)> = {
            let mut handed = self.lock_handed();
            let (old, fresh): (Vec<_>, Vec<_>) = handed.drain(..).partition(|(_, since)| since.elapsed() >= max_wait);
            *handed = fresh;
            old
        };
        drop(expired);
    }

    /// Whether calls wait for a permit (then an instance that is done goes to one of them).
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }
}

/// How a call got the right to run an instance of its connection ([`Runtime::admit`]).
pub(crate) enum Admission {
    /// A permit for a new instance (`None` for a call without a connection: not capped).
    Permit(Option<InstancePermit>),
    /// An instance another request of the connection handed over, its permit inside.
    Adopted(Live),
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
    pub(crate) fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }
}

/// Hands `live` (an instance whose request is done, holding a permit of `gate`) to a call of
/// its connection waiting for a permit; gives it back when no call waits any more.
pub(crate) fn hand_over(gate: &Arc<Gate>, live: Live) -> Option<Live> {
    if gate.waiting.load(Ordering::Acquire) == 0 {
        return Some(live);
    }
    gate.lock_handed().push((live, Instant::now()));
    gate.handed_over.notify_one();
    None
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
        let g = Arc::new(Gate {
            permits: Arc::new(Semaphore::new(cap as usize)),
            waiting: AtomicU32::new(0),
            handed: Mutex::new(Vec::new()),
            handed_over: Notify::new(),
        });
        gates.insert(connection.to_string(), g.clone());
        g
    }
}

impl Runtime {
    /// The right to run one more instance of `ctx`'s connection (none needed without a
    /// connection): a permit at once if the connection is under its cap; else, while waiting,
    /// whichever comes first of a permit released and an instance handed over by a finished
    /// request that `fits` this call (the caller's [`crate::install::LoadedConnector`] started
    /// it for the same context), or an instance `reclaim` finds idle in the caller's binding.
    ///
    /// `reclaim` closes a race with [`crate::reuse`]: a request that ends while nobody waits
    /// parks its instance idle, and a call that had already found that idle set empty would
    /// then wait for the very permit the parked instance holds. So a waiting call looks there
    /// again after it is counted as waiting, and `IdleInstances::put` looks at the count again
    /// after parking (both under the idle set's lock, so one of the two sees the other).
    pub(crate) async fn admit(
        &self,
        label: &str,
        ctx: &CallContext,
        fits: &(dyn Fn(&Live) -> bool + Sync),
        reclaim: &(dyn Fn() -> Option<Live> + Sync),
    ) -> Result<Admission, CallError> {
        let Some(connection) = ctx.connection_id.as_deref() else {
            return Ok(Admission::Permit(None));
        };
        let config = self.config();
        let cap = config.max_instances_per_connection.max(1);
        let gate = self.inner.gates.gate(connection, cap);
        if let Ok(p) = gate.permits.clone().try_acquire_owned() {
            return Ok(Admission::Permit(Some(InstancePermit { _permit: p, gate })));
        }
        let max_wait = config.instance_wait;
        if let Some(live) = gate.take_handed(fits, max_wait) {
            return Ok(Admission::Adopted(live));
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
        let deadline = tokio::time::Instant::now() + max_wait;
        let admitted = loop {
            // Registered before looking, so a hand-over between the look and the wait wakes us.
            let handed = gate.handed_over.notified();
            tokio::pin!(handed);
            handed.as_mut().enable();
            if let Some(live) = gate.take_handed(fits, max_wait) {
                break Ok(Admission::Adopted(live));
            }
            if let Some(live) = reclaim().filter(|live| fits(live)) {
                break Ok(Admission::Adopted(live));
            }
            tokio::select! {
                p = gate.permits.clone().acquire_owned() => break match p {
                    Ok(p) => Ok(Admission::Permit(Some(InstancePermit { _permit: p, gate: gate.clone() }))),
                    Err(_) => Err(busy()),
                },
                () = &mut handed => continue,
                () = tokio::time::sleep_until(deadline) => break Err(busy()),
            }
        };
        gate.waiting.fetch_sub(1, Ordering::AcqRel);
        admitted
    }

    /// Drops the instances handed over to waiters that none took in time (see the module docs);
    /// the hub's watcher calls it with its idle sweep.
    pub fn expire_handed_over(&self) {
        let max_wait = self.config().instance_wait;
        let gates: Vec<Arc<Gate>> = {
            let gates = self.inner.gates.gates.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            gates.values().cloned().collect()
        };
        for gate in gates {
            gate.expire_handed(max_wait);
        }
    }
}
