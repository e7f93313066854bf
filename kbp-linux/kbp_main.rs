// SPDX-License-Identifier: GPL-2.0
//! # kbp.ko: kernel busy poll on real NAPI instances
//!
//! One KBP kthread per configured CPU, pinned there, serves its share of the NAPI
//! instances (RX and TX completion) of the configured interfaces with kbp-core's drain
//! loop, instead of NET_RX_SOFTIRQ.
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
//! parameters), `worker.rs` (one KBP thread and its instances), `stats.rs` (debugfs
//! counters), this file (module life cycle, devices, notifier).

use core::ffi::c_int;
use core::sync::atomic::Ordering;

use kbp_core::atomic::transition;
use kbp_core::{AtomicWord, IdleMode};
use kernel::prelude::*;
use kernel::sync::atomic::{ordering, Atomic};

mod env;
mod ffi;
mod params;
mod port;
mod stats;
mod worker;

use env::KernelWord;
use params::{BStrText, CpuList, Params, MAX_DEVS, MAX_THREADS};
use stats::BufWriter;
use worker::{Worker, CAP};

/// Most NAPI instances in all (every thread serves at most [`CAP`]).
const MAX_NAPIS: usize = MAX_THREADS * CAP;

module! {
    type: Kbp,
    name: "kbp",
    authors: ["KBP developers"],
    description: "Kernel busy poll: a kthread serves NAPI instances instead of NET_RX_SOFTIRQ",
    license: "GPL",
}

/// Everything the module, the notifier and debugfs share: the devices and the workers.
pub(crate) struct Context {
    /// The configured devices; the module holds one reference on each until it is gone.
    devs: [*mut ffi::NetDevice; MAX_DEVS],
    ndevs: usize,
    /// Bit d: device d unregistered and its reference was put (notifier, under RTNL).
    gone: KernelWord,
    /// One per CPU of `cpus`.
    pub(crate) workers: KVec<KBox<Worker>>,
    /// The notifier is registered.
    notifier: bool,
    /// The CPU hotplug callback is registered.
    cpuhp: bool,
}

// SAFETY: the device pointers are referenced kernel objects; all shared mutable state
// (in `gone` and in the workers) is atomic.
unsafe impl Sync for Context {}
// SAFETY: as above; nothing is tied to the creating thread.
unsafe impl Send for Context {}

/// The live context for the notifier and debugfs callbacks (null when not loaded).
static CONTEXT: Atomic<*mut Context> = Atomic::new(core::ptr::null_mut());

impl Context {
    /// Follows a configured device's life cycle (notifier, under RTNL).
    fn netdev_event(&self, event: c_int, d: usize) {
        let bit = 1u32 << d;
        if self.gone.load(Ordering::Acquire) & bit != 0 {
            return;
        }
        match event {
            ffi::KBP_EV_UP => self.workers.iter().for_each(|w| w.set_wake_hook(d, true)),
            ffi::KBP_EV_GOING_DOWN => self.workers.iter().for_each(|w| w.set_wake_hook(d, false)),
            ffi::KBP_EV_UNREGISTER => {
                self.workers.iter().for_each(|w| w.request_drop(d));
                for _ in 0..5000 {
                    if self.workers.iter().all(|w| w.has_dropped(d)) {
                        break;
                    }
                    // SAFETY: notifier callbacks run in process context.
                    unsafe { ffi::kbp_msleep(1) };
                }
                if !self.workers.iter().all(|w| w.has_dropped(d)) {
                    pr_err!("a KBP thread did not let go of an unregistering device within 5 s\n");
                }
                // SAFETY: process context; after a grace period no IRQ path can still
                // see our threads on the device's instances; then our reference goes.
                unsafe {
                    ffi::kbp_synchronize_rcu();
                    ffi::kbp_dev_put(self.devs[d]);
                }
                transition(&self.gone, |g| (Some(g | bit), ()));
                pr_info!("device unregistered; its NAPI instances are released\n");
            }
            _ => {}
        }
    }
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
    if let Some(d) = (0..ctx.ndevs).find(|&d| ctx.devs[d] == dev) {
        ctx.netdev_event(event, d);
    }
}

/// CPU hotplug callback (called by the C glue when `cpu` came online).
#[unsafe(no_mangle)]
extern "C" fn kbp_rust_cpu_online(cpu: core::ffi::c_uint) {
    let ctx = CONTEXT.load(ordering::Acquire);
    if ctx.is_null() {
        return;
    }
    // SAFETY: CONTEXT is non-null only while the context is alive; it is reset before
    // the hotplug callback is removed and the context freed.
    let ctx = unsafe { &*ctx };
    ctx.workers.iter().filter(|w| w.cpu as core::ffi::c_uint == cpu).for_each(|w| w.repin());
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
    let _ = stats::format(&ctx.workers, &mut w);
    w.len
}

struct Kbp {
    ctx: KBox<Context>,
}

impl kernel::Module for Kbp {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let params = Params::read()?;
        // From here on, dropping `kbp` undoes whatever was done (see `Drop`).
        let mut kbp = Kbp {
            ctx: KBox::new(
                Context { devs: [core::ptr::null_mut(); MAX_DEVS], ndevs: 0, gone: KernelWord::new(0), workers: KVec::new(), notifier: false, cpuhp: false },
                GFP_KERNEL,
            )?,
        };
        let ctx = &mut *kbp.ctx;
        let mut napis = [core::ptr::null_mut(); MAX_NAPIS];
        let mut napi_dev = [0usize; MAX_NAPIS];
        let mut count = 0usize;
        for d in 0..params.nifaces {
            let name = params.iface(d);
            // SAFETY: `name` is a valid byte slice; the glue copies it.
            let dev = unsafe { ffi::kbp_dev_get(name.as_ptr().cast(), name.len()) };
            if dev.is_null() {
                pr_err!("invalid parameter ifaces: unknown interface {}\n", &BStrText(name));
                return Err(EINVAL);
            }
            ctx.devs[d] = dev;
            ctx.ndevs = d + 1;
            let room = (MAX_NAPIS - count) as c_int;
            // SAFETY: `dev` is referenced; the glue writes at most `room` pointers.
            let n = unsafe { ffi::kbp_dev_napis(dev, napis[count..].as_mut_ptr(), room) };
            if n <= 0 || n > room {
                pr_err!("invalid parameter ifaces: {} has {} NAPI instances (at most {} in all)\n", &BStrText(name), n, MAX_NAPIS);
                return Err(EINVAL);
            }
            for id in count..count + n as usize {
                napi_dev[id] = d;
                // SAFETY: a NAPI instance of a referenced device.
                if !unsafe { ffi::kbp_napi_can_hijack(napis[id]) } {
                    pr_err!("invalid parameter ifaces: {} already uses threaded NAPI\n", &BStrText(name));
                    return Err(EBUSY);
                }
            }
            count += n as usize;
        }
        let threads = params.ncpus;
        if count < threads || count > threads * CAP {
            pr_err!("invalid parameter cpus: {} thread(s) for {} NAPI instance(s) (each thread serves 1..={})\n", threads, count, CAP);
            return Err(EINVAL);
        }

        // Contiguous runs of near-equal size, one per thread.
        ctx.workers.reserve(threads, GFP_KERNEL)?;
        for t in 0..threads {
            let (first, last) = (count * t / threads, count * (t + 1) / threads);
            let worker = Worker::new(params.cpus[t], params.config, &napis[first..last], &napi_dev[first..last], ctx.devs);
            ctx.workers.push(KBox::new(worker, GFP_KERNEL)?, GFP_KERNEL)?;
        }
        for w in ctx.workers.iter() {
            w.create_thread(params.fifo)?;
        }

        CONTEXT.store(ctx as *mut Context, ordering::Release);
        // SAFETY: plain registrations, undone in `drop`.
        if unsafe { ffi::kbp_debugfs_create() } != 0 {
            pr_warn!("no debugfs; counters unavailable\n");
        }
        ctx.workers.iter().for_each(|w| w.wake());
        // Registering the notifier replays NETDEV_UP for devices that are up, which
        // installs the wake hooks.
        // SAFETY: as above.
        ctx.notifier = unsafe { ffi::kbp_notifier_register() } == 0;
        if !ctx.notifier {
            pr_err!("cannot register a netdevice notifier\n");
            return Err(EINVAL);
        }
        // SAFETY: a plain registration, undone in `drop`.
        ctx.cpuhp = unsafe { ffi::kbp_cpuhp_register() } == 0;
        if !ctx.cpuhp {
            pr_warn!("no CPU hotplug callback; a thread whose CPU goes offline stays unpinned\n");
        }
        let mode = match params.config.idle {
            IdleMode::Spin => "spin",
            IdleMode::Adaptive { .. } => "adaptive",
        };
        pr_info!(
            "serving {} NAPI instance(s) of {} with {} thread(s) on CPUs {} ({} mode, weight {}, budget {}, {} us)\n",
            count,
            &BStrText(params.ifaces_raw),
            threads,
            &CpuList(&params.cpus[..threads]),
            mode,
            params.config.weight,
            params.config.budget,
            params.config.time_limit_ns / 1_000
        );
        Ok(kbp)
    }
}

impl Drop for Kbp {
    fn drop(&mut self) {
        // Callbacks become no-ops first: unregistering the notifier replays GOING_DOWN
        // and UNREGISTER for every device, which must not look like a real removal.
        // SAFETY: undoing the registrations of `init`, in reverse order; process context.
        // `debugfs_remove_recursive` accepts a directory that was never created.
        unsafe { ffi::kbp_debugfs_remove() };
        CONTEXT.store(core::ptr::null_mut(), ordering::Release);
        if self.ctx.cpuhp {
            // SAFETY: as above.
            unsafe { ffi::kbp_cpuhp_unregister() };
        }
        if self.ctx.notifier {
            // SAFETY: as above.
            unsafe { ffi::kbp_notifier_unregister() };
        }
        // Each thread removes its wake hooks and hands every instance back as it stops.
        self.ctx.workers.iter().for_each(|w| w.stop());
        let gone = self.ctx.gone.load(Ordering::Acquire);
        for d in (0..self.ctx.ndevs).filter(|d| gone & (1 << d) == 0) {
            // SAFETY: returned by `dev_get_by_name` and not put yet (not gone).
            unsafe { ffi::kbp_dev_put(self.ctx.devs[d]) };
        }
        pr_info!("unloaded\n");
    }
}
