//! A plain sequential reference model of the engine: the NAPI semantics written with
//! booleans and a `VecDeque`, no atomics, no tokens. The proptest suite and the fuzzer
//! run it beside the real kbp-core on the same operations and compare every observable.

use std::collections::VecDeque;

use kbp_core::{Config, IdleMode, Nanos, StateFlags};

use crate::sim::{Inject, PACKET_COST_NS, POLL_COST_NS};

/// One instance of the reference.
#[derive(Clone, Debug, Default)]
pub struct RefRx {
    /// Packets waiting in the ring.
    pub pending: u32,
    /// Packets consumed.
    pub consumed: u32,
    /// Interrupt armed.
    pub irq_armed: bool,
    /// Owned (SCHED).
    pub sched: bool,
    /// Event missed while owned.
    pub missed: bool,
    /// Kept between polls by the poller.
    pub busy: bool,
    /// Disable pending.
    pub disabling: bool,
    /// Disabled.
    pub disabled: bool,
    /// Served by the poller.
    pub attached: bool,
    /// Detached while the poller owned it: released at its next poll.
    pub detaching: bool,
    /// A one-shot injection into the next poll.
    pub inject: Option<Inject>,
    /// Polls by the poller (its per-instance counter).
    pub polls: u64,
    /// Packets the poller's polls processed (not the normal path's, not shutdown's).
    pub packets: u64,
    /// Releases by the poller (interrupt re-armed).
    pub releases: u64,
    /// Of those, releases of an instance the policy would keep but whose polls found no
    /// work for `idle_release_ns`.
    pub idle_releases: u64,
    /// Time of the last poll that found work in this ownership, or of its first poll
    /// (`None` while not owned by the poller).
    pub last_work: Option<Nanos>,
}

impl RefRx {
    /// The state word kbp-core should hold for this instance.
    pub fn flags(&self) -> StateFlags {
        let mut f = StateFlags::empty();
        f.set(StateFlags::SCHED, self.sched || self.disabled);
        f.set(StateFlags::MISSED, self.missed);
        f.set(StateFlags::BUSY, self.busy);
        f.set(StateFlags::DISABLE, self.disabling);
        f.set(StateFlags::NPSVC, self.disabled);
        f.set(StateFlags::ATTACHED, self.attached);
        f
    }
}

/// What a step did, as the reference sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefStep {
    /// Processed packets.
    Worked(u32),
    /// Nothing to do, no park.
    Idle,
    /// Parked.
    Parked,
}

/// The reference engine plus its simulated NIC.
#[derive(Clone, Debug)]
pub struct Reference {
    /// Configuration.
    pub config: Config,
    /// Instances.
    pub rx: Vec<RefRx>,
    /// The poll list, oldest first.
    pub list: VecDeque<usize>,
    /// Simulated clock.
    pub now: Nanos,
    last_work: Option<Nanos>,
    fallback_weight: u32,
    /// Events that found their instance owned and set MISSED.
    pub missed_events: u32,
    /// Rounds that re-listed an instance still owned behind instances scheduled during
    /// the round (NAPI's repoll fairness, exercised).
    pub repolled_behind_new: u32,
}

impl Reference {
    /// `instances` idle, detached instances with armed interrupts.
    pub fn new(config: Config, instances: usize, fallback_weight: u32) -> Self {
        let rx = vec![
            RefRx {
                irq_armed: true,
                ..RefRx::default()
            };
            instances
        ];
        Reference {
            config,
            rx,
            list: VecDeque::new(),
            now: 0,
            last_work: None,
            fallback_weight,
            missed_events: 0,
            repolled_behind_new: 0,
        }
    }

    /// Attach every instance (the poller's `attach_all`).
    pub fn attach_all(&mut self) {
        for id in 0..self.rx.len() {
            self.rx[id].attached = true;
            let r = &mut self.rx[id];
            if self.config.idle == IdleMode::Spin && !r.sched && !r.disabling && !r.disabled {
                r.sched = true;
                r.busy = true;
                r.irq_armed = false;
                self.list.push_back(id);
            }
        }
    }

    /// `Poller::detach`: false when not attached.
    pub fn detach(&mut self, id: usize) -> bool {
        let r = &mut self.rx[id];
        if !r.attached {
            return false;
        }
        r.attached = false;
        r.detaching = r.sched && !r.disabled;
        true
    }

    /// `Poller::attach`: refused while owned (not by a disabler); a spinning poller
    /// takes an idle instance at once.
    pub fn attach(&mut self, id: usize) -> bool {
        let spin = self.config.idle == IdleMode::Spin;
        let r = &mut self.rx[id];
        if r.sched && !r.disabled {
            return false;
        }
        r.attached = true;
        if spin && !r.sched && !r.disabling && !r.disabled {
            r.sched = true;
            r.busy = true;
            r.irq_armed = false;
            self.list.push_back(id);
        }
        true
    }

    /// The NIC writes `n` packets.
    pub fn produce(&mut self, id: usize, n: u32) {
        let r = &mut self.rx[id];
        r.pending += n;
        if r.irq_armed {
            r.irq_armed = false;
            self.irq(id);
        }
    }

    fn irq(&mut self, id: usize) {
        let r = &mut self.rx[id];
        if r.disabling || r.disabled {
            return;
        }
        if r.sched {
            r.missed = true;
            self.missed_events += 1;
            return;
        }
        r.sched = true;
        if r.attached {
            self.list.push_back(id);
        } else {
            self.normal_path(id);
        }
    }

    fn normal_path(&mut self, id: usize) {
        loop {
            let w = self.fallback_weight;
            if self.poll(id, w) == w {
                continue;
            }
            let r = &mut self.rx[id];
            if r.missed {
                r.missed = false;
            } else {
                r.sched = false;
                break;
            }
        }
        self.rearm(id);
    }

    fn rearm(&mut self, id: usize) {
        if self.rx[id].pending > 0 {
            self.irq(id);
        } else {
            self.rx[id].irq_armed = true;
        }
    }

    /// An event from something other than the receive interrupt (see
    /// `SimNic::schedule`).
    pub fn schedule(&mut self, id: usize) {
        self.irq(id);
    }

    fn poll(&mut self, id: usize, budget: u32) -> u32 {
        let r = &mut self.rx[id];
        let n = r.pending.min(budget);
        r.pending -= n;
        r.consumed += n;
        r.irq_armed = false;
        self.now += POLL_COST_NS + PACKET_COST_NS * Nanos::from(n);
        if let Some(inject) = self.rx[id].inject.take() {
            let target = inject.target % crate::sim::CAP;
            if target < self.rx.len() {
                self.produce(target, inject.n);
                if inject.irq {
                    self.irq(target);
                }
            }
        }
        n
    }

    fn within_window(&self, now: Nanos) -> bool {
        match self.config.idle {
            IdleMode::Spin => true,
            IdleMode::Adaptive { window_ns } => self.last_work.is_some_and(|l| now - l < window_ns),
        }
    }

    /// Releases an owned instance; true when it must be listed again (MISSED).
    fn release(&mut self, id: usize) -> bool {
        let r = &mut self.rx[id];
        r.busy = false;
        if r.missed {
            r.missed = false;
            return true;
        }
        r.sched = false;
        r.detaching = false;
        r.last_work = None;
        r.releases += 1;
        self.rearm(id);
        false
    }

    /// One `Poller::step` with a sequential (non-blocking) park.
    pub fn step(&mut self) -> RefStep {
        let listed = self.list.len();
        let mut packets = 0u32;
        if listed > 0 {
            let deadline = self.now + self.config.time_limit_ns;
            let mut repoll = Vec::new();
            let mut polled = 0;
            for _ in 0..listed {
                let id = self.list.pop_front().expect("listed");
                polled += 1;
                let w = self.config.weight;
                let work = self.poll(id, w);
                self.rx[id].polls += 1;
                self.rx[id].packets += u64::from(work);
                packets += work;
                let now = self.now;
                if work > 0 {
                    self.last_work = Some(now);
                }
                let r = &mut self.rx[id];
                if work > 0 || r.last_work.is_none() {
                    r.last_work = Some(now);
                }
                let idle_for = r.last_work.map_or(0, |l| now - l);
                let keep = if self.rx[id].disabling || !self.rx[id].attached {
                    self.release(id)
                } else if work == w {
                    true
                } else if !self.within_window(now) {
                    self.release(id)
                } else if idle_for >= self.config.idle_release_ns {
                    // The policy would keep it; no work for idle_release: let go.
                    let again = self.release(id);
                    if !again {
                        self.rx[id].idle_releases += 1;
                    }
                    again
                } else {
                    self.rx[id].busy = true;
                    self.rx[id].missed = false;
                    true
                };
                if keep {
                    repoll.push(id);
                }
                if packets >= self.config.budget || now >= deadline {
                    break;
                }
            }
            // What is listed now: instances not reached, then those scheduled during
            // the round; the repolled ones go behind both.
            if !repoll.is_empty() && self.list.len() > listed.saturating_sub(polled) {
                self.repolled_behind_new += 1;
            }
            self.list.extend(repoll);
        }
        if packets > 0 {
            return RefStep::Worked(packets);
        }
        let IdleMode::Adaptive { window_ns } = self.config.idle else {
            return RefStep::Idle;
        };
        if !self.list.is_empty() || self.last_work.is_some_and(|l| self.now - l < window_ns) {
            return RefStep::Idle;
        }
        RefStep::Parked
    }

    /// `begin_disable`; false when refused.
    pub fn begin_disable(&mut self, id: usize) -> bool {
        let r = &mut self.rx[id];
        if r.disabling || r.disabled {
            return false;
        }
        r.disabling = true;
        true
    }

    /// One `try_finish_disable`; true when the instance is now disabled.
    pub fn try_finish_disable(&mut self, id: usize) -> bool {
        let r = &mut self.rx[id];
        if !r.disabling || r.sched {
            return false;
        }
        r.disabling = false;
        r.disabled = true;
        true
    }

    /// `enable` followed by the driver re-arming the interrupt; false when refused.
    pub fn enable(&mut self, id: usize) -> bool {
        let r = &mut self.rx[id];
        if !r.disabled || r.disabling {
            return false;
        }
        r.disabled = false;
        r.missed = false;
        self.rearm(id);
        true
    }

    /// `Poller::shutdown`.
    pub fn shutdown(&mut self) {
        let mut owed = self.rx.iter().filter(|r| r.detaching).count();
        for r in &mut self.rx {
            if r.attached {
                r.attached = false;
                if r.sched && !r.disabled {
                    owed += 1;
                }
            }
        }
        let mut released = 0;
        while released < owed {
            let id = self.list.pop_front().expect("owed instance listed");
            let w = self.config.weight;
            self.poll(id, w);
            if self.release(id) {
                self.list.push_back(id);
            } else {
                released += 1;
            }
        }
    }
}
