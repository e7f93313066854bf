// SPDX-License-Identifier: GPL-2.0
//! One NAPI instance as kbp-core's [`RxInstance`].
//!
//! kbp-core's state word is the KBP-side view; the kernel's `napi->state` is the
//! device-side one. The port keeps them consistent: it polls only while it holds the
//! kernel's SCHED|IN_BUSY_POLL (`owned`), takes that on demand (a busy-poll cmpxchg,
//! or accepting an instance an IRQ handed to the KBP thread), and gives it back at the
//! first poll after a `napi_disable` started, and whenever kbp-core releases it.

use core::cell::Cell;

use kbp_core::RxInstance;

use crate::ffi;

/// A NAPI instance served by the KBP thread (used by that thread only).
pub(crate) struct NapiPort {
    napi: *mut ffi::Napi,
    owned: Cell<bool>,
    /// The device is gone: never touch `napi` again.
    dead: Cell<bool>,
    weight: i32,
    /// Packets processed by the hand-back polls (not seen by kbp-core's counters).
    pub(crate) release_packets: Cell<u64>,
}

impl NapiPort {
    /// # Safety
    /// `napi` must stay valid until [`NapiPort::kill`] is called or the port is dropped.
    pub(crate) unsafe fn new(napi: *mut ffi::Napi, weight: u32) -> Self {
        NapiPort { napi, owned: Cell::new(false), dead: Cell::new(false), weight: weight as i32, release_packets: Cell::new(0) }
    }

    /// True while the KBP thread holds the kernel's SCHED for this instance.
    pub(crate) fn owned(&self) -> bool {
        self.owned.get()
    }

    fn try_own(&self) -> bool {
        if !self.owned.get() && !self.dead.get() {
            // SAFETY: `napi` is valid while the port is not dead (constructor contract).
            self.owned.set(unsafe { ffi::kbp_napi_try_own(self.napi) });
        }
        self.owned.get()
    }

    /// Hands the kernel instance back: final poll, `napi_complete_done`, IRQ re-armed.
    pub(crate) fn release(&self) {
        if self.owned.replace(false) {
            // SAFETY: we own SCHED of a valid instance; the glue disables BH itself.
            let rc = unsafe { ffi::kbp_napi_release(self.napi, self.weight) };
            self.release_packets.set(self.release_packets.get() + rc.max(0) as u64);
        }
    }

    /// Takes over and hands back an instance an IRQ handed to the thread while no
    /// kbp-core owner existed (used at shutdown, after the wake hook is removed).
    pub(crate) fn flush_handed_over(&self) {
        if self.try_own() {
            self.release();
        }
    }

    /// The device is going away: hand back, then never touch the instance again.
    pub(crate) fn kill(&self) {
        self.release();
        self.dead.set(true);
    }

    /// True once the device is gone.
    pub(crate) fn dead(&self) -> bool {
        self.dead.get()
    }
}

impl RxInstance for NapiPort {
    fn poll(&self, budget: u32) -> u32 {
        if !self.try_own() {
            return 0;
        }
        // SAFETY: owned and not dead, so `napi` is valid.
        if unsafe { ffi::kbp_napi_disable_pending(self.napi) } {
            // napi_disable() waits for SCHED: let go now, even with work left.
            self.release();
            return 0;
        }
        // SAFETY: we own SCHED|IN_BUSY_POLL; BH is disabled by kbp-core's guard.
        let work = unsafe { ffi::kbp_napi_poll(self.napi, budget as i32) };
        work.max(0) as u32
    }

    fn mask_irq(&self) {
        // Owning SCHED|IN_BUSY_POLL is what keeps the driver's IRQ masked.
        let _ = self.try_own();
    }

    fn rearm_irq(&self) {
        // Release also takes over an instance an IRQ handed over meanwhile.
        let _ = self.try_own();
        self.release();
    }
}
