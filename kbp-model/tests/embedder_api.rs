//! Deterministic sequences over the embedder's API of kbp-core on the simulated NIC
//! (`kbp_model::sim`): per-instance weight, detach and attach while the poller runs,
//! a custom idle policy parking with a deadline, and the producer handle.

#![cfg(not(kbp_loom))]

use std::cell::Cell;

use kbp_core::{
    Config, Idle, IdlePolicy, Nanos, Platform, Poller, Producer, ScheduleOutcome, StepOutcome,
};
use kbp_model::invariants::{self, PollerPhase};
use kbp_model::sim::{SimNic, SimPlatform};

/// One instance with weight 8 among default ones: a poll of it takes at most 8.
#[test]
fn per_instance_weight_bounds_each_poll() {
    let nic = SimNic::new(SimPlatform::sequential());
    let ports = nic.ports();
    let platform = &nic.platform;
    let mut poller = Poller::new(&nic.shared, &ports[..2], &platform, Config::DEFAULT).unwrap();
    assert!(poller.set_weight(0, 0).is_err());
    assert!(
        poller.set_weight(2, 8).is_err(),
        "not an instance of this poller"
    );
    poller.set_weight(0, 8).unwrap();
    assert_eq!(poller.weight(0), Some(8));
    assert_eq!(poller.weight(1), Some(64));
    poller.attach_all();
    nic.produce(0, 100);
    nic.produce(1, 100);
    assert_eq!(poller.step(), StepOutcome::Worked { packets: 8 + 64 });
    assert_eq!(poller.instance_stats(0).unwrap().packets, 8);
    while (0..2).any(|id| nic.pending(id) > 0) {
        let _ = poller.step();
        invariants::shared(&nic.shared, 2).unwrap();
    }
    poller.shutdown();
    invariants::quiescent(&nic, 2, PollerPhase::ShutDown).unwrap();
}

/// A spinning poller lets go of a detached instance at its next poll (interrupt
/// re-armed), even one that used its whole weight; its packets then take the normal
/// path until it is attached again. Catches `poll_one` keeping a detached instance
/// whose poll used its weight (not testing ATTACHED before the work == weight rule).
#[test]
fn detach_and_attach_while_running() {
    let nic = SimNic::new(SimPlatform::sequential());
    let ports = nic.ports();
    let platform = &nic.platform;
    let mut poller = Poller::new(&nic.shared, &ports[..2], &platform, Config::DEFAULT).unwrap();
    poller.attach_all();
    nic.produce(0, 3);
    let _ = poller.step();
    assert!(!nic.rx(0).irq_armed, "a spinning poller keeps it masked");

    assert!(poller.detach(0));
    assert!(poller.is_detaching(0));
    assert!(!poller.attach(0), "still owned by the poller");
    // More than a weight waits: the poll uses its whole weight, and the poller still
    // lets go at once; the re-arm finds the rest, which the normal path takes.
    nic.produce(0, 100);
    let _ = poller.step();
    assert!(!poller.is_detaching(0), "released after one poll");
    assert!(nic.rx(0).irq_armed);
    assert_eq!(nic.rx(0).consumed, 103);
    assert_eq!(
        nic.rx(0).fallback,
        36,
        "3 + 64 by the poller, the rest by the normal path"
    );

    nic.produce(0, 4);
    assert_eq!(
        nic.rx(0).fallback,
        40,
        "detached: the normal path took them"
    );
    assert!(poller.attach(0));
    nic.produce(0, 1);
    let _ = poller.step();
    assert_eq!(nic.rx(0).consumed, 108);
    assert_eq!(nic.rx(0).fallback, 40);
    poller.shutdown();
    invariants::quiescent(&nic, 2, PollerPhase::ShutDown).unwrap();
}

/// A policy that never keeps an instance and parks for 1 µs at a time.
struct Timed;

impl IdlePolicy for Timed {
    fn polled(&mut self, _id: usize, _work: u32, _now: Nanos) {}
    fn keep_busy(&self, _id: usize, _now: Nanos) -> bool {
        false
    }
    fn idle(&self, now: Nanos) -> Idle {
        Idle::Park {
            deadline: Some(now + 1_000),
        }
    }
}

/// The simulated platform, recording the deadlines it was asked to park until.
struct Recording<'a> {
    sim: &'a SimPlatform,
    deadlines: Cell<Vec<Option<Nanos>>>,
}

impl<'a> Recording<'a> {
    fn new(sim: &'a SimPlatform) -> Self {
        Recording {
            sim,
            deadlines: Cell::new(Vec::new()),
        }
    }
}

impl<'a> Platform for Recording<'a> {
    type SoftirqGuard = <&'a SimPlatform as Platform>::SoftirqGuard;
    fn mask_softirqs(&self) -> Self::SoftirqGuard {
        self.sim.mask_softirqs()
    }
    fn now(&self) -> Nanos {
        self.sim.now_ns()
    }
    fn quiescent(&self) {}
    fn park(&self, still_parked: &dyn Fn() -> bool, deadline: Option<Nanos>) {
        let mut d = self.deadlines.take();
        d.push(deadline);
        self.deadlines.set(d);
        self.sim.park(still_parked, deadline);
    }
}

/// A custom policy's deadline reaches the platform's park; a producer handle schedules
/// and wakes the parked poller.
#[test]
fn custom_policy_parks_with_deadline_and_producer_wakes() {
    let nic = SimNic::new(SimPlatform::sequential());
    let ports = nic.ports();
    let platform = Recording::new(&nic.platform);
    let mut poller =
        Poller::with_policy(&nic.shared, &ports[..1], &platform, Config::DEFAULT, Timed).unwrap();
    poller.attach_all();
    let now = nic.platform.now_ns();
    assert_eq!(poller.step(), StepOutcome::Parked { woken: false });
    assert_eq!(platform.deadlines.take(), vec![Some(now + 1_000)]);

    // A producer handle (not the poller) schedules the instance while the poller runs:
    // listed without an unpark, polled at the next step, released (the policy keeps
    // nothing), and the poller parks again with a new deadline.
    let producer = Producer::new(&nic.shared, &nic.platform);
    assert_eq!(
        producer.schedule(0),
        ScheduleOutcome::Queued { woke: false }
    );
    assert_eq!(poller.step(), StepOutcome::Parked { woken: false });
    assert_eq!(poller.instance_stats(0).unwrap().polls, 1);
    assert_eq!(platform.deadlines.take().len(), 1);
    poller.shutdown();
    invariants::quiescent(&nic, 1, PollerPhase::ShutDown).unwrap();
}

/// `step_then` calls its closure once per park, before the platform's park and with the
/// park counted (where kbp.ko publishes its counters), and never on a step that does
/// not park.
#[test]
fn step_then_runs_before_each_park_only() {
    let nic = SimNic::new(SimPlatform::sequential());
    let ports = nic.ports();
    let platform = Recording::new(&nic.platform);
    let mut poller =
        Poller::with_policy(&nic.shared, &ports[..1], &platform, Config::DEFAULT, Timed).unwrap();
    poller.attach_all();
    let seen = Cell::new(Vec::new());
    let record = |p: &Poller<'_, _, _, _, _, _>| {
        let parks_before_sleep = platform.deadlines.take();
        let mut s = seen.take();
        s.push((p.stats().parks, parks_before_sleep.len(), p.stats().packets));
        seen.set(s);
        platform.deadlines.set(parks_before_sleep);
    };
    assert_eq!(
        poller.step_then(record),
        StepOutcome::Parked { woken: false }
    );
    // Packets: the step that polls them works, and the one after parks with them
    // counted in what the closure sees.
    let producer = Producer::new(&nic.shared, &nic.platform);
    nic.produce(0, 3);
    let _ = producer.schedule(0);
    assert_eq!(poller.step_then(record), StepOutcome::Worked { packets: 3 });
    assert_eq!(
        poller.step_then(record),
        StepOutcome::Parked { woken: false }
    );
    assert_eq!(
        seen.take(),
        vec![(1, 0, 0), (2, 1, 3)],
        "(parks counted, platform parks so far, packets) at each call"
    );
    poller.shutdown();
    invariants::quiescent(&nic, 1, PollerPhase::ShutDown).unwrap();
}
