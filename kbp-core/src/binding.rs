//! Which device an instance place ("slot") holds an instance of, and whether the
//! embedder still serves that device: the protocol by which an embedder stops serving a
//! device (kbp.ko: at `NETDEV_UNREGISTER`, when the device unregisters or leaves the
//! network namespace it was named in, and at unload) while its schedule hook may be
//! adopting a new instance of that device into a slot at the same moment.
//!
//! Two words, each a [`AtomicWord`]:
//!
//! * a [`DeviceWord`] per device: `ABSENT` -> `SERVED` ([`DeviceWord::serve`], once the
//!   embedder holds the device) -> `GONE` ([`unserve`], once; its one winner retires
//!   the device's slots);
//! * a [`SlotWord`] per slot, the device index and the RETIRED bit in one word:
//!   `EMPTY`, `LIVE(dev)`, `RETIRED(dev)`. [`SlotWord::bind`] (the slot's new owner)
//!   writes `LIVE(dev)`, [`SlotWord::retire`] moves `LIVE(dev)` to `RETIRED(dev)` for
//!   that one device only, [`SlotWord::clear`] empties it (the instance was deleted).
//!
//! ```text
//!  adopter (schedule hook, any CPU)          unserver (notifier, or unload)
//!  --------------------------------          ------------------------------
//!  wins the slot (the embedder's own CAS)
//!  bind:  slot := LIVE(d)            (S1)    unserve: device SERVED -> GONE   (D2, RMW)
//!         confirm: device SERVED ->          for each slot:
//!                  SERVED, an RMW    (D1)      LIVE(d) -> RETIRED(d)          (S2)
//!         GONE seen: retire own slot
//! ```
//!
//! Why no slot of a gone device stays served: D1 and D2 are read-modify-writes of one
//! word, so one comes first in its modification order. If D2 does, D1 reads GONE and
//! the adopter retires its own slot. If D1 does, D2 reads D1's (release) write with
//! acquire, so S1 happens before S2, and S2 reads `LIVE(d)` (or a later value of the
//! slot) and retires it. Both may retire; retiring is idempotent. A plain load in D1
//! would not do: the two sides would be the store-buffering pattern, in which both
//! loads may read the old values.
//!
//! Why retiring never hits the wrong instance: the device index and the RETIRED bit
//! are one word, and [`SlotWord::retire`] is a compare-and-swap from `LIVE(dev)`, so it
//! cannot mark an instance of another device that took the slot since (kbp.ko's old
//! separate `dev` and `retired` fields could: the retire's check read the old device,
//! its store landed after the new owner's reset).
//!
//! kbp-model's loom model (l) checks this over loom's atomics.

use core::sync::atomic::Ordering;

use crate::atomic::{transition, AtomicWord};

const ABSENT: u32 = 0;
const SERVED: u32 = 1;
const GONE: u32 = 2;

/// The slot word's RETIRED bit; the device index `d` is stored as `(d + 1) << 1`.
const RETIRED: u32 = 1;
/// The slot word of an empty slot.
const EMPTY: u32 = 0;

/// Most devices a [`SlotWord`] can name.
pub const MAX_DEVICE: u32 = (u32::MAX >> 1) - 1;

const fn live(dev: u32) -> u32 {
    (dev + 1) << 1
}

/// Whether the embedder serves one device.
pub struct DeviceWord<W: AtomicWord> {
    word: W,
}

/// Outcome of [`unserve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Unserve {
    /// This caller moved the device from served to gone and retired its slots: it is
    /// the one that gives the device up (kbp.ko puts its reference).
    Won,
    /// The device was not served (never was, or someone else unserved it first).
    NotServed,
}

/// Outcome of [`SlotWord::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Bind {
    /// The slot serves the instance.
    Served,
    /// The device was unserved meanwhile: the slot holds the instance retired (the
    /// embedder passes it through to the kernel's path).
    Retired,
}

impl<W: AtomicWord> DeviceWord<W> {
    /// A device not (yet) served.
    pub fn new() -> Self {
        DeviceWord {
            word: W::new(ABSENT),
        }
    }

    /// The embedder now serves the device (it holds what it needs of it). Once only:
    /// a device that was unserved is never served again.
    pub fn serve(&self) {
        transition(&self.word, |w| {
            if w == ABSENT {
                (Some(SERVED), ())
            } else {
                (None, ())
            }
        })
    }

    /// Whether the device is served (a hint for the hook: [`SlotWord::bind`] decides).
    pub fn is_served(&self) -> bool {
        self.word.load(Ordering::Acquire) == SERVED
    }

    /// Still served, read by a read-modify-write (D1 in the module doc): a
    /// compare-and-swap of SERVED with itself, so that an [`unserve`] ordered after it
    /// sees everything its caller wrote before.
    fn confirm(&self) -> bool {
        loop {
            match self.word.compare_exchange_weak(
                SERVED,
                SERVED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(SERVED) => continue, // spurious failure
                Err(_) => return false,
            }
        }
    }

    /// SERVED -> GONE; true for the one caller that made the change.
    fn stop(&self) -> bool {
        transition(&self.word, |w| {
            if w == SERVED {
                (Some(GONE), true)
            } else {
                (None, false)
            }
        })
    }
}

impl<W: AtomicWord> Default for DeviceWord<W> {
    fn default() -> Self {
        Self::new()
    }
}

/// Which device a slot's instance belongs to, and whether it is retired.
pub struct SlotWord<W: AtomicWord> {
    word: W,
}

impl<W: AtomicWord> SlotWord<W> {
    /// An empty slot.
    pub fn new() -> Self {
        SlotWord {
            word: W::new(EMPTY),
        }
    }

    /// Records that the slot now holds an instance of device `dev` (`device` is its
    /// word), and confirms the device is still served; if it is not, retires the slot.
    /// The caller has won the slot exclusively (kbp.ko: its instance pointer's CAS from
    /// null) after it was [`SlotWord::clear`]ed or never used. `dev` is at most
    /// [`MAX_DEVICE`] (larger values are clamped, which only the embedder's own bug
    /// produces).
    pub fn bind(&self, dev: u32, device: &DeviceWord<W>) -> Bind {
        let dev = dev.min(MAX_DEVICE);
        // S1. Release: an unserver whose acquire RMW reads the device word after D1
        // sees it. A read-modify-write, as every write of the slot word (`set`).
        self.set(live(dev));
        // D1.
        if device.confirm() {
            Bind::Served
        } else {
            let _ = self.retire(dev);
            Bind::Retired
        }
    }

    /// `LIVE(dev)` -> `RETIRED(dev)`; true if this call retired it. Another device's
    /// instance, an empty or an already retired slot is left as it is.
    pub fn retire(&self, dev: u32) -> bool {
        let dev = dev.min(MAX_DEVICE);
        transition(&self.word, |w| {
            if w == live(dev) {
                (Some(live(dev) | RETIRED), true)
            } else {
                (None, false)
            }
        })
    }

    /// Empties the slot (its instance is being deleted). The embedder makes the slot
    /// claimable again only after this (kbp.ko: clears the instance pointer after).
    pub fn clear(&self) {
        self.set(EMPTY);
    }

    /// Writes `value` by a compare-and-swap: every write of the slot word is a
    /// read-modify-write, so the word's writes are totally ordered by what each read
    /// (a plain store racing [`SlotWord::retire`]'s CAS is as correct in C11, but loom
    /// orders a plain store only after what its thread has seen, and reports a CAS that
    /// read an older value as landing after it).
    fn set(&self, value: u32) {
        transition(&self.word, |_| (Some(value), ()))
    }

    /// True while the slot holds an instance of a served device, not retired.
    pub fn served(&self) -> bool {
        let w = self.word.load(Ordering::Acquire);
        w != EMPTY && w & RETIRED == 0
    }

    /// The device of the slot's instance (retired or not); None when empty.
    pub fn dev(&self) -> Option<u32> {
        // EMPTY (0) gives None; no other word below `live(0)` is ever written.
        (self.word.load(Ordering::Acquire) >> 1).checked_sub(1)
    }
}

impl<W: AtomicWord> Default for SlotWord<W> {
    fn default() -> Self {
        Self::new()
    }
}

/// Stops serving device `dev` (`device` is its word): the one caller that moves it from
/// served to gone (D2 in the module doc) then retires every slot of `slots` that holds
/// an instance of it (S2). Callers racing for the same device (kbp.ko: the notifier and
/// the unload) get one [`Unserve::Won`].
pub fn unserve<'a, W: AtomicWord + 'a>(
    device: &DeviceWord<W>,
    dev: u32,
    slots: impl IntoIterator<Item = &'a SlotWord<W>>,
) -> Unserve {
    if !device.stop() {
        return Unserve::NotServed;
    }
    for slot in slots {
        let _ = slot.retire(dev);
    }
    Unserve::Won
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicU32;

    #[test]
    fn bind_serve_retire_clear() {
        let device = DeviceWord::<AtomicU32>::new();
        let other = DeviceWord::<AtomicU32>::new();
        let slot = SlotWord::<AtomicU32>::new();
        assert_eq!(slot.dev(), None);
        assert!(!slot.served());
        // Not served yet: bound retired.
        assert_eq!(slot.bind(0, &device), Bind::Retired);
        assert!(!slot.served());
        assert_eq!(slot.dev(), Some(0));
        slot.clear();
        device.serve();
        other.serve();
        assert!(device.is_served());
        assert_eq!(slot.bind(0, &device), Bind::Served);
        assert!(slot.served());
        // Another device's retirement leaves it alone.
        assert_eq!(unserve(&other, 1, [&slot]), Unserve::Won);
        assert!(slot.served());
        assert_eq!(unserve(&device, 0, [&slot]), Unserve::Won);
        assert!(!slot.served());
        assert_eq!(slot.dev(), Some(0));
        // Once only; never served again.
        assert_eq!(unserve(&device, 0, [&slot]), Unserve::NotServed);
        device.serve();
        assert!(!device.is_served());
        // A retirement of device 0 does not touch a slot re-bound to device 1 (gone
        // too here, so bound retired), nor one of a served device.
        slot.clear();
        let third = DeviceWord::<AtomicU32>::new();
        third.serve();
        assert_eq!(slot.bind(2, &third), Bind::Served);
        assert!(!slot.retire(0));
        assert!(slot.served());
        assert_eq!(slot.dev(), Some(2));
    }
}
