//! Deterministic sequences over kbp.ko's protocol and the simulated kernel NAPI
//! (`kbp_model::napi_sim`), for the cases the random operations do not reach.

#![cfg(not(kbp_loom))]

use kbp_core::{Config, Poller};
use kbp_model::invariants::{self, PollerPhase};
use kbp_model::napi_sim::{NapiWorld, Owner};
use kbp_model::sim::SimPlatform;

/// An instance switched to the kernel's threaded NAPI (sysfs `threaded`) is let go by a
/// spinning KBP and its next interrupts pass through to the kernel; switched back, KBP
/// takes it again at its next interrupt.
///
/// catches: `on_schedule` diverting while THREADED (KBP takes the packets the kernel's
/// thread should poll).
#[test]
fn threaded_instance_is_left_to_the_kernel() {
    let mut world = NapiWorld::new(SimPlatform::sequential(), 64);
    world.defer_softirq = true;
    let world = world;
    let ports = world.ports();
    let platform = &world.platform;
    let mut poller = Poller::new(&world.shared, &ports[..1], &platform, Config::DEFAULT).unwrap();
    poller.attach_all();
    let check = || invariants::napi_world(&world, 1).unwrap();

    world.produce(0, 3, 1);
    assert_eq!(world.napi(0).owner, Owner::Kbp);
    let _ = poller.step();
    check();
    assert_eq!(world.napi(0).by_kbp, 3);
    assert_eq!(world.napi(0).owner, Owner::Kbp, "Spin keeps it");

    world.set_threaded(0, true);
    let _ = poller.step();
    check();
    assert_eq!(
        world.napi(0).owner,
        Owner::Nobody,
        "KBP let go of a THREADED instance"
    );
    assert!(world.napi(0).irq_armed);

    world.produce(0, 2, 1);
    assert_eq!(world.napi(0).owner, Owner::Softirq);
    check();
    assert_eq!(world.softirq_round(1), 1);
    let _ = poller.step();
    check();
    assert_eq!((world.napi(0).by_softirq, world.napi(0).by_kbp), (2, 3));

    world.set_threaded(0, false);
    world.produce(0, 1, 1);
    let _ = poller.step();
    check();
    assert_eq!(world.napi(0).by_kbp, 4);
    invariants::napi_quiescent(&world, 1, PollerPhase::Running).unwrap();
    poller.shutdown();
    invariants::napi_quiescent(&world, 1, PollerPhase::ShutDown).unwrap();
}

/// A socket busy poller and KBP take turns: the busy poller takes the idle instance
/// with the cmpxchg, an interrupt during its polls only sets MISSED (its IRQ is masked
/// by `virtnet_poll`), and `busy_poll_stop`'s final poll hands the instance back, whose
/// next interrupt goes to KBP.
#[test]
fn busy_poller_and_kbp_take_turns() {
    let mut world = NapiWorld::new(SimPlatform::sequential(), 64);
    world.defer_softirq = true;
    let world = world;
    let ports = world.ports();
    let platform = &world.platform;
    let adaptive = Config {
        idle: kbp_core::IdleMode::Adaptive { window_ns: 0 },
        ..Config::DEFAULT
    };
    let mut poller = Poller::new(&world.shared, &ports[..1], &platform, adaptive).unwrap();
    poller.attach_all();
    world.inject_during_next_poll(
        0,
        kbp_model::napi_sim::Inject {
            target: 0,
            n: 2,
            irq: true,
        },
    );
    assert!(world.busy_poll(0, 1, 2));
    invariants::napi_world(&world, 1).unwrap();
    assert!(world.napi(0).missed >= 1, "{:?}", world.napi(0));
    assert_eq!(
        world.napi(0).by_busy_poll,
        2,
        "busy_poll_stop's poll took them"
    );
    world.produce(0, 1, 1);
    assert_eq!(world.napi(0).owner, Owner::Kbp);
    let _ = poller.step();
    invariants::napi_world(&world, 1).unwrap();
    assert_eq!(world.napi(0).by_kbp, 1);
    invariants::napi_quiescent(&world, 1, PollerPhase::Running).unwrap();
}
