// SPDX-License-Identifier: GPL-2.0
//! # kbp.ko: kernel busy poll on real NAPI instances
//!
//! One KBP kthread per configured CPU, pinned there, serves its share of the NAPI
//! instances (RX and TX completion) of the configured interfaces with kbp-core's drain
//! loop, instead of NET_RX_SOFTIRQ.
//!
//! How an instance is taken (details and kernel assumptions in `kbp-linux/README.md`):
//! an ftrace hook at the entry of the exported `__napi_schedule()` and
//! `__napi_schedule_irqoff()` runs kbp-core's `napi::on_schedule` for instances of the
//! configured devices: their caller holds the instance's SCHED and hands it to KBP
//! (`Shared::schedule` lists it and unparks the thread), and the function body is
//! skipped, so NET_RX_SOFTIRQ is never raised for them. Every other instance runs the
//! kernel's code untouched. The module writes no field the kernel manages for another
//! purpose: only the IN_BUSY_POLL/MISSED bits of an instance whose SCHED it holds, as
//! the kernel's own busy poll does.
//!
//! Files, each importing only those above it:
//!
//! ```text
//! sys.rs       every C function (kbp_glue.c) behind a safe wrapper or a documented unsafe fn
//! stats.rs     leaf: counters snapshots and the debugfs text
//! params.rs    module parameters, validated
//! platform.rs  kbp-core's atomic word and Platform; the kthread handle
//! slot.rs      one instance place of a thread, as kbp-core's `Napi`
//! worker.rs    one KBP thread: its slots, its poller, its snapshot
//! kbp_main.rs  life cycle: devices, hooks, notifier, CPU hotplug, debugfs callbacks
//! ```

use core::ffi::c_uint;

use kbp_core::{Bind, DeviceWord, Hook, IdleMode, NapiBits};
use kernel::prelude::*;
use kernel::sync::atomic::{ordering, Atomic};

mod params;
mod platform;
mod slot;
mod stats;
mod sys;
mod worker;

use params::{BStrText, CpuList, Params, MAX_DEVS, MAX_THREADS};
use platform::KernelWord;
use stats::BufWriter;
use sys::{RawNapi, RawNetDevice};
use worker::{Worker, CAP};

/// Most NAPI instances read at load (every thread serves at most [`CAP`]).
const MAX_NAPIS: usize = MAX_THREADS * CAP;

/// Longest `ifaces` item: a 15-byte name, `@` and a 7-digit PID.
const NAME_BYTES: usize = 24;

module! {
    type: Kbp,
    name: "kbp",
    authors: ["KBP developers"],
    description: "Kernel busy poll: a kthread serves NAPI instances instead of NET_RX_SOFTIRQ",
    license: "GPL",
}

/// Everything the hooks, the notifier and debugfs share: the devices and the workers.
/// Immutable once published in [`CONTEXT`] but for its atomics.
pub(crate) struct Context {
    /// The configured devices. Lifetime rule: a non-null pointer is a reference the
    /// module holds (`dev_get`, taken under RTNL at load after the notifier was
    /// registered), and it is put exactly once, by whoever swaps it out for null
    /// ([`Context::unserve`]: the notifier at the device's NETDEV_UNREGISTER, or the
    /// unload). A pointer is dereferenced only at load, under RTNL; elsewhere it is
    /// only compared (the hook, the notifier) or tested for null (debugfs).
    devs: [Atomic<*mut RawNetDevice>; MAX_DEVS],
    /// Whether each device is served (kbp-core's `binding`): SERVED once its reference
    /// is stored, GONE from its NETDEV_UNREGISTER or the unload on, never served again.
    served: [DeviceWord<KernelWord>; MAX_DEVS],
    /// Their `ifaces` items (`eth0`, `eth0@1234`), copied at load (debugfs never reads
    /// a device).
    names: [([u8; NAME_BYTES], usize); MAX_DEVS],
    /// How many `ifaces` items (devices not looked up yet, or whose lookup failed, are
    /// null in `devs`).
    ndevs: usize,
    /// One per CPU of `cpus`.
    workers: KVec<KBox<Worker>>,
    /// An instance could not be adopted (every slot taken); warned once.
    warned_full: Atomic<u32>,
}

// SAFETY: the device pointers follow the lifetime rule on `devs` and are read and
// swapped atomically; everything else shared is atomic or immutable after publication.
unsafe impl Sync for Context {}
// SAFETY: as above; nothing is tied to the creating thread.
unsafe impl Send for Context {}

/// The live context for the callbacks (null when not loaded).
///
/// It is published before the first callback is registered and reset only after the
/// last one was unregistered (each unregistration waits for callbacks in flight).
static CONTEXT: Atomic<*mut Context> = Atomic::new(core::ptr::null_mut());

fn context() -> Option<&'static Context> {
    let ctx = CONTEXT.load(ordering::Acquire);
    // SAFETY: non-null only while the context is alive (see `CONTEXT`).
    (!ctx.is_null()).then(|| unsafe { &*ctx })
}

impl Context {
    /// Device `d`'s name as copied at load.
    fn saved_name(&self, d: usize) -> &[u8] {
        match self.names.get(d) {
            Some((name, len)) => name.get(..*len).unwrap_or(b"?"),
            None => b"?",
        }
    }

    /// Device `d`'s name, or `(gone)` once it unregistered (debugfs).
    fn name(&self, d: u32) -> &[u8] {
        match self.devs.get(d as usize) {
            Some(dev) if dev.load(ordering::Acquire).is_null() => b"(gone)",
            _ => self.saved_name(d as usize),
        }
    }

    /// The worker and slot serving `napi`, adopting it if it is a new instance of a
    /// served device. The caller holds `napi`'s SCHED (entry hook).
    fn serving(&self, napi: *mut RawNapi) -> Option<(&Worker, usize)> {
        for w in self.workers.iter() {
            if let Some(id) = w.find(napi) {
                // An instance of a device that unregistered or left its namespace is
                // no longer KBP's: the kernel's path takes it.
                return w.slots[id].served().then_some((w, id));
            }
        }
        // SAFETY: the hook's caller holds `napi`'s SCHED, so it is alive.
        let dev = unsafe { sys::napi_dev(napi) };
        // Only compared: `devs` may be swapped out (and the device put) right after.
        let d = (0..self.ndevs).find(|&d| {
            let served = self.devs[d].load(ordering::Acquire);
            !served.is_null() && served == dev && self.served[d].is_served()
        })?;
        let w = self.workers.iter().min_by_key(|w| w.live())?;
        match w.adopt(napi, d as u32, &self.served[d]) {
            Some((id, Bind::Served)) => Some((w, id)),
            // The device was given up since the check above; the notifier's pass over
            // the slots may have run before this claim, so the claim retired the slot
            // itself (kbp-core's `binding`): the kernel's path takes the instance.
            Some((_, Bind::Retired)) => None,
            None => {
                if self.warned_full.xchg(1, ordering::Relaxed) == 0 {
                    pr_warn!(
                        "{}: a new NAPI instance finds every slot taken; it stays on \
                         NET_RX_SOFTIRQ\n",
                        &BStrText(self.saved_name(d))
                    );
                }
                None
            }
        }
    }
}

/// Entry hook of `__napi_schedule()`/`__napi_schedule_irqoff()` (C glue, ftrace
/// callback: any context, preemption disabled). True: KBP took the instance and the
/// function's body is skipped.
#[unsafe(no_mangle)]
extern "C" fn kbp_rust_on_schedule(napi: *mut RawNapi) -> bool {
    let Some(ctx) = context() else {
        return false;
    };
    let Some((w, id)) = ctx.serving(napi) else {
        return false;
    };
    // SAFETY: the hook's caller holds `napi`'s SCHED, so it is alive.
    let bits = NapiBits::from_bits_truncate(unsafe { sys::napi_bits(napi) });
    kbp_core::on_schedule(&w.shared, id, bits, &w.platform()) == Hook::Divert
}

/// Entry of `__netif_napi_del_locked()` (C glue, ftrace callback; instance lock held,
/// the instance disabled or never enabled, so KBP owns nothing of it): forget it.
#[unsafe(no_mangle)]
extern "C" fn kbp_rust_on_delete(napi: *mut RawNapi) {
    let Some(ctx) = context() else {
        return;
    };
    for w in ctx.workers.iter() {
        if let Some(id) = w.find(napi) {
            w.slots[id].clear();
        }
    }
}

impl Context {
    /// Gives device `d` up: stops adopting its instances, retires its slots (the entry
    /// hook passes them through, and an instance still owned is let go at its next
    /// poll: kbp-core's `Napi::served`) and puts the module's reference. True if this
    /// call put it. Called by the notifier (RTNL held) and by the unload (no lock),
    /// which may race: kbp-core's `binding::unserve` lets one of them retire, and the
    /// pointer's exchange lets one of them put. Nothing here waits or sleeps.
    fn unserve(&self, d: usize) -> bool {
        let slots = self
            .workers
            .iter()
            .flat_map(|w| w.slots.iter().map(|s| &s.binding));
        let _ = kbp_core::binding::unserve(&self.served[d], d as u32, slots);
        let dev = self.devs[d].xchg(core::ptr::null_mut(), ordering::Full);
        if dev.is_null() {
            return false;
        }
        // SAFETY: a non-null pointer in `devs` is a reference the module holds (the
        // rule on `devs`), and this exchange took it out: put once.
        unsafe { sys::dev_put(dev) };
        true
    }
}

/// NETDEV_UNREGISTER of any device in any network namespace (C glue, RTNL held; the
/// notifier chain is global, `net/core/dev.c:2269-2272`). It comes when a device
/// unregisters, also when its namespace is destroyed, and when it moves to another
/// namespace (`dev_change_net_namespace`, which keeps it registered), and it is handled
/// the same from load to unload: the notifier is registered before the first device
/// reference is taken and unregistered after the last one was put. For a served
/// device: [`Context::unserve`], at once; nothing waits. Both paths close the device
/// first, so its instances are disabled and KBP owns none of them. They stay in their
/// slots until the delete observer sees them deleted (`free_netdev()` deletes any
/// left); a moved device keeps them, and they take the kernel's path when it is opened
/// again.
#[unsafe(no_mangle)]
extern "C" fn kbp_rust_netdev_unregister(dev: *mut RawNetDevice) {
    let Some(ctx) = context() else {
        return;
    };
    if dev.is_null() {
        return;
    }
    for d in 0..ctx.ndevs {
        // Only compared; a device already given up is null here.
        if ctx.devs[d].load(ordering::Acquire) == dev && ctx.unserve(d) {
            pr_info!(
                "device {} unregistered or left its namespace; its reference put\n",
                &BStrText(ctx.saved_name(d))
            );
        }
    }
}

/// CPU hotplug callback (C glue) when `cpu` came online.
#[unsafe(no_mangle)]
extern "C" fn kbp_rust_cpu_online(cpu: c_uint) {
    if let Some(ctx) = context() {
        ctx.workers
            .iter()
            .filter(|w| w.cpu as c_uint == cpu)
            .for_each(|w| w.repin());
    }
}

/// debugfs `stats` callback (C glue): formats the threads' snapshots into `buf`.
#[unsafe(no_mangle)]
extern "C" fn kbp_rust_stats_format(buf: *mut u8, size: usize) -> usize {
    let Some(ctx) = context() else {
        return 0;
    };
    if buf.is_null() {
        return 0;
    }
    // SAFETY: the glue passes a writable buffer of `size` bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf, size) };
    let mut out = BufWriter { buf, len: 0 };
    let _ = stats::format(&mut out, || {
        ctx.workers.iter().map(|w| w.view(|d| ctx.name(d)))
    });
    out.len
}

/// What `init` registered, undone by `drop` (see there for the order).
#[derive(Default)]
struct Registered {
    delete_hook: bool,
    schedule_hook: bool,
    notifier: bool,
    cpuhp: bool,
    debugfs: bool,
}

struct Kbp {
    ctx: KBox<Context>,
    reg: Registered,
}

/// Why an ftrace registration failed, for the one dmesg line that refuses the load.
fn hook_error(what: &str, rc: i32) -> Error {
    if rc == -(kernel::bindings::EOPNOTSUPP as i32) {
        pr_err!(
            "this kernel was built without CONFIG_DYNAMIC_FTRACE_WITH_ARGS: kbp takes NAPI \
             instances at __napi_schedule() with an ftrace hook and cannot load without it\n"
        );
    } else if rc == EBUSY.to_errno() {
        pr_err!(
            "cannot hook {}: another ftrace user that modifies the instruction pointer \
             (a livepatch, a kprobe with a post handler) owns it, or function tracing is \
             off (sysctl kernel.ftrace_enabled=0)\n",
            what
        );
    } else {
        pr_err!("cannot hook {} ({})\n", what, rc);
    }
    Error::from_errno(rc)
}

impl Kbp {
    /// Looks the configured devices up and takes a reference on each, then reads their
    /// instances and deals them to the workers; returns how many there are. All of it
    /// under RTNL, with the notifier already registered: no device can unregister or
    /// leave its namespace between its lookup and the moment the notifier can give it
    /// up (both happen under RTNL and send NETDEV_UNREGISTER, `net/core/dev.c:12475`,
    /// `:12544`, `:12637`, `:12744`), and none does while its instances are read. The
    /// hold is short and waits for nothing but the devices' instance locks (which nest
    /// inside RTNL: `dev.c:12726`, `__dev_change_net_namespace()` takes `netdev_lock()`
    /// under it, as the driver paths of `Documentation/networking/netdevices.rst`
    /// 215-320 do). No reference is taken before the
    /// notifier is registered, so `register_netdevice_notifier()`, which takes
    /// `pernet_ops_rwsem` for writing, never waits for a namespace's `cleanup_net()`
    /// that holds it for reading while it waits for one of our references.
    fn take_devices(&self, params: &Params) -> Result<usize> {
        let rtnl = sys::Rtnl::lock();
        let ctx = &*self.ctx;
        for d in 0..params.nifaces {
            let item = params.iface(d);
            let pid = params.ifaces[d].pid;
            let dev = match sys::dev_get(&rtnl, params.iface_name(d), pid) {
                Ok(dev) => dev,
                Err(e) => {
                    match (e, pid) {
                        (sys::DevGetError::NoProcess, Some(pid)) => pr_err!(
                            "invalid parameter ifaces: {}: no process {} (NAME@PID names \
                             the interface in the network namespace of process PID)\n",
                            &BStrText(item),
                            pid
                        ),
                        (_, Some(pid)) => pr_err!(
                            "invalid parameter ifaces: unknown interface {} in the network \
                             namespace of process {}\n",
                            &BStrText(params.iface_name(d)),
                            pid
                        ),
                        (_, None) => pr_err!(
                            "invalid parameter ifaces: unknown interface {}\n",
                            &BStrText(item)
                        ),
                    }
                    return Err(EINVAL);
                }
            };
            // One device named twice (`eth0,eth0@1`) would be dealt to two slots.
            if let Some(first) = (0..d).find(|&e| ctx.devs[e].load(ordering::Acquire) == dev) {
                pr_err!(
                    "invalid parameter ifaces: {} and {} are the same device\n",
                    &BStrText(params.iface(first)),
                    &BStrText(item)
                );
                // SAFETY: the reference `dev_get` just took, not stored anywhere.
                unsafe { sys::dev_put(dev) };
                return Err(EINVAL);
            }
            // From here the reference is the context's (the rule on `devs`); `drop`
            // puts it if the load fails.
            ctx.devs[d].store(dev, ordering::Release);
            ctx.served[d].serve();
        }
        self.deal_instances(params, &rtnl)
    }

    /// Reads the devices' instances and deals them to the workers; returns how many
    /// there are. Each device's instances are read and put into slots under its
    /// instance lock, with the delete observer registered: one deleted later is
    /// forgotten, none is missed in between. A first pass counts them for the plan.
    ///
    /// The instances of RX queues and the others (TX completion, or undeclared) are
    /// dealt separately, each class in contiguous runs: every thread gets its share of
    /// receive traffic whatever order the driver registered its instances in. (igb
    /// with separate RX and TX vectors lists its four TX instances before its four RX
    /// ones; one contiguous deal gave one of two threads every RX queue. virtio-net's
    /// pairs deal as before: thread A gets rx1 and tx1, thread B rx0 and tx0.)
    fn deal_instances(&self, params: &Params, _rtnl: &sys::Rtnl) -> Result<usize> {
        let ctx = &*self.ctx;
        let mut scratch = [core::ptr::null_mut(); MAX_NAPIS];
        let mut count = 0usize;
        let mut count_rx = 0usize;
        for d in 0..ctx.ndevs {
            let dev = ctx.devs[d].load(ordering::Acquire);
            // SAFETY: `dev` is referenced by the module and stays so: only the notifier
            // (which cannot run: RTNL is held, `_rtnl`) or the unload put it. Process
            // context; the instance lock nests inside RTNL, the only lock held.
            let lock = unsafe { sys::DevLock::new(dev) };
            let n = lock.napis(&mut scratch);
            count_rx += scratch[..n.min(MAX_NAPIS)]
                .iter()
                .filter(|&&napi| lock.serves_rx(napi))
                .count();
            drop(lock);
            if n == 0 {
                // Nothing to own: the driver hands packets to the per-CPU backlog
                // (netif_rx: loopback, tun, a veth without GRO or XDP), or polls a NAPI
                // registered on another device. Refused rather than half-served.
                pr_err!(
                    "invalid parameter ifaces: {} has no NAPI instance: its driver does not \
                     receive through NAPI (netif_rx and the backlog, which KBP cannot take \
                     over; a veth has NAPI only with GRO or XDP on)\n",
                    &BStrText(params.iface(d))
                );
                return Err(EINVAL);
            }
            if count + n > MAX_NAPIS {
                pr_err!(
                    "invalid parameter ifaces: {} has {} NAPI instances (1 to {} in all)\n",
                    &BStrText(params.iface(d)),
                    n,
                    MAX_NAPIS
                );
                return Err(EINVAL);
            }
            count += n;
        }
        let threads = ctx.workers.len();
        if count < threads || count > threads * CAP {
            pr_err!(
                "invalid parameter cpus: {} thread(s) for {} NAPI instance(s) (each thread \
                 serves 1..={})\n",
                threads,
                count,
                CAP
            );
            return Err(EINVAL);
        }
        // The `k`th instance of a class of `c` (in the devices' order) goes to thread
        // `k * threads / c`.
        let count_other = count - count_rx;
        let (mut i, mut k_rx, mut k_other) = (0usize, 0usize, 0usize);
        for d in 0..ctx.ndevs {
            let dev = ctx.devs[d].load(ordering::Acquire);
            // SAFETY: as above.
            let lock = unsafe { sys::DevLock::new(dev) };
            let n = lock.napis(&mut scratch).min(MAX_NAPIS);
            for &napi in &scratch[..n] {
                let (k, class) = if lock.serves_rx(napi) {
                    k_rx += 1;
                    (k_rx - 1, count_rx)
                } else {
                    k_other += 1;
                    (k_other - 1, count_other)
                };
                let planned = ctx.workers.get(k * threads / class.max(1));
                let w = match planned {
                    Some(w) if w.live() < CAP => w,
                    // The device gained instances since the count: the emptiest thread.
                    _ => match ctx.workers.iter().min_by_key(|w| w.live()) {
                        Some(w) => w,
                        None => return Err(EINVAL),
                    },
                };
                // Served: nothing can give the device up under RTNL.
                if w.adopt(napi, d as u32, &ctx.served[d]).is_none() {
                    pr_err!("invalid parameter cpus: more NAPI instances than thread slots\n");
                    return Err(EINVAL);
                }
                i += 1;
            }
            drop(lock);
        }
        Ok(i)
    }
}

impl kernel::Module for Kbp {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let params = Params::read()?;
        let mut context = Context {
            devs: [const { Atomic::new(core::ptr::null_mut()) }; MAX_DEVS],
            served: core::array::from_fn(|_| DeviceWord::new()),
            names: [([0; NAME_BYTES], 0); MAX_DEVS],
            ndevs: params.nifaces,
            workers: KVec::new(),
            warned_full: Atomic::new(0),
        };
        for d in 0..params.nifaces {
            let item = params.iface(d);
            let len = item.len().min(NAME_BYTES);
            context.names[d].0[..len].copy_from_slice(&item[..len]);
            context.names[d].1 = len;
        }
        // From here on, dropping `kbp` undoes whatever was done (see `Drop`).
        let mut kbp = Kbp {
            ctx: KBox::new(context, GFP_KERNEL)?,
            reg: Registered::default(),
        };
        let ctx = &mut *kbp.ctx;
        ctx.workers.reserve(params.ncpus, GFP_KERNEL)?;
        for &cpu in &params.cpus[..params.ncpus] {
            let worker = KBox::new(Worker::new(cpu, params.config), GFP_KERNEL)?;
            ctx.workers.push(worker, GFP_KERNEL)?;
        }
        for w in ctx.workers.iter() {
            w.create_thread(params.fifo)?;
        }

        CONTEXT.store(&mut *kbp.ctx as *mut Context, ordering::Release);
        // The notifier first, before any device reference (see `take_devices`). Its
        // replayed NETDEV_REGISTER/UP events are not passed on by the glue.
        // SAFETY: the context lives until `drop`, which unregisters every callback
        // before it resets `CONTEXT` and frees the context.
        kbp.reg.notifier = unsafe { sys::notifier_register() } == 0;
        if !kbp.reg.notifier {
            pr_err!("cannot register a netdevice notifier\n");
            return Err(EINVAL);
        }
        // The delete observer before reading the instances: one deleted after the read
        // is forgotten at once.
        // SAFETY: as above.
        let rc = unsafe { sys::delete_hook_register() };
        if rc != 0 {
            return Err(hook_error("__netif_napi_del_locked", rc));
        }
        kbp.reg.delete_hook = true;
        let count = kbp.take_devices(&params)?;
        kbp.ctx.workers.iter().for_each(|w| w.wake());
        // SAFETY: as above.
        let rc = unsafe { sys::schedule_hook_register() };
        if rc != 0 {
            return Err(hook_error("__napi_schedule", rc));
        }
        kbp.reg.schedule_hook = true;
        // SAFETY: as above.
        kbp.reg.cpuhp = unsafe { sys::cpuhp_register() } == 0;
        if !kbp.reg.cpuhp {
            pr_warn!("no CPU hotplug callback; a thread whose CPU goes offline stays unpinned\n");
        }
        // SAFETY: as above.
        kbp.reg.debugfs = unsafe { sys::debugfs_create() } == 0;
        if !kbp.reg.debugfs {
            pr_warn!("no debugfs; counters unavailable\n");
        }
        let mode = match params.config.idle {
            IdleMode::Spin => "spin",
            IdleMode::Adaptive { .. } => "adaptive",
        };
        pr_info!(
            "serving {} NAPI instance(s) of {} with {} thread(s) on CPUs {} ({} mode, weight \
             {}, budget {}, {} us, idle release {} us)\n",
            count,
            &BStrText(params.ifaces_raw),
            params.ncpus,
            &CpuList(&params.cpus[..params.ncpus]),
            mode,
            params.config.weight,
            params.config.budget,
            params.config.time_limit_ns / 1_000,
            params.config.idle_release_ns / 1_000
        );
        Ok(kbp)
    }
}

impl Drop for Kbp {
    /// Unload, and the undoing of a failed load. First every device is given up:
    /// retired and its reference put, with no lock held and nothing waited for, so a
    /// namespace's `cleanup_net()` waiting for one of them (`netdev_wait_allrefs_any`,
    /// `net/core/dev.c:11696`, under `pernet_ops_rwsem` held for reading,
    /// `net/core/net_namespace.c:673-704`) goes on. The notifier stays registered until
    /// the end, so a NETDEV_UNREGISTER arriving meanwhile is handled as at any time
    /// (the unload and the notifier race only for who puts: `Context::unserve`). The
    /// notifier goes last: `unregister_netdevice_notifier()` takes that rwsem for
    /// writing, and waits only for a `cleanup_net()` that no longer waits for kbp.
    fn drop(&mut self) {
        if self.reg.debugfs {
            sys::debugfs_remove();
        }
        for d in 0..self.ctx.ndevs {
            let _ = self.ctx.unserve(d);
        }
        if self.reg.cpuhp {
            sys::cpuhp_unregister();
        }
        // No hook in flight after this; later schedules take the kernel's path.
        if self.reg.schedule_hook {
            sys::schedule_hook_unregister();
        }
        // Each thread hands every instance it owns back as it stops (a retired one at
        // its next poll already).
        self.ctx.workers.iter().for_each(|w| w.stop());
        if self.reg.delete_hook {
            sys::delete_hook_unregister();
        }
        // Its replayed NETDEV_UNREGISTER events find every device given up.
        if self.reg.notifier {
            sys::notifier_unregister();
        }
        CONTEXT.store(core::ptr::null_mut(), ordering::Release);
        pr_info!("unloaded\n");
    }
}
