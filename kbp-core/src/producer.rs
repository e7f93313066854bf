//! [`Producer`]: the interrupt side's handle on a poller, separate from the poller.
//!
//! A producer is a [`Shared`] and the [`Unpark`] that wakes the poller's thread. It is
//! `Copy`, `Send` and `Sync` when its parts are, so every interrupt handler (or, in
//! userspace, every thread that learns of work) can hold one, while the [`crate::Poller`]
//! stays with its own thread. It is also the [`Reschedule`] a poller hands to
//! [`crate::RxInstance::rearm_irq`].

use crate::atomic::AtomicWord;
use crate::rx::{Reschedule, Unpark};
use crate::shared::{ScheduleOutcome, Shared};
use crate::state::{Enable, SchedToken};

/// The interrupt side of one poller: schedule, complete a fallback, disable, enable.
pub struct Producer<'a, A: AtomicWord, W: Unpark + ?Sized, const N: usize> {
    shared: &'a Shared<A, N>,
    waker: &'a W,
}

impl<A: AtomicWord, W: Unpark + ?Sized, const N: usize> Clone for Producer<'_, A, W, N> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A: AtomicWord, W: Unpark + ?Sized, const N: usize> Copy for Producer<'_, A, W, N> {}

impl<'a, A: AtomicWord, W: Unpark + ?Sized, const N: usize> Producer<'a, A, W, N> {
    /// A handle that schedules instances of `shared` and wakes the poller with `waker`.
    pub const fn new(shared: &'a Shared<A, N>, waker: &'a W) -> Self {
        Producer { shared, waker }
    }

    /// The shared state.
    pub fn shared(&self) -> &'a Shared<A, N> {
        self.shared
    }

    /// An event for instance `id` ([`Shared::schedule`]): interrupt context, any CPU.
    pub fn schedule(&self, id: usize) -> ScheduleOutcome {
        self.shared.schedule(id, self.waker)
    }

    /// Releases a `Fallback` token ([`Shared::complete`]).
    pub fn complete(&self, token: SchedToken) -> Result<(), SchedToken> {
        self.shared.complete(token)
    }

    /// `napi_disable` ([`Shared::disable`]): control context, may wait.
    pub fn disable(&self, id: usize, wait: impl FnMut()) -> bool {
        self.shared.disable(id, wait)
    }

    /// `napi_enable` ([`Shared::enable`]).
    pub fn enable(&self, id: usize) -> Enable {
        self.shared.enable(id)
    }
}

impl<A: AtomicWord, W: Unpark + ?Sized, const N: usize> Reschedule for Producer<'_, A, W, N> {
    fn schedule(&self, id: usize) -> ScheduleOutcome {
        Producer::schedule(self, id)
    }

    fn complete(&self, token: SchedToken) -> Result<(), SchedToken> {
        Producer::complete(self, token)
    }
}

/// The waker of a poller's own re-arms: the poller runs while it re-arms, so a
/// schedule from its thread never finds it parked.
pub(crate) struct Running;

impl Unpark for Running {
    fn unpark(&self) {}
}
