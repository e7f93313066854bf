//! What a poller shares with the interrupt side: instance states, the poll list, the
//! park word. This is the only object other CPUs touch.
//!
//! An embedder calls [`Shared::schedule`] (and [`Shared::complete`] for a `Fallback`),
//! [`Shared::disable`] and [`Shared::enable`], directly or through a
//! [`crate::Producer`] handle. The `model` feature adds read-only
//! inspection (`flags`, `list`, `is_parked`) and the two halves of `disable`, for the
//! model checker; the instances' state words themselves stay crate-private.

use crate::atomic::AtomicWord;
use crate::park::{Notify, ParkState};
use crate::poll_list::PollList;
use crate::rx::Unpark;
#[cfg(feature = "model")]
use crate::state::StateFlags;
use crate::state::{
    Attach, BeginDisable, Detach, Enable, FinishDisable, NapiState, SchedToken, Schedule,
};

/// Outcome of [`Shared::schedule`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a Fallback token owns the instance and must be handled"]
pub enum ScheduleOutcome {
    /// Listed on the poller's list; `woke` tells whether the poller had to be unparked.
    Queued {
        /// The poller was parked and had to be unparked.
        woke: bool,
    },
    /// Already owned: MISSED is set and the owner polls again.
    Missed,
    /// Disabled or being disabled: the event is the disabler's to handle.
    Disabled,
    /// No poller serves the instance: the caller owns it and must run the normal
    /// (softirq) path, then release it with [`Shared::complete`].
    Fallback(SchedToken),
    /// No such instance.
    Unknown,
}

/// The state a poller shares with interrupt context, for up to `N` instances
/// (`N` a power of two).
pub struct Shared<A: AtomicWord, const N: usize> {
    states: [NapiState<A>; N],
    pub(crate) list: PollList<A, N>,
    pub(crate) park: ParkState<A>,
}

impl<A: AtomicWord, const N: usize> Shared<A, N> {
    /// `N` idle, detached instances, an empty list and a running poller.
    pub fn new() -> Self {
        Shared {
            states: core::array::from_fn(NapiState::new),
            list: PollList::new(),
            park: ParkState::new(),
        }
    }

    /// Instance `id`'s state (it mints tokens for `id` only).
    pub(crate) fn state(&self, id: usize) -> Option<&NapiState<A>> {
        self.states.get(id)
    }

    /// The flags of instance `id` (0 for an unknown id).
    #[cfg(feature = "model")]
    pub fn flags(&self, id: usize) -> StateFlags {
        self.states
            .get(id)
            .map_or(StateFlags::empty(), NapiState::flags)
    }

    /// The poll list, to inspect (for checkers and counters).
    #[cfg(feature = "model")]
    pub fn list(&self) -> &PollList<A, N> {
        &self.list
    }

    /// True while the poller is parked.
    #[cfg(feature = "model")]
    pub fn is_parked(&self) -> bool {
        self.park.is_parked()
    }

    /// An event for instance `id` (interrupt context, any CPU): the NAPI
    /// `napi_schedule` analogue. The winner of SCHED lists the instance and wakes the
    /// poller if it sleeps.
    pub fn schedule<W: Unpark + ?Sized>(&self, id: usize, waker: &W) -> ScheduleOutcome {
        let Some(state) = self.states.get(id) else {
            return ScheduleOutcome::Unknown;
        };
        match state.schedule() {
            (Schedule::Won, Some(token)) => match self.list.push(token) {
                Ok(()) => ScheduleOutcome::Queued {
                    woke: self.notify_poller(waker),
                },
                Err(token) => ScheduleOutcome::Fallback(token),
            },
            (Schedule::WonDetached, Some(token)) => ScheduleOutcome::Fallback(token),
            (Schedule::Missed, _) => ScheduleOutcome::Missed,
            _ => ScheduleOutcome::Disabled,
        }
    }

    /// Releases an instance owned outside the poller (a `Fallback` token):
    /// `napi_complete_done`. `Err` hands the token back when an event was missed
    /// meanwhile: poll again, then complete again.
    pub fn complete(&self, token: SchedToken) -> Result<(), SchedToken> {
        match self.states.get(token.id()) {
            Some(state) => state.complete(token),
            None => Ok(()),
        }
    }

    /// Serves instance `id` from this poller from now on (see
    /// [`crate::state::StateFlags::attach`]). `None` for an unknown id.
    pub(crate) fn attach(&self, id: usize) -> Option<Attach> {
        self.states.get(id).map(NapiState::attach)
    }

    /// Starts disabling instance `id` (see [`crate::state::StateFlags::begin_disable`]).
    #[cfg(feature = "model")]
    pub fn begin_disable(&self, id: usize) -> BeginDisable {
        self.states
            .get(id)
            .map_or(BeginDisable::AlreadyDisabling, NapiState::begin_disable)
    }

    /// One attempt to finish disabling instance `id`.
    #[cfg(feature = "model")]
    pub fn try_finish_disable(&self, id: usize) -> FinishDisable {
        self.states
            .get(id)
            .map_or(FinishDisable::NotPending, NapiState::try_finish_disable)
    }

    /// `napi_disable`: waits (calling `wait` between attempts, which must yield) until
    /// the owner lets go. Returns false when another disable is already under way.
    pub fn disable(&self, id: usize, mut wait: impl FnMut()) -> bool {
        let Some(state) = self.states.get(id) else {
            return false;
        };
        if state.begin_disable() != BeginDisable::Pending {
            return false;
        }
        loop {
            match state.try_finish_disable() {
                FinishDisable::Disabled => return true,
                FinishDisable::Waiting => wait(),
                FinishDisable::NotPending => return false,
            }
        }
    }

    /// `napi_enable`.
    pub fn enable(&self, id: usize) -> Enable {
        self.states
            .get(id)
            .map_or(Enable::NotDisabled, NapiState::enable)
    }

    pub(crate) fn detach(&self, id: usize) -> Detach {
        self.states
            .get(id)
            .map_or(Detach::NotAttached, NapiState::detach)
    }

    /// Producer side of the park protocol; unparks the poller when it sleeps.
    pub(crate) fn notify_poller<W: Unpark + ?Sized>(&self, waker: &W) -> bool {
        match self.park.notify() {
            Notify::Unpark => {
                waker.unpark();
                true
            }
            Notify::Running => false,
        }
    }
}

impl<A: AtomicWord, const N: usize> Default for Shared<A, N> {
    fn default() -> Self {
        Self::new()
    }
}
