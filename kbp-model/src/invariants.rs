//! The invariant checker: the properties of `napi-semantics.md`, written once and called
//! by the exhaustive test, proptest, loom models and the fuzzer.
//!
//! Each check returns `Err(Violation)` naming the property it breaks, so a suite can
//! both assert (`.unwrap()`) and test that a seeded bug is caught.

use std::fmt;

use kbp_core::state::{FinishDisable, REQUIRES_SCHED, Schedule};
use kbp_core::{Config, RoundReport, Shared, StateFlags};

use crate::sim::{CAP, SimNic};

/// A broken property: its number in `napi-semantics.md` and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Property number (1-9).
    pub property: u8,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "property {} violated: {}", self.property, self.detail)
    }
}

impl std::error::Error for Violation {}

/// Checker result.
pub type Check = Result<(), Violation>;

fn fail(property: u8, detail: impl Into<String>) -> Check {
    Err(Violation {
        property,
        detail: detail.into(),
    })
}

/// Property 1 (and well-formedness) of one state word: MISSED, BUSY and NPSVC only with
/// SCHED; BUSY never on a disabled instance; a pending disable never on a disabled one;
/// no unknown bits.
pub fn state_word(flags: StateFlags) -> Check {
    if StateFlags::from_bits(flags.bits()).is_none() {
        return fail(1, format!("unknown bits in {flags:?}"));
    }
    if flags.intersects(REQUIRES_SCHED) && !flags.contains(StateFlags::SCHED) {
        return fail(1, format!("{flags:?} without SCHED"));
    }
    if flags.contains(StateFlags::BUSY | StateFlags::NPSVC) {
        return fail(2, format!("{flags:?}: busy-owned and disabled at once"));
    }
    if flags.contains(StateFlags::DISABLE | StateFlags::NPSVC) {
        return fail(
            7,
            format!("{flags:?}: disable pending on a disabled instance"),
        );
    }
    Ok(())
}

/// Properties 1 and 3 over a whole poller: every word well-formed; every listed
/// instance known, owned (SCHED, not disabled) and listed once.
pub fn shared<const N: usize>(shared: &Shared<crate::sync::Word, N>, instances: usize) -> Check {
    for id in 0..N {
        state_word(shared.flags(id))?;
    }
    let mut seen = [false; N];
    let mut result = Ok(());
    shared.list().for_each_listed(|id| {
        if result.is_err() {
            return;
        }
        let flags = shared.flags(id);
        result = if id >= instances || id >= N {
            fail(3, format!("unknown instance {id} listed"))
        } else if seen[id] {
            fail(3, format!("instance {id} listed twice"))
        } else if !flags.contains(StateFlags::SCHED) || flags.contains(StateFlags::NPSVC) {
            fail(3, format!("instance {id} listed with {flags:?}"))
        } else {
            seen[id] = true;
            Ok(())
        };
    });
    result
}

/// Property 6: a poll never exceeds its weight; a round overshoots its budget by less
/// than one weight.
pub fn round(report: &RoundReport, config: &Config) -> Check {
    if report.packets >= config.budget.saturating_add(config.weight) {
        return fail(
            6,
            format!(
                "round of {} packets with budget {} weight {}",
                report.packets, config.budget, config.weight
            ),
        );
    }
    if report.packets > report.polls.saturating_mul(config.weight) {
        return fail(
            6,
            format!(
                "{} packets in {} polls of weight {}",
                report.packets, report.polls, config.weight
            ),
        );
    }
    Ok(())
}

/// Property 8: the poller may go to sleep only with nothing listed.
pub fn may_sleep<const N: usize>(shared: &Shared<crate::sync::Word, N>) -> Check {
    if shared.list().is_empty() {
        Ok(())
    } else {
        fail(
            8,
            format!(
                "poller sleeps with {} instance(s) listed",
                shared.list().len()
            ),
        )
    }
}

/// Property 7: after `disable` returned, instance `id` is disabled, not listed, and
/// cannot be scheduled.
pub fn disabled(nic: &SimNic, id: usize) -> Check {
    let flags = nic.shared.flags(id);
    if !flags.contains(StateFlags::SCHED | StateFlags::NPSVC) || flags.contains(StateFlags::DISABLE)
    {
        return fail(7, format!("instance {id} after disable: {flags:?}"));
    }
    let mut listed = false;
    nic.shared
        .list()
        .for_each_listed(|other| listed |= other == id);
    if listed {
        return fail(7, format!("instance {id} listed after disable"));
    }
    if flags.schedule().1 != Schedule::Disabled {
        return fail(7, format!("instance {id} schedulable after disable"));
    }
    if flags.try_finish_disable().1 == FinishDisable::Disabled {
        return fail(2, format!("instance {id} could be disabled twice"));
    }
    Ok(())
}

/// Where the poller stands when a quiescence check is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollerPhase {
    /// Running (it may keep instances busy-owned and listed).
    Running,
    /// `shutdown` has returned.
    ShutDown,
}

/// Properties 4, 5 and 9 at quiescence (no producer, no poll in flight, the poller has
/// stepped until idle): every packet of an enabled instance was consumed; every state
/// is idle, disabled, or owned by the poller and listed; after shutdown nothing is
/// attached or listed and every enabled instance has its interrupt armed.
pub fn quiescent(nic: &SimNic, instances: usize, phase: PollerPhase) -> Check {
    shared(&nic.shared, instances)?;
    for id in 0..instances {
        let flags = nic.shared.flags(id);
        let rx = nic.rx(id);
        let disabled = flags.contains(StateFlags::NPSVC);
        if !disabled && rx.consumed != rx.produced {
            return fail(
                4,
                format!(
                    "instance {id}: {} of {} packets consumed ({flags:?})",
                    rx.consumed, rx.produced
                ),
            );
        }
        let core = flags - StateFlags::ATTACHED;
        let ok = match phase {
            PollerPhase::ShutDown => {
                if flags.contains(StateFlags::ATTACHED) {
                    return fail(9, format!("instance {id} still attached after shutdown"));
                }
                if !disabled && !rx.irq_armed {
                    return fail(
                        9,
                        format!("instance {id} handed back with its interrupt masked"),
                    );
                }
                core.is_empty() || core == StateFlags::SCHED | StateFlags::NPSVC
            }
            PollerPhase::Running => {
                let owned =
                    core == StateFlags::SCHED || core == StateFlags::SCHED | StateFlags::BUSY;
                let mut listed = false;
                nic.shared
                    .list()
                    .for_each_listed(|other| listed |= other == id);
                if owned && !listed {
                    return fail(
                        4,
                        format!(
                            "instance {id} owned ({flags:?}) but not listed: nobody will poll it"
                        ),
                    );
                }
                core.is_empty() || core == StateFlags::SCHED | StateFlags::NPSVC || owned
            }
        };
        if !ok {
            return fail(5, format!("instance {id} at quiescence: {flags:?}"));
        }
        if core.is_empty() && !rx.irq_armed {
            return fail(
                4,
                format!(
                    "instance {id} idle with its interrupt masked: the next packet would be lost"
                ),
            );
        }
    }
    if phase == PollerPhase::ShutDown && !nic.shared.list().is_empty() {
        return fail(9, "poll list not empty after shutdown");
    }
    Ok(())
}

/// Property 6, starvation freedom: a listed instance is polled within `bound` rounds.
/// Feed it the listed ids before each round and the per-instance poll counts after.
pub struct Starvation {
    waiting: [u32; CAP],
    polls: [u64; CAP],
    bound: u32,
}

impl Starvation {
    /// With at most `CAP` listed instances and at least one poll per round, FIFO order
    /// bounds every wait by `CAP` rounds.
    pub fn new() -> Self {
        Starvation {
            waiting: [0; CAP],
            polls: [0; CAP],
            bound: CAP as u32,
        }
    }

    /// After a round: `listed_before` were listed when it started, `polls[id]` is the
    /// instance's poll counter now.
    pub fn after_round(&mut self, listed_before: &[usize], polls: [u64; CAP]) -> Check {
        for id in 0..CAP {
            let polled = polls[id] != self.polls[id];
            if polled || !listed_before.contains(&id) {
                self.waiting[id] = 0;
            } else {
                self.waiting[id] += 1;
                if self.waiting[id] > self.bound {
                    return fail(
                        6,
                        format!(
                            "instance {id} listed but not polled for {} rounds",
                            self.waiting[id]
                        ),
                    );
                }
            }
        }
        self.polls = polls;
        Ok(())
    }
}

impl Default for Starvation {
    fn default() -> Self {
        Self::new()
    }
}
