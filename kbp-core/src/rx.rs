//! The pluggable receive path: what a driver (or a test double) gives the engine.
//!
//! Three small traits, in the spirit of smoltcp's `phy::Device`:
//!
//! * [`RxInstance`] is one receive instance, the NAPI analogue: poll up to a budget,
//!   mask and re-arm its interrupt.
//! * [`Platform`] is what the poller thread needs from its execution environment: the
//!   softirq-mask guard held around each instance's poll, a yield/quiescent-state hook
//!   between rounds, a monotonic clock supplied by the caller, and a park with an
//!   optional deadline that may block in the embedder's own wait (a futex, a kthread
//!   sleep, `poll(2)` on file descriptors).
//! * [`Unpark`] is the one thing the interrupt side needs from it: waking a parked
//!   poller. It is separate so that a producer handle ([`crate::Producer`]) holds no
//!   reference to the poller's platform.
//!
//! [`Reschedule`] goes the other way: it is what the engine hands to
//! [`RxInstance::rearm_irq`], the instance's own interrupt path, so a re-arm that finds
//! work needs no back-reference to the engine.

use crate::shared::ScheduleOutcome;
use crate::state::SchedToken;

/// Monotonic time in nanoseconds, as supplied by [`Platform::now`].
pub type Nanos = u64;

/// The interrupt path of the instances of one [`crate::Shared`], as
/// [`RxInstance::rearm_irq`] receives it (implemented by [`crate::Producer`]).
pub trait Reschedule {
    /// [`crate::Shared::schedule`] for instance `id`: what the instance's interrupt
    /// handler would do. A `Fallback` token must be handled as the handler would (run
    /// the normal path, then [`Reschedule::complete`]).
    fn schedule(&self, id: usize) -> ScheduleOutcome;

    /// [`crate::Shared::complete`] for a `Fallback` token.
    fn complete(&self, token: SchedToken) -> Result<(), SchedToken>;
}

/// One receive instance (a NAPI context: one RX or TX-completion queue).
pub trait RxInstance {
    /// Processes up to `budget` packets and returns how many it processed.
    ///
    /// Called only by the owner of the instance (see [`crate::SchedToken`]), never
    /// concurrently for one instance, with softirqs masked. Returning `budget` means
    /// "not finished": the instance stays owned and is polled again. Returning more
    /// than `budget` is a driver bug; the engine counts it and clamps.
    fn poll(&self, budget: u32) -> u32;

    /// A spinning poller took the idle instance without an interrupt (at attach): mask
    /// its interrupt and return true, or return false to leave the instance to its next
    /// interrupt (the poller then lets go of it at once). A device whose interrupt can
    /// only be masked by its own interrupt path (a NAPI driver masks it before it
    /// schedules) returns false.
    fn take_idle(&self) -> bool;

    /// Whether the poller may keep the instance between packets (busy polling it until
    /// its idle policy lets go). False for an instance its device excludes from busy
    /// polling (Linux's NAPI_STATE_NO_BUSY_POLL, e.g. virtio-net's TX completion): it is
    /// polled when scheduled and released as soon as a poll does less than its weight,
    /// as the softirq would.
    fn busy_pollable(&self) -> bool {
        true
    }

    /// The device side wants the instance back now (a NAPI disable is pending, or the
    /// administrator switched it to another mode): the poller releases it after this
    /// poll even with work left, as `__napi_poll` does for a pending disable.
    fn must_release(&self) -> bool {
        false
    }

    /// Re-arms the interrupt after the instance `id` was released. Like a driver's
    /// `virtqueue_enable_cb` check, it must look for work that arrived while the
    /// interrupt was masked and, if any, raise the interrupt path itself:
    /// `irq.schedule(id)`, handling a `Fallback` as its interrupt handler would.
    fn rearm_irq(&self, id: usize, irq: &dyn Reschedule);
}

/// The execution environment of a poller thread (used by that thread only).
pub trait Platform {
    /// Masks softirqs (bottom halves) on this CPU while alive; unmasks on drop.
    type SoftirqGuard;

    /// Masks softirqs on this CPU (`local_bh_disable`); dropping the guard unmasks them.
    fn mask_softirqs(&self) -> Self::SoftirqGuard;

    /// Monotonic time. The engine reads time only through this method.
    fn now(&self) -> Nanos;

    /// Called between drain rounds: report a quiescent state (RCU, RCU-tasks) and yield
    /// the CPU if the scheduler asks for it (`cond_resched_tasks_rcu_qs`).
    fn quiescent(&self);

    /// Puts the poller thread to sleep while `still_parked()` is true, until
    /// `deadline` (in [`Platform::now`]'s time) if there is one. Must re-check
    /// `still_parked` after arming its wake-up (set the task state, then check, then
    /// sleep), may return early (spurious wake-up, stop request, deadline).
    ///
    /// The wait is the embedder's own: a kthread sleep woken by [`Unpark::unpark`], a
    /// futex, or `poll(2)` on the instances' file descriptors. A wait that learns of
    /// work itself (a descriptor became readable) calls [`crate::Shared::schedule`] for
    /// that instance right there, as its interrupt handler: that clears the park word,
    /// and `still_parked()` turns false. In a kernel thread that code runs after the
    /// task state was set (between `set_current_state` and `schedule`), so it must not
    /// sleep.
    fn park(&self, still_parked: &dyn Fn() -> bool, deadline: Option<Nanos>);
}

/// Wakes a parked poller thread: the producer side's only need of the platform.
pub trait Unpark: Sync {
    /// Wakes the poller thread (any CPU, interrupt context).
    fn unpark(&self);
}
