//! loom models of kbp-core: every interleaving (up to `LOOM_MAX_PREEMPTIONS`) of the
//! interrupt side, the poller and a disabler, on loom's atomics.
//!
//! Run with `RUSTFLAGS="--cfg kbp_loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p kbp-model
//! --release --test loom_models`. Each model checks, through the shared checker:
//! no deadlock (loom reports a thread blocked forever, which is how a lost wake-up of a
//! parked poller shows), every produced packet consumed at quiescence, and never two
//! polls of one instance at once (asserted inside the simulated instance).

#![cfg(kbp_loom)]

use kbp_core::{Config, IdleMode, Poller, RxInstance};
use kbp_model::invariants::{self, PollerPhase};
use kbp_model::sim::{SimNic, SimPlatform};
use kbp_model::sync::{Arc, thread};

/// Adaptive with a zero window: release after every poll, park whenever idle; the mode
/// with the most interrupt/park traffic.
const RELEASE_EVERY_POLL: Config = Config {
    idle: IdleMode::Adaptive { window_ns: 0 },
    ..Config::DEFAULT
};

fn consumed(nic: &SimNic, instances: usize) -> u32 {
    (0..instances).map(|id| nic.rx(id).consumed).sum()
}

/// Runs the poller on the current (loom main) thread until `total` packets were consumed,
/// checking the shared invariants after every step; then shuts it down.
fn poll_until(nic: &SimNic, config: Config, instances: usize, total: u32) {
    let ports = nic.ports();
    let platform = &nic.platform;
    let mut poller = Poller::new(&nic.shared, &ports[..instances], &platform, config).unwrap();
    poller.attach_all();
    while consumed(nic, instances) < total {
        let _ = poller.step();
        invariants::shared(&nic.shared, instances).unwrap();
    }
    poller.shutdown();
}

/// `loom::model` with the environment's settings (`LOOM_MAX_PREEMPTIONS`, ...) and room
/// for the disabler's yield loop, which loom counts as branches.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 100_000;
    builder.check(f);
}

/// One thread per entry of `packets`, each producing a packet on that instance.
fn spawn_producers(nic: &Arc<SimNic>, packets: &[usize]) -> Vec<thread::JoinHandle<()>> {
    packets
        .iter()
        .map(|&id| {
            let nic = nic.clone();
            thread::spawn(move || nic.produce(id, 1))
        })
        .collect()
}

fn join(threads: Vec<thread::JoinHandle<()>>) {
    for t in threads {
        t.join().unwrap();
    }
}

fn new_nic() -> Arc<SimNic> {
    Arc::new(SimNic::new(SimPlatform::blocking()))
}

/// A NIC whose every packet rings the interrupt and whose re-arm does not re-check:
/// correctness then rests on the core's MISSED handling alone.
fn new_doorbell_nic() -> Arc<SimNic> {
    Arc::new(SimNic::with_doorbell(SimPlatform::blocking()))
}

/// (a) An interrupt scheduling the instance races the poller's complete: the event lands
/// either before (the poll sees it), during (MISSED, re-listed) or after (a new win).
/// The NIC is a doorbell without re-check, so only MISSED keeps the event.
#[test]
fn a_irq_schedule_races_complete_and_missed() {
    model(|| {
        let nic = new_doorbell_nic();
        let ports = nic.ports();
        let platform = &nic.platform;
        let mut poller =
            Poller::new(&nic.shared, &ports[..1], &platform, RELEASE_EVERY_POLL).unwrap();
        poller.attach_all();
        // One packet is listed before the race starts, so the second one can land while
        // the poller owns the instance (after its poll, before its complete).
        nic.produce(0, 1);
        let producers = spawn_producers(&nic, &[0]);
        while consumed(&nic, 1) < 2 {
            let _ = poller.step();
            invariants::shared(&nic.shared, 1).unwrap();
        }
        poller.shutdown();
        join(producers);
        invariants::quiescent(&nic, 1, PollerPhase::ShutDown).unwrap();
    });
}

/// (b) The poller decides to park while interrupts on two other CPUs list instances:
/// the wake-up must never be lost (a lost one deadlocks the model).
#[test]
fn b_poller_park_races_irq_wake() {
    model(|| {
        let nic = new_nic();
        let producers = spawn_producers(&nic, &[0, 1]);
        poll_until(&nic, RELEASE_EVERY_POLL, 2, 2);
        join(producers);
        invariants::quiescent(&nic, 2, PollerPhase::ShutDown).unwrap();
    });
}

/// (c) A disabler races an interrupt and the poller: after `disable` returns nothing
/// polls or lists the instance; after `enable` and the driver's re-arm the packet is
/// delivered.
#[test]
fn c_disable_races_schedule_and_poll() {
    model(|| {
        let nic = new_nic();
        let producers = spawn_producers(&nic, &[0]);
        let disabler = {
            let nic = nic.clone();
            thread::spawn(move || {
                assert!(nic.shared.disable(0, thread::yield_now));
                invariants::disabled(&nic, 0).unwrap();
                assert_eq!(nic.shared.enable(0), kbp_core::state::Enable::Enabled);
                nic.ports()[0].rearm_irq();
            })
        };
        poll_until(&nic, RELEASE_EVERY_POLL, 1, 1);
        join(producers);
        disabler.join().unwrap();
        invariants::quiescent(&nic, 1, PollerPhase::ShutDown).unwrap();
    });
}

/// (d) Two CPUs schedule the same instance at once (doorbell NIC: both interrupts
/// fire): one wins SCHED, the other sets MISSED; it is listed once and polled by one
/// owner at a time.
#[test]
fn d_two_cpus_schedule_the_same_instance() {
    model(|| {
        let nic = new_doorbell_nic();
        let producers = spawn_producers(&nic, &[0, 0]);
        poll_until(&nic, RELEASE_EVERY_POLL, 1, 2);
        join(producers);
        invariants::quiescent(&nic, 1, PollerPhase::ShutDown).unwrap();
    });
}

/// (e) A spinning poller (instances busy-owned, interrupts masked) shuts down while
/// packets keep arriving: every instance is handed back with its interrupt re-armed and
/// every packet is consumed, by the poller or by the normal path afterwards.
#[test]
fn e_shutdown_hands_every_instance_back() {
    model(|| {
        let nic = new_nic();
        let producer = {
            let nic = nic.clone();
            thread::spawn(move || {
                nic.produce(0, 1);
                nic.produce(1, 1);
            })
        };
        {
            let ports = nic.ports();
            let platform = &nic.platform;
            let mut poller =
                Poller::new(&nic.shared, &ports[..2], &platform, Config::DEFAULT).unwrap();
            poller.attach_all();
            let _ = poller.step();
            invariants::shared(&nic.shared, 2).unwrap();
            poller.shutdown();
        }
        producer.join().unwrap();
        invariants::quiescent(&nic, 2, PollerPhase::ShutDown).unwrap();
    });
}
