//! A kernel NAPI instance served by a KBP poller: the protocol between kbp-core's
//! state word and the kernel's `napi->state`, written once, generic over [`Napi`].
//!
//! The kernel's `napi->state` stays the authority on the device side; kbp-core's word
//! is the KBP side. The protocol joins them without borrowing any field the kernel
//! manages for another purpose (no `napi->thread`, no THREADED bit):
//!
//! ```text
//!  device IRQ (any CPU)                         KBP poller thread
//!  --------------------                         -----------------
//!  napi_schedule_prep(): napi SCHED 0 -> 1
//!  (driver masks its IRQ)
//!  __napi_schedule(n)  --- entry hook --->  on_schedule():
//!    THREADED set?      -> PassThrough         (the kernel's own threaded NAPI)
//!    Shared::schedule(id):
//!      Queued / Missed  -> Divert: napi SCHED now belongs to KBP; NET_RX not raised
//!      Fallback(token)  -> complete(token), PassThrough (no poller serves it)
//!      Disabled/Unknown -> PassThrough
//!                                           NapiPort::poll():
//!                                             set IN_BUSY_POLL once (the driver's
//!                                             napi_complete_done() then returns false:
//!                                             its IRQ stays masked, SCHED stays ours)
//!                                             n->poll(min(budget, napi->weight))
//!                                           must_release(): DISABLE or THREADED set,
//!                                           or the embedder no longer serves it
//!                                           busy_pollable(): NO_BUSY_POLL clear (an
//!                                           instance the driver excludes from busy
//!                                           polling is released after every poll
//!                                           under its weight)
//!                                           Poller: complete KBP's word first, then
//!                                           NapiPort::rearm_irq() = release():
//!                                             clear MISSED, IN_BUSY_POLL (busy_poll_stop)
//!                                             n->poll() once more: the driver completes
//!                                             (SCHED 1 -> 0) and re-arms its IRQ;
//!                                             used the whole budget -> napi_complete()
//!                                             if a disable is pending, else
//!                                             __napi_schedule() (-> the hook again)
//! ```
//!
//! Invariants the protocol keeps (checked by kbp-model's simulation of `napi->state`):
//! - whoever holds KBP's token for an instance holds the kernel's SCHED for it, or is
//!   inside `release()` handing it back;
//! - the hook diverts only a caller that holds SCHED (the kernel's contract for
//!   `__napi_schedule`), so it never takes an instance from another owner;
//! - KBP lets go within one poll of seeing DISABLE, so `napi_disable()` waits for one
//!   round at most, and never for a parked poller (a parked poller owns nothing).

use crate::atomic::AtomicWord;
use crate::rx::{Reschedule, RxInstance, Unpark};
use crate::shared::{ScheduleOutcome, Shared};
use core::cell::Cell;

bitflags::bitflags! {
    /// The bits of the kernel's `napi->state` that the protocol reads (the kernel glue
    /// maps `NAPIF_STATE_*` to these).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct NapiBits: u32 {
        /// `NAPIF_STATE_SCHED`: somebody owns the instance.
        const SCHED = 1 << 0;
        /// `NAPIF_STATE_MISSED`: an IRQ came while it was owned.
        const MISSED = 1 << 1;
        /// `NAPIF_STATE_DISABLE`: `napi_disable()` is waiting for SCHED.
        const DISABLE = 1 << 2;
        /// `NAPIF_STATE_NPSVC`: held by a disabler (disabled, or never enabled).
        const NPSVC = 1 << 3;
        /// `NAPIF_STATE_IN_BUSY_POLL`: the owner polls it outside the softirq;
        /// `napi_complete_done()` returns false and leaves the IRQ masked.
        const IN_BUSY_POLL = 1 << 4;
        /// `NAPIF_STATE_THREADED`: the administrator chose the kernel's threaded NAPI.
        const THREADED = 1 << 5;
        /// `NAPIF_STATE_NO_BUSY_POLL`: the driver excluded the instance from busy
        /// polling (`netif_napi_add_tx` sets it, on virtio-net's TX-completion
        /// instances for one; such an instance gets no NAPI id): KBP polls it when it
        /// is scheduled and lets go as soon as a poll finishes under its weight,
        /// whatever its idle policy.
        const NO_BUSY_POLL = 1 << 6;
    }
}

/// What KBP needs of one kernel NAPI instance. The kernel module implements it on
/// `struct napi_struct` (C glue); kbp-model implements it on a simulation of
/// `napi->state` and a driver, so the protocol that is model-checked is this one.
///
/// Every method except [`Napi::state`] may be called only by the holder of the
/// instance's SCHED (KBP, through its token).
pub trait Napi {
    /// `READ_ONCE(napi->state)`, as [`NapiBits`].
    fn state(&self) -> NapiBits;

    /// The instance's own weight (`napi->weight`): KBP never asks a driver for more.
    fn weight(&self) -> u32;

    /// `set_bit(NAPI_STATE_IN_BUSY_POLL)`.
    fn set_in_busy_poll(&self);

    /// `busy_poll_stop()`'s first step: clear MISSED, then IN_BUSY_POLL.
    fn clear_in_busy_poll(&self);

    /// The driver's `napi->poll(napi, budget)` with what `__napi_poll()` does around it
    /// (netpoll lock, GRO flushes). Softirqs are masked by the caller. Returns the
    /// packets processed (at most `budget`).
    fn poll(&self, budget: u32) -> u32;

    /// The driver poll of the hand-back (`busy_poll_stop()`'s): IN_BUSY_POLL is clear,
    /// so a driver that finishes under `budget` completes the instance itself and may
    /// hand it to another poller at once; unless it returns `budget`, nothing of the
    /// instance (GRO included) may be touched after the driver's poll.
    fn hand_back_poll(&self, budget: u32) -> u32 {
        self.poll(budget)
    }

    /// False for an empty place (the instance was deleted): nothing to poll or hand
    /// back. The bits never say so (netpoll sets NPSVC without owning SCHED).
    fn present(&self) -> bool {
        true
    }

    /// False once the embedder stopped serving the instance (its device left the
    /// namespace it was named in, or unregistered): KBP lets go at its next poll, as
    /// for THREADED, and its entry hook passes the instance through from then on.
    fn served(&self) -> bool {
        true
    }

    /// Runs `f` with softirqs masked on this CPU (`local_bh_disable()` .. `enable()`).
    fn with_softirqs_masked(&self, f: &mut dyn FnMut());

    /// `napi_complete(napi)`: let go after a poll that used its whole budget.
    fn complete(&self);

    /// `__napi_schedule(napi)`: hand SCHED to whoever serves the instance (for an owned
    /// instance that is the entry hook, [`on_schedule`], again).
    fn schedule(&self);
}

/// The entry hook's verdict for one `__napi_schedule()` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Hook {
    /// KBP took the instance: skip the kernel's function (no softirq, no thread wake).
    Divert,
    /// Let the kernel's function run: softirq, or the kernel's threaded NAPI.
    PassThrough,
}

/// The entry hook of `__napi_schedule()` / `__napi_schedule_irqoff()` for an instance
/// KBP serves as `id` of `shared`, whose `napi->state` reads `bits`. The caller holds
/// the kernel's SCHED (the kernel's contract for these functions) and hands it over
/// when the answer is [`Hook::Divert`].
pub fn on_schedule<A: AtomicWord, W: Unpark + ?Sized, const N: usize>(
    shared: &Shared<A, N>,
    id: usize,
    bits: NapiBits,
    waker: &W,
) -> Hook {
    if bits.contains(NapiBits::THREADED) {
        // The administrator switched this instance to the kernel's threaded NAPI.
        return Hook::PassThrough;
    }
    match shared.schedule(id, waker) {
        ScheduleOutcome::Queued { .. } | ScheduleOutcome::Missed => Hook::Divert,
        ScheduleOutcome::Fallback(mut token) => {
            // No poller serves it (shutting down): the kernel's path takes it.
            while let Err(back) = shared.complete(token) {
                token = back;
            }
            Hook::PassThrough
        }
        ScheduleOutcome::Disabled | ScheduleOutcome::Unknown => Hook::PassThrough,
    }
}

/// One kernel NAPI instance as kbp-core's [`RxInstance`]. Used by the poller thread
/// only; `N` is typically a slot that names the instance.
pub struct NapiPort<N: Napi> {
    napi: N,
    /// We set IN_BUSY_POLL on the instance and have not cleared it yet.
    busy: Cell<bool>,
    /// NO_BUSY_POLL clear, read once per ownership (at the poll that sets IN_BUSY_POLL):
    /// the driver sets the bit before it adds the instance and nothing clears it, so
    /// the poll loop does not read `napi->state` again for it.
    busy_pollable: Cell<bool>,
    /// Packets processed by the hand-back polls of [`NapiPort::release`].
    release_packets: Cell<u64>,
}

impl<N: Napi> NapiPort<N> {
    /// A port for `napi`; KBP owns nothing yet.
    pub const fn new(napi: N) -> Self {
        NapiPort {
            napi,
            busy: Cell::new(false),
            busy_pollable: Cell::new(true),
            release_packets: Cell::new(0),
        }
    }

    /// The instance.
    pub fn napi(&self) -> &N {
        &self.napi
    }

    /// Packets processed while handing the instance back.
    pub fn release_packets(&self) -> u64 {
        self.release_packets.get()
    }

    /// True while KBP keeps the driver's interrupt masked with IN_BUSY_POLL.
    pub fn busy(&self) -> bool {
        self.busy.get()
    }

    /// Hands the instance back to the kernel (`busy_poll_stop()`): clear MISSED and
    /// IN_BUSY_POLL, poll once more so the driver completes and re-arms its interrupt;
    /// if that poll used the whole budget the instance is still owned: complete it when
    /// a disable is pending, else schedule it again (which reaches the hook).
    pub fn release(&self) {
        self.busy.set(false);
        if !self.napi.present() {
            return;
        }
        // KBP holds SCHED until the driver's poll below completes the instance, so the
        // weight is read while the instance is still ours.
        let budget = self.napi.weight().max(1);
        let mut work = 0;
        self.napi.with_softirqs_masked(&mut || {
            self.napi.clear_in_busy_poll();
            work = self.napi.hand_back_poll(budget);
            if work >= budget {
                // Still ours: the driver does not complete a poll that used its budget.
                if self.napi.state().contains(NapiBits::DISABLE) {
                    self.napi.complete();
                } else {
                    self.napi.schedule();
                }
            }
        });
        self.release_packets
            .set(self.release_packets.get() + u64::from(work.min(budget)));
    }
}

impl<N: Napi> RxInstance for NapiPort<N> {
    fn poll(&self, budget: u32) -> u32 {
        if self.must_release() {
            // Let go at once: the poller releases after this poll.
            return 0;
        }
        if !self.busy.replace(true) {
            self.busy_pollable
                .set(!self.napi.state().contains(NapiBits::NO_BUSY_POLL));
            self.napi.set_in_busy_poll();
        }
        let budget = budget.min(self.napi.weight()).max(1);
        self.napi.poll(budget).min(budget)
    }

    fn busy_pollable(&self) -> bool {
        self.busy_pollable.get()
    }

    fn take_idle(&self) -> bool {
        // Only the driver's own IRQ path masks its interrupt before scheduling; an
        // instance taken without it would interrupt for every packet. Wait for it.
        false
    }

    fn must_release(&self) -> bool {
        // Not NPSVC: netpoll sets it for a moment without owning SCHED
        // (netpoll.c poll_one_napi); KBP keeps the instance and netpoll_poll_lock
        // serialises the two polls.
        !self.napi.present()
            || !self.napi.served()
            || self
                .napi
                .state()
                .intersects(NapiBits::DISABLE | NapiBits::THREADED)
    }

    fn rearm_irq(&self, _id: usize, _irq: &dyn Reschedule) {
        // The hand-back poll re-arms the driver's interrupt, and a driver that finds
        // work reschedules through `__napi_schedule()`, which reaches the entry hook.
        self.release();
    }
}
