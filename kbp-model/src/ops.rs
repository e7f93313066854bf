//! Operation sequences: one case = a configuration and a list of operations, run on the
//! real kbp-core (over the simulated NIC) and on the [`Reference`] side by side, with the
//! invariant checker after every operation. Used by proptest and by the fuzzer.

use kbp_core::{Config, IdleMode, Nanos, Poller, StepOutcome};

use crate::invariants::{self, Check, IdleRelease, PollerPhase, Starvation, Violation};
use crate::reference::{RefStep, Reference};
use crate::sim::{CAP, Inject, SimNic, SimPlatform};
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
    /// An event for instance `id` whatever its interrupt mask says (another interrupt
    /// source, a `napi_schedule` from another CPU): on an owned or busy-kept instance it
    /// sets MISSED.
    Schedule { id: u8 },
    /// While the next poll of instance `id` runs, the NIC writes `n` packets into
    /// `target` and, if `irq`, an event for `target` fires: packets and MISSED during a
    /// poll, and instances scheduled during a round (the repolled ones go behind them).
    DuringPoll {
        id: u8,
        target: u8,
        n: u8,
        irq: bool,
    },
    /// One softirq round on every CPU (the kernel's path; `napi_sim` only, where
    /// softirqs are deferred; the simulated NIC runs its normal path at once).
    Softirq,
    /// A socket busy poller takes instance `id` if idle, polls it twice and stops
    /// (`napi_sim` only).
    BusyPoll { id: u8 },
    /// `Poller::detach(id)` while the poller runs (the simulated NIC only).
    Detach { id: u8 },
    /// `Poller::attach(id)` while the poller runs (the simulated NIC only).
    Attach { id: u8 },
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
        let instances_byte = next();
        let instances = usize::from(instances_byte) % CAP + 1;
        // The instance byte's high bits: half the cases release an idle instance after
        // 1-32 us (reached by polls and clock jumps), half after the default 2 ms.
        let idle_release_ns = if instances_byte & 0x80 == 0 {
            (u64::from(instances_byte >> 2 & 0x1f) + 1) * 1_000
        } else {
            Config::DEFAULT.idle_release_ns
        };
        let config = Config {
            weight,
            budget,
            time_limit_ns,
            idle,
            idle_release_ns,
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
            ops.push(match a % 12 {
                0 | 1 => Op::Produce { id, n: c },
                2..=4 => Op::Step,
                8 => Op::Schedule { id },
                9 => Op::DuringPoll {
                    id,
                    target: c % CAP as u8,
                    n: c >> 2,
                    irq: b & 0x80 != 0,
                },
                10 => Op::Softirq,
                11 => Op::BusyPoll { id },
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
                _ => match c % 4 {
                    0 => Op::Detach { id },
                    1 => Op::Attach { id },
                    _ => Op::Enable { id },
                },
            });
        }
        Case {
            config,
            instances,
            ops,
        }
    }
}

fn mismatch<T>(
    what: &str,
    real: impl std::fmt::Debug,
    reference: impl std::fmt::Debug,
) -> Result<T, Violation> {
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

/// What a case reached (the sequential suites' coverage of the interesting races).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Events that found their instance owned and set MISSED.
    pub missed: u32,
    /// Rounds that re-listed a still-owned instance behind instances scheduled during
    /// the round.
    pub repolled_behind_new: u32,
    /// Instances the policy would have kept but the poller released, idle for
    /// `idle_release_ns`.
    pub idle_releases: u64,
}

/// The per-instance counters against the poller's, the simulated NIC's and the
/// reference's (before shutdown).
fn counters<R: RxInstance>(
    poller: &Poller<'_, crate::sync::Word, R, &SimPlatform, CAP>,
    nic: &SimNic,
    reference: &Reference,
    instances: usize,
) -> Check {
    let mut sum = kbp_core::InstanceStats::default();
    for (id, r) in reference.rx.iter().enumerate().take(instances) {
        let i = poller.instance_stats(id).copied().unwrap_or_default();
        let rx = nic.rx(id);
        if i.packets != u64::from(rx.consumed - rx.fallback) {
            return mismatch(
                &format!("instance {id} packets: poller's counter vs the NIC's"),
                i.packets,
                rx.consumed - rx.fallback,
            );
        }
        let real = (i.polls, i.packets, i.releases, i.idle_releases);
        let expected = (r.polls, r.packets, r.releases, r.idle_releases);
        if real != expected {
            return mismatch(
                &format!("instance {id} polls/packets/releases/idle releases"),
                real,
                expected,
            );
        }
        sum.packets += i.packets;
        sum.polls += i.polls;
        sum.empty_polls += i.empty_polls;
        sum.releases += i.releases;
        sum.idle_releases += i.idle_releases;
    }
    invariants::counters_add_up(&sum, poller.stats())?;
    if nic.missed() != reference.missed_events {
        return mismatch("MISSED events", nic.missed(), reference.missed_events);
    }
    Ok(())
}

/// Runs `case` to the end, then to quiescence and through shutdown; returns the first
/// violated property or reference mismatch (property 0).
pub fn run(case: &Case) -> Check {
    run_with_coverage(case).map(|_| ())
}

/// [`run`], and what the case reached.
pub fn run_with_coverage(case: &Case) -> Result<Coverage, Violation> {
    if case.config.validate().is_err() {
        return Ok(Coverage::default());
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
    let mut trackers = (Starvation::new(), IdleRelease::new(&case.config));
    poller.attach_all();
    reference.attach_all();
    compare(&nic, &reference)?;

    let step = |poller: &mut Poller<'_, _, _, _, CAP>,
                reference: &mut Reference,
                trackers: &mut (Starvation, IdleRelease)|
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
        trackers.0.after_round(&listed, polls)?;
        trackers.1.check(&nic.shared, instances, |id| {
            poller.instance_stats(id).copied()
        })
    };

    for op in &case.ops {
        match *op {
            Op::Produce { id, n } => {
                let id = usize::from(id) % instances;
                nic.produce(id, u32::from(n));
                reference.produce(id, u32::from(n));
            }
            Op::Step => step(&mut poller, &mut reference, &mut trackers)?,
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
                    ports[id].rearm();
                }
                if real != reference.enable(id) {
                    return mismatch("enable", real, !real);
                }
            }
            Op::Schedule { id } => {
                let id = usize::from(id) % instances;
                nic.schedule(id);
                reference.schedule(id);
            }
            Op::DuringPoll { id, target, n, irq } => {
                let id = usize::from(id) % instances;
                let inject = Inject {
                    target: usize::from(target) % instances,
                    n: u32::from(n),
                    irq,
                };
                nic.inject_during_next_poll(id, inject);
                reference.rx[id].inject = Some(inject);
            }
            Op::Detach { id } => {
                let id = usize::from(id) % instances;
                let real = poller.detach(id);
                if real != reference.detach(id) {
                    return mismatch("detach", real, !real);
                }
                if poller.is_detaching(id) != reference.rx[id].detaching {
                    return mismatch(
                        "detaching",
                        poller.is_detaching(id),
                        reference.rx[id].detaching,
                    );
                }
            }
            Op::Attach { id } => {
                let id = usize::from(id) % instances;
                let real = poller.attach(id);
                if real != reference.attach(id) {
                    return mismatch("attach", real, !real);
                }
            }
            Op::Softirq | Op::BusyPoll { .. } => {}
        }
        invariants::shared(&nic.shared, instances)?;
        invariants::kept_masked(&nic, instances)?;
        compare(&nic, &reference)?;
        counters(&poller, &nic, &reference, instances)?;
    }

    // Quiescence: attach what was detached (stepping while the poller still owns it),
    // finish pending disables, enable everything, and step until drained.
    for id in 0..instances {
        if reference.rx[id].attached {
            continue;
        }
        let mut attempts = 0;
        loop {
            let real = poller.attach(id);
            if real != reference.attach(id) {
                return mismatch("attach", real, !real);
            }
            if real {
                break;
            }
            step(&mut poller, &mut reference, &mut trackers)?;
            attempts += 1;
            if attempts > 1000 {
                return Err(Violation {
                    property: 9,
                    detail: format!("detached instance {id} never released"),
                });
            }
        }
        compare(&nic, &reference)?;
    }
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
            step(&mut poller, &mut reference, &mut trackers)?;
        }
        let real = nic.shared.enable(id) == kbp_core::state::Enable::Enabled;
        if real {
            ports[id].rearm();
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
        step(&mut poller, &mut reference, &mut trackers)?;
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
    counters(&poller, &nic, &reference, instances)?;
    invariants::quiescent(&nic, instances, PollerPhase::Running)?;
    poller.shutdown();
    reference.shutdown();
    compare(&nic, &reference)?;
    invariants::quiescent(&nic, instances, PollerPhase::ShutDown)?;
    Ok(Coverage {
        missed: reference.missed_events,
        repolled_behind_new: reference.repolled_behind_new,
        idle_releases: poller.stats().idle_releases,
    })
}

/// Runs `case` on kbp.ko's protocol: kbp-core's `napi` module (the entry hook and
/// [`kbp_core::NapiPort`]) over the simulated kernel of [`crate::napi_sim`], with the
/// kernel's softirq path and a socket busy poller beside KBP. No reference model here:
/// the checker ([`invariants::napi_world`], the counters) after every operation, a
/// disable bounded in steps, then quiescence and shutdown
/// ([`invariants::napi_quiescent`]). `Coverage::missed` counts `napi_schedule_prep`
/// calls that set MISSED.
pub fn run_napi(case: &Case) -> Result<Coverage, Violation> {
    use crate::napi_sim::NapiWorld;
    if case.config.validate().is_err() {
        return Ok(Coverage::default());
    }
    let instances = case.instances.clamp(1, CAP);
    let mut world = NapiWorld::new(SimPlatform::sequential(), Config::DEFAULT.weight);
    world.defer_softirq = true;
    let world = world;
    let ports = world.ports();
    let platform = &world.platform;
    let mut poller = match Poller::new(&world.shared, &ports[..instances], &platform, case.config) {
        Ok(poller) => poller,
        Err(e) => {
            return Err(Violation {
                property: 0,
                detail: format!("valid config refused: {e}"),
            });
        }
    };
    poller.attach_all();
    let softirqs = || {
        let mut polled = 0;
        for cpu in 0..16 {
            polled += world.softirq_round(cpu);
        }
        polled
    };
    let idle_release = core::cell::RefCell::new(IdleRelease::new(&case.config));
    let check = |poller: &Poller<'_, _, _, _, CAP>| -> Check {
        invariants::napi_world(&world, instances)?;
        idle_release
            .borrow_mut()
            .check(&world.shared, instances, |id| {
                poller.instance_stats(id).copied()
            })?;
        invariants::napi_counters(&world, &ports[..instances], poller.stats(), |id| {
            poller.instance_stats(id).copied()
        })
    };
    let mut disabling = [false; CAP];
    let mut disabled = [false; CAP];
    check(&poller)?;
    for op in &case.ops {
        match *op {
            Op::Produce { id, n } => world.produce(usize::from(id) % instances, u32::from(n), 1),
            Op::Step => {
                let _ = poller.step();
            }
            Op::Advance { ns } => world.platform.advance(Nanos::from(ns)),
            Op::BeginDisable { id } => {
                let id = usize::from(id) % instances;
                if !disabling[id] && !disabled[id] {
                    world.begin_disable(id);
                    disabling[id] = true;
                }
            }
            Op::FinishDisable { id } => {
                let id = usize::from(id) % instances;
                if disabling[id] && world.try_finish_disable(id) {
                    disabling[id] = false;
                    disabled[id] = true;
                }
            }
            Op::Enable { id } => {
                let id = usize::from(id) % instances;
                if disabled[id] {
                    if !world.enable(id, 1) {
                        return Err(Violation {
                            property: 7,
                            detail: format!("napi {id}: enable refused after disable"),
                        });
                    }
                    disabled[id] = false;
                }
            }
            Op::Schedule { id } => world.irq(usize::from(id) % instances, 1),
            Op::DuringPoll { id, target, n, irq } => world.inject_during_next_poll(
                usize::from(id) % instances,
                Inject {
                    target: usize::from(target) % instances,
                    n: u32::from(n),
                    irq,
                },
            ),
            Op::Softirq => {
                softirqs();
            }
            Op::BusyPoll { id } => {
                let _ = world.busy_poll(usize::from(id) % instances, 2, 2);
            }
            // kbp.ko never detaches an instance while its thread runs.
            Op::Detach { .. } | Op::Attach { .. } => {}
        }
        check(&poller)?;
    }

    // Quiescence: every pending disable finishes within a bounded number of poller
    // steps and softirq rounds (KBP lets go within one poll of seeing DISABLE; FIFO
    // rounds bound the wait to CAP rounds); then enable everything and drain.
    for id in 0..instances {
        if disabling[id] {
            let mut attempts = 0;
            while !world.try_finish_disable(id) {
                attempts += 1;
                if attempts > 2 * CAP + 2 {
                    return Err(Violation {
                        property: 7,
                        detail: format!("napi_disable of {id} not done after {attempts} rounds"),
                    });
                }
                let _ = poller.step();
                softirqs();
                check(&poller)?;
            }
            disabled[id] = true;
        }
        if disabled[id] && !world.enable(id, 1) {
            return Err(Violation {
                property: 7,
                detail: format!("napi {id}: enable refused after disable"),
            });
        }
        check(&poller)?;
    }
    let mut rounds = 0;
    loop {
        let busy = (0..instances).any(|id| world.napi(id).pending > 0)
            || matches!(case.config.idle, IdleMode::Adaptive { .. })
                && !world.shared.list().is_empty();
        let polled = softirqs();
        if !busy && polled == 0 {
            break;
        }
        let _ = poller.step();
        world
            .platform
            .advance(case.config.time_limit_ns + window_ns(&case.config));
        check(&poller)?;
        rounds += 1;
        if rounds > 100_000 {
            return Err(Violation {
                property: 4,
                detail: "no progress towards quiescence".into(),
            });
        }
    }
    invariants::napi_quiescent(&world, instances, PollerPhase::Running)?;
    poller.shutdown();
    while softirqs() > 0 {}
    world.unhook();
    invariants::napi_quiescent(&world, instances, PollerPhase::ShutDown)?;
    Ok(Coverage {
        missed: (0..instances).map(|id| world.napi(id).missed).sum(),
        repolled_behind_new: 0,
        idle_releases: poller.stats().idle_releases,
    })
}
