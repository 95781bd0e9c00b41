//! Fair shares of the CPU for connector code that runs longer than one epoch tick.
//!
//! Guest code checks the engine's epoch at loop heads and function entries; the epoch ticks
//! every [`RuntimeConfig::epoch_tick`]. A call that runs past a tick reaches its epoch callback
//! (`call.rs`), which, short of the deadline, gives up its **turn** here and asks for the next
//! one. Only [`RuntimeConfig::guest_cpu_slots`] turns exist at once (by default one fewer than
//! the machine's cores), and a freed turn goes to the connections waiting for one in rotation:
//! one turn per waiting connection per round, whatever the number of calls each has waiting
//! (deficit-free round robin; every turn is one tick long). So:
//!
//! * a connection spinning 16 instances at once runs on at most one core, one instance at a
//!   time, while its other calls sleep here (not runnable: the async workers stay free for the
//!   HTTP and database work of every other connection);
//! * a connection whose call needs several ticks of CPU waits at most one tick per turn, even
//!   while another connection has many calls waiting;
//! * calls shorter than a tick (every healthy SCIM call: tens of microseconds) never come here
//!   unless a tick happens to fall inside them.
//!
//! A turn is a lease that lapses two ticks after it was granted, so a call that holds one while
//! it waits on egress (host I/O: no epoch checks there), or whose future was dropped, cannot keep
//! a slot from the others. The epoch thread calls [`CpuScheduler::tick`] to collect lapsed
//! leases and hand their slots on.
//!
//! [`RuntimeConfig::epoch_tick`]: crate::RuntimeConfig::epoch_tick
//! [`RuntimeConfig::guest_cpu_slots`]: crate::RuntimeConfig::guest_cpu_slots

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// The turn scheduler shared by every call of a runtime.
pub(crate) struct CpuScheduler {
    slots: usize,
    lease_ttl: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Turns granted and not yet given back or lapsed, with when they were granted.
    leases: HashMap<u64, Instant>,
    /// Calls waiting for a turn, by connection ("" for calls without one), in arrival order.
    queues: HashMap<Arc<str>, VecDeque<oneshot::Sender<u64>>>,
    /// Connections with waiting calls, in the order their next turn comes.
    rotation: VecDeque<Arc<str>>,
    waiting: usize,
}

/// Counters for operators and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuStats {
    /// Turns held now (at most the configured slots).
    pub running: usize,
    /// Calls parked waiting for a turn.
    pub waiting: usize,
}

/// One turn; gives its slot back when dropped.
pub(crate) struct Turn {
    scheduler: Arc<CpuScheduler>,
    id: u64,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.scheduler.release(self.id);
    }
}

impl CpuScheduler {
    pub(crate) fn new(slots: usize, tick: Duration) -> Arc<CpuScheduler> {
        Arc::new(CpuScheduler { slots: slots.max(1), lease_ttl: tick * 2, state: Mutex::new(State::default()) })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn stats(&self) -> CpuStats {
        let mut state = self.lock();
        self.expire(&mut state, Instant::now());
        CpuStats { running: state.leases.len(), waiting: state.waiting }
    }

    /// The next turn for a call of `connection`: at once when a slot is free and nobody waits,
    /// else when the rotation reaches the connection. Whether it had to wait is returned too.
    pub(crate) async fn turn(self: &Arc<Self>, connection: &str) -> (Turn, bool) {
        let rx = {
            let mut state = self.lock();
            let now = Instant::now();
            self.expire(&mut state, now);
            if state.rotation.is_empty() && state.leases.len() < self.slots {
                let id = state.grant(now);
                return (Turn { scheduler: self.clone(), id }, false);
            }
            let (tx, rx) = oneshot::channel();
            let key: Arc<str> = Arc::from(connection);
            let queue = state.queues.entry(key.clone()).or_default();
            if queue.is_empty() {
                state.rotation.push_back(key);
            }
            state.queues.get_mut(connection).expect("inserted above").push_back(tx);
            state.waiting += 1;
            self.hand_on(&mut state, now);
            rx
        };
        match rx.await {
            Ok(id) => (Turn { scheduler: self.clone(), id }, true),
            // The scheduler never drops a waiter without sending; only at shutdown. Run anyway.
            Err(_) => {
                let id = self.lock().grant(Instant::now());
                (Turn { scheduler: self.clone(), id }, true)
            }
        }
    }

    /// Collect lapsed leases and hand their slots on (called by the epoch thread every tick).
    pub(crate) fn tick(&self) {
        let mut state = self.lock();
        let now = Instant::now();
        self.expire(&mut state, now);
        self.hand_on(&mut state, now);
    }

    fn release(&self, id: u64) {
        let mut state = self.lock();
        if state.leases.remove(&id).is_some() {
            let now = Instant::now();
            self.hand_on(&mut state, now);
        }
    }

    fn expire(&self, state: &mut State, now: Instant) {
        let ttl = self.lease_ttl;
        state.leases.retain(|_, granted| now.duration_since(*granted) < ttl);
    }

    /// Give free slots to waiting calls, one connection after another.
    fn hand_on(&self, state: &mut State, now: Instant) {
        while state.leases.len() < self.slots {
            let Some(key) = state.rotation.pop_front() else { return };
            let Some(queue) = state.queues.get_mut(&key) else { continue };
            let mut granted = false;
            while let Some(tx) = queue.pop_front() {
                state.waiting -= 1;
                let id = state.next_id;
                // A waiter whose call was dropped (deadline, client gone) takes no slot.
                if tx.send(id).is_ok() {
                    granted = true;
                    break;
                }
            }
            let more = !queue.is_empty();
            if more {
                state.rotation.push_back(key);
            } else {
                state.queues.remove(&key);
            }
            if granted {
                state.grant(now);
            }
        }
    }
}

impl State {
    /// Record a lease under the next id (the id a waiter was just sent, if any).
    fn grant(&mut self, now: Instant) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.leases.insert(id, now);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(slots: usize) -> Arc<CpuScheduler> {
        CpuScheduler::new(slots, Duration::from_secs(60))
    }

    #[tokio::test]
    async fn a_free_slot_is_granted_at_once() {
        let s = sched(1);
        let (t, waited) = s.turn("a").await;
        assert!(!waited);
        assert_eq!(s.stats(), CpuStats { running: 1, waiting: 0 });
        drop(t);
        assert_eq!(s.stats(), CpuStats { running: 0, waiting: 0 });
    }

    #[tokio::test]
    async fn turns_rotate_between_connections_not_calls() {
        let s = sched(1);
        let (holder, _) = s.turn("a").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Connection A queues five calls, then B one: B's comes second, not sixth.
        for (i, conn) in ["a", "a", "a", "a", "a", "b"].into_iter().enumerate() {
            let (sched, order) = (s.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let (turn, waited) = sched.turn(conn).await;
                assert!(waited);
                order.lock().unwrap().push(conn);
                // Hold the turn briefly; the next is handed on when it drops.
                tokio::task::yield_now().await;
                drop(turn);
                i
            }));
            // Make the arrival order deterministic.
            while s.stats().waiting < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(s.stats(), CpuStats { running: 1, waiting: 6 });
        drop(holder);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["a", "b", "a", "a", "a", "a"]);
        assert_eq!(s.stats(), CpuStats { running: 0, waiting: 0 });
    }

    #[tokio::test]
    async fn a_dropped_waiter_takes_no_slot() {
        let s = sched(1);
        let (holder, _) = s.turn("a").await;
        let s2 = s.clone();
        let gone = tokio::spawn(async move { s2.turn("b").await.1 });
        while s.stats().waiting < 1 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        let s3 = s.clone();
        let next = tokio::spawn(async move { s3.turn("c").await.1 });
        while s.stats().waiting < 2 {
            tokio::task::yield_now().await;
        }
        drop(holder);
        assert!(next.await.unwrap(), "c waited, then got the slot b's dropped call left");
        assert_eq!(s.stats(), CpuStats { running: 0, waiting: 0 });
    }

    #[test]
    fn a_lease_held_past_two_ticks_lapses_and_its_slot_is_handed_on() {
        let s = CpuScheduler::new(1, Duration::from_millis(1));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            // Held, never given back (as by a call blocked on egress).
            let (held, _) = s.turn("a").await;
            std::mem::forget(held);
            std::thread::sleep(Duration::from_millis(5));
            s.tick();
            let (t, waited) = s.turn("b").await;
            assert!(!waited, "the lapsed lease no longer counts");
            drop(t);
        });
    }
}
