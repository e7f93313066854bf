// SPDX-License-Identifier: GPL-2.0
//! # kbp.ko: kernel busy poll on real NAPI instances
//!
//! One KBP kthread, pinned to a CPU, serves every NAPI instance (RX and TX completion)
//! of the configured interfaces with kbp-core's drain loop, instead of NET_RX_SOFTIRQ.
//!
//! Ownership design (details and kernel assumptions in `kbp-linux/README.md`):
//!
//! * **Wake hook**: each NAPI gets `napi->thread = <KBP thread>` and the THREADED state
//!   bit, the mechanism threaded NAPI uses. An IRQ's `napi_schedule()` then wins SCHED,
//!   sets SCHED_THREADED and wakes the KBP thread: NET_RX_SOFTIRQ is never raised.
//! * **Busy ownership**: the thread holds SCHED|IN_BUSY_POLL while it polls an instance
//!   (the `napi_busy_loop` rule), so the driver's `napi_complete_done()` returns false
//!   and its IRQ stays masked; kbp-core decides when to hand it back (`busy_poll_stop`).
//!
//! Files: `ffi.rs` (C glue declarations), `env.rs` (kbp-core's atomic and platform
//! backends), `port.rs` (a NAPI as kbp-core's `RxInstance`), `params.rs` (module
//! parameters), `stats.rs` (debugfs counters), this file (life cycle, thread, notifier).

use core::ffi::{c_int, c_void};
use core::sync::atomic::Ordering;

use kbp_core::atomic::transition;
use kbp_core::{AtomicWord, Config, IdleMode, Poller, ScheduleOutcome, Shared, StepOutcome};
use kernel::prelude::*;
use kernel::sync::atomic::{ordering, Atomic};

mod env;
mod ffi;
mod params;
mod port;
mod stats;

use env::{KernelPlatform, KernelWord};
use params::{BStrText, Params, MAX_DEVS};
use port::NapiPort;
use stats::{BufWriter, Stats};

module! {
    type: Kbp,
    name: "kbp",
    authors: ["KBP developers"],
    description: "Kernel busy poll: a kthread serves NAPI instances instead of NET_RX_SOFTIRQ",
    license: "GPL",
}

/// Most NAPI instances one KBP thread serves (kbp-core's poll-list capacity).
pub(crate) const CAP: usize = 16;

/// Everything the module, the KBP thread, the notifier and debugfs share.
pub(crate) struct Context {
    /// kbp-core's shared state for the instances below.
    pub(crate) shared: Shared<KernelWord, CAP>,
    napis: [*mut ffi::Napi; CAP],
    /// Index into `devs` of each instance's device.
    napi_dev: [usize; CAP],
    /// Instances in use.
    pub(crate) count: usize,
    devs: [*mut ffi::NetDevice; MAX_DEVS],
    ndevs: usize,
    /// The validated configuration.
    pub(crate) config: Config,
    /// The CPU the thread is pinned to.
    pub(crate) cpu: i32,
    task: Atomic<*mut ffi::Task>,
    /// Bit d: the notifier asks the thread to let go of device d (it is unregistering).
    drop_request: KernelWord,
    /// Bit d: the thread has let go of device d for good.
    dropped: KernelWord,
    stats: Stats,
}

// SAFETY: the raw pointers are kernel objects (devices with a reference we hold until
// they are dropped, their NAPI instances, our kthread) whose lifetimes the module
// manages; all mutable shared state is atomic.
unsafe impl Sync for Context {}
// SAFETY: as above; nothing is tied to the creating thread.
unsafe impl Send for Context {}

/// The live context for the notifier and debugfs callbacks (null when not loaded).
static CONTEXT: Atomic<*mut Context> = Atomic::new(core::ptr::null_mut());

impl Context {
    fn dev_bit(&self, id: usize) -> u32 {
        1 << self.napi_dev[id]
    }

    fn is_dropped(&self, id: usize) -> bool {
        self.dropped.load(Ordering::Acquire) & self.dev_bit(id) != 0
    }

    /// Kernel NAPI id of instance `id`.
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
        // SAFETY: we hold a reference on the device; its name is NUL-terminated.
        unsafe { core::ffi::CStr::from_ptr(ffi::kbp_dev_name(self.devs[self.napi_dev[id]])) }.to_bytes()
    }

    /// Some live instance was handed to the KBP thread by an IRQ.
    pub(crate) fn any_handed_over(&self) -> bool {
        // SAFETY: live instances are valid (dropped ones are skipped).
        (0..self.count).any(|id| !self.is_dropped(id) && unsafe { ffi::kbp_napi_handed_over(self.napis[id]) })
    }

    fn task(&self) -> *mut ffi::Task {
        self.task.load(ordering::Acquire)
    }

    /// Installs (or removes) the wake hook on every instance of device `d`.
    fn set_wake_hook(&self, d: usize, on: bool) {
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

    /// Wakes the KBP thread.
    pub(crate) fn wake(&self) {
        let task = self.task.load(ordering::Acquire);
        if !task.is_null() {
            // SAFETY: the task exists until `kthread_stop` returns, after which `task`
            // is reset to null before the context is freed.
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

/// The KBP kthread.
extern "C" fn kbp_thread(data: *mut c_void) -> c_int {
    // SAFETY: `data` is the module's `Context`, freed only after `kthread_stop` returned.
    let ctx = unsafe { &*(data as *const Context) };
    let ports: [NapiPort; CAP] = core::array::from_fn(|id| {
        // SAFETY: instances stay valid until their device is dropped, and a dropped
        // device's port is killed first (`serve_drop_requests`).
        unsafe { NapiPort::new(ctx.napis[id], ctx.config.weight) }
    });
    let platform = KernelPlatform { ctx };
    let Ok(mut poller) = Poller::new(&ctx.shared, &ports[..ctx.count], &platform, ctx.config) else {
        return EINVAL.to_errno();
    };
    poller.attach_all();
    let mut steps: u32 = 0;
    // SAFETY: called from the kthread itself.
    while !unsafe { ffi::kbp_should_stop() } {
        ctx.serve_drop_requests(&ports);
        ctx.pick_up_handed_over(&platform);
        let outcome = poller.step();
        steps = steps.wrapping_add(1);
        if steps % 256 == 0 || matches!(outcome, StepOutcome::Parked { .. }) {
            ctx.stats.publish(&poller, &ports[..ctx.count]);
        }
    }

    // Shutdown: remove the wake hook first (IRQs now go to NET_RX_SOFTIRQ), wait until
    // no IRQ can still be inside ____napi_schedule() with our task, hand over what an
    // IRQ gave us meanwhile, then let kbp-core hand back every instance it owns.
    for (id, port) in ports.iter().enumerate().take(ctx.count) {
        if !port.dead() {
            // SAFETY: a live instance.
            unsafe { ffi::kbp_napi_unhijack(ctx.napis[id], ctx.task()) };
        }
    }
    // SAFETY: process context, no locks held.
    unsafe { ffi::kbp_synchronize_rcu() };
    let report = poller.shutdown();
    for port in ports.iter().take(ctx.count) {
        port.release();
        port.flush_handed_over();
    }
    ctx.stats.publish(&poller, &ports[..ctx.count]);
    pr_info!("thread stopped; handed back {} instance(s), {} packet(s) on the way\n", report.released, report.packets);
    0
}

/// Notifier callback (called by the C glue under RTNL).
#[unsafe(no_mangle)]
extern "C" fn kbp_rust_netdev_event(event: c_int, dev: *mut ffi::NetDevice) {
    let ctx = CONTEXT.load(ordering::Acquire);
    if ctx.is_null() {
        return;
    }
    // SAFETY: CONTEXT is non-null only while the context is alive; it is reset before
    // the notifier is unregistered and the context freed.
    let ctx = unsafe { &*ctx };
    let Some(d) = (0..ctx.ndevs).find(|&d| ctx.devs[d] == dev) else { return };
    let bit = 1u32 << d;
    if ctx.dropped.load(Ordering::Acquire) & bit != 0 {
        return;
    }
    match event {
        ffi::KBP_EV_UP => ctx.set_wake_hook(d, true),
        ffi::KBP_EV_GOING_DOWN => ctx.set_wake_hook(d, false),
        ffi::KBP_EV_UNREGISTER => {
            transition(&ctx.drop_request, |r| (Some(r | bit), ()));
            ctx.wake();
            for _ in 0..5000 {
                if ctx.dropped.load(Ordering::Acquire) & bit != 0 {
                    break;
                }
                // SAFETY: notifier callbacks run in process context.
                unsafe { ffi::kbp_msleep(1) };
            }
            if ctx.dropped.load(Ordering::Acquire) & bit == 0 {
                pr_err!("the KBP thread did not let go of an unregistering device within 5 s\n");
            }
            // SAFETY: process context; then our device reference goes.
            unsafe {
                ffi::kbp_synchronize_rcu();
                ffi::kbp_dev_put(dev);
            }
            pr_info!("device unregistered; its NAPI instances are released\n");
        }
        _ => {}
    }
}

/// debugfs `stats` callback (called by the C glue).
#[unsafe(no_mangle)]
extern "C" fn kbp_rust_stats_format(buf: *mut u8, size: usize) -> usize {
    let ctx = CONTEXT.load(ordering::Acquire);
    if ctx.is_null() || buf.is_null() {
        return 0;
    }
    // SAFETY: the glue passes a writable buffer of `size` bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf, size) };
    let mut w = BufWriter { buf, len: 0 };
    // SAFETY: debugfs is removed before the context is freed.
    let ctx = unsafe { &*ctx };
    let _ = ctx.stats.format(ctx, &mut w);
    w.len
}

struct Kbp {
    ctx: KBox<Context>,
}

fn release_devs(devs: &[*mut ffi::NetDevice]) {
    for &dev in devs {
        // SAFETY: each was returned by `dev_get_by_name` and not put yet.
        unsafe { ffi::kbp_dev_put(dev) };
    }
}

impl kernel::Module for Kbp {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let params = Params::read()?;
        let mut devs = [core::ptr::null_mut(); MAX_DEVS];
        let mut napis = [core::ptr::null_mut(); CAP];
        let mut napi_dev = [0usize; CAP];
        let mut count = 0usize;
        for d in 0..params.nifaces {
            let name = params.iface(d);
            // SAFETY: `name` is a valid byte slice; the glue copies it.
            let dev = unsafe { ffi::kbp_dev_get(name.as_ptr().cast(), name.len()) };
            if dev.is_null() {
                pr_err!("invalid parameter ifaces: unknown interface {}\n", &BStrText(name));
                release_devs(&devs[..d]);
                return Err(EINVAL);
            }
            devs[d] = dev;
            let room = (CAP - count) as c_int;
            // SAFETY: `dev` is referenced; the glue writes at most `room` pointers.
            let n = unsafe { ffi::kbp_dev_napis(dev, napis[count..].as_mut_ptr(), room) };
            if n <= 0 || n > room {
                pr_err!("invalid parameter ifaces: {} has {} NAPI instances (at most {} in all)\n", &BStrText(name), n, CAP);
                release_devs(&devs[..=d]);
                return Err(EINVAL);
            }
            for slot in napi_dev.iter_mut().skip(count).take(n as usize) {
                *slot = d;
            }
            count += n as usize;
        }

        let ctx = KBox::new(
            Context {
                shared: Shared::new(),
                napis,
                napi_dev,
                count,
                devs,
                ndevs: params.nifaces,
                config: params.config,
                cpu: params.cpu,
                task: Atomic::new(core::ptr::null_mut()),
                drop_request: KernelWord::new(0),
                dropped: KernelWord::new(0),
                stats: Stats::new(),
            },
            GFP_KERNEL,
        );
        let ctx = match ctx {
            Ok(ctx) => ctx,
            Err(e) => {
                release_devs(&devs[..params.nifaces]);
                return Err(e.into());
            }
        };
        let data = &*ctx as *const Context as *mut c_void;
        // SAFETY: `data` outlives the thread (freed after `kthread_stop` in drop).
        let task = unsafe { ffi::kbp_thread_create(kbp_thread, data, params.cpu) };
        if task.is_null() {
            release_devs(&devs[..params.nifaces]);
            return Err(ENOMEM);
        }
        ctx.task.store(task, ordering::Release);
        for id in 0..count {
            // SAFETY: a NAPI instance of a referenced device.
            if !unsafe { ffi::kbp_napi_can_hijack(napis[id]) } {
                pr_err!("invalid parameter ifaces: {} already uses threaded NAPI\n", &BStrText(ctx.dev_name(id)));
                // SAFETY: the thread was created and never woken; process context.
                unsafe { ffi::kbp_thread_stop(task) };
                release_devs(&devs[..params.nifaces]);
                return Err(EBUSY);
            }
        }
        if params.fifo {
            // SAFETY: `task` is our kthread.
            unsafe { ffi::kbp_set_fifo(task) };
        }
        CONTEXT.store(&*ctx as *const Context as *mut Context, ordering::Release);
        // SAFETY: plain registrations, undone in `drop`. Registering the notifier
        // replays NETDEV_UP for devices that are up, which installs the wake hook.
        unsafe {
            if ffi::kbp_debugfs_create() != 0 {
                pr_warn!("no debugfs; counters unavailable\n");
            }
            ffi::kbp_wake(task);
            if ffi::kbp_notifier_register() != 0 {
                pr_warn!("no netdevice notifier; link changes are not followed\n");
            }
        }
        let mode = match params.config.idle {
            IdleMode::Spin => "spin",
            IdleMode::Adaptive { .. } => "adaptive",
        };
        pr_info!(
            "kbp: serving {} NAPI instance(s) of {} on CPU {} ({} mode, weight {}, budget {}, {} us)\n",
            count,
            &BStrText(params.ifaces_raw),
            params.cpu,
            mode,
            params.config.weight,
            params.config.budget,
            params.config.time_limit_ns / 1_000
        );
        Ok(Kbp { ctx })
    }
}

impl Drop for Kbp {
    fn drop(&mut self) {
        // Callbacks become no-ops first: unregistering the notifier replays GOING_DOWN
        // and UNREGISTER for every device, which must not look like a real removal.
        // SAFETY: undoing the registrations of `init`, in reverse order; process context.
        unsafe { ffi::kbp_debugfs_remove() };
        CONTEXT.store(core::ptr::null_mut(), ordering::Release);
        // SAFETY: as above.
        unsafe { ffi::kbp_notifier_unregister() };
        let task = self.ctx.task();
        // SAFETY: our kthread; `kthread_stop` wakes it and waits for `kbp_thread` to
        // return, which removes the wake hooks and hands every instance back.
        unsafe { ffi::kbp_thread_stop(task) };
        self.ctx.task.store(core::ptr::null_mut(), ordering::Release);
        let dropped = self.ctx.dropped.load(Ordering::Acquire);
        for d in 0..self.ctx.ndevs {
            if dropped & (1 << d) == 0 {
                release_devs(&self.ctx.devs[d..=d]);
            }
        }
        pr_info!("unloaded\n");
    }
}
