// SPDX-License-Identifier: GPL-2.0
//! Every C function kbp.ko calls (`kbp_glue.c`, see `kbp_glue.h`), each behind a safe
//! wrapper, or an `unsafe fn` whose `# Safety` names what the caller must guarantee.
//! No other file of the crate declares or calls an extern function.

use core::ffi::{c_char, c_int, c_uint, c_void, CStr};
use core::marker::PhantomData;

/// `struct napi_struct` (opaque).
#[repr(C)]
pub(crate) struct RawNapi {
    _opaque: [u8; 0],
}

/// `struct net_device` (opaque).
#[repr(C)]
pub(crate) struct RawNetDevice {
    _opaque: [u8; 0],
}

/// `struct task_struct` (opaque).
#[repr(C)]
pub(crate) struct RawTask {
    _opaque: [u8; 0],
}

mod ffi {
    use super::*;

    unsafe extern "C" {
        pub(super) fn kbp_param_ifaces() -> *const c_char;
        pub(super) fn kbp_param_mode() -> *const c_char;
        pub(super) fn kbp_param_cpus() -> *const c_char;
        pub(super) fn kbp_param_weight() -> c_uint;
        pub(super) fn kbp_param_budget() -> c_uint;
        pub(super) fn kbp_param_time_limit_us() -> c_uint;
        pub(super) fn kbp_param_spin_window_us() -> c_uint;
        pub(super) fn kbp_param_idle_release_us() -> c_uint;
        pub(super) fn kbp_param_fifo() -> bool;

        pub(super) fn kbp_rtnl_lock();
        pub(super) fn kbp_rtnl_unlock();
        pub(super) fn kbp_dev_get(
            name: *const c_char,
            len: usize,
            pid: c_int,
            err: *mut c_int,
        ) -> *mut RawNetDevice;
        pub(super) fn kbp_dev_put(dev: *mut RawNetDevice);
        pub(super) fn kbp_dev_lock(dev: *mut RawNetDevice);
        pub(super) fn kbp_dev_unlock(dev: *mut RawNetDevice);
        pub(super) fn kbp_dev_napis(
            dev: *mut RawNetDevice,
            out: *mut *mut RawNapi,
            max: c_int,
        ) -> c_int;
        pub(super) fn kbp_napi_serves_rx(dev: *mut RawNetDevice, n: *const RawNapi) -> bool;
        pub(super) fn kbp_napi_id(n: *const RawNapi) -> c_int;
        pub(super) fn kbp_napi_dev(n: *const RawNapi) -> *mut RawNetDevice;

        pub(super) fn kbp_napi_bits(n: *const RawNapi) -> u32;
        pub(super) fn kbp_napi_weight(n: *const RawNapi) -> u32;
        pub(super) fn kbp_napi_set_in_busy_poll(n: *mut RawNapi);
        pub(super) fn kbp_napi_clear_in_busy_poll(n: *mut RawNapi);
        pub(super) fn kbp_napi_poll(n: *mut RawNapi, budget: c_int) -> c_int;
        pub(super) fn kbp_napi_hand_back_poll(n: *mut RawNapi, budget: c_int) -> c_int;
        pub(super) fn kbp_napi_complete(n: *mut RawNapi);
        pub(super) fn kbp_napi_schedule(n: *mut RawNapi);

        pub(super) fn kbp_delete_hook_register() -> c_int;
        pub(super) fn kbp_schedule_hook_register() -> c_int;
        pub(super) fn kbp_schedule_hook_unregister();
        pub(super) fn kbp_delete_hook_unregister();

        pub(super) fn kbp_bh_disable();
        pub(super) fn kbp_bh_enable();
        pub(super) fn kbp_now_ns() -> u64;
        pub(super) fn kbp_quiescent();
        pub(super) fn kbp_prepare_to_sleep();
        pub(super) fn kbp_sleep();
        pub(super) fn kbp_sleep_for(ns: u64);
        pub(super) fn kbp_set_running();
        pub(super) fn kbp_wake(t: *mut RawTask);
        pub(super) fn kbp_thread_create(
            f: extern "C" fn(*mut c_void) -> c_int,
            data: *mut c_void,
            cpu: c_int,
        ) -> *mut RawTask;
        pub(super) fn kbp_should_stop() -> bool;
        pub(super) fn kbp_thread_stop_put(t: *mut RawTask) -> c_int;
        pub(super) fn kbp_set_fifo(t: *mut RawTask);
        pub(super) fn kbp_cpu_usable(cpu: c_int) -> bool;
        pub(super) fn kbp_thread_pin(t: *mut RawTask, cpu: c_int) -> c_int;

        pub(super) fn kbp_notifier_register() -> c_int;
        pub(super) fn kbp_notifier_unregister();
        pub(super) fn kbp_debugfs_create() -> c_int;
        pub(super) fn kbp_debugfs_remove();
        pub(super) fn kbp_cpuhp_register() -> c_int;
        pub(super) fn kbp_cpuhp_unregister();
    }
}

// ---- Module parameters -------------------------------------------------------------

fn param_str(p: *const c_char) -> &'static [u8] {
    // SAFETY: the glue returns a pointer to a NUL-terminated module parameter buffer
    // that lives as long as the module.
    unsafe { CStr::from_ptr(p) }.to_bytes()
}

/// The `ifaces`, `mode` and `cpus` string parameters.
pub(crate) fn param_strings() -> (&'static [u8], &'static [u8], &'static [u8]) {
    // SAFETY: the getters only return the address of a static buffer.
    let (ifaces, mode, cpus) = unsafe {
        (
            ffi::kbp_param_ifaces(),
            ffi::kbp_param_mode(),
            ffi::kbp_param_cpus(),
        )
    };
    (param_str(ifaces), param_str(mode), param_str(cpus))
}

/// The integer parameters: weight, budget, time_limit_us, spin_window_us, fifo.
pub(crate) fn param_numbers() -> (u32, u32, u32, u32, bool) {
    // SAFETY: plain reads of integer module parameters.
    unsafe {
        (
            ffi::kbp_param_weight(),
            ffi::kbp_param_budget(),
            ffi::kbp_param_time_limit_us(),
            ffi::kbp_param_spin_window_us(),
            ffi::kbp_param_fifo(),
        )
    }
}

/// The `idle_release_us` parameter.
pub(crate) fn param_idle_release_us() -> u32 {
    // SAFETY: a plain read of an integer module parameter.
    unsafe { ffi::kbp_param_idle_release_us() }
}

// ---- Devices -----------------------------------------------------------------------

/// Why [`dev_get`] found no device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DevGetError {
    /// No process `pid` (or it is exiting: no namespaces left).
    NoProcess,
    /// No device of that name in the namespace.
    NoDevice,
}

/// RTNL (`rtnl_lock()`), held while the guard lives. Process context; it sleeps. While
/// it is held no device unregisters or changes namespace (both run under RTNL and send
/// NETDEV_UNREGISTER before they release it: `net/core/dev.c` 12475-12544 and
/// 12637-12744 in 7.2.12), and no netdevice notifier runs (`:2263`).
pub(crate) struct Rtnl(PhantomData<*mut ()>);

impl Rtnl {
    /// Takes RTNL. The caller does not hold it already (it is not recursive).
    pub(crate) fn lock() -> Rtnl {
        // SAFETY: a plain mutex_lock; the module calls it from its init, in process
        // context, holding no lock.
        unsafe { ffi::kbp_rtnl_lock() };
        // Not `Send`: a mutex is released by the task that took it
        // (kernel/locking/mutex.c).
        Rtnl(PhantomData)
    }
}

impl Drop for Rtnl {
    fn drop(&mut self) {
        // SAFETY: locked in `lock` by this context. `rtnl_unlock()` runs the todo list
        // of devices unregistered under this hold (none: the module unregisters none)
        // and waits for their references only after releasing the mutex
        // (`netdev_run_todo`, `net/core/dev.c:11809`, `:11830`).
        unsafe { ffi::kbp_rtnl_unlock() };
    }
}

/// `dev_get_by_name(net, name)` in init_net (`pid` None) or in the network namespace
/// of process `pid` (`get_net_ns_by_pid`, whose reference is dropped at once): a
/// referenced device. Under RTNL (`_rtnl`), so the device cannot unregister or leave
/// that namespace before the caller has recorded it.
pub(crate) fn dev_get(
    _rtnl: &Rtnl,
    name: &[u8],
    pid: Option<u32>,
) -> Result<*mut RawNetDevice, DevGetError> {
    let pid = match pid.map(c_int::try_from) {
        None => 0,
        Some(Ok(pid)) if pid > 0 => pid,
        Some(_) => return Err(DevGetError::NoProcess),
    };
    let mut err: c_int = 0;
    // SAFETY: `name` is a valid byte slice (the glue copies at most IFNAMSIZ bytes),
    // `err` a writable int, and RTNL is held (`_rtnl`), which the glue asserts.
    let dev = unsafe { ffi::kbp_dev_get(name.as_ptr().cast(), name.len(), pid, &mut err) };
    if !dev.is_null() {
        Ok(dev)
    } else if err == kernel::error::code::ESRCH.to_errno() {
        Err(DevGetError::NoProcess)
    } else {
        Err(DevGetError::NoDevice)
    }
}

/// `dev_put`.
///
/// # Safety
/// `dev` came from [`dev_get`] and this reference was not put yet.
pub(crate) unsafe fn dev_put(dev: *mut RawNetDevice) {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_dev_put(dev) }
}

/// A device's instance lock (`netdev_lock`), held while the guard lives. Process
/// context; it sleeps.
pub(crate) struct DevLock(*mut RawNetDevice);

impl DevLock {
    /// # Safety
    /// `dev` is referenced for the guard's lifetime; the caller holds no lock that
    /// `netdev_lock` may not nest in.
    pub(crate) unsafe fn new(dev: *mut RawNetDevice) -> DevLock {
        // SAFETY: the caller's guarantee.
        unsafe { ffi::kbp_dev_lock(dev) };
        DevLock(dev)
    }

    /// The device's NAPI instances: fills `out`, returns how many there are (may
    /// exceed `out.len()`).
    pub(crate) fn napis(&self, out: &mut [*mut RawNapi]) -> usize {
        let max = c_int::try_from(out.len()).unwrap_or(c_int::MAX);
        // SAFETY: the device is referenced and locked (type invariant of the guard);
        // the glue writes at most `max` pointers into `out`.
        let n = unsafe { ffi::kbp_dev_napis(self.0, out.as_mut_ptr(), max) };
        usize::try_from(n).unwrap_or(0)
    }

    /// Whether `napi` is the instance of one of the device's RX queues (the driver's
    /// `netif_queue_set_napi`); false for TX-only instances and for drivers that do not
    /// declare their queues' instances.
    pub(crate) fn serves_rx(&self, napi: *mut RawNapi) -> bool {
        // SAFETY: the device is referenced and locked (type invariant of the guard);
        // `napi` is only compared with the queues' pointers, never followed.
        unsafe { ffi::kbp_napi_serves_rx(self.0, napi) }
    }
}

impl Drop for DevLock {
    fn drop(&mut self) {
        // SAFETY: locked in `new`, by this context.
        unsafe { ffi::kbp_dev_unlock(self.0) };
    }
}

// ---- NAPI instances ----------------------------------------------------------------
//
// Every function below reads or writes a `napi_struct`. The caller guarantees the
// instance is alive: it holds the instance's SCHED (the KBP thread, through its
// token; the entry hook, whose caller holds it), which a driver's `napi_disable()`
// must obtain before the instance can be deleted, or it is inside the BH-disabled
// (RCU read-side) section in which it saw the instance listed, and a driver frees a
// deleted instance only after `synchronize_net()`.

/// `napi->napi_id`.
///
/// # Safety
/// `n` is alive (see above).
pub(crate) unsafe fn napi_id(n: *const RawNapi) -> i32 {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_napi_id(n) }
}

/// `napi->dev`.
///
/// # Safety
/// `n` is alive (see above).
pub(crate) unsafe fn napi_dev(n: *const RawNapi) -> *mut RawNetDevice {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_napi_dev(n) }
}

/// `napi->state` as kbp-core's `NapiBits`.
///
/// # Safety
/// `n` is alive (see above).
pub(crate) unsafe fn napi_bits(n: *const RawNapi) -> u32 {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_napi_bits(n) }
}

/// `napi->weight`.
///
/// # Safety
/// `n` is alive (see above).
pub(crate) unsafe fn napi_weight(n: *const RawNapi) -> u32 {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_napi_weight(n) }
}

/// `set_bit(IN_BUSY_POLL)`.
///
/// # Safety
/// the caller holds `n`'s SCHED.
pub(crate) unsafe fn napi_set_in_busy_poll(n: *mut RawNapi) {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_napi_set_in_busy_poll(n) }
}

/// Clear MISSED and IN_BUSY_POLL.
///
/// # Safety
/// the caller holds `n`'s SCHED.
pub(crate) unsafe fn napi_clear_in_busy_poll(n: *mut RawNapi) {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_napi_clear_in_busy_poll(n) }
}

/// One driver poll with GRO flushes.
///
/// # Safety
/// The caller holds `n`'s SCHED and has bottom halves disabled.
pub(crate) unsafe fn napi_poll(n: *mut RawNapi, budget: u32) -> u32 {
    let budget = c_int::try_from(budget).unwrap_or(c_int::MAX);
    // SAFETY: the caller's guarantee.
    let work = unsafe { ffi::kbp_napi_poll(n, budget) };
    u32::try_from(work).unwrap_or(0)
}

/// The hand-back poll (`busy_poll_stop()`'s): nothing of the instance is touched after
/// the driver's poll unless it used the whole budget.
///
/// # Safety
/// The caller holds `n`'s SCHED, has cleared IN_BUSY_POLL and has bottom halves
/// disabled.
pub(crate) unsafe fn napi_hand_back_poll(n: *mut RawNapi, budget: u32) -> u32 {
    let budget = c_int::try_from(budget).unwrap_or(c_int::MAX);
    // SAFETY: the caller's guarantee.
    let work = unsafe { ffi::kbp_napi_hand_back_poll(n, budget) };
    u32::try_from(work).unwrap_or(0)
}

/// `napi_complete`.
///
/// # Safety
/// the caller holds `n`'s SCHED; BH disabled.
pub(crate) unsafe fn napi_complete(n: *mut RawNapi) {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_napi_complete(n) }
}

/// `__napi_schedule`.
///
/// # Safety
/// the caller holds `n`'s SCHED and hands it over.
pub(crate) unsafe fn napi_schedule(n: *mut RawNapi) {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_napi_schedule(n) }
}

// ---- Entry hooks -------------------------------------------------------------------

/// Registers the `__netif_napi_del_locked` observer (`kbp_rust_on_delete`).
///
/// # Safety
/// The callback's data (the module context) is alive until
/// [`delete_hook_unregister`] returned.
pub(crate) unsafe fn delete_hook_register() -> c_int {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_delete_hook_register() }
}

/// Registers the `__napi_schedule{,_irqoff}` entry hook (`kbp_rust_on_schedule`).
///
/// # Safety
/// As for [`delete_hook_register`], until [`schedule_hook_unregister`] returned.
pub(crate) unsafe fn schedule_hook_register() -> c_int {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_schedule_hook_register() }
}

/// Removes the entry hook; on return no CPU is inside it. Process context.
pub(crate) fn schedule_hook_unregister() {
    // SAFETY: the module calls it once, after a successful registration, in process
    // context (`unregister_ftrace_function` sleeps).
    unsafe { ffi::kbp_schedule_hook_unregister() }
}

/// Removes the delete observer; on return no CPU is inside it. Process context.
pub(crate) fn delete_hook_unregister() {
    // SAFETY: as for `schedule_hook_unregister`.
    unsafe { ffi::kbp_delete_hook_unregister() }
}

// ---- Execution environment ---------------------------------------------------------

/// `local_bh_disable`.
///
/// # Safety
/// paired with [`bh_enable`] on this CPU.
pub(crate) unsafe fn bh_disable() {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_bh_disable() }
}

/// `local_bh_enable`.
///
/// # Safety
/// after a [`bh_disable`] on this CPU, process context.
pub(crate) unsafe fn bh_enable() {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_bh_enable() }
}

/// `local_clock()`.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: callable from any context.
    unsafe { ffi::kbp_now_ns() }
}

/// `cond_resched_tasks_rcu_qs()`.
///
/// # Safety
/// process context, no spinlock held.
pub(crate) unsafe fn quiescent() {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_quiescent() }
}

/// The current kthread sleeps until woken (or for `for_ns`, if given), unless
/// `still_wanted()` says otherwise after it armed its wake-up (set the task state,
/// check, `schedule()`), or it is asked to stop.
///
/// # Safety
/// The caller is one of the module's kthreads, in process context, holding no spinlock
/// and with BHs enabled (it may sleep). `still_wanted` runs in TASK_INTERRUPTIBLE: it
/// must not sleep.
pub(crate) unsafe fn sleep_unless(still_wanted: &dyn Fn() -> bool, for_ns: Option<u64>) {
    // SAFETY: the current task sets its own state; the caller may sleep.
    unsafe { ffi::kbp_prepare_to_sleep() };
    // SAFETY: the current task is a kthread (the caller's guarantee), which
    // kthread_should_stop requires.
    if still_wanted() && !unsafe { ffi::kbp_should_stop() } {
        match for_ns {
            // SAFETY: process context, no spinlock held (the caller's guarantee), and
            // TASK_INTERRUPTIBLE set, so a wake_up_process or kthread_stop after the
            // check above ends the sleep.
            None => unsafe { ffi::kbp_sleep() },
            // SAFETY: as above; the hrtimer ends the sleep too.
            Some(ns) => unsafe { ffi::kbp_sleep_for(ns) },
        }
    }
    // SAFETY: restores TASK_RUNNING for the current task.
    unsafe { ffi::kbp_set_running() };
}

/// `kthread_should_stop()` for the calling kthread.
pub(crate) fn should_stop() -> bool {
    // SAFETY: called by the module's kthreads only.
    unsafe { ffi::kbp_should_stop() }
}

/// `wake_up_process`.
///
/// # Safety
/// `t` is a task the caller holds a reference on.
pub(crate) unsafe fn wake(t: *mut RawTask) {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_wake(t) }
}

/// A new (not yet running) kthread pinned to `cpu`, with a task reference for the
/// caller; null on failure.
///
/// # Safety
/// `data` stays valid for `f` until the thread was stopped with [`thread_stop_put`].
pub(crate) unsafe fn thread_create(
    f: extern "C" fn(*mut c_void) -> c_int,
    data: *mut c_void,
    cpu: i32,
) -> *mut RawTask {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_thread_create(f, data, cpu) }
}

/// `kthread_stop_put`: wakes the thread, waits for it to return, drops our reference.
///
/// # Safety
/// `t` came from [`thread_create`] and was not stopped yet.
pub(crate) unsafe fn thread_stop_put(t: *mut RawTask) -> c_int {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_thread_stop_put(t) }
}

/// `sched_set_fifo_low`.
///
/// # Safety
/// `t` is a task the caller holds a reference on.
pub(crate) unsafe fn set_fifo(t: *mut RawTask) {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_set_fifo(t) }
}

/// `set_cpus_allowed_ptr(t, cpumask_of(cpu))`.
///
/// # Safety
/// `t` is referenced.
pub(crate) unsafe fn thread_pin(t: *mut RawTask, cpu: i32) -> c_int {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_thread_pin(t, cpu) }
}

/// A CPU number in range and online.
pub(crate) fn cpu_usable(cpu: i32) -> bool {
    // SAFETY: reads the online mask.
    unsafe { ffi::kbp_cpu_usable(cpu) }
}

// ---- Registrations -----------------------------------------------------------------

/// `register_netdevice_notifier` (`kbp_rust_netdev_unregister`). It takes
/// `pernet_ops_rwsem` for writing and RTNL (`net/core/dev.c:1996-1999`): the caller
/// holds neither, nor any device reference a namespace's `cleanup_net()` (which holds
/// that rwsem for reading) may be waiting for. It replays NETDEV_REGISTER and
/// NETDEV_UP for every device of every namespace (`:2006-2012`, `:1916-1930`), which
/// the glue does not pass on.
///
/// # Safety
/// The callback's data is alive until [`notifier_unregister`] returned.
pub(crate) unsafe fn notifier_register() -> c_int {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_notifier_register() }
}

/// `unregister_netdevice_notifier`: takes `pernet_ops_rwsem` for writing and RTNL
/// (`net/core/dev.c:2051-2052`), so the caller holds no device reference (see
/// [`notifier_register`]); replays NETDEV_UNREGISTER for every device (`:2057-2061`).
/// On return no callback is in flight (callbacks run under RTNL).
pub(crate) fn notifier_unregister() {
    // SAFETY: process context; undoes a successful registration.
    unsafe { ffi::kbp_notifier_unregister() }
}

/// `/sys/kernel/debug/kbp/stats` (`kbp_rust_stats_format`).
///
/// # Safety
/// The callback's data is alive until [`debugfs_remove`] returned.
pub(crate) unsafe fn debugfs_create() -> c_int {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_debugfs_create() }
}

/// Removes the debugfs directory, waiting for readers; accepts one never created.
pub(crate) fn debugfs_remove() {
    // SAFETY: `debugfs_remove_recursive` accepts NULL and error pointers.
    unsafe { ffi::kbp_debugfs_remove() }
}

/// The CPU-online callback (`kbp_rust_cpu_online`).
///
/// # Safety
/// The callback's data is alive until [`cpuhp_unregister`] returned.
pub(crate) unsafe fn cpuhp_register() -> c_int {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::kbp_cpuhp_register() }
}

/// Removes the CPU-online callback.
pub(crate) fn cpuhp_unregister() {
    // SAFETY: undoes a successful registration.
    unsafe { ffi::kbp_cpuhp_unregister() }
}
