// SPDX-License-Identifier: GPL-2.0
//! kbp-core's two backends in the kernel: [`KernelWord`] (the atomic word, on the
//! kernel's cmpxchg-based atomics) and [`KernelPlatform`] (BH masking, clock, RCU-tasks
//! quiescent states, park/unpark of the KBP kthread).

use core::sync::atomic::Ordering;

use kbp_core::{AtomicWord, Nanos, Platform};
use kernel::sync::atomic::{ordering, Atomic};

use crate::ffi;
use crate::worker::Worker;

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

    fn compare_exchange_weak(&self, current: u32, new: u32, success: Ordering, _failure: Ordering) -> Result<u32, u32> {
        match success {
            Ordering::Relaxed => self.0.cmpxchg(current, new, ordering::Relaxed),
            Ordering::Acquire => self.0.cmpxchg(current, new, ordering::Acquire),
            Ordering::Release => self.0.cmpxchg(current, new, ordering::Release),
            _ => self.0.cmpxchg(current, new, ordering::Full),
        }
    }
}

/// Softirqs (bottom halves) masked on this CPU while alive.
pub(crate) struct BhGuard(());

impl Drop for BhGuard {
    fn drop(&mut self) {
        // SAFETY: paired with the `kbp_bh_disable` in `mask_softirqs` that made this guard.
        unsafe { ffi::kbp_bh_enable() };
    }
}

/// The KBP kthread's environment.
pub(crate) struct KernelPlatform<'a> {
    pub(crate) worker: &'a Worker,
}

impl Platform for KernelPlatform<'_> {
    type SoftirqGuard = BhGuard;

    fn mask_softirqs(&self) -> BhGuard {
        // SAFETY: process context (the KBP kthread); re-enabled when the guard drops.
        unsafe { ffi::kbp_bh_disable() };
        BhGuard(())
    }

    fn now(&self) -> Nanos {
        // SAFETY: `local_clock` may be called from any context.
        unsafe { ffi::kbp_now_ns() }
    }

    fn quiescent(&self) {
        // SAFETY: process context without locks held: `cond_resched_tasks_rcu_qs` may sleep.
        unsafe { ffi::kbp_quiescent() }
    }

    fn park(&self, still_parked: &dyn Fn() -> bool) {
        // Set the task state first, then check, then sleep: a wake-up between the check
        // and `schedule()` makes the task runnable again, so it is not lost.
        // SAFETY: the KBP kthread parks itself; process context.
        unsafe { ffi::kbp_prepare_to_sleep() };
        // SAFETY: called from the kthread itself.
        let stop = unsafe { ffi::kbp_should_stop() };
        if still_parked() && !stop && !self.worker.any_handed_over() {
            // SAFETY: TASK_INTERRUPTIBLE is set; an IRQ's wake_up_process or kthread_stop wakes us.
            unsafe { ffi::kbp_sleep() };
        }
        // SAFETY: restores TASK_RUNNING for the current task.
        unsafe { ffi::kbp_set_running() };
    }

    fn unpark(&self) {
        self.worker.wake();
    }
}
