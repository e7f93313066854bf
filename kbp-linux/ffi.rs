// SPDX-License-Identifier: GPL-2.0
//! The C glue's functions (see `kbp_glue.h`): wrappers for static inlines, macros and
//! `napi_struct` fields that `kernel::bindings` does not reach.

use core::ffi::{c_char, c_int, c_uint, c_void};

/// `struct napi_struct` (opaque here).
#[repr(C)]
pub(crate) struct Napi {
    _opaque: [u8; 0],
}

/// `struct net_device` (opaque here).
#[repr(C)]
pub(crate) struct NetDevice {
    _opaque: [u8; 0],
}

/// `struct task_struct` (opaque here).
#[repr(C)]
pub(crate) struct Task {
    _opaque: [u8; 0],
}

unsafe extern "C" {
    pub(crate) fn kbp_param_ifaces() -> *const c_char;
    pub(crate) fn kbp_param_mode() -> *const c_char;
    pub(crate) fn kbp_param_cpus() -> *const c_char;
    pub(crate) fn kbp_param_weight() -> c_uint;
    pub(crate) fn kbp_param_budget() -> c_uint;
    pub(crate) fn kbp_param_time_limit_us() -> c_uint;
    pub(crate) fn kbp_param_spin_window_us() -> c_uint;
    pub(crate) fn kbp_param_fifo() -> bool;

    pub(crate) fn kbp_dev_get(name: *const c_char, len: usize) -> *mut NetDevice;
    pub(crate) fn kbp_dev_put(dev: *mut NetDevice);
    pub(crate) fn kbp_dev_name(dev: *const NetDevice) -> *const c_char;
    pub(crate) fn kbp_dev_napis(dev: *mut NetDevice, out: *mut *mut Napi, max: c_int) -> c_int;
    pub(crate) fn kbp_napi_id(n: *const Napi) -> c_int;

    pub(crate) fn kbp_napi_can_hijack(n: *const Napi) -> bool;
    pub(crate) fn kbp_napi_hijack(n: *mut Napi, t: *mut Task);
    pub(crate) fn kbp_napi_unhijack(n: *mut Napi, t: *mut Task);
    pub(crate) fn kbp_napi_handed_over(n: *const Napi) -> bool;
    pub(crate) fn kbp_napi_disable_pending(n: *const Napi) -> bool;
    pub(crate) fn kbp_napi_try_own(n: *mut Napi) -> bool;
    pub(crate) fn kbp_napi_poll(n: *mut Napi, budget: c_int) -> c_int;
    pub(crate) fn kbp_napi_release(n: *mut Napi, budget: c_int) -> c_int;

    pub(crate) fn kbp_bh_disable();
    pub(crate) fn kbp_bh_enable();
    pub(crate) fn kbp_now_ns() -> u64;
    pub(crate) fn kbp_quiescent();
    pub(crate) fn kbp_prepare_to_sleep();
    pub(crate) fn kbp_sleep();
    pub(crate) fn kbp_set_running();
    pub(crate) fn kbp_wake(t: *mut Task);
    pub(crate) fn kbp_thread_create(f: extern "C" fn(*mut c_void) -> c_int, data: *mut c_void, cpu: c_int) -> *mut Task;
    pub(crate) fn kbp_should_stop() -> bool;
    pub(crate) fn kbp_thread_stop(t: *mut Task) -> c_int;
    pub(crate) fn kbp_set_fifo(t: *mut Task);
    pub(crate) fn kbp_cpu_usable(cpu: c_int) -> bool;
    pub(crate) fn kbp_thread_pin(t: *mut Task, cpu: c_int) -> c_int;
    pub(crate) fn kbp_synchronize_rcu();
    pub(crate) fn kbp_msleep(ms: c_uint);

    pub(crate) fn kbp_notifier_register() -> c_int;
    pub(crate) fn kbp_notifier_unregister();
    pub(crate) fn kbp_debugfs_create() -> c_int;
    pub(crate) fn kbp_debugfs_remove();
    pub(crate) fn kbp_cpuhp_register() -> c_int;
    pub(crate) fn kbp_cpuhp_unregister();
}

/// Notifier events the glue forwards (`enum kbp_event` in kbp_glue.h).
pub(crate) const KBP_EV_UP: c_int = 1;
/// The device is going down: remove the wake hook before `napi_disable`.
pub(crate) const KBP_EV_GOING_DOWN: c_int = 2;
/// The device is being unregistered.
pub(crate) const KBP_EV_UNREGISTER: c_int = 3;
