//! Operation sequences: one case = a configuration and a list of operations, run on the
//! real kbp-core (over the simulated NIC) and on the [`Reference`] side by side, with the
//! invariant checker after every operation. Used by proptest and by the fuzzer.

use kbp_core::{Config, IdleMode, Nanos, Poller, StepOutcome};

use crate::invariants::{self, Check, PollerPhase, Starvation, Violation};
use crate::reference::{RefStep, Reference};
use crate::sim::{CAP, SimNic, SimPlatform};
use kbp_core::RxInstance;

/// One operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The NIC writes `n` packets into instance `id` (and interrupts if armed).
    Produce { id: u8, n: u8 },
    /// One poller step.
    Step,
    /// The clock jumps forward.
    Advance { ns: u32 },
    /// `begin_disable(id)`.
    BeginDisable { id: u8 },
    /// One `try_finish_disable(id)`.
    FinishDisable { id: u8 },
    /// `enable(id)` and the driver's re-arm.
    Enable { id: u8 },
}

/// A configuration, an instance count and operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// The poller's configuration (may be invalid: then nothing runs).
    pub config: Config,
    /// Instances in use (1..=CAP).
    pub instances: usize,
    /// The operations.
    pub ops: Vec<Op>,
}

impl Case {
    /// Decodes arbitrary bytes (the fuzzer's input) into a case. Every byte string is a
    /// case: weight, budget, time limit, idle mode and instance count come first.
    pub fn from_bytes(data: &[u8]) -> Case {
        let mut it = data.iter().copied();
        let mut next = || it.next().unwrap_or(0);
        let weight = u32::from(next() % 16) + 1;
        let budget = u32::from(next()) + 1;
        let time_limit_ns = (u64::from(next()) + 1) * 1_000;
        let mode = next();
        let idle = if mode & 1 == 0 {
            IdleMode::Spin
        } else {
            IdleMode::Adaptive {
                window_ns: u64::from(mode >> 1) * 500,
            }
        };
        let instances = usize::from(next()) % CAP + 1;
        let config = Config {
            weight,
            budget,
            time_limit_ns,
            idle,
        };
        let mut ops = Vec::new();
        let rest: Vec<u8> = data.iter().skip(5).copied().collect();
        for chunk in rest.chunks(3) {
            let (a, b, c) = (
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            );
            let id = b % CAP as u8;
            ops.push(match a % 8 {
                0 | 1 => Op::Produce { id, n: c },
                2..=4 => Op::Step,
                5 => Op::Advance {
                    ns: u32::from_le_bytes([b, c, 0, 0]) * 64,
                },
                6 => {
                    if c & 1 == 0 {
                        Op::BeginDisable { id }
                    } else {
                        Op::FinishDisable { id }
                    }
                }
                _ => Op::Enable { id },
            });
        }
        Case {
            config,
            instances,
            ops,
        }
    }
}

fn mismatch(what: &str, real: impl std::fmt::Debug, reference: impl std::fmt::Debug) -> Check {
    Err(Violation {
        property: 0,
        detail: format!("{what}: kbp-core {real:?}, reference {reference:?}"),
    })
}

fn compare(nic: &SimNic, reference: &Reference) -> Check {
    for (id, r) in reference.rx.iter().enumerate() {
        let real = nic.rx(id);
        if real.consumed != r.consumed || nic.pending(id) != r.pending {
            return mismatch(
                &format!("instance {id} consumed/pending"),
                (real.consumed, nic.pending(id)),
                (r.consumed, r.pending),
            );
        }
        if real.irq_armed != r.irq_armed {
            return mismatch(
                &format!("instance {id} irq armed"),
                real.irq_armed,
                r.irq_armed,
            );
        }
        if nic.shared.flags(id) != r.flags() {
            return mismatch(
                &format!("instance {id} state"),
                nic.shared.flags(id),
                r.flags(),
            );
        }
    }
    let mut listed = Vec::new();
    nic.shared.list().for_each_listed(|id| listed.push(id));
    if listed != reference.list.iter().copied().collect::<Vec<_>>() {
        return mismatch("poll list", listed, &reference.list);
    }
    let now = nic.platform.now_ns();
    if now != reference.now {
        return mismatch("clock", now, reference.now);
    }
    Ok(())
}

fn window_ns(config: &Config) -> Nanos {
    match config.idle {
        IdleMode::Spin => 0,
        IdleMode::Adaptive { window_ns } => window_ns,
    }
}

/// Runs `case` to the end, then to quiescence and through shutdown; returns the first
/// violated property or reference mismatch (property 0).
pub fn run(case: &Case) -> Check {
    if case.config.validate().is_err() {
        return Ok(());
    }
    let instances = case.instances.clamp(1, CAP);
    let nic = SimNic::new(SimPlatform::sequential());
    let ports = nic.ports();
    let platform = &nic.platform;
    let mut poller = match Poller::new(&nic.shared, &ports[..instances], &platform, case.config) {
        Ok(poller) => poller,
        Err(e) => {
            return Err(Violation {
                property: 0,
                detail: format!("valid config refused: {e}"),
            });
        }
    };
    let mut reference = Reference::new(case.config, instances, nic.fallback_weight);
    let mut starvation = Starvation::new();
    poller.attach_all();
    reference.attach_all();
    compare(&nic, &reference)?;

    let step = |poller: &mut Poller<'_, _, _, _, CAP>,
                reference: &mut Reference,
                starvation: &mut Starvation|
     -> Check {
        let mut listed = Vec::new();
        nic.shared.list().for_each_listed(|id| listed.push(id));
        let before = *poller.stats();
        let outcome = poller.step();
        let expected = reference.step();
        let after = poller.stats();
        let report = kbp_core::RoundReport {
            packets: (after.packets - before.packets) as u32,
            polls: (after.polls - before.polls) as u32,
            squeezed: after.squeezes > before.squeezes,
        };
        invariants::round(&report, &case.config)?;
        match (outcome, expected) {
            (StepOutcome::Worked { packets }, RefStep::Worked(n)) if packets == n => {}
            (StepOutcome::Idle, RefStep::Idle) => {}
            (StepOutcome::Parked { .. }, RefStep::Parked) => invariants::may_sleep(&nic.shared)?,
            (real, expected) => return mismatch("step", real, expected),
        }
        let polls = core::array::from_fn(|id| poller.instance_stats(id).map_or(0, |s| s.polls));
        starvation.after_round(&listed, polls)
    };

    for op in &case.ops {
        match *op {
            Op::Produce { id, n } => {
                let id = usize::from(id) % instances;
                nic.produce(id, u32::from(n));
                reference.produce(id, u32::from(n));
            }
            Op::Step => step(&mut poller, &mut reference, &mut starvation)?,
            Op::Advance { ns } => {
                nic.platform.advance(Nanos::from(ns));
                reference.now += Nanos::from(ns);
            }
            Op::BeginDisable { id } => {
                let id = usize::from(id) % instances;
                let real = nic.shared.begin_disable(id) == kbp_core::state::BeginDisable::Pending;
                if real != reference.begin_disable(id) {
                    return mismatch("begin_disable", real, !real);
                }
            }
            Op::FinishDisable { id } => {
                let id = usize::from(id) % instances;
                let real =
                    nic.shared.try_finish_disable(id) == kbp_core::state::FinishDisable::Disabled;
                if real != reference.try_finish_disable(id) {
                    return mismatch("try_finish_disable", real, !real);
                }
                if real {
                    invariants::disabled(&nic, id)?;
                }
            }
            Op::Enable { id } => {
                let id = usize::from(id) % instances;
                let real = nic.shared.enable(id) == kbp_core::state::Enable::Enabled;
                if real {
                    ports[id].rearm_irq();
                }
                if real != reference.enable(id) {
                    return mismatch("enable", real, !real);
                }
            }
        }
        invariants::shared(&nic.shared, instances)?;
        compare(&nic, &reference)?;
    }

    // Quiescence: finish pending disables, enable everything, and step until drained.
    for id in 0..instances {
        for attempt in 0.. {
            let real = nic.shared.try_finish_disable(id);
            if (real == kbp_core::state::FinishDisable::Disabled)
                != reference.try_finish_disable(id)
            {
                return mismatch("try_finish_disable", real, "the opposite");
            }
            if real != kbp_core::state::FinishDisable::Waiting {
                break;
            }
            if attempt > 1000 {
                return Err(Violation {
                    property: 7,
                    detail: format!("disable of {id} never finishes"),
                });
            }
            step(&mut poller, &mut reference, &mut starvation)?;
        }
        let real = nic.shared.enable(id) == kbp_core::state::Enable::Enabled;
        if real {
            ports[id].rearm_irq();
        }
        if real != reference.enable(id) {
            return mismatch("enable", real, !real);
        }
        compare(&nic, &reference)?;
    }
    let mut rounds = 0;
    while (0..instances).any(|id| nic.pending(id) > 0)
        || matches!(case.config.idle, IdleMode::Adaptive { .. }) && !nic.shared.list().is_empty()
    {
        step(&mut poller, &mut reference, &mut starvation)?;
        let jump = case.config.time_limit_ns + window_ns(&case.config);
        nic.platform.advance(jump);
        reference.now += jump;
        rounds += 1;
        if rounds > 100_000 {
            return Err(Violation {
                property: 4,
                detail: "no progress towards quiescence".into(),
            });
        }
    }
    compare(&nic, &reference)?;
    invariants::quiescent(&nic, instances, PollerPhase::Running)?;
    poller.shutdown();
    reference.shutdown();
    compare(&nic, &reference)?;
    invariants::quiescent(&nic, instances, PollerPhase::ShutDown)
}
