// SPDX-License-Identifier: GPL-2.0
//! A KBP thread's place for one kernel NAPI instance ([`Slot`]), and the instance seen
//! through it as kbp-core's [`Napi`] ([`SlotNapi`]), which kbp-core's [`NapiPort`]
//! drives: the protocol itself (take-over, IN_BUSY_POLL ownership, hand-back, disable
//! handshake, hook decision) is kbp-core's `napi` module, not this file.
//!
//! [`NapiPort`]: kbp_core::NapiPort
//!
//! # Lifetime rule for `Slot::napi`
//!
//! The pointer is set when the module reads the device's instances under its instance
//! lock (with the delete observer already registered), or by the entry hook when an
//! instance of a served device is scheduled for the first time (its caller holds the
//! instance's SCHED, so it is alive and not being deleted). It is cleared only by the
//! delete observer at `__netif_napi_del_locked()` (instance lock held; the instance is
//! disabled or was never enabled, so KBP owns nothing of it; `free_netdev()` deletes
//! the instances left, out of line). A driver frees a
//! deleted instance only after `synchronize_net()`. KBP dereferences it only while it
//! holds the instance's SCHED (the thread, between the hook's hand-over and the end of
//! the hand-back, with BH disabled around every poll) or in the entry hook (whose
//! caller holds SCHED). So no dereference outlives the instance. Elsewhere (the hook's
//! and the delete observer's look-ups, [`Slot::claim`]'s CAS) it is only compared.
//!
//! # The slot's device and RETIRED bit: one word
//!
//! Which device the instance belongs to and whether the module still serves it is
//! kbp-core's [`SlotWord`] (device index and RETIRED bit in one atomic word), written
//! by the protocol of `kbp_core::binding` (loom model (l) in kbp-model): the claimer
//! binds the slot and then confirms its device is still served by a read-modify-write
//! of the device's word, and the notifier (or the unload) moves the device word to GONE
//! and then retires the slots that hold its instances, each by a CAS from `LIVE(dev)`.
//! Whichever comes second sees the other, so an instance adopted as its device leaves
//! is retired (the review's `Slot::claim` vs `Worker::retire_dev` race), and a retire
//! never marks an instance of another device that took the slot since.

use kbp_core::{Bind, DeviceWord, Napi, NapiBits, SlotWord};
use kernel::sync::atomic::{ordering, Atomic};

use crate::platform::{BhGuard, KernelWord};
use crate::sys::{self, RawNapi};

/// No device: the slot was never used.
pub(crate) const NO_DEV: u32 = u32::MAX;

/// One instance place of a KBP thread.
pub(crate) struct Slot {
    /// The instance, or null (see the module doc for the lifetime rule). Its CAS from
    /// null is the claim: one claimer wins an empty slot.
    pub(crate) napi: Atomic<*mut RawNapi>,
    /// The instance's device and whether it is still served (see the module doc).
    pub(crate) binding: SlotWord<KernelWord>,
    /// The device of the last instance the slot held, or [`NO_DEV`]: for debugfs only
    /// (it keeps naming the device after the instance was deleted); the protocol reads
    /// `binding`.
    pub(crate) shown_dev: Atomic<u32>,
    /// Its last known `napi_id` (published for debugfs by the owner).
    pub(crate) napi_id: Atomic<i32>,
}

impl Slot {
    pub(crate) fn new() -> Self {
        Slot {
            napi: Atomic::new(core::ptr::null_mut()),
            binding: SlotWord::new(),
            shown_dev: Atomic::new(NO_DEV),
            napi_id: Atomic::new(-1),
        }
    }

    /// The instance, or null.
    pub(crate) fn get(&self) -> *mut RawNapi {
        self.napi.load(ordering::Acquire)
    }

    /// Puts `napi` of device `dev` (whose served word is `device`) into the slot if it
    /// is empty: None if it is taken, else whether the slot serves it or found the
    /// device gone meanwhile and holds it retired ([`SlotWord::bind`]).
    pub(crate) fn claim(
        &self,
        napi: *mut RawNapi,
        dev: u32,
        device: &DeviceWord<KernelWord>,
    ) -> Option<Bind> {
        // The delete observer empties `binding` before it clears the pointer, so the
        // winner of this CAS binds an empty word.
        self.napi
            .cmpxchg(core::ptr::null_mut(), napi, ordering::Full)
            .ok()?;
        self.shown_dev.store(dev, ordering::Relaxed);
        Some(self.binding.bind(dev, device))
    }

    /// True while the instance is served: its slot is bound and not retired.
    pub(crate) fn served(&self) -> bool {
        self.binding.served()
    }

    /// Forgets the instance (it is being deleted): the word first, then the pointer
    /// that makes the slot claimable.
    pub(crate) fn clear(&self) {
        self.binding.clear();
        self.napi.store(core::ptr::null_mut(), ordering::Release);
    }
}

/// The instance in a slot, as kbp-core's [`Napi`]. An empty slot is not
/// [`Napi::present`], so the protocol lets it go and never polls it.
pub(crate) struct SlotNapi<'a>(pub(crate) &'a Slot);

impl SlotNapi<'_> {
    /// The instance, which the caller (the protocol, holding SCHED) may use.
    fn owned(&self) -> Option<*mut RawNapi> {
        let n = self.0.get();
        (!n.is_null()).then_some(n)
    }
}

impl Napi for SlotNapi<'_> {
    fn state(&self) -> NapiBits {
        match self.owned() {
            // SAFETY: kbp-core's port reads the state only while KBP holds the
            // instance's SCHED (lifetime rule in the module doc).
            Some(n) => NapiBits::from_bits_truncate(unsafe { sys::napi_bits(n) }),
            None => NapiBits::empty(),
        }
    }

    fn present(&self) -> bool {
        self.owned().is_some()
    }

    fn served(&self) -> bool {
        self.0.served()
    }

    fn hand_back_poll(&self, budget: u32) -> u32 {
        let Some(n) = self.owned() else { return 0 };
        // SAFETY: KBP holds SCHED until this poll completes the instance, IN_BUSY_POLL
        // is clear and BH disabled (`NapiPort::release`, inside `with_softirqs_masked`).
        unsafe { sys::napi_hand_back_poll(n, budget) }
    }

    fn weight(&self) -> u32 {
        match self.owned() {
            // SAFETY: as in `state`.
            Some(n) => unsafe { sys::napi_weight(n) },
            None => 1,
        }
    }

    fn set_in_busy_poll(&self) {
        if let Some(n) = self.owned() {
            // SAFETY: the port calls this only while KBP holds SCHED.
            unsafe { sys::napi_set_in_busy_poll(n) };
        }
    }

    fn clear_in_busy_poll(&self) {
        if let Some(n) = self.owned() {
            // SAFETY: as above.
            unsafe { sys::napi_clear_in_busy_poll(n) };
        }
    }

    fn poll(&self, budget: u32) -> u32 {
        let Some(n) = self.owned() else { return 0 };
        // SAFETY: KBP holds SCHED; BH is disabled by the caller (kbp-core's guard or
        // `with_softirqs_masked`).
        self.0
            .napi_id
            .store(unsafe { sys::napi_id(n) }, ordering::Relaxed);
        // SAFETY: as above.
        unsafe { sys::napi_poll(n, budget) }
    }

    fn with_softirqs_masked(&self, f: &mut dyn FnMut()) {
        let _masked = BhGuard::new();
        f();
    }

    fn complete(&self) {
        if let Some(n) = self.owned() {
            // SAFETY: KBP holds SCHED after a poll that used its whole budget; BH is
            // disabled (called inside `with_softirqs_masked`).
            unsafe { sys::napi_complete(n) };
        }
    }

    fn schedule(&self) {
        if let Some(n) = self.owned() {
            // SAFETY: KBP holds SCHED and hands it over (to its own entry hook, or
            // to the kernel's path when the instance is no longer served).
            unsafe { sys::napi_schedule(n) };
        }
    }
}
