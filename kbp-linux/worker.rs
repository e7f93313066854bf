// SPDX-License-Identifier: GPL-2.0
//! One KBP thread and the NAPI instances it serves.
//!
//! A [`Worker`] is pinned to one CPU of the `cpus` parameter and runs kbp-core's
//! [`Poller`] over its share of the instances: the module splits all instances, in the
//! order the devices list them, into one contiguous run per thread (so with one thread
//! per queue pair a queue's RX and TX instances stay together). Everything here belongs
//! to one thread; the notifier and debugfs reach it through the atomics.

use core::ffi::{c_int, c_void};
use core::sync::atomic::Ordering;

use kbp_core::atomic::transition;
use kbp_core::{AtomicWord, Config, Poller, ScheduleOutcome, Shared, StepOutcome};
use kernel::prelude::*;
use kernel::sync::atomic::{ordering, Atomic};

use crate::env::{KernelPlatform, KernelWord};
use crate::ffi;
use crate::params::MAX_DEVS;
use crate::port::NapiPort;
use crate::stats::Stats;

/// Most NAPI instances one KBP thread serves (kbp-core's poll-list capacity).
pub(crate) const CAP: usize = 16;

/// A KBP thread's instances and the state its callers share with it.
pub(crate) struct Worker {
    /// The CPU the thread is pinned to.
    pub(crate) cpu: i32,
    /// The validated configuration (the same for every thread).
    pub(crate) config: Config,
    /// kbp-core's shared state for the instances below.
    pub(crate) shared: Shared<KernelWord, CAP>,
    napis: [*mut ffi::Napi; CAP],
    /// Index into `devs` of each instance's device.
    napi_dev: [usize; CAP],
    /// Instances in use.
    pub(crate) count: usize,
    /// The module's devices (references are held by the module, not here).
    devs: [*mut ffi::NetDevice; MAX_DEVS],
    task: Atomic<*mut ffi::Task>,
    /// Bit d: the notifier asks the thread to let go of device d (it is unregistering).
    drop_request: KernelWord,
    /// Bit d: the thread has let go of device d for good.
    dropped: KernelWord,
    pub(crate) stats: Stats,
}

// SAFETY: the raw pointers are kernel objects (devices the module holds a reference on
// until they are dropped, their NAPI instances, our kthread) whose lifetimes the module
// manages; all state shared between threads is atomic.
unsafe impl Sync for Worker {}
// SAFETY: as above; nothing is tied to the creating thread.
unsafe impl Send for Worker {}

impl Worker {
    /// A worker for `napis` (with each one's device index in `napi_dev`); no thread yet.
    pub(crate) fn new(cpu: i32, config: Config, napis: &[*mut ffi::Napi], napi_dev: &[usize], devs: [*mut ffi::NetDevice; MAX_DEVS]) -> Self {
        let mut w = Worker {
            cpu,
            config,
            shared: Shared::new(),
            napis: [core::ptr::null_mut(); CAP],
            napi_dev: [0; CAP],
            count: napis.len().min(CAP),
            devs,
            task: Atomic::new(core::ptr::null_mut()),
            drop_request: KernelWord::new(0),
            dropped: KernelWord::new(0),
            stats: Stats::new(),
        };
        w.napis[..w.count].copy_from_slice(&napis[..w.count]);
        w.napi_dev[..w.count].copy_from_slice(&napi_dev[..w.count]);
        w
    }

    /// Creates the (not yet running) pinned kthread. The worker must not move or be
    /// freed until [`Worker::stop`] returned.
    pub(crate) fn create_thread(&self, fifo: bool) -> Result {
        let data = self as *const Worker as *mut c_void;
        // SAFETY: `data` outlives the thread (the module stops it before freeing us).
        let task = unsafe { ffi::kbp_thread_create(kbp_thread, data, self.cpu) };
        if task.is_null() {
            return Err(ENOMEM);
        }
        if fifo {
            // SAFETY: `task` is our kthread.
            unsafe { ffi::kbp_set_fifo(task) };
        }
        self.task.store(task, ordering::Release);
        Ok(())
    }

    /// Stops the thread (if it was created): it hands every instance back first.
    pub(crate) fn stop(&self) {
        let task = self.task();
        if task.is_null() {
            return;
        }
        // SAFETY: our kthread; `kthread_stop` wakes it and waits for `kbp_thread` to
        // return (or, never woken, makes sure it never runs).
        unsafe { ffi::kbp_thread_stop(task) };
        self.task.store(core::ptr::null_mut(), ordering::Release);
    }

    /// Pins the thread to its CPU again (that CPU just came back online; while it was
    /// offline the scheduler ran the thread elsewhere, and it kept serving).
    pub(crate) fn repin(&self) {
        let task = self.task();
        if task.is_null() {
            return;
        }
        // SAFETY: our live kthread (stopped only after the hotplug callback is removed).
        let rc = unsafe { ffi::kbp_thread_pin(task, self.cpu) };
        if rc != 0 {
            pr_warn!("cannot pin the KBP thread to CPU {} again ({})\n", self.cpu, rc);
        }
    }

    fn dev_bit(&self, id: usize) -> u32 {
        1 << self.napi_dev[id]
    }

    fn is_dropped(&self, id: usize) -> bool {
        self.is_dropped_dev(self.napi_dev[id])
    }

    fn is_dropped_dev(&self, d: usize) -> bool {
        self.dropped.load(Ordering::Acquire) & (1 << d) != 0
    }

    /// The thread serves some instance of device `d`.
    fn serves(&self, d: usize) -> bool {
        self.napi_dev[..self.count].contains(&d)
    }

    /// Kernel NAPI id of instance `id`, or -1 once its device is gone.
    pub(crate) fn napi_id(&self, id: usize) -> i32 {
        if self.is_dropped(id) {
            return -1;
        }
        // SAFETY: the device (and so its NAPIs) is alive while not dropped.
        unsafe { ffi::kbp_napi_id(self.napis[id]) }
    }

    /// Device name of instance `id`.
    pub(crate) fn dev_name(&self, id: usize) -> &[u8] {
        if self.is_dropped(id) {
            return b"(gone)";
        }
        // SAFETY: the module holds a reference on the device; its name is NUL-terminated.
        unsafe { core::ffi::CStr::from_ptr(ffi::kbp_dev_name(self.devs[self.napi_dev[id]])) }.to_bytes()
    }

    /// Some live instance was handed to this thread by an IRQ.
    pub(crate) fn any_handed_over(&self) -> bool {
        // SAFETY: live instances are valid (dropped ones are skipped).
        (0..self.count).any(|id| !self.is_dropped(id) && unsafe { ffi::kbp_napi_handed_over(self.napis[id]) })
    }

    fn task(&self) -> *mut ffi::Task {
        self.task.load(ordering::Acquire)
    }

    /// Installs (or removes) the wake hook on this thread's instances of device `d`.
    pub(crate) fn set_wake_hook(&self, d: usize, on: bool) {
        if self.is_dropped_dev(d) {
            return;
        }
        for id in (0..self.count).filter(|&id| self.napi_dev[id] == d) {
            // SAFETY: an instance of a registered device (the notifier runs under RTNL
            // before the device is unregistered); `task` is our live kthread.
            unsafe {
                if on {
                    ffi::kbp_napi_hijack(self.napis[id], self.task());
                } else {
                    ffi::kbp_napi_unhijack(self.napis[id], self.task());
                }
            }
        }
    }

    /// Asks the thread to let go of device `d` (notifier, before the device goes).
    pub(crate) fn request_drop(&self, d: usize) {
        if self.serves(d) {
            transition(&self.drop_request, |r| (Some(r | 1 << d), ()));
            self.wake();
        }
    }

    /// The thread no longer touches device `d` (true at once if it never served it).
    pub(crate) fn has_dropped(&self, d: usize) -> bool {
        !self.serves(d) || self.is_dropped_dev(d)
    }

    /// Wakes the thread.
    pub(crate) fn wake(&self) {
        let task = self.task();
        if !task.is_null() {
            // SAFETY: the task exists until `kthread_stop` returns, after which `task`
            // is reset to null before the worker is freed.
            unsafe { ffi::kbp_wake(task) };
        }
    }

    /// Lists the instances IRQs handed over (kbp-core's `schedule`, run by the thread).
    fn pick_up_handed_over(&self, platform: &KernelPlatform<'_>) {
        for id in 0..self.count {
            // SAFETY: live instances are valid.
            if !self.is_dropped(id) && unsafe { ffi::kbp_napi_handed_over(self.napis[id]) } {
                if let ScheduleOutcome::Fallback(token) = self.shared.schedule(id, platform) {
                    // Only possible for a detached instance, i.e. during shutdown.
                    let _ = self.shared.complete(token);
                }
            }
        }
    }

    /// Lets go of devices the notifier asked about (KBP thread).
    fn serve_drop_requests(&self, ports: &[NapiPort]) {
        let pending = self.drop_request.load(Ordering::Acquire) & !self.dropped.load(Ordering::Acquire);
        if pending == 0 {
            return;
        }
        for (id, port) in ports.iter().enumerate().take(self.count) {
            if pending & self.dev_bit(id) != 0 {
                port.kill();
                // SAFETY: the device is still registered (the notifier waits for us).
                unsafe { ffi::kbp_napi_unhijack(self.napis[id], self.task()) };
            }
        }
        transition(&self.dropped, |d| (Some(d | pending), ()));
    }
}

/// The KBP kthread: serves its worker's instances until `kthread_stop`.
extern "C" fn kbp_thread(data: *mut c_void) -> c_int {
    // SAFETY: `data` is a `Worker`, freed only after `kthread_stop` returned.
    let w = unsafe { &*(data as *const Worker) };
    let ports: [NapiPort; CAP] = core::array::from_fn(|id| {
        // SAFETY: instances stay valid until their device is dropped, and a dropped
        // device's port is killed first (`serve_drop_requests`).
        unsafe { NapiPort::new(w.napis[id], w.config.weight) }
    });
    let platform = KernelPlatform { worker: w };
    let Ok(mut poller) = Poller::new(&w.shared, &ports[..w.count], &platform, w.config) else {
        return EINVAL.to_errno();
    };
    poller.attach_all();
    let mut steps: u32 = 0;
    // SAFETY: called from the kthread itself.
    while !unsafe { ffi::kbp_should_stop() } {
        w.serve_drop_requests(&ports);
        w.pick_up_handed_over(&platform);
        let outcome = poller.step();
        steps = steps.wrapping_add(1);
        if steps % 256 == 0 || matches!(outcome, StepOutcome::Parked { .. }) {
            w.stats.publish(&poller, &ports[..w.count]);
        }
    }

    // Shutdown: remove the wake hook first (IRQs now go to NET_RX_SOFTIRQ), wait until
    // no IRQ can still be inside ____napi_schedule() with our task, hand over what an
    // IRQ gave us meanwhile, then let kbp-core hand back every instance it owns.
    for (id, port) in ports.iter().enumerate().take(w.count) {
        if !port.dead() {
            // SAFETY: a live instance.
            unsafe { ffi::kbp_napi_unhijack(w.napis[id], w.task()) };
        }
    }
    // SAFETY: process context, no locks held.
    unsafe { ffi::kbp_synchronize_rcu() };
    let report = poller.shutdown();
    for port in ports.iter().take(w.count) {
        port.release();
        port.flush_handed_over();
    }
    w.stats.publish(&poller, &ports[..w.count]);
    pr_info!("thread on CPU {} stopped; handed back {} instance(s), {} packet(s) on the way\n", w.cpu, report.released, report.packets);
    0
}
