//! The poller's park word: how a sleeping poller and an interrupt on another CPU agree.
//!
//! ```text
//!             notify (IRQ): set NOTIFIED              notify (IRQ): clear PARKED,
//!           +-------------+                           caller unparks the thread
//!           v             |                         +----------------------------+
//!   +---------------+  prepare_park: NOTIFIED   +--------+                       |
//!   |   RUNNING     | -- cleared, list checked  | PARKED | --> platform.park() --+
//!   | (+ NOTIFIED)  |    empty, CAS -> PARKED   +--------+                       |
//!   +---------------+ <---------------------------------------- finish_park -----+
//! ```
//!
//! The classic sleep/wake race (a push lands between the poller's "list is empty" and
//! its sleep) is closed because both sides read-modify-write this one word:
//!
//! 1. the poller clears NOTIFIED, then looks at the list, then CASes RUNNING -> PARKED;
//! 2. a producer pushes, then CASes the word: PARKED -> RUNNING (it must unpark the
//!    thread) or RUNNING -> RUNNING|NOTIFIED.
//!
//! If the producer's CAS comes before the poller's step 3 the poller sees NOTIFIED and
//! does not sleep; if after, the producer sees PARKED and wakes it. The platform's park
//! re-checks [`ParkState::is_parked`] before sleeping, so an unpark that comes before the
//! thread actually sleeps is not lost either.

use core::sync::atomic::Ordering;

use crate::atomic::{transition, AtomicWord};

const PARKED: u32 = 1 << 0;
const NOTIFIED: u32 = 1 << 1;

/// Outcome of [`ParkState::notify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a parked poller must be unparked"]
pub enum Notify {
    /// The poller is running; it will see the work before it parks.
    Running,
    /// The poller was parked: the caller must unpark its thread.
    Unpark,
}

/// Outcome of [`ParkState::try_park`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum TryPark {
    /// PARKED is set: sleep until [`ParkState::is_parked`] turns false.
    Parked,
    /// Work was announced since [`ParkState::begin_idle_check`]: poll again.
    Notified,
}

/// The poller's run/park word.
pub struct ParkState<A: AtomicWord> {
    word: A,
}

impl<A: AtomicWord> ParkState<A> {
    /// A running poller with nothing announced.
    pub fn new() -> Self {
        ParkState { word: A::new(0) }
    }

    /// Producer side, after listing an instance.
    pub fn notify(&self) -> Notify {
        transition(&self.word, |w| {
            if w & PARKED != 0 {
                (Some(w & !(PARKED | NOTIFIED)), Notify::Unpark)
            } else {
                // Always write, even when NOTIFIED is already set: the write is what
                // publishes this producer's push to the poller's next read-modify-write
                // of the word (a plain load here would not; loom model (b) catches it).
                (Some(w | NOTIFIED), Notify::Running)
            }
        })
    }

    /// Poller side, step 1: forget old announcements before looking at the list.
    pub fn begin_idle_check(&self) {
        transition(&self.word, |w| {
            (
                if w & NOTIFIED != 0 {
                    Some(w & !NOTIFIED)
                } else {
                    None
                },
                (),
            )
        })
    }

    /// Poller side, step 3: park unless something was announced since step 1.
    pub fn try_park(&self) -> TryPark {
        transition(&self.word, |w| {
            if w & NOTIFIED != 0 {
                (Some(w & !NOTIFIED), TryPark::Notified)
            } else {
                (Some(w | PARKED), TryPark::Parked)
            }
        })
    }

    /// True while the poller should stay asleep.
    pub fn is_parked(&self) -> bool {
        self.word.load(Ordering::Acquire) & PARKED != 0
    }

    /// Poller side, after waking (by unpark, a spurious wake-up or a stop request).
    /// Returns true when a producer woke it.
    pub fn finish_park(&self) -> bool {
        transition(&self.word, |w| {
            if w & PARKED != 0 {
                (Some(w & !PARKED), false)
            } else {
                (None, true)
            }
        })
    }
}

impl<A: AtomicWord> Default for ParkState<A> {
    fn default() -> Self {
        Self::new()
    }
}
