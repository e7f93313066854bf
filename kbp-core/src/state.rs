//! Per-instance scheduling state: NAPI's `napi_struct::state`, as bit flags.
//!
//! ```text
//!                     attach / detach (ATTACHED only routes a won SCHED)
//!
//!            (1) schedule: 0 -> SCHED, caller gets the SchedToken
//!   +------+ --------------------------------------------> +---------+
//!   | idle |                                               |  SCHED  |---(2) schedule
//!   |  0   | <-------------------------------------------- | (owned) |<--+   while owned:
//!   +------+  (4) complete: SCHED cleared, IRQ re-armed    +---------+   |   sets MISSED
//!     |  ^        (MISSED set -> stays SCHED, re-listed)      |  ^       |
//!     |  |                                                    |  |  (3) keep_busy:
//!     |  |   (5) try_take_busy: 0 -> SCHED|BUSY               v  |  SCHED|BUSY, MISSED
//!     |  +----------------------------------------------  +----------+ cleared; the IRQ
//!     |      (4) complete (idle, disable, detach)          |SCHED|BUSY| stays masked
//!     |                                                    +----------+
//!     | (6) begin_disable: sets DISABLE; schedule and try_take_busy refuse;
//!     |     an owner that sees DISABLE releases at its next poll
//!     v
//!   +---------+  (7) try_finish_disable once SCHED is clear  +-------------+
//!   | DISABLE | -------------------------------------------> | SCHED|NPSVC |
//!   +---------+                                              |  disabled   |
//!        ^                                                   +-------------+
//!        |                (8) enable: SCHED|NPSVC -> 0             |
//!        +------------------------  idle  <------------------------+
//! ```
//!
//! Every transition is a pure function from the old word to the new word plus an
//! outcome, applied through [`crate::atomic::transition`]. The functions are public (as
//! `StateFlags::op`, with the `model` feature) so that the model checker can apply them
//! to every state exhaustively; the methods of the crate-private `NapiState` are the only
//! way to run them on a live word. Only the caller that moves SCHED from 0 to 1 receives
//! a [`SchedToken`], and only for the instance whose word it moved (a `NapiState` knows
//! its own id); listing an instance and releasing it both consume that token, so neither
//! type-checks without having won.

use core::sync::atomic::Ordering;

use crate::atomic::{transition, AtomicWord};

bitflags::bitflags! {
    /// The bits of an instance's state word (NAPI's `NAPIF_STATE_*`, plus KBP's own).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct StateFlags: u32 {
        /// Ownership token: whoever set it owns the instance (lists it, polls it, releases it).
        const SCHED = 1 << 0;
        /// An event arrived while somebody owned the instance; the owner must poll again.
        const MISSED = 1 << 1;
        /// A disable is pending: nobody may take SCHED until it finishes.
        const DISABLE = 1 << 2;
        /// Held with SCHED by a disabler: the instance is disabled (NAPI's NPSVC marker).
        const NPSVC = 1 << 3;
        /// The poller keeps SCHED between polls (NAPI's IN_BUSY_POLL): IRQ stays masked.
        const BUSY = 1 << 4;
        /// A KBP poller serves this instance: a won SCHED is listed on its poll list
        /// instead of being handed to the platform's normal (softirq) path.
        const ATTACHED = 1 << 5;
    }
}

/// The bits that exist only while SCHED is set (property 1 of the NAPI semantics).
#[cfg(feature = "model")]
pub const REQUIRES_SCHED: StateFlags = StateFlags::MISSED
    .union(StateFlags::BUSY)
    .union(StateFlags::NPSVC);

/// Proof of owning an instance (having moved its SCHED bit from 0 to 1).
///
/// Not `Clone`/`Copy`: exactly one exists per owned instance, and only kbp-core mints
/// one, for the instance whose SCHED bit was won. Listing the instance (on the poll list)
/// and releasing it ([`crate::Shared::complete`], or the poller) consume it.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an owned instance must be polled and released, or it is lost"]
pub struct SchedToken {
    id: usize,
}

impl SchedToken {
    /// The instance this token owns.
    #[inline]
    pub fn id(&self) -> usize {
        self.id
    }

    /// Mints a token. Only `NapiState` (for its own id) and the poll list (which stores
    /// the id of a token that was pushed) may do this.
    #[inline]
    pub(crate) fn mint(id: usize) -> Self {
        SchedToken { id }
    }
}

/// Outcome of [`StateFlags::schedule`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// SCHED moved 0 -> 1 on an attached instance: list it on the KBP poll list.
    Won,
    /// SCHED moved 0 -> 1 on an instance no poller serves: use the normal path.
    WonDetached,
    /// Already owned: MISSED is set, the owner will poll again.
    Missed,
    /// A disable is pending or the instance is disabled: nothing changed.
    Disabled,
}

/// Outcome of [`StateFlags::complete`] (NAPI's `napi_complete_done`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Complete {
    /// SCHED is clear: the owner must re-arm the interrupt.
    Released,
    /// MISSED was set: SCHED is kept, the owner must list the instance again.
    Rescheduled,
}

/// Outcome of [`StateFlags::keep_busy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepBusy {
    /// SCHED|BUSY: the poller keeps the instance, the interrupt stays masked.
    Kept,
    /// A disable is pending or the instance was detached: the owner must `complete`.
    MustRelease,
}

/// Outcome of [`StateFlags::try_take_busy`] (NAPI busy poll's cmpxchg on SCHED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakeBusy {
    /// 0 -> SCHED|BUSY: the caller owns the instance and must mask its interrupt.
    Taken,
    /// Somebody owns it, a disable is pending, or it is not attached: nothing changed.
    Refused,
}

/// Outcome of [`StateFlags::begin_disable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BeginDisable {
    /// DISABLE is set; call `try_finish_disable` until it reports `Disabled`.
    Pending,
    /// Another disable is pending or done: this caller must not proceed.
    AlreadyDisabling,
}

/// Outcome of [`StateFlags::try_finish_disable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishDisable {
    /// SCHED|NPSVC taken: nothing polls or lists the instance until `enable`.
    Disabled,
    /// The owner has not let go yet: yield and try again.
    Waiting,
    /// `begin_disable` was not called.
    NotPending,
}

/// Outcome of [`crate::Shared::enable`] (`StateFlags::enable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enable {
    /// SCHED|NPSVC cleared: the instance can be scheduled again.
    Enabled,
    /// The instance was not disabled; nothing changed.
    NotDisabled,
}

/// Outcome of [`StateFlags::attach`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Attach {
    /// ATTACHED is set: from now on a won SCHED is listed on the poller's list.
    Attached,
    /// Owned by the normal path right now: nothing changed, try again later.
    Owned,
}

/// Outcome of [`StateFlags::detach`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detach {
    /// ATTACHED cleared. `listed` is true when the poller owns the instance (it is on, or
    /// being pushed onto, its poll list) and must release it.
    Detached {
        /// The poller owned the instance at the detach.
        listed: bool,
    },
    /// Was not attached.
    NotAttached,
}

/// A pure transition: the word to write (`None`: leave it) and its outcome.
pub type Step<T> = (Option<StateFlags>, T);

impl StateFlags {
    /// (1)/(2) An event for the instance (IRQ context, any CPU): `napi_schedule_prep`.
    pub fn schedule(self) -> Step<Schedule> {
        if self.intersects(Self::DISABLE | Self::NPSVC) {
            (None, Schedule::Disabled)
        } else if self.contains(Self::SCHED) {
            (Some(self | Self::MISSED), Schedule::Missed)
        } else if self.contains(Self::ATTACHED) {
            (Some(self | Self::SCHED), Schedule::Won)
        } else {
            (Some(self | Self::SCHED), Schedule::WonDetached)
        }
    }

    /// (4) The owner finished with the instance: `napi_complete_done`.
    /// Clears BUSY and MISSED; keeps SCHED when MISSED was set.
    pub fn complete(self) -> Step<Complete> {
        let cleared = self - (Self::SCHED | Self::MISSED | Self::BUSY);
        if self.contains(Self::MISSED) {
            (Some(cleared | Self::SCHED), Complete::Rescheduled)
        } else {
            (Some(cleared), Complete::Released)
        }
    }

    /// (3) The poller keeps an owned instance between polls (interrupt stays masked).
    pub fn keep_busy(self) -> Step<KeepBusy> {
        if self.contains(Self::DISABLE) || !self.contains(Self::ATTACHED) {
            (None, KeepBusy::MustRelease)
        } else {
            (Some((self - Self::MISSED) | Self::BUSY), KeepBusy::Kept)
        }
    }

    /// (5) A busy poller takes an idle, attached instance.
    pub fn try_take_busy(self) -> Step<TakeBusy> {
        if self.intersects(Self::SCHED | Self::DISABLE | Self::NPSVC)
            || !self.contains(Self::ATTACHED)
        {
            (None, TakeBusy::Refused)
        } else {
            (Some(self | Self::SCHED | Self::BUSY), TakeBusy::Taken)
        }
    }

    /// (6) Start disabling: from now on nobody new takes SCHED.
    pub fn begin_disable(self) -> Step<BeginDisable> {
        if self.intersects(Self::DISABLE | Self::NPSVC) {
            (None, BeginDisable::AlreadyDisabling)
        } else {
            (Some(self | Self::DISABLE), BeginDisable::Pending)
        }
    }

    /// (7) Finish disabling once the owner has let go: `napi_disable`'s cmpxchg.
    pub fn try_finish_disable(self) -> Step<FinishDisable> {
        if !self.contains(Self::DISABLE) {
            (None, FinishDisable::NotPending)
        } else if self.intersects(Self::SCHED | Self::NPSVC) {
            (None, FinishDisable::Waiting)
        } else {
            (
                Some((self - Self::DISABLE) | Self::SCHED | Self::NPSVC),
                FinishDisable::Disabled,
            )
        }
    }

    /// (8) `napi_enable`.
    pub fn enable(self) -> Step<Enable> {
        if self.contains(Self::SCHED | Self::NPSVC) && !self.contains(Self::DISABLE) {
            (
                Some(self - (Self::SCHED | Self::NPSVC | Self::MISSED)),
                Enable::Enabled,
            )
        } else {
            (None, Enable::NotDisabled)
        }
    }

    /// A poller starts serving the instance. Refused while somebody other than a
    /// disabler owns it, so that every later owner of an attached instance is the
    /// poller (the current owner completes first; retry after yielding).
    pub fn attach(self) -> Step<Attach> {
        if self.contains(Self::SCHED) && !self.contains(Self::NPSVC) {
            (None, Attach::Owned)
        } else {
            (Some(self | Self::ATTACHED), Attach::Attached)
        }
    }

    /// The poller stops serving the instance (shutdown).
    pub fn detach(self) -> Step<Detach> {
        if !self.contains(Self::ATTACHED) {
            return (None, Detach::NotAttached);
        }
        let listed = self.contains(Self::SCHED) && !self.contains(Self::NPSVC);
        (Some(self - Self::ATTACHED), Detach::Detached { listed })
    }
}

/// One instance's live state word, and the instance's id: the tokens it mints are for
/// that id only. Crate-private: [`crate::Shared`] and the poller reach it by id.
pub(crate) struct NapiState<A: AtomicWord> {
    word: A,
    id: usize,
}

impl<A: AtomicWord> NapiState<A> {
    /// Instance `id`, idle and detached.
    pub fn new(id: usize) -> Self {
        NapiState {
            word: A::new(0),
            id,
        }
    }

    /// The current flags (a snapshot: for counters, checks and tests).
    pub fn flags(&self) -> StateFlags {
        StateFlags::from_bits_retain(self.word.load(Ordering::Acquire))
    }

    fn apply<T>(&self, op: fn(StateFlags) -> Step<T>) -> T {
        transition(&self.word, |bits| {
            let (next, outcome) = op(StateFlags::from_bits_retain(bits));
            (next.map(|flags| flags.bits()), outcome)
        })
    }

    /// Runs [`StateFlags::schedule`]; a win comes with this instance's token.
    pub fn schedule(&self) -> (Schedule, Option<SchedToken>) {
        let outcome = self.apply(StateFlags::schedule);
        let token = matches!(outcome, Schedule::Won | Schedule::WonDetached)
            .then(|| SchedToken::mint(self.id));
        (outcome, token)
    }

    /// Runs [`StateFlags::complete`]; a reschedule hands the token back.
    pub fn complete(&self, token: SchedToken) -> Result<(), SchedToken> {
        match self.apply(StateFlags::complete) {
            Complete::Released => Ok(()),
            Complete::Rescheduled => Err(token),
        }
    }

    /// Runs [`StateFlags::keep_busy`]: `Ok` keeps the token, `Err` means release it.
    pub fn keep_busy(&self, token: SchedToken) -> Result<SchedToken, SchedToken> {
        match self.apply(StateFlags::keep_busy) {
            KeepBusy::Kept => Ok(token),
            KeepBusy::MustRelease => Err(token),
        }
    }

    /// Runs [`StateFlags::try_take_busy`]; a take comes with this instance's token.
    pub fn try_take_busy(&self) -> Option<SchedToken> {
        match self.apply(StateFlags::try_take_busy) {
            TakeBusy::Taken => Some(SchedToken::mint(self.id)),
            TakeBusy::Refused => None,
        }
    }

    /// Runs [`StateFlags::begin_disable`].
    pub fn begin_disable(&self) -> BeginDisable {
        self.apply(StateFlags::begin_disable)
    }

    /// Runs [`StateFlags::try_finish_disable`].
    pub fn try_finish_disable(&self) -> FinishDisable {
        self.apply(StateFlags::try_finish_disable)
    }

    /// Runs [`StateFlags::enable`].
    pub fn enable(&self) -> Enable {
        self.apply(StateFlags::enable)
    }

    /// Runs [`StateFlags::attach`].
    pub fn attach(&self) -> Attach {
        self.apply(StateFlags::attach)
    }

    /// Runs [`StateFlags::detach`].
    pub fn detach(&self) -> Detach {
        self.apply(StateFlags::detach)
    }
}
