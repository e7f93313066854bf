// SPDX-License-Identifier: GPL-2.0
//! kbp-core's backends in the kernel: [`KernelWord`] (the atomic word, on the kernel's
//! cmpxchg-based atomics), [`Thread`] (a KBP kthread, held by a task reference) and
//! [`KernelPlatform`] (BH masking, clock, RCU-tasks quiescent states, park/unpark).

use core::ffi::{c_int, c_void};
use core::sync::atomic::Ordering;

use kbp_core::{AtomicWord, Nanos, Platform, Unpark};
use kernel::prelude::*;
use kernel::sync::atomic::{ordering, Atomic};

use crate::sys;

/// kbp-core's atomic word on `kernel::sync::atomic::Atomic<u32>` (kernel memory model).
/// A C11 ordering maps to the kernel ordering that is at least as strong.
pub(crate) struct KernelWord(Atomic<u32>);

impl AtomicWord for KernelWord {
    fn new(value: u32) -> Self {
        KernelWord(Atomic::new(value))
    }

    fn load(&self, order: Ordering) -> u32 {
        match order {
            Ordering::Relaxed => self.0.load(ordering::Relaxed),
            _ => self.0.load(ordering::Acquire),
        }
    }

    fn store(&self, value: u32, order: Ordering) {
        match order {
            Ordering::Relaxed => self.0.store(value, ordering::Relaxed),
            _ => self.0.store(value, ordering::Release),
        }
    }

    fn compare_exchange_weak(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        let result = match success {
            Ordering::Relaxed => self.0.cmpxchg(current, new, ordering::Relaxed),
            Ordering::Acquire => self.0.cmpxchg(current, new, ordering::Acquire),
            Ordering::Release => self.0.cmpxchg(current, new, ordering::Release),
            _ => self.0.cmpxchg(current, new, ordering::Full),
        };
        match result {
            // A failed kernel cmpxchg orders nothing (a relaxed read), whatever the
            // ordering asked for on success (rust/kernel/sync/atomic.rs). Where the
            // caller asked for more on failure, answer with an acquire load instead: a
            // later value of the word, which a weak compare-exchange may return (the
            // callers' loops retry with it).
            Err(_) if failure != Ordering::Relaxed => Err(self.0.load(ordering::Acquire)),
            other => other,
        }
    }
}

/// A KBP kthread.
///
/// # Invariants
/// `task` is null, or a kthread on which this object holds a task reference (taken by
/// [`Thread::create`], dropped by [`Thread::stop`]), so waking it is always sound.
pub(crate) struct Thread {
    task: Atomic<*mut sys::RawTask>,
}

impl Thread {
    pub(crate) const fn new() -> Self {
        Thread {
            task: Atomic::new(core::ptr::null_mut()),
        }
    }

    /// Creates the (not yet running) kthread `kbp/<cpu>`, pinned to `cpu`, running
    /// `f(data)`.
    ///
    /// # Safety
    /// `data` stays valid until [`Thread::stop`] returned.
    pub(crate) unsafe fn create(
        &self,
        f: extern "C" fn(*mut c_void) -> c_int,
        data: *mut c_void,
        cpu: i32,
        fifo: bool,
    ) -> Result {
        // SAFETY: the caller's guarantee covers `data`.
        let task = unsafe { sys::thread_create(f, data, cpu) };
        if task.is_null() {
            return Err(ENOMEM);
        }
        if fifo {
            // SAFETY: we hold a reference on `task`.
            unsafe { sys::set_fifo(task) };
        }
        // INVARIANT: `thread_create` took a task reference for us.
        self.task.store(task, ordering::Release);
        Ok(())
    }

    /// Wakes the thread (any context).
    pub(crate) fn wake(&self) {
        let task = self.task.load(ordering::Acquire);
        if !task.is_null() {
            // SAFETY: we hold a reference on `task` (type invariant).
            unsafe { sys::wake(task) };
        }
    }

    /// Pins the thread to `cpu` again (that CPU came back online).
    pub(crate) fn repin(&self, cpu: i32) {
        let task = self.task.load(ordering::Acquire);
        if task.is_null() {
            return;
        }
        // SAFETY: we hold a reference on `task` (type invariant).
        let rc = unsafe { sys::thread_pin(task, cpu) };
        if rc != 0 {
            pr_warn!("cannot pin the KBP thread to CPU {} again ({})\n", cpu, rc);
        }
    }

    /// Stops the thread (it hands every instance back first) and drops the reference.
    /// Must not race [`Thread::wake`]'s callers (the entry hook is unregistered first).
    pub(crate) fn stop(&self) {
        let task = self.task.xchg(core::ptr::null_mut(), ordering::Full);
        if !task.is_null() {
            // SAFETY: created by `create` and not stopped yet (we swapped it out).
            unsafe { sys::thread_stop_put(task) };
        }
    }
}

/// Softirqs (bottom halves) masked on this CPU while alive.
pub(crate) struct BhGuard(());

impl BhGuard {
    pub(crate) fn new() -> Self {
        // SAFETY: process context (a KBP kthread); re-enabled when the guard drops.
        unsafe { sys::bh_disable() };
        BhGuard(())
    }
}

impl Drop for BhGuard {
    fn drop(&mut self) {
        // SAFETY: paired with the `bh_disable` in `BhGuard::new`, on this CPU (BH
        // disabled also disables migration).
        unsafe { sys::bh_enable() };
    }
}

/// A KBP kthread's environment, as kbp-core's [`Platform`].
pub(crate) struct KernelPlatform<'a> {
    pub(crate) thread: &'a Thread,
}

impl Platform for KernelPlatform<'_> {
    type SoftirqGuard = BhGuard;

    fn mask_softirqs(&self) -> BhGuard {
        BhGuard::new()
    }

    fn now(&self) -> Nanos {
        sys::now_ns()
    }

    fn quiescent(&self) {
        // SAFETY: called by the poller between rounds: process context, no lock held.
        unsafe { sys::quiescent() }
    }

    fn park(&self, still_parked: &dyn Fn() -> bool, deadline: Option<Nanos>) {
        let for_ns = match deadline {
            None => None,
            Some(deadline) => match deadline.checked_sub(sys::now_ns()) {
                Some(left) if left > 0 => Some(left),
                // Already passed: return at once (an early return is allowed).
                _ => return,
            },
        };
        // SAFETY: only the poller parks, and a worker's poller runs on its own kthread
        // (worker.rs, `serve`): process context, no spinlock held, BHs enabled (the
        // poller masks them only around a poll). kbp-core's `still_parked` reads the
        // park word only.
        unsafe { sys::sleep_unless(still_parked, for_ns) };
    }
}

impl Unpark for KernelPlatform<'_> {
    fn unpark(&self) {
        self.thread.wake();
    }
}
