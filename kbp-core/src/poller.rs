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
//!       work <  weight  -> keep_busy (Spin, or Adaptive inside window)   |
//!                          or complete + re-arm IRQ (idle / disabling)   |
//!     stop early at budget or time limit (squeeze)                       |
//!            |                                                           |
//!            v                                                           |
//!   idle policy: Spin -> never park; Adaptive -> when the list is empty  |
//!     and no packet for window_ns: park (see crate::park)                |
//!            |                                                           |
//!            v                                                           |
//!   platform.quiescent()   (RCU-tasks QS, cond_resched) ----------------+
//! ```
//!
//! A step does a bounded amount of work (one round: at most `budget + weight` packets
//! and one time limit), so the caller can check for a stop request between steps.

use crate::atomic::AtomicWord;
use crate::config::{Config, ConfigError, IdleMode};
use crate::counters::{InstanceStats, PollerStats};
use crate::park::TryPark;
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
    /// spurious wake-up or stop request).
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

/// A busy-polling engine serving up to `N` instances from one thread.
pub struct Poller<'a, A: AtomicWord, R: RxInstance, P: Platform, const N: usize> {
    shared: &'a Shared<A, N>,
    rx: &'a [R],
    platform: &'a P,
    config: Config,
    stats: PollerStats,
    instances: [InstanceStats; N],
    last_work_ns: Option<Nanos>,
}

impl<'a, A: AtomicWord, R: RxInstance, P: Platform, const N: usize> Poller<'a, A, R, P, N> {
    /// A poller for instances `0..rx.len()` of `shared`. Nothing is attached yet.
    pub fn new(
        shared: &'a Shared<A, N>,
        rx: &'a [R],
        platform: &'a P,
        config: Config,
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
            stats: PollerStats::default(),
            instances: [InstanceStats::default(); N],
            last_work_ns: None,
        })
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
    /// In `Spin` mode the poller also takes an idle instance at once and masks its
    /// interrupt. Returns false when the normal path owns it right now (retry later).
    pub fn attach(&mut self, id: usize) -> bool {
        let Some(rx) = self.rx.get(id) else {
            return false;
        };
        if self.shared.attach(id) != Some(Attach::Attached) {
            return false;
        }
        if self.config.idle == IdleMode::Spin {
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
        if matches!(self.config.idle, IdleMode::Spin) && self.shared.list.is_empty() {
            // The hot path of a spinning poller with nothing listed: two loads, no call.
            self.platform.quiescent();
            return StepOutcome::Idle;
        }
        self.step_with_work_or_idle_policy()
    }

    #[inline(never)]
    fn step_with_work_or_idle_policy(&mut self) -> StepOutcome {
        let round = self.drain_round();
        let outcome = if round.packets > 0 {
            StepOutcome::Worked {
                packets: round.packets,
            }
        } else {
            self.idle()
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
        let weight = self.config.weight;
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
        if work > 0 {
            self.last_work_ns = Some(now);
        }

        let disabling = self
            .shared
            .state(id)
            .is_some_and(|state| state.flags().contains(StateFlags::DISABLE))
            || self.rx.get(id).is_some_and(R::must_release);
        let keep = if disabling {
            // A disabler waits: let go even with work left (`__napi_poll` does the same).
            Err(token)
        } else if work == weight {
            // Not finished: still owned, state untouched (NAPI's work == budget rule).
            Ok(token)
        } else if self.wants_busy(now) {
            match self.shared.state(id) {
                Some(state) => state.keep_busy(token),
                None => Err(token),
            }
        } else {
            Err(token)
        };
        match keep {
            Ok(token) => {
                if let Err(token) = repoll.hold(token) {
                    self.overflow(token);
                }
            }
            Err(token) => {
                if let Err(token) = self.release(token) {
                    if let Err(token) = repoll.hold(token) {
                        self.overflow(token);
                    }
                }
            }
        }
        now
    }

    /// Inside the spin window (always, in `Spin`): keep owning instances with their
    /// interrupt masked after a poll, and do not park.
    fn wants_busy(&self, now: Nanos) -> bool {
        match self.config.idle {
            IdleMode::Spin => true,
            IdleMode::Adaptive { window_ns } => self
                .last_work_ns
                .is_some_and(|last| now.saturating_sub(last) < window_ns),
        }
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
        if let Some(rx) = self.rx.get(id) {
            rx.rearm_irq();
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
    fn idle(&mut self) -> StepOutcome {
        if self.config.idle == IdleMode::Spin
            || !self.shared.list.is_empty()
            || self.wants_busy(self.platform.now())
        {
            return StepOutcome::Idle;
        }
        self.park()
    }

    /// Parks until an interrupt lists an instance (see [`crate::park`]).
    fn park(&mut self) -> StepOutcome {
        let park = &self.shared.park;
        park.begin_idle_check();
        if !self.shared.list.is_empty() {
            return StepOutcome::Idle;
        }
        if park.try_park() == TryPark::Notified {
            return StepOutcome::Idle;
        }
        self.stats.parks += 1;
        self.platform.park(&|| park.is_parked());
        let woken = park.finish_park();
        self.stats.wakes += u64::from(woken);
        StepOutcome::Parked { woken }
    }

    /// Stops serving every instance: detaches them (later interrupts take the normal
    /// path), then polls each instance the poller still owns once more and releases it
    /// with its interrupt re-armed. Packets that arrive meanwhile are found by the
    /// re-arm's re-check and go to the normal path: none is lost.
    pub fn shutdown(&mut self) -> ShutdownReport {
        let mut owed = 0u32;
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
                let _softirqs_masked = self.platform.mask_softirqs();
                report.packets += rx.poll(self.config.weight).min(self.config.weight);
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
