//! A simulation of the kernel side of kbp.ko: Linux 7.2's `napi_struct::state` word and
//! a virtio-net-like NAPI driver, on the model's atomics (std or loom), implementing
//! kbp-core's [`Napi`] so that kbp-core's own protocol ([`on_schedule`], [`NapiPort`])
//! runs against it.
//!
//! Line numbers are from the Linux 7.2.12 tree (`net/core/dev.c`, `include/linux/
//! netdevice.h`, `drivers/net/virtio_net.c`). What is modelled:
//!
//! * the state bits at the kernel's positions (netdevice.h:423-450) and the functions
//!   that change them, each one compare-and-swap or `set_bit`/`clear_bit` exactly where
//!   the kernel has one: `napi_schedule_prep` (dev.c:6818), `__napi_schedule`
//!   (dev.c:6799) through the entry hook, `____napi_schedule` (dev.c:5039: the per-CPU
//!   poll list), `napi_complete_done` (dev.c:6860), `__napi_poll`/`napi_poll`
//!   (dev.c:7810/7877), `__napi_busy_loop`'s cmpxchg (dev.c:7085) and `busy_poll_stop`
//!   (dev.c:6969), `napi_disable_locked` (dev.c:7695), `napi_enable_locked`
//!   (dev.c:7744), `__netif_napi_del_locked` (dev.c:7780);
//! * the driver: `skb_recv_done` -> `virtqueue_napi_schedule` (virtio_net.c:2794/725:
//!   `if napi_schedule_prep() { mask; __napi_schedule() }`), `virtnet_poll`
//!   (virtio_net.c:3006: mask, receive up to budget, and below budget
//!   `virtqueue_napi_complete` (virtio_net.c:734): arm, `napi_complete_done`, re-check
//!   the ring and schedule again, or mask again when told not to re-arm), and
//!   `virtnet_napi_do_enable` (virtio_net.c:2805: enable, then schedule once).
//!
//! The device's ring and its interrupt-enable flag share one word (`pending << 1 |
//! ARMED`), so the virtio race (a buffer lands while the driver re-arms, decided by
//! `virtqueue_enable_cb_prepare`/`virtqueue_poll` and memory barriers) is decided on
//! one location, as in [`crate::sim`].
//!
//! Not modelled: GRO, netpoll (NPSVC only as the disabled marker), the gro-flush timer
//! and deferred IRQs (`napi_defer_hard_irqs` = 0, so `napi_complete_done` returns true
//! and `busy_poll_stop` always polls), PREFER_BUSY_POLL (no busy poller here asks for
//! it), and the kernel's threaded NAPI: a THREADED instance's `__napi_schedule` takes
//! the same per-CPU list as the softirq (the kthread would poll it with the same
//! `__napi_poll` rules).
//!
//! # Ghost state: who owns SCHED
//!
//! Bits 16 and up of the simulated word are not the kernel's: they name the holder of
//! SCHED ([`Owner`]) and the CPU whose list holds a softirq-owned instance, and they are
//! written in the same compare-and-swap that sets or clears SCHED. So "never two
//! owners" holds by construction, and every actor asserts that it is the owner before it
//! polls, completes or flips a bit as owner (KBP through [`Napi`], the softirq, the busy
//! poller, the disabler). A violation panics with "owner": loom reports the panic, the
//! sequential suites turn it into a failure.
//!
//! # Deletion
//!
//! [`NapiWorld::delete`] models kbp.ko's delete observer at `__netif_napi_del_locked`
//! (the instance is disabled; the observer empties KBP's slot), then frees the instance.
//! After that, any [`Napi`] call on it except [`Napi::state`] and [`Napi::present`]
//! (the empty slot: no bits, not present, as in kbp.ko) panics with "touched after
//! deletion".

use kbp_core::napi::{Hook, Napi, NapiBits, NapiPort, on_schedule};
use kbp_core::{Platform, Shared};

use crate::sim::{CAP, SimPlatform};
use crate::sync::{AtomicBool, AtomicU32, Ordering, Word};

/// The kernel's `NAPIF_STATE_*` bits (netdevice.h:423-450), at the kernel's positions.
pub mod kbits {
    /// `NAPIF_STATE_SCHED`.
    pub const SCHED: u32 = 1 << 0;
    /// `NAPIF_STATE_MISSED`.
    pub const MISSED: u32 = 1 << 1;
    /// `NAPIF_STATE_DISABLE`.
    pub const DISABLE: u32 = 1 << 2;
    /// `NAPIF_STATE_NPSVC`.
    pub const NPSVC: u32 = 1 << 3;
    /// `NAPIF_STATE_LISTED`: added to the device's list (`netif_napi_add`).
    pub const LISTED: u32 = 1 << 4;
    /// `NAPIF_STATE_NO_BUSY_POLL` (`netif_napi_add_tx`).
    pub const NO_BUSY_POLL: u32 = 1 << 5;
    /// `NAPIF_STATE_IN_BUSY_POLL`.
    pub const IN_BUSY_POLL: u32 = 1 << 6;
    /// `NAPIF_STATE_PREFER_BUSY_POLL`.
    pub const PREFER_BUSY_POLL: u32 = 1 << 7;
    /// `NAPIF_STATE_THREADED`.
    pub const THREADED: u32 = 1 << 8;
    /// `NAPIF_STATE_SCHED_THREADED`.
    pub const SCHED_THREADED: u32 = 1 << 9;
    /// `NAPIF_STATE_THREADED_BUSY_POLL`.
    pub const THREADED_BUSY_POLL: u32 = 1 << 11;
    /// Every kernel bit (the rest of the word is ghost state).
    pub const KERNEL: u32 = 0xffff;
}

/// Who holds an instance's SCHED (ghost state, bits 16-19 of the simulated word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Owner {
    /// SCHED is clear.
    Nobody = 0,
    /// An interrupt handler won `napi_schedule_prep` and has not called
    /// `__napi_schedule` yet.
    Irq = 1,
    /// Inside `__napi_schedule`'s entry hook: being handed to KBP or the kernel.
    Hook = 2,
    /// KBP's poller (diverted by the hook).
    Kbp = 3,
    /// Listed on a CPU's softirq poll list (the kernel's normal path).
    Softirq = 4,
    /// A socket busy poller (`__napi_busy_loop`).
    BusyPoll = 5,
    /// `napi_disable` (and the disabled instance).
    Disabler = 6,
}

const OWNER_SHIFT: u32 = 16;
const CPU_SHIFT: u32 = 20;
const GHOST_OWNER: u32 = 0xf << OWNER_SHIFT;
const GHOST_CPU: u32 = 0xf << CPU_SHIFT;

fn owner_of(word: u32) -> Owner {
    match (word & GHOST_OWNER) >> OWNER_SHIFT {
        0 => Owner::Nobody,
        1 => Owner::Irq,
        2 => Owner::Hook,
        3 => Owner::Kbp,
        4 => Owner::Softirq,
        5 => Owner::BusyPoll,
        _ => Owner::Disabler,
    }
}

fn with_owner(word: u32, owner: Owner, cpu: u32) -> u32 {
    (word & !(GHOST_OWNER | GHOST_CPU))
        | (owner as u32) << OWNER_SHIFT
        | (if matches!(owner, Owner::Softirq | Owner::Hook) {
            cpu
        } else {
            0
        }) << CPU_SHIFT
}

/// SCHED is set and held by `owner` (on `cpu`, for the owners that name one).
fn held_by(word: u32, owner: Owner, cpu: u32) -> bool {
    word & kbits::SCHED != 0
        && owner_of(word) == owner
        && (!matches!(owner, Owner::Softirq | Owner::Hook)
            || (word & GHOST_CPU) >> CPU_SHIFT == cpu)
}

/// The CPU of KBP's poller thread (its softirqs run at its `local_bh_enable`).
pub const KBP_CPU: u32 = 0;

const ARMED: u32 = 1;

/// A one-shot injection into the next driver poll of an instance: the NIC writes `n`
/// packets into `target` while the poll runs (after it took its batch), and if `irq`
/// an interrupt for `target` fires on another CPU then (`napi_schedule` of a busy or
/// owned instance: MISSED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inject {
    /// The instance that receives.
    pub target: usize,
    /// Packets written.
    pub n: u32,
    /// An interrupt (the IRQ handler, whatever the interrupt-enable flag says).
    pub irq: bool,
}

/// One simulated kernel NAPI instance and its virtio-like receive queue.
pub struct SimNapi {
    /// `napi->state` (kernel bits) plus ghost owner and CPU.
    state: AtomicU32,
    /// `pending << 1 | ARMED`: the used ring and the callback-enable flag.
    hw: AtomicU32,
    produced: AtomicU32,
    by_kbp: AtomicU32,
    by_softirq: AtomicU32,
    by_busy_poll: AtomicU32,
    missed: AtomicU32,
    polling: AtomicBool,
    /// KBP's slot still names the instance (cleared by the delete observer).
    present: AtomicBool,
    /// KBP's slot is not retired (kbp.ko retires a device's slots at its
    /// NETDEV_UNREGISTER: [`NapiWorld::retire`]).
    served: AtomicBool,
    /// Freed: any touch is a use after free.
    deleted: AtomicBool,
    /// `Inject` as `n << 8 | target << 2 | irq << 1 | 1`, 0 for none.
    inject: AtomicU32,
    weight: u32,
}

impl SimNapi {
    fn new(weight: u32) -> Self {
        SimNapi {
            // netif_napi_add: SCHED|NPSVC (not enabled yet) and LISTED; the driver's
            // open enables it (NapiWorld::new does).
            state: AtomicU32::new(with_owner(
                kbits::SCHED | kbits::NPSVC | kbits::LISTED,
                Owner::Disabler,
                0,
            )),
            hw: AtomicU32::new(ARMED),
            produced: AtomicU32::new(0),
            by_kbp: AtomicU32::new(0),
            by_softirq: AtomicU32::new(0),
            by_busy_poll: AtomicU32::new(0),
            missed: AtomicU32::new(0),
            polling: AtomicBool::new(false),
            present: AtomicBool::new(true),
            served: AtomicBool::new(true),
            deleted: AtomicBool::new(false),
            inject: AtomicU32::new(0),
            weight,
        }
    }

    /// The whole word (kernel bits and ghost owner), for RMWs.
    fn update(&self, mut f: impl FnMut(u32) -> Option<u32>) -> Result<u32, u32> {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, &mut f)
    }

    /// `set_bit` / `clear_bit`: one atomic RMW of a kernel bit, leaving the rest.
    fn set_bits(&self, set: u32, clear: u32) {
        let _ = self.update(|w| Some((w | set) & !clear));
    }
}

/// A snapshot of one instance, for checkers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NapiSnapshot {
    /// Kernel bits of `napi->state`.
    pub bits: u32,
    /// Ghost: who holds SCHED.
    pub owner: Owner,
    /// Ghost: the CPU whose softirq list holds it (when `owner` is `Softirq`).
    pub cpu: u32,
    /// Packets written by the NIC.
    pub produced: u32,
    /// Packets polled by KBP (through [`Napi::poll`]).
    pub by_kbp: u32,
    /// Packets polled by the kernel's softirq path.
    pub by_softirq: u32,
    /// Packets polled by a socket busy poller.
    pub by_busy_poll: u32,
    /// Packets waiting in the ring.
    pub pending: u32,
    /// The interrupt (virtqueue callback) is enabled.
    pub irq_armed: bool,
    /// `napi_schedule_prep` calls that found SCHED set and set MISSED.
    pub missed: u32,
    /// Deleted (freed).
    pub deleted: bool,
}

impl NapiSnapshot {
    /// Packets consumed by anybody.
    pub fn consumed(&self) -> u32 {
        self.by_kbp + self.by_softirq + self.by_busy_poll
    }
}

/// The entry hook installed on `__napi_schedule` (see [`NapiWorld::with_hook`]).
pub type HookFn = dyn Fn(&NapiWorld, usize) -> Hook + Send + Sync;

/// A simulated kernel: [`CAP`] NAPI instances of one device, KBP's [`Shared`] state,
/// the platform, and the `__napi_schedule` entry hook.
pub struct NapiWorld {
    /// What KBP's poller shares with the hook.
    pub shared: Shared<Word, CAP>,
    /// The platform (clock, softirq mask, park).
    pub platform: SimPlatform,
    napis: [SimNapi; CAP],
    /// The ftrace hook is registered (the module is loaded).
    hooked: AtomicBool,
    hook: Box<HookFn>,
    /// Softirqs raised by `__napi_schedule` run at the next explicit
    /// [`NapiWorld::softirq_round`] (sequential suites) instead of at IRQ exit and
    /// `local_bh_enable` (loom).
    pub defer_softirq: bool,
}

/// kbp.ko's hook: [`on_schedule`] for the instance, with its current `napi->state`;
/// a retired slot is not looked up (`Context::serving` answers None: the kernel's
/// path).
pub fn kbp_hook(world: &NapiWorld, id: usize) -> Hook {
    if !world.napis[id].served.load(Ordering::Acquire) {
        return Hook::PassThrough;
    }
    on_schedule(&world.shared, id, world.bits(id), &world.platform)
}

impl NapiWorld {
    /// Instances of weight `weight`, enabled (`virtnet_napi_do_enable` at open), with
    /// kbp.ko's hook ([`kbp_hook`]) registered.
    pub fn new(platform: SimPlatform, weight: u32) -> Self {
        Self::with_hook(platform, weight, Box::new(kbp_hook))
    }

    /// The same with another hook (to seed a bug in a test).
    pub fn with_hook(platform: SimPlatform, weight: u32, hook: Box<HookFn>) -> Self {
        let world = NapiWorld {
            shared: Shared::new(),
            platform,
            napis: core::array::from_fn(|_| SimNapi::new(weight.max(1))),
            hooked: AtomicBool::new(true),
            hook,
            defer_softirq: false,
        };
        for id in 0..CAP {
            // napi_enable_locked (dev.c:7744) without the schedule of
            // virtnet_napi_do_enable: the rings are empty.
            let _ = world.napis[id].update(|w| {
                Some(with_owner(
                    w & !(kbits::SCHED | kbits::NPSVC),
                    Owner::Nobody,
                    0,
                ))
            });
        }
        world
    }

    /// The module unloads: the hook is unregistered (ftrace waits for calls in flight,
    /// which still run against the live `Shared`).
    pub fn unhook(&self) {
        self.hooked.store(false, Ordering::Release);
    }

    /// The instances as kbp-core ports for a poller.
    pub fn ports(&self) -> [NapiPort<NapiRef<'_>>; CAP] {
        core::array::from_fn(|id| NapiPort::new(NapiRef { world: self, id }))
    }

    /// Instance `id`'s kernel bits as kbp-core's [`NapiBits`] (an empty slot reads
    /// no bits, as kbp.ko's `SlotNapi` does; [`Napi::present`] tells it is empty).
    pub fn bits(&self, id: usize) -> NapiBits {
        let napi = &self.napis[id];
        if !napi.present.load(Ordering::Acquire) {
            return NapiBits::empty();
        }
        let w = napi.state.load(Ordering::Acquire);
        let mut bits = NapiBits::empty();
        for (k, b) in [
            (kbits::SCHED, NapiBits::SCHED),
            (kbits::MISSED, NapiBits::MISSED),
            (kbits::DISABLE, NapiBits::DISABLE),
            (kbits::NPSVC, NapiBits::NPSVC),
            (kbits::IN_BUSY_POLL, NapiBits::IN_BUSY_POLL),
            (kbits::THREADED, NapiBits::THREADED),
            (kbits::NO_BUSY_POLL, NapiBits::NO_BUSY_POLL),
        ] {
            bits.set(b, w & k != 0);
        }
        bits
    }

    /// A snapshot of instance `id`.
    pub fn napi(&self, id: usize) -> NapiSnapshot {
        let n = &self.napis[id];
        let w = n.state.load(Ordering::Acquire);
        let hw = n.hw.load(Ordering::Acquire);
        NapiSnapshot {
            bits: w & kbits::KERNEL,
            owner: owner_of(w),
            cpu: (w & GHOST_CPU) >> CPU_SHIFT,
            produced: n.produced.load(Ordering::Acquire),
            by_kbp: n.by_kbp.load(Ordering::Acquire),
            by_softirq: n.by_softirq.load(Ordering::Acquire),
            by_busy_poll: n.by_busy_poll.load(Ordering::Acquire),
            pending: hw >> 1,
            irq_armed: hw & ARMED != 0,
            missed: n.missed.load(Ordering::Acquire),
            deleted: n.deleted.load(Ordering::Acquire),
        }
    }

    /// Arms a one-shot [`Inject`] into the next driver poll of `id`.
    pub fn inject_during_next_poll(&self, id: usize, inject: Inject) {
        let code = inject.n.min(0xff_ffff) << 8
            | (inject.target as u32 & 0x3f) << 2
            | u32::from(inject.irq) << 1
            | 1;
        self.napis[id].inject.store(code, Ordering::Release);
    }

    /// kbp.ko's NETDEV_UNREGISTER for the instance's device (it unregisters, or leaves
    /// the namespace it was named in): the slot is retired (`Context::unserve`, kbp-core's
    /// `binding::unserve`; that race with a new claim is loom model (l)), so
    /// the hook passes the instance through and KBP lets go of it at its next poll
    /// ([`Napi::served`]).
    pub fn retire(&self, id: usize) {
        self.napis[id].served.store(false, Ordering::Release);
    }

    /// Marks instance `id` as excluded from busy polling, as `netif_napi_add_tx` does
    /// for a TX-completion instance when the driver adds it: NO_BUSY_POLL, which
    /// nothing clears.
    pub fn mark_tx(&self, id: usize) {
        self.napis[id].set_bits(kbits::NO_BUSY_POLL, 0);
    }

    /// Sets `NAPI_STATE_THREADED` (the administrator writes the sysfs `threaded` file;
    /// `napi_set_threaded` sets the bit with `set_bit`).
    pub fn set_threaded(&self, id: usize, threaded: bool) {
        let n = &self.napis[id];
        if threaded {
            n.set_bits(kbits::THREADED, 0);
        } else {
            n.set_bits(0, kbits::THREADED);
        }
    }

    fn assert_owner(&self, id: usize, who: &[Owner], what: &str) {
        let n = &self.napis[id];
        assert!(
            !n.deleted.load(Ordering::Acquire),
            "instance {id} touched after deletion ({what})"
        );
        let w = n.state.load(Ordering::Acquire);
        assert!(
            w & kbits::SCHED != 0 && who.contains(&owner_of(w)),
            "{what} on instance {id} by {who:?}, but the owner is {:?} (state {:#x})",
            owner_of(w),
            w & kbits::KERNEL
        );
    }

    // ----- the device -----

    /// The NIC writes `n` packets into instance `id`'s ring and, if its interrupt is
    /// enabled, the interrupt fires on `cpu` (`skb_recv_done`), followed by IRQ exit.
    pub fn produce(&self, id: usize, n: u32, cpu: u32) {
        let napi = &self.napis[id];
        if napi.deleted.load(Ordering::Acquire) {
            return;
        }
        napi.produced.fetch_add(n, Ordering::AcqRel);
        let hw = napi.hw.fetch_add(n << 1, Ordering::AcqRel);
        if hw & ARMED != 0 {
            self.irq(id, cpu);
        }
    }

    /// The interrupt handler on `cpu` (`skb_recv_done`, virtio_net.c:2794), then IRQ
    /// exit (which runs raised softirqs unless they are deferred).
    pub fn irq(&self, id: usize, cpu: u32) {
        if self.napis[id].deleted.load(Ordering::Acquire) {
            return;
        }
        self.virtqueue_napi_schedule(id, cpu);
        self.bh_enable(cpu);
    }

    fn disable_cb(&self, id: usize) {
        let _ = self.napis[id].hw.fetch_and(!ARMED, Ordering::AcqRel);
    }

    /// `virtqueue_enable_cb_prepare`: callbacks on again.
    fn enable_cb_prepare(&self, id: usize) {
        let _ = self.napis[id].hw.fetch_or(ARMED, Ordering::AcqRel);
    }

    /// `virtqueue_napi_schedule` (virtio_net.c:725).
    fn virtqueue_napi_schedule(&self, id: usize, cpu: u32) {
        if self.napi_schedule_prep(id) {
            self.disable_cb(id);
            self.napi_schedule_by(id, Owner::Irq, cpu);
        }
    }

    /// `virtnet_poll` (virtio_net.c:3006) run by `who` (the owner) on `cpu`.
    fn driver_poll(&self, id: usize, budget: u32, who: Owner, cpu: u32) -> u32 {
        let napi = &self.napis[id];
        assert!(
            !napi.polling.swap(true, Ordering::AcqRel),
            "instance {id} polled twice at once"
        );
        if budget > 0 {
            self.disable_cb(id);
        }
        let mut received = 0;
        let _ = napi
            .hw
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |hw| {
                received = (hw >> 1).min(budget);
                Some(hw - (received << 1))
            });
        match who {
            Owner::Kbp => &napi.by_kbp,
            Owner::BusyPoll => &napi.by_busy_poll,
            _ => &napi.by_softirq,
        }
        .fetch_add(received, Ordering::AcqRel);
        self.platform
            .advance(crate::sim::POLL_COST_NS + crate::sim::PACKET_COST_NS * u64::from(received));
        let inject = napi.inject.swap(0, Ordering::AcqRel);
        if inject != 0 {
            let target = ((inject >> 2) & 0x3f) as usize % CAP;
            self.produce(target, inject >> 8, cpu + 1);
            if inject & 2 != 0 {
                self.virtqueue_napi_schedule(target, cpu + 1);
            }
        }
        napi.polling.store(false, Ordering::Release);
        if received < budget {
            // virtqueue_napi_complete (virtio_net.c:734).
            self.enable_cb_prepare(id);
            if self.napi_complete_done(id, who, cpu) {
                // virtqueue_poll: buffers the poll did not take.
                if self.napis[id].hw.load(Ordering::Acquire) >> 1 != 0 {
                    self.virtqueue_napi_schedule(id, cpu);
                }
            } else {
                self.disable_cb(id);
            }
        }
        received
    }

    // ----- napi->state -----

    /// `napi_schedule_prep` (dev.c:6818): refused under DISABLE; wins SCHED, or sets
    /// MISSED when SCHED is already set. The winner is [`Owner::Irq`].
    pub fn napi_schedule_prep(&self, id: usize) -> bool {
        let napi = &self.napis[id];
        let old = napi
            .update(|w| {
                if w & kbits::DISABLE != 0 {
                    return None;
                }
                Some(if w & kbits::SCHED != 0 {
                    w | kbits::MISSED
                } else {
                    with_owner(w | kbits::SCHED, Owner::Irq, 0)
                })
            })
            .ok();
        match old {
            None => false,
            Some(w) if w & kbits::SCHED != 0 => {
                napi.missed.fetch_add(1, Ordering::AcqRel);
                false
            }
            Some(_) => true,
        }
    }

    /// `__napi_schedule` (dev.c:6799) by the holder of SCHED: the entry hook, then, on
    /// [`Hook::PassThrough`] or with the module unloaded, `____napi_schedule`
    /// (dev.c:5039): listed on `cpu`'s poll list, NET_RX raised.
    fn napi_schedule_by(&self, id: usize, caller: Owner, cpu: u32) {
        self.assert_owner(id, &[caller], "__napi_schedule");
        let napi = &self.napis[id];
        let to_hook = |w: u32| {
            (w & kbits::SCHED != 0 && owner_of(w) == caller)
                .then(|| with_owner(w, Owner::Hook, cpu))
        };
        napi.update(to_hook).expect("the caller holds SCHED");
        let verdict = if self.hooked.load(Ordering::Acquire) {
            (self.hook)(self, id)
        } else {
            Hook::PassThrough
        };
        match verdict {
            Hook::Divert => {
                // KBP may already have polled and released it: then nothing to note.
                let _ = napi
                    .update(|w| held_by(w, Owner::Hook, cpu).then(|| with_owner(w, Owner::Kbp, 0)));
            }
            Hook::PassThrough => {
                let listed = napi.update(|w| {
                    held_by(w, Owner::Hook, cpu).then(|| with_owner(w, Owner::Softirq, cpu))
                });
                assert!(
                    listed.is_ok(),
                    "instance {id}: passed to the kernel, but somebody else took it meanwhile"
                );
            }
        }
    }

    /// `napi_complete_done` (dev.c:6860) by the owner `who`; true: re-arm the IRQ.
    fn napi_complete_done(&self, id: usize, who: Owner, cpu: u32) -> bool {
        let napi = &self.napis[id];
        if napi.state.load(Ordering::Acquire) & (kbits::NPSVC | kbits::IN_BUSY_POLL) != 0 {
            return false;
        }
        let old = napi
            .update(|w| {
                assert!(
                    w & kbits::SCHED != 0,
                    "napi_complete_done of unscheduled instance {id}"
                );
                let new = w & !(kbits::MISSED
                    | kbits::SCHED
                    | kbits::SCHED_THREADED
                    | kbits::PREFER_BUSY_POLL);
                Some(if w & kbits::MISSED != 0 {
                    new | kbits::SCHED
                } else {
                    with_owner(new, Owner::Nobody, 0)
                })
            })
            .expect("always updates");
        assert!(
            owner_of(old) == who || who == Owner::Kbp && owner_of(old) == Owner::Hook,
            "napi_complete_done on instance {id} by {who:?}, owner {:?}",
            owner_of(old)
        );
        if old & kbits::MISSED != 0 {
            self.napi_schedule_by(id, owner_of(old), cpu);
            return false;
        }
        true
    }

    // ----- the kernel's normal path -----

    /// `local_bh_enable` / IRQ exit on `cpu`: runs NET_RX for `cpu`'s list until it is
    /// empty (unless softirqs are deferred).
    fn bh_enable(&self, cpu: u32) {
        if self.defer_softirq {
            return;
        }
        let mut rounds = 0;
        while self.softirq_round(cpu) > 0 {
            rounds += 1;
            assert!(rounds < 10_000, "softirq on cpu {cpu} never finishes");
        }
    }

    /// One `net_rx_action` pass over `cpu`'s poll list: `napi_poll` (dev.c:7877) of
    /// every instance listed there, with `__napi_poll`'s rules (dev.c:7810). Returns
    /// how many instances were polled.
    pub fn softirq_round(&self, cpu: u32) -> usize {
        let mut polled = 0;
        for id in 0..CAP {
            let w = self.napis[id].state.load(Ordering::Acquire);
            if owner_of(w) != Owner::Softirq || (w & GHOST_CPU) >> CPU_SHIFT != cpu {
                continue;
            }
            polled += 1;
            self.assert_owner(id, &[Owner::Softirq], "softirq poll");
            let weight = self.napis[id].weight;
            let work = {
                let _bh = (&self.platform).mask_softirqs();
                self.driver_poll(id, weight, Owner::Softirq, cpu)
            };
            if work < weight {
                continue;
            }
            // Still ours: a pending disable gets it now (napi_complete), else repoll.
            if self.napis[id].state.load(Ordering::Acquire) & kbits::DISABLE != 0 {
                let _ = self.napi_complete_done(id, Owner::Softirq, cpu);
            }
        }
        polled
    }

    // ----- socket busy poll -----

    /// A socket busy poller on `cpu` (`__napi_busy_loop`, dev.c:7026): takes an idle
    /// instance with the cmpxchg (dev.c:7085), polls it `polls` times, then
    /// `busy_poll_stop` (dev.c:6969). False when the instance was not idle.
    pub fn busy_poll(&self, id: usize, polls: u32, cpu: u32) -> bool {
        let napi = &self.napis[id];
        if napi.deleted.load(Ordering::Acquire) {
            return false;
        }
        let budget = 8;
        let val = napi.state.load(Ordering::Acquire);
        if val & (kbits::DISABLE | kbits::SCHED | kbits::IN_BUSY_POLL) != 0 {
            return false;
        }
        let new = with_owner(val | kbits::IN_BUSY_POLL | kbits::SCHED, Owner::BusyPoll, 0);
        if napi
            .state
            .compare_exchange(val, new, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        for _ in 0..polls {
            self.assert_owner(id, &[Owner::BusyPoll], "busy poll");
            let _bh = (&self.platform).mask_softirqs();
            self.driver_poll(id, budget, Owner::BusyPoll, cpu);
        }
        // busy_poll_stop: clear MISSED, then IN_BUSY_POLL; poll to re-arm.
        napi.set_bits(0, kbits::MISSED);
        napi.set_bits(0, kbits::IN_BUSY_POLL);
        {
            let _bh = (&self.platform).mask_softirqs();
            let rc = self.driver_poll(id, budget, Owner::BusyPoll, cpu);
            if rc == budget {
                self.napi_schedule_by(id, Owner::BusyPoll, cpu);
            }
        }
        self.bh_enable(cpu);
        true
    }

    // ----- disable, enable, delete -----

    /// `napi_disable_locked`, first step: `set_bit(NAPI_STATE_DISABLE)`.
    pub fn begin_disable(&self, id: usize) {
        self.napis[id].set_bits(kbits::DISABLE, 0);
    }

    /// `napi_disable_locked`'s wait loop, one attempt (dev.c:7704-7714): once neither
    /// SCHED nor NPSVC is set, take SCHED|NPSVC (dropping THREADED, THREADED_BUSY_POLL,
    /// PREFER_BUSY_POLL) and clear DISABLE. False: still owned, sleep and retry.
    pub fn try_finish_disable(&self, id: usize) -> bool {
        let napi = &self.napis[id];
        let taken = napi.update(|w| {
            (w & kbits::DISABLE != 0 && w & (kbits::SCHED | kbits::NPSVC) == 0).then(|| {
                with_owner(
                    (w | kbits::SCHED | kbits::NPSVC)
                        & !(kbits::THREADED | kbits::THREADED_BUSY_POLL | kbits::PREFER_BUSY_POLL),
                    Owner::Disabler,
                    0,
                )
            })
        });
        if taken.is_err() {
            return false;
        }
        napi.set_bits(0, kbits::DISABLE);
        true
    }

    /// `napi_disable`: begin, then wait (`usleep_range`; `wait` must yield) until the
    /// owner lets go. Returns the number of waits.
    pub fn disable(&self, id: usize, mut wait: impl FnMut()) -> u32 {
        self.begin_disable(id);
        let mut waits = 0;
        while !self.try_finish_disable(id) {
            waits += 1;
            wait();
        }
        waits
    }

    /// True once the instance is disabled (SCHED|NPSVC held by the disabler).
    pub fn is_disabled(&self, id: usize) -> bool {
        let w = self.napis[id].state.load(Ordering::Acquire);
        w & (kbits::SCHED | kbits::NPSVC) == kbits::SCHED | kbits::NPSVC
            && owner_of(w) == Owner::Disabler
    }

    /// `virtnet_napi_do_enable` (virtio_net.c:2805): `napi_enable_locked` (dev.c:7744:
    /// clear SCHED|NPSVC, MISSED left as it is), then schedule once with softirqs
    /// masked, on `cpu`. False when the instance was not disabled.
    pub fn enable(&self, id: usize, cpu: u32) -> bool {
        let napi = &self.napis[id];
        if !self.is_disabled(id) || napi.deleted.load(Ordering::Acquire) {
            return false;
        }
        let _ = napi.update(|w| {
            Some(with_owner(
                w & !(kbits::SCHED | kbits::NPSVC),
                Owner::Nobody,
                0,
            ))
        });
        {
            let _bh = (&self.platform).mask_softirqs();
            self.virtqueue_napi_schedule(id, cpu);
        }
        self.bh_enable(cpu);
        true
    }

    /// The driver deletes a disabled instance (`__netif_napi_del_locked`, dev.c:7780):
    /// kbp.ko's delete observer empties KBP's slot, LISTED is cleared, and the
    /// instance is freed. Panics unless it is disabled (the kernel WARNs).
    pub fn delete(&self, id: usize) {
        assert!(self.is_disabled(id), "deleting enabled instance {id}");
        let napi = &self.napis[id];
        napi.present.store(false, Ordering::Release);
        napi.set_bits(0, kbits::LISTED);
        napi.deleted.store(true, Ordering::Release);
    }
}

/// One instance of a [`NapiWorld`] as KBP's poller thread (on [`KBP_CPU`]) reaches it:
/// kbp-core's [`Napi`], the model's version of kbp.ko's `SlotNapi`.
pub struct NapiRef<'a> {
    world: &'a NapiWorld,
    id: usize,
}

impl NapiRef<'_> {
    fn kbp_owns(&self, what: &str) {
        self.world
            .assert_owner(self.id, &[Owner::Kbp, Owner::Hook], what);
    }
}

impl Napi for NapiRef<'_> {
    fn state(&self) -> NapiBits {
        self.world.bits(self.id)
    }

    fn present(&self) -> bool {
        self.world.napis[self.id].present.load(Ordering::Acquire)
    }

    fn served(&self) -> bool {
        self.world.napis[self.id].served.load(Ordering::Acquire)
    }

    fn weight(&self) -> u32 {
        // `napi->weight` is constant while the instance lives: reading it needs no
        // SCHED, only a live instance.
        let napi = &self.world.napis[self.id];
        assert!(
            !napi.deleted.load(Ordering::Acquire),
            "instance {} touched after deletion (weight)",
            self.id
        );
        napi.weight
    }

    fn set_in_busy_poll(&self) {
        self.kbp_owns("set IN_BUSY_POLL");
        self.world.napis[self.id].set_bits(kbits::IN_BUSY_POLL, 0);
    }

    fn clear_in_busy_poll(&self) {
        self.kbp_owns("clear IN_BUSY_POLL");
        let napi = &self.world.napis[self.id];
        napi.set_bits(0, kbits::MISSED);
        napi.set_bits(0, kbits::IN_BUSY_POLL);
    }

    fn poll(&self, budget: u32) -> u32 {
        self.kbp_owns("poll");
        assert!(
            self.world.platform.mask_depth() > 0,
            "poll without softirqs masked"
        );
        self.world.driver_poll(self.id, budget, Owner::Kbp, KBP_CPU)
    }

    fn with_softirqs_masked(&self, f: &mut dyn FnMut()) {
        {
            let _bh = (&self.world.platform).mask_softirqs();
            f();
        }
        self.world.bh_enable(KBP_CPU);
    }

    fn complete(&self) {
        self.kbp_owns("napi_complete");
        let _ = self.world.napi_complete_done(self.id, Owner::Kbp, KBP_CPU);
    }

    fn schedule(&self) {
        self.kbp_owns("__napi_schedule");
        // The hook may see the instance as Hook-owned or Kbp-owned; both are KBP's here.
        let napi = &self.world.napis[self.id];
        let _ = napi.update(|w| (owner_of(w) == Owner::Hook).then(|| with_owner(w, Owner::Kbp, 0)));
        self.world.napi_schedule_by(self.id, Owner::Kbp, KBP_CPU);
    }
}
