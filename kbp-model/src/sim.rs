//! Test doubles: a simulated NIC whose receive instances implement
//! [`kbp_core::RxInstance`], and a [`kbp_core::Platform`] with a simulated clock.
//!
//! Each instance has one "hardware" word, `pending << 1 | IRQ_ARMED`, changed only by
//! compare-and-swap, so the driver-side race (a packet lands while the poller re-arms
//! the interrupt) is decided on one location, as `virtqueue_enable_cb` decides it:
//!
//! * the NIC adds a packet; if the interrupt was armed it disarms it and raises it;
//! * `rearm_irq` arms the interrupt only if nothing is pending, else raises it itself;
//! * a poll masks the interrupt first, as `virtnet_poll` does, so an instance scheduled
//!   by something else than its interrupt (see [`SimNic::schedule`]) is masked once
//!   polled.
//!
//! A raised interrupt calls [`kbp_core::Shared::schedule`]; a `Fallback` token (no
//! poller serves the instance) is processed right there by a plain NAPI loop, the
//! "normal softirq path".

use kbp_core::{
    Config, Nanos, Platform, Reschedule, RxInstance, SchedToken, ScheduleOutcome, Shared, Unpark,
};

pub use crate::napi_sim::Inject;

#[cfg(not(kbp_loom))]
use crate::sync::thread;
use crate::sync::{AtomicBool, AtomicU32, Ordering};

/// Instances per simulated NIC (and poll-list capacity).
pub const CAP: usize = 4;

const IRQ_ARMED: u32 = 1;

/// Simulated cost of one poll call and of one packet, in nanoseconds.
pub const POLL_COST_NS: Nanos = 100;
/// Simulated cost of one packet, in nanoseconds.
pub const PACKET_COST_NS: Nanos = 50;

/// One simulated receive queue.
pub struct SimRx {
    /// `pending << 1 | IRQ_ARMED`.
    hw: AtomicU32,
    produced: AtomicU32,
    consumed: AtomicU32,
    polling: AtomicBool,
    fallback_packets: AtomicU32,
    /// A one-shot [`Inject`] into the next poll, encoded as in `napi_sim`.
    inject: AtomicU32,
}

impl SimRx {
    fn new() -> Self {
        SimRx {
            hw: AtomicU32::new(IRQ_ARMED),
            produced: AtomicU32::new(0),
            consumed: AtomicU32::new(0),
            polling: AtomicBool::new(false),
            fallback_packets: AtomicU32::new(0),
            inject: AtomicU32::new(0),
        }
    }
}

/// A snapshot of one simulated queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxSnapshot {
    /// Packets the NIC wrote.
    pub produced: u32,
    /// Packets polled (by the poller or the normal path).
    pub consumed: u32,
    /// Packets the normal path polled.
    pub fallback: u32,
    /// Interrupt armed.
    pub irq_armed: bool,
}

/// The simulated platform: a clock advanced by polls, a softirq mask depth, park/unpark.
pub struct SimPlatform {
    now: std::sync::atomic::AtomicU64,
    mask_depth: std::sync::atomic::AtomicU32,
    unparks: std::sync::atomic::AtomicU32,
    #[cfg(kbp_loom)]
    poller: Option<loom::thread::Thread>,
    #[cfg(not(kbp_loom))]
    poller: Option<thread::Thread>,
}

/// Unmasks the simulated softirqs on drop.
pub struct SimSoftirqGuard<'a>(&'a std::sync::atomic::AtomicU32);

impl Drop for SimSoftirqGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SimPlatform {
    /// A platform whose `park` returns at once (sequential tests): parking is then only
    /// checked, never waited for.
    pub fn sequential() -> Self {
        SimPlatform {
            now: Default::default(),
            mask_depth: Default::default(),
            unparks: Default::default(),
            poller: None,
        }
    }

    /// A platform whose `park` really blocks the calling thread, which must be the
    /// poller thread (used under loom).
    pub fn blocking() -> Self {
        SimPlatform {
            poller: Some(crate::sync::thread::current()),
            ..Self::sequential()
        }
    }

    /// Moves the simulated clock forward.
    pub fn advance(&self, ns: Nanos) {
        self.now.fetch_add(ns, Ordering::Relaxed);
    }

    /// The simulated clock.
    pub fn now_ns(&self) -> Nanos {
        self.now.load(Ordering::Relaxed)
    }

    /// Softirq masks currently held.
    pub fn mask_depth(&self) -> u32 {
        self.mask_depth.load(Ordering::Relaxed)
    }

    /// Unparks issued so far.
    pub fn unparks(&self) -> u32 {
        self.unparks.load(Ordering::Relaxed)
    }
}

impl<'p> Platform for &'p SimPlatform {
    type SoftirqGuard = SimSoftirqGuard<'p>;

    fn mask_softirqs(&self) -> Self::SoftirqGuard {
        self.mask_depth.fetch_add(1, Ordering::Relaxed);
        SimSoftirqGuard(&self.mask_depth)
    }

    fn now(&self) -> Nanos {
        self.now.load(Ordering::Relaxed)
    }

    fn quiescent(&self) {
        #[cfg(kbp_loom)]
        loom::thread::yield_now();
    }

    fn park(&self, still_parked: &dyn Fn() -> bool, deadline: Option<Nanos>) {
        match &self.poller {
            None => {}
            // A deadline on the simulated clock is reached at once: an early return,
            // which the park protocol allows anyway (a spurious wake-up).
            Some(_) if deadline.is_some() => {}
            Some(_) => {
                while still_parked() {
                    crate::sync::thread::park();
                }
            }
        }
    }
}

impl Unpark for SimPlatform {
    fn unpark(&self) {
        self.unparks.fetch_add(1, Ordering::Relaxed);
        if let Some(thread) = &self.poller {
            thread.unpark();
        }
    }
}

/// A simulated NIC with [`CAP`] receive instances, the kbp-core state it shares with
/// its poller, and the platform.
pub struct SimNic {
    /// The state shared with the poller.
    pub shared: Shared<crate::sync::Word, CAP>,
    rx: [SimRx; CAP],
    /// The platform.
    pub platform: SimPlatform,
    /// Weight of the normal (fallback) path's polls.
    pub fallback_weight: u32,
    /// A doorbell device: every packet raises the interrupt (no masking) and re-arming
    /// does not look for pending work, so an event that lands while the instance is owned
    /// is remembered only by MISSED.
    pub doorbell: bool,
    /// Schedules that found the instance owned (MISSED set).
    missed: AtomicU32,
}

/// One instance of a [`SimNic`], as the poller sees it.
pub struct RxPort<'a> {
    nic: &'a SimNic,
    id: usize,
}

impl SimNic {
    /// A NIC with every interrupt armed and nothing attached.
    pub fn new(platform: SimPlatform) -> Self {
        SimNic {
            shared: Shared::new(),
            rx: core::array::from_fn(|_| SimRx::new()),
            platform,
            fallback_weight: Config::DEFAULT.weight,
            doorbell: false,
            missed: AtomicU32::new(0),
        }
    }

    /// A NIC whose interrupts are doorbells (see [`SimNic::doorbell`]).
    pub fn with_doorbell(platform: SimPlatform) -> Self {
        SimNic {
            doorbell: true,
            ..Self::new(platform)
        }
    }

    /// The instances as [`RxInstance`]s for a poller.
    pub fn ports(&self) -> [RxPort<'_>; CAP] {
        core::array::from_fn(|id| RxPort { nic: self, id })
    }

    /// The NIC writes `n` packets into instance `id`'s ring and raises its interrupt if
    /// armed.
    pub fn produce(&self, id: usize, n: u32) {
        let rx = &self.rx[id];
        rx.produced.fetch_add(n, Ordering::Relaxed);
        let mut raise = false;
        let _ = rx
            .hw
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |hw| {
                raise = hw & IRQ_ARMED != 0;
                Some(((hw >> 1) + n) << 1)
            });
        if raise || self.doorbell {
            self.raise_irq(id);
        }
    }

    /// The interrupt handler: schedule the instance, run the normal path on a fallback.
    fn raise_irq(&self, id: usize) {
        self.irq_outcome(self.shared.schedule(id, &self.platform));
    }

    /// What the interrupt handler does with the outcome of a schedule.
    fn irq_outcome(&self, outcome: ScheduleOutcome) {
        match outcome {
            ScheduleOutcome::Fallback(token) => self.normal_path(token),
            ScheduleOutcome::Missed => {
                self.missed.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// An event for instance `id` from something other than its receive interrupt,
    /// whatever that interrupt's mask says (a refill timer, a TX-completion interrupt
    /// sharing the instance, a `napi_schedule` from another CPU): the handler runs
    /// [`kbp_core::Shared::schedule`]. On an owned instance it sets MISSED.
    pub fn schedule(&self, id: usize) {
        self.raise_irq(id);
    }

    /// Schedules that found the instance owned and set MISSED, so far.
    pub fn missed(&self) -> u32 {
        self.missed.load(Ordering::Relaxed)
    }

    /// Arms a one-shot [`Inject`] into the next poll of instance `id` (by the poller or
    /// the normal path): while that poll runs (after it took its batch) the NIC writes
    /// into `target`, and an event for `target` is raised if `irq`.
    pub fn inject_during_next_poll(&self, id: usize, inject: Inject) {
        let code = inject.n.min(0xff_ffff) << 8
            | (inject.target as u32 & 0x3f) << 2
            | u32::from(inject.irq) << 1
            | 1;
        self.rx[id].inject.store(code, Ordering::Release);
    }

    /// NAPI without KBP: poll until done, complete, re-poll on MISSED, re-arm.
    fn normal_path(&self, mut token: SchedToken) {
        let port = RxPort {
            nic: self,
            id: token.id(),
        };
        loop {
            let work = {
                let _bh = (&self.platform).mask_softirqs();
                port.poll_inner(self.fallback_weight, true)
            };
            if work == self.fallback_weight {
                continue;
            }
            match self.shared.complete(token) {
                Ok(()) => break,
                Err(again) => token = again,
            }
        }
        port.rearm();
    }

    /// A snapshot of instance `id`.
    pub fn rx(&self, id: usize) -> RxSnapshot {
        let rx = &self.rx[id];
        RxSnapshot {
            produced: rx.produced.load(Ordering::Acquire),
            consumed: rx.consumed.load(Ordering::Acquire),
            fallback: rx.fallback_packets.load(Ordering::Acquire),
            irq_armed: rx.hw.load(Ordering::Acquire) & IRQ_ARMED != 0,
        }
    }

    /// Packets waiting in instance `id`'s ring.
    pub fn pending(&self, id: usize) -> u32 {
        self.rx[id].hw.load(Ordering::Acquire) >> 1
    }
}

impl RxPort<'_> {
    fn poll_inner(&self, budget: u32, fallback: bool) -> u32 {
        let rx = &self.nic.rx[self.id];
        // Property 2: poll runs only in the owner, never twice at once.
        assert!(
            !rx.polling.swap(true, Ordering::AcqRel),
            "instance {} polled twice at once",
            self.id
        );
        let mut taken = 0;
        let _ = rx
            .hw
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |hw| {
                taken = (hw >> 1).min(budget);
                // virtnet_poll masks the interrupt first (virtio_net.c:3017).
                Some((hw - (taken << 1)) & !IRQ_ARMED)
            });
        rx.consumed.fetch_add(taken, Ordering::Release);
        if fallback {
            rx.fallback_packets.fetch_add(taken, Ordering::Release);
        }
        self.nic
            .platform
            .advance(POLL_COST_NS + PACKET_COST_NS * Nanos::from(taken));
        let inject = rx.inject.swap(0, Ordering::AcqRel);
        if inject != 0 {
            let target = ((inject >> 2) & 0x3f) as usize % CAP;
            self.nic.produce(target, inject >> 8);
            if inject & 2 != 0 {
                self.nic.schedule(target);
            }
        }
        rx.polling.store(false, Ordering::Release);
        taken
    }
}

impl RxInstance for RxPort<'_> {
    fn poll(&self, budget: u32) -> u32 {
        assert!(
            self.nic.platform.mask_depth() > 0,
            "poll without softirqs masked"
        );
        self.poll_inner(budget, false)
    }

    fn take_idle(&self) -> bool {
        let _ = self.nic.rx[self.id]
            .hw
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |hw| {
                Some(hw & !IRQ_ARMED)
            });
        true
    }

    fn rearm_irq(&self, id: usize, irq: &dyn Reschedule) {
        debug_assert_eq!(id, self.id);
        if self.rearm_finds_work() {
            self.nic.irq_outcome(irq.schedule(self.id));
        }
    }
}

impl RxPort<'_> {
    /// Re-arms the interrupt from outside a poller (the normal path, a test): as
    /// [`RxInstance::rearm_irq`] with the NIC's own interrupt handler.
    pub fn rearm(&self) {
        if self.rearm_finds_work() {
            self.nic.raise_irq(self.id);
        }
    }

    /// Arms the interrupt unless work is pending (then it stays masked and the caller
    /// raises the interrupt path); a doorbell arms without looking.
    fn rearm_finds_work(&self) -> bool {
        if self.nic.doorbell {
            let _ =
                self.nic.rx[self.id]
                    .hw
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |hw| {
                        Some(hw | IRQ_ARMED)
                    });
            return false;
        }
        let mut raise = false;
        let _ = self.nic.rx[self.id]
            .hw
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |hw| {
                raise = hw >> 1 != 0;
                Some(if raise {
                    hw & !IRQ_ARMED
                } else {
                    hw | IRQ_ARMED
                })
            });
        raise
    }
}
