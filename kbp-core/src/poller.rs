//! The poller: NAPI's `net_rx_action`, run by a dedicated thread instead of a softirq.
//!
//! ```text
//!            +------------------------- step() --------------------------+
//!            |                                                           |
//!            v                                                           |
//!   drain_round: pop the instances listed at the start of the round;     |
//!     for each: mask softirqs, poll(weight), unmask;                     |
//!       disable pending -> complete + re-arm IRQ (the disabler waits)    |
//!       work == weight  -> still owned, re-listed behind new arrivals    |
//!       work <  weight  -> keep_busy (the instance is busy-pollable,     |
//!                          the policy says so, and it found work         |
//!                          within idle_release)                          |
//!                          or complete + re-arm IRQ (idle / disabling)   |
//!       detached        -> complete + re-arm IRQ (Poller::detach)        |
//!     stop early at budget or time limit (squeeze)                       |
//!            |                                                           |
//!            v                                                           |
//!   idle policy (crate::idle): Stay, or Park with an optional deadline   |
//!     when the list is empty (see crate::park)                           |
//!            |                                                           |
//!            v                                                           |
//!   platform.quiescent()   (RCU-tasks QS, cond_resched) ----------------+
//! ```
//!
//! A step does a bounded amount of work (one round: at most `budget + weight` packets
//! and one time limit), so the caller can check for a stop request between steps, and
//! attach or detach instances ([`Poller::attach`], [`Poller::detach`]) or change an
//! instance's weight ([`Poller::set_weight`]) while the poller runs.

use crate::atomic::AtomicWord;
use crate::config::{Config, ConfigError};
use crate::counters::{InstanceStats, PollerStats};
use crate::idle::{Idle, IdlePolicy, ModePolicy};
use crate::park::TryPark;
use crate::producer::{Producer, Running};
use crate::rx::{Nanos, Platform, RxInstance};
use crate::shared::Shared;
use crate::state::{Attach, Detach, SchedToken, StateFlags};

/// What one [`Poller::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum StepOutcome {
    /// Processed packets.
    Worked {
        /// How many.
        packets: u32,
    },
    /// Found no packets and did not park.
    Idle,
    /// Parked and came back; `woken` is true when an interrupt woke the poller (false:
    /// spurious wake-up, stop request or deadline).
    Parked {
        /// Woken by a producer.
        woken: bool,
    },
}

/// What one [`Poller::drain_round`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Packets processed.
    pub packets: u32,
    /// Instances polled.
    pub polls: u32,
    /// Stopped early (budget or time) with listed instances left.
    pub squeezed: bool,
}

/// What [`Poller::shutdown`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Instances that were owned by the poller and were handed back (IRQ re-armed).
    pub released: u32,
    /// Packets processed while handing them back.
    pub packets: u32,
}

/// Tokens held back during a round, re-listed at its end (NAPI's `repoll` list).
struct Repoll<const N: usize> {
    tokens: [Option<SchedToken>; N],
    len: usize,
}

impl<const N: usize> Repoll<N> {
    fn new() -> Self {
        Repoll {
            tokens: [const { None }; N],
            len: 0,
        }
    }

    /// Holds `token`; hands it back if full (impossible: at most N tokens exist).
    fn hold(&mut self, token: SchedToken) -> Result<(), SchedToken> {
        match self.tokens.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(token);
                self.len += 1;
                Ok(())
            }
            None => Err(token),
        }
    }
}

/// A busy-polling engine serving up to `N` instances from one thread, with idle
/// policy `I` ([`ModePolicy`], the one [`Config::idle`] selects, unless built with
/// [`Poller::with_policy`]).
pub struct Poller<
    'a,
    A: AtomicWord,
    R: RxInstance,
    P: Platform,
    const N: usize,
    I: IdlePolicy = ModePolicy,
> {
    shared: &'a Shared<A, N>,
    rx: &'a [R],
    platform: &'a P,
    config: Config,
    policy: I,
    stats: PollerStats,
    instances: [InstanceStats; N],
    /// Each instance's weight (`config.weight` unless set).
    weights: [u32; N],
    /// Detached by [`Poller::detach`] while the poller owned it: released at its next
    /// poll.
    detaching: [bool; N],
}

impl<'a, A: AtomicWord, R: RxInstance, P: Platform, const N: usize>
    Poller<'a, A, R, P, N, ModePolicy>
{
    /// A poller for instances `0..rx.len()` of `shared`, with the provided idle policy
    /// that `config.idle` selects. Nothing is attached yet.
    pub fn new(
        shared: &'a Shared<A, N>,
        rx: &'a [R],
        platform: &'a P,
        config: Config,
    ) -> Result<Self, ConfigError> {
        Self::with_policy(shared, rx, platform, config, ModePolicy::from(config.idle))
    }
}

impl<'a, A: AtomicWord, R: RxInstance, P: Platform, const N: usize, I: IdlePolicy>
    Poller<'a, A, R, P, N, I>
{
    /// A poller for instances `0..rx.len()` of `shared` with the idle policy `policy`
    /// (`config.idle` is not used). Nothing is attached yet.
    pub fn with_policy(
        shared: &'a Shared<A, N>,
        rx: &'a [R],
        platform: &'a P,
        config: Config,
        policy: I,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if rx.len() > N {
            return Err(ConfigError {
                param: "instances",
                expected: "at most the poll list capacity",
            });
        }
        Ok(Poller {
            shared,
            rx,
            platform,
            config,
            policy,
            stats: PollerStats::default(),
            instances: [InstanceStats::default(); N],
            weights: [config.weight; N],
            detaching: [false; N],
        })
    }

    /// The idle policy.
    pub fn policy(&self) -> &I {
        &self.policy
    }

    /// Sets instance `id`'s weight (most packets one poll of it may process), in
    /// [`Config::weight`]'s range; takes effect at its next poll.
    pub fn set_weight(&mut self, id: usize, weight: u32) -> Result<(), ConfigError> {
        let slot = self.weights.get_mut(id).filter(|_| id < self.rx.len());
        match slot {
            Some(slot) if (1..=Config::MAX_WEIGHT).contains(&weight) => {
                *slot = weight;
                Ok(())
            }
            Some(_) => Err(ConfigError {
                param: "weight",
                expected: "1..=4096 packets",
            }),
            None => Err(ConfigError {
                param: "instance",
                expected: "an instance of this poller",
            }),
        }
    }

    /// Instance `id`'s weight.
    pub fn weight(&self, id: usize) -> Option<u32> {
        self.weights.get(id).copied().filter(|_| id < self.rx.len())
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Poller counters.
    pub fn stats(&self) -> &PollerStats {
        &self.stats
    }

    /// Instance `id`'s counters.
    pub fn instance_stats(&self, id: usize) -> Option<&InstanceStats> {
        self.instances.get(id)
    }

    /// Attaches instance `id`: from now on an interrupt lists it on this poller's list.
    /// A spinning policy also takes an idle instance at once and masks its interrupt
    /// (and lets go of it if no packet comes within [`Config::idle_release_ns`]).
    /// Returns false when the normal path owns it right now, or the poller still owns
    /// it after a [`Poller::detach`] (retry later). May be called while the poller
    /// runs (between steps).
    pub fn attach(&mut self, id: usize) -> bool {
        let Some(rx) = self.rx.get(id) else {
            return false;
        };
        if self.shared.attach(id) != Some(Attach::Attached) {
            return false;
        }
        if self.policy.spins() {
            if let Some(token) = self
                .shared
                .state(id)
                .and_then(|state| state.try_take_busy())
            {
                if rx.take_idle() {
                    self.relist(token);
                } else if let Err(token) = self.shared.complete(token) {
                    // Left to its next interrupt, but one came meanwhile (MISSED):
                    // the instance stays owned, so list it.
                    self.relist(token);
                }
            }
        }
        true
    }

    /// Detaches instance `id` while the poller runs: later interrupts take the normal
    /// path (`Fallback`). If the poller owns the instance it polls it once more and
    /// releases it (interrupt re-armed) at its next turn; until then
    /// [`Poller::is_detaching`] is true and the poller may still call the instance.
    /// Returns false when `id` was not attached.
    pub fn detach(&mut self, id: usize) -> bool {
        if id >= self.rx.len() {
            return false;
        }
        match self.shared.detach(id) {
            Detach::Detached { listed } => {
                if let Some(detaching) = self.detaching.get_mut(id) {
                    *detaching = listed;
                }
                true
            }
            Detach::NotAttached => false,
        }
    }

    /// True while a detached instance is still owned by the poller (see
    /// [`Poller::detach`]): the poller may still call it.
    pub fn is_detaching(&self, id: usize) -> bool {
        self.detaching.get(id).copied().unwrap_or(false)
    }

    /// Attaches every instance, yielding while the normal path still owns one.
    pub fn attach_all(&mut self) {
        for id in 0..self.rx.len() {
            while !self.attach(id) {
                self.platform.quiescent();
            }
        }
    }

    /// One unit of work: a drain round, the idle policy, a quiescent point.
    #[inline(always)]
    pub fn step(&mut self) -> StepOutcome {
        self.step_then(|_| {})
    }

    /// [`Poller::step`], calling `before_park` with the poller just before it sleeps
    /// (once it is committed to park, with `parks` counted): where an embedder
    /// publishes its counters, so that they do not lag an idle period of unbounded
    /// length. Not called on a step that does not park.
    #[inline(always)]
    pub fn step_then(&mut self, before_park: impl FnOnce(&Self)) -> StepOutcome {
        if self.policy.spins() && self.shared.list.is_empty() {
            // The hot path of a spinning poller with nothing listed: two loads, no call.
            self.platform.quiescent();
            return StepOutcome::Idle;
        }
        self.step_with_work_or_idle_policy(before_park)
    }

    #[inline(never)]
    fn step_with_work_or_idle_policy(&mut self, before_park: impl FnOnce(&Self)) -> StepOutcome {
        let round = self.drain_round();
        let outcome = if round.packets > 0 {
            StepOutcome::Worked {
                packets: round.packets,
            }
        } else {
            self.idle(before_park)
        };
        self.platform.quiescent();
        outcome
    }

    /// Polls the instances listed when the round starts, in order, within the budget
    /// and the time limit. Instances still owned afterwards are re-listed behind the
    /// ones scheduled during the round.
    #[inline]
    pub fn drain_round(&mut self) -> RoundReport {
        let listed = self.shared.list.len();
        let mut report = RoundReport::default();
        if listed == 0 {
            return report;
        }
        self.stats.rounds += 1;
        let deadline = self
            .platform
            .now()
            .saturating_add(self.config.time_limit_ns);
        let mut repoll = Repoll::<N>::new();
        for taken in 1..=listed {
            let Some(token) = self.shared.list.pop() else {
                break;
            };
            let now = self.poll_one(token, &mut repoll, &mut report);
            let over_budget = report.packets >= self.config.budget;
            let over_time = now >= deadline;
            if over_budget || over_time {
                self.stats.budget_exhausted += u64::from(over_budget);
                self.stats.time_exhausted += u64::from(over_time && !over_budget);
                if taken < listed || repoll.len > 0 {
                    self.stats.squeezes += 1;
                    report.squeezed = true;
                }
                break;
            }
        }
        for token in repoll
            .tokens
            .iter_mut()
            .take(repoll.len)
            .filter_map(Option::take)
        {
            if let Err(token) = self.shared.list.push(token) {
                self.overflow(token);
            }
        }
        report
    }

    /// Polls one owned instance and decides what becomes of it. Returns the time after
    /// the poll.
    fn poll_one(
        &mut self,
        token: SchedToken,
        repoll: &mut Repoll<N>,
        report: &mut RoundReport,
    ) -> Nanos {
        let id = token.id();
        let weight = self.weights.get(id).copied().unwrap_or(self.config.weight);
        let work = match self.rx.get(id) {
            Some(rx) => {
                let _softirqs_masked = self.platform.mask_softirqs();
                rx.poll(weight)
            }
            None => 0,
        };
        let work = if work > weight {
            self.stats.overruns += 1;
            weight
        } else {
            work
        };
        let now = self.platform.now();
        self.stats.polls += 1;
        self.stats.packets += u64::from(work);
        self.stats.empty_polls += u64::from(work == 0);
        if let Some(stats) = self.instances.get_mut(id) {
            stats.record_poll(now, work, weight);
        }
        report.polls += 1;
        report.packets += work;
        self.policy.polled(id, work, now);

        let disabling = self.shared.state(id).is_some_and(|state| {
            let flags = state.flags();
            flags.contains(StateFlags::DISABLE) || !flags.contains(StateFlags::ATTACHED)
        }) || self.rx.get(id).is_some_and(R::must_release);
        let mut idle_release = false;
        let keep = if disabling {
            // A disabler waits, or the instance was detached: let go even with work
            // left (`__napi_poll` does the same for a disable).
            Err(token)
        } else if work == weight {
            // Not finished: still owned, state untouched (NAPI's work == budget rule).
            Ok(token)
        } else if !self.rx.get(id).is_some_and(R::busy_pollable) || !self.policy.keep_busy(id, now)
        {
            // Not for busy polling, or the policy lets go: complete and re-arm.
            Err(token)
        } else if self.idle_too_long(id, now) {
            // The policy would keep it, but a SCHED holder must let go in bounded time
            // (`napi_synchronize()` waits for SCHED to clear): release it; its next
            // interrupt lists it again.
            idle_release = true;
            Err(token)
        } else {
            match self.shared.state(id) {
                Some(state) => state.keep_busy(token),
                None => Err(token),
            }
        };
        match keep {
            Ok(token) => {
                if let Err(token) = repoll.hold(token) {
                    self.overflow(token);
                }
            }
            Err(token) => match self.release(token) {
                Ok(()) => {
                    if idle_release {
                        self.stats.idle_releases += 1;
                        if let Some(stats) = self.instances.get_mut(id) {
                            stats.idle_releases += 1;
                        }
                    }
                }
                Err(token) => {
                    if let Err(token) = repoll.hold(token) {
                        self.overflow(token);
                    }
                }
            },
        }
        now
    }

    /// Instance `id`'s polls have found no work for [`Config::idle_release_ns`] or
    /// longer at `now`.
    #[inline]
    fn idle_too_long(&self, id: usize, now: Nanos) -> bool {
        self.instances
            .get(id)
            .is_some_and(|stats| stats.idle_for(now) >= self.config.idle_release_ns)
    }

    /// `napi_complete_done`: releases and re-arms the interrupt, or hands the token back
    /// when an event was missed (the instance must be listed again).
    fn release(&mut self, token: SchedToken) -> Result<(), SchedToken> {
        let id = token.id();
        match self.shared.state(id) {
            Some(state) => state.complete(token)?,
            None => return Ok(()),
        }
        self.stats.releases += 1;
        if let Some(stats) = self.instances.get_mut(id) {
            stats.record_release();
        }
        if let Some(detaching) = self.detaching.get_mut(id) {
            *detaching = false;
        }
        if let Some(rx) = self.rx.get(id) {
            rx.rearm_irq(id, &Producer::new(self.shared, &Running));
        }
        Ok(())
    }

    /// Lists an owned instance on the poll list.
    fn relist(&mut self, token: SchedToken) {
        if let Err(token) = self.shared.list.push(token) {
            self.overflow(token);
        }
    }

    /// A push the token discipline says cannot fail did: release the instance anyway
    /// (its interrupt's re-check picks up any pending work), never lose it.
    fn overflow(&mut self, token: SchedToken) {
        self.stats.list_overflows += 1;
        if let Err(token) = self.release(token) {
            // MISSED was set; the second completion clears SCHED.
            let _ = self.release(token);
        }
    }

    /// The idle policy after a round without packets.
    #[inline]
    fn idle(&mut self, before_park: impl FnOnce(&Self)) -> StepOutcome {
        if self.policy.spins() || !self.shared.list.is_empty() {
            return StepOutcome::Idle;
        }
        match self.policy.idle(self.platform.now()) {
            Idle::Stay => StepOutcome::Idle,
            Idle::Park { deadline } => self.park(deadline, before_park),
        }
    }

    /// Parks until an interrupt lists an instance or `deadline` passes (see
    /// [`crate::park`]).
    fn park(&mut self, deadline: Option<Nanos>, before_park: impl FnOnce(&Self)) -> StepOutcome {
        let shared = self.shared;
        let park = &shared.park;
        park.begin_idle_check();
        if !shared.list.is_empty() {
            return StepOutcome::Idle;
        }
        if park.try_park() == TryPark::Notified {
            return StepOutcome::Idle;
        }
        self.stats.parks += 1;
        // Parked already: an interrupt from here on clears the flag, and the sleep
        // below then returns at once.
        before_park(self);
        self.platform.park(&|| park.is_parked(), deadline);
        let woken = park.finish_park();
        self.stats.wakes += u64::from(woken);
        StepOutcome::Parked { woken }
    }

    /// Stops serving every instance: detaches them (later interrupts take the normal
    /// path), then polls each instance the poller still owns once more and releases it
    /// with its interrupt re-armed. Packets that arrive meanwhile are found by the
    /// re-arm's re-check and go to the normal path: none is lost.
    pub fn shutdown(&mut self) -> ShutdownReport {
        // Instances detached earlier that the poller still owns are owed too.
        let mut owed = self.detaching.iter().filter(|d| **d).count() as u32;
        for id in 0..N {
            if let Detach::Detached { listed: true } = self.shared.detach(id) {
                owed += 1;
            }
        }
        let mut report = ShutdownReport::default();
        while report.released < owed {
            let Some(token) = self.shared.list.pop() else {
                // An interrupt that won SCHED before the detach is still pushing.
                self.platform.quiescent();
                continue;
            };
            let id = token.id();
            if let Some(rx) = self.rx.get(id) {
                let weight = self.weights.get(id).copied().unwrap_or(self.config.weight);
                let _softirqs_masked = self.platform.mask_softirqs();
                report.packets += rx.poll(weight).min(weight);
            }
            match self.release(token) {
                Ok(()) => report.released += 1,
                Err(token) => {
                    if let Err(token) = self.shared.list.push(token) {
                        self.overflow(token);
                        report.released += 1;
                    }
                }
            }
        }
        self.stats.packets += u64::from(report.packets);
        report
    }
}
