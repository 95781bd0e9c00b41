//! Connector instances kept between the SCIM requests of one binding.
//!
//! A SCIM request runs its connector calls in one instance ([`Warm`]). Creating that instance
//! and releasing it back to the pooling allocator costs more than the calls themselves (about
//! 5 µs against 1–2 µs per call, `cargo run --release -p idplex-bench`, section 3). So when a
//! request ends cleanly its instance goes back to its binding's [`IdleInstances`] and a later
//! request *of the same binding* may continue in it.
//!
//! What that may and may not share:
//! * Only one binding: one connection (directory), one connector module, one config and
//!   egress policy. All of its SCIM requests come from the same authenticated IdP, over the
//!   same directory's data, so nothing crosses a tenant or a trust boundary. A hot swap
//!   publishes a new binding with an empty set: the old instances leave with the old binding.
//! * One request at a time: an instance is taken out for a request and returned after it.
//! * Never after a failure: an instance that trapped, timed out, hit its memory limit,
//!   answered invalid output or was cancelled mid-call is already gone ([`Warm::discard`]);
//!   it is never returned.
//! * Bounded: an instance is retired after [`InstanceReuse::max_requests`] requests, when its
//!   linear memory has grown past [`InstanceReuse::max_memory_bytes`], or after
//!   [`InstanceReuse::idle_timeout`] unused. At most [`InstanceReuse::max_idle_per_binding`]
//!   wait per binding and a quarter of the instance pool in all, so idle instances never starve
//!   live calls of pool slots.
//!
//! `max_requests = 1` turns this off: every request gets a fresh instance.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::call::{Live, Warm};
use crate::engine::Runtime;

/// How connector instances are kept between the requests of a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceReuse {
    /// Requests one instance serves before it is retired; 1 means a fresh instance per request.
    pub max_requests: u32,
    /// Instances waiting for a request, per binding, at most.
    pub max_idle_per_binding: usize,
    /// Instances waiting for a request, over all bindings, at most (and never more than a
    /// quarter of [`RuntimeConfig::max_concurrent_instances`](crate::RuntimeConfig)).
    pub max_idle_total: usize,
    /// An instance unused for this long is released.
    pub idle_timeout: Duration,
    /// An instance whose linear memory grew past this is retired after its request.
    pub max_memory_bytes: u64,
}

impl Default for InstanceReuse {
    fn default() -> Self {
        InstanceReuse {
            max_requests: 1000,
            max_idle_per_binding: 32,
            max_idle_total: 64,
            idle_timeout: Duration::from_secs(30),
            max_memory_bytes: 16 << 20,
        }
    }
}

struct Idle {
    warm: Warm,
    since: Instant,
}

/// The instances of one binding waiting for its next SCIM request (see the module docs).
pub struct IdleInstances {
    set: Arc<IdleSet>,
}

/// What [`IdleInstances`] shares with the [`Warm`]s taken from it (by a weak reference: a
/// request whose first call waits for a permit looks here again, see [`crate::gate`]).
pub(crate) struct IdleSet {
    runtime: Runtime,
    idle: Mutex<Vec<Idle>>,
}

impl IdleSet {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently parked instance still fresh enough, releasing the expired ones.
    fn take_idle(&self) -> Option<Warm> {
        let timeout = self.runtime.config().instance_reuse.idle_timeout;
        let (found, expired) = {
            let mut idle = self.lock();
            let expired = take_expired(&mut idle, timeout);
            (idle.pop(), expired)
        };
        self.release(expired.len() + usize::from(found.is_some()));
        drop(expired);
        found.map(|i| i.warm)
    }

    /// [`IdleSet::take_idle`] for a call waiting for a permit of its connection.
    pub(crate) fn take_live(&self) -> Option<Live> {
        self.take_idle().and_then(|w| w.live)
    }

    /// Keeps `warm` idle within the caps of [`InstanceReuse`] (released beyond them).
    fn park(&self, mut warm: Warm) {
        warm.home = None;
        let reuse = self.runtime.config().instance_reuse;
        let total_cap = reuse
            .max_idle_total
            .min(self.runtime.config().max_concurrent_instances as usize / 4);
        let inner = &self.runtime.inner;
        if inner.idle_total.fetch_add(1, Ordering::AcqRel) >= total_cap {
            self.release(1);
            return;
        }
        let mut idle = self.lock();
        if idle.len() >= reuse.max_idle_per_binding {
            drop(idle);
            self.release(1);
            return;
        }
        idle.push(Idle { warm, since: Instant::now() });
    }

    fn release(&self, n: usize) {
        if n > 0 {
            self.runtime.inner.idle_total.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

impl Drop for IdleSet {
    fn drop(&mut self) {
        let n = self.idle.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).len();
        self.release(n);
    }
}

impl IdleInstances {
    /// An empty set, counted against `runtime`'s limits.
    pub fn new(runtime: &Runtime) -> Self {
        IdleInstances { set: Arc::new(IdleSet { runtime: runtime.clone(), idle: Mutex::new(Vec::new()) }) }
    }

    /// An instance for a new request: the most recently returned one still fresh enough, or an
    /// empty [`Warm`] (the request's first call then instantiates, or waits for a permit of
    /// its connection and looks here again meanwhile).
    pub fn take(&self) -> Warm {
        let mut warm = self.set.take_idle().unwrap_or_default();
        warm.home = Some(Arc::downgrade(&self.set));
        warm
    }

    /// Return a request's instance when the request is over. Kept if it is healthy and within
    /// the bounds of [`InstanceReuse`]; released otherwise.
    pub fn put(&self, mut warm: Warm) {
        let reuse = self.set.runtime.config().instance_reuse;
        if !warm.is_started() {
            return;
        }
        if warm.count_request() >= reuse.max_requests || warm.memory_bytes() > reuse.max_memory_bytes {
            return;
        }
        let Some(gate) = warm.gate() else {
            self.set.park(warm);
            return;
        };
        // Calls of this connection wait for an instance permit (it is at its cap): hand this
        // instance, permit included, to one of them ([`crate::gate`]). Kept idle here, it would
        // hold the permit while the waiter, which found no idle instance when it started, waits
        // out its `instance_wait` and fails `busy`; dropped, the waiter would start afresh.
        // After parking, look at the waiters again: one may have counted itself in and looked
        // here between the first look and the parking (the other half is in `Runtime::admit`).
        loop {
            if gate.has_waiters() {
                match warm.hand_over() {
                    None => return,
                    // Nobody waits any more: keep it idle after all.
                    Some(back) => warm = back,
                }
            }
            self.set.park(warm);
            if !gate.has_waiters() {
                return;
            }
            match self.set.take_idle() {
                Some(newest) => warm = newest,
                // A waiter took it already.
                None => return,
            }
        }
    }

    /// Release the instances idle for longer than [`InstanceReuse::idle_timeout`]. Returns how
    /// many were released.
    pub fn sweep(&self) -> usize {
        let timeout = self.set.runtime.config().instance_reuse.idle_timeout;
        let expired = take_expired(&mut self.set.lock(), timeout);
        self.set.release(expired.len());
        expired.len()
    }

    /// How many instances wait.
    pub fn len(&self) -> usize {
        self.set.lock().len()
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The entries idle for longer than `timeout` (the oldest are first: entries are pushed in
/// the order they were returned).
fn take_expired(idle: &mut Vec<Idle>, timeout: Duration) -> Vec<Idle> {
    let fresh_from = idle.iter().position(|i| i.since.elapsed() < timeout).unwrap_or(idle.len());
    idle.drain(..fresh_from).collect()
}

impl std::fmt::Debug for IdleInstances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleInstances").field("idle", &self.len()).finish()
    }
}
