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

/// napi_synchronize would hang: `ip link set eth0 down` on an e1000e owned by a spinning
/// kbp.ko blocked forever under RTNL. `e1000e_down()`
/// (drivers/net/ethernet/intel/e1000e/netdev.c:4295-4327) quiesces the device, then
/// `napi_synchronize()` (include/linux/netdevice.h:617-624) sleeps 1 ms at a time while
/// NAPI_STATE_SCHED is set, and `Spin` kept the instance owned (SCHED and IN_BUSY_POLL)
/// forever. Here the device goes quiet while KBP spins on it, and the waiter's loop,
/// one `msleep(1)` per simulated millisecond of spinning, must end after about
/// `idle_release_ns` (2 ms) and a round: the napi released with its interrupt re-armed,
/// the thread still spinning (never parked), and the next interrupt handing the napi
/// to KBP again.
///
/// catches: the poller keeping an idle instance owned because the policy says so (no
/// idle release in `poll_one`): the loop runs out of its 50 ms.
#[test]
fn napi_synchronize_would_hang_on_a_spinning_poller_without_idle_release() {
    use kbp_core::StepOutcome;
    use kbp_model::napi_sim::kbits;

    let mut world = NapiWorld::new(SimPlatform::sequential(), 64);
    world.defer_softirq = true;
    let world = world;
    let ports = world.ports();
    let platform = &world.platform;
    let config = Config::DEFAULT;
    assert_eq!(config.idle, kbp_core::IdleMode::Spin);
    let mut poller = Poller::new(&world.shared, &ports[..1], &platform, config).unwrap();
    poller.attach_all();
    let check = || invariants::napi_world(&world, 1).unwrap();

    // Traffic, then the driver quiesces the device (RX off, IRQ disabled): no packet
    // arrives any more while KBP spins on the napi it owns.
    world.produce(0, 3, 1);
    let _ = poller.step();
    check();
    assert_eq!(world.napi(0).by_kbp, 3);
    assert_eq!(world.napi(0).owner, Owner::Kbp);

    // napi_synchronize(): while (test_bit(NAPI_STATE_SCHED, &n->state)) msleep(1);
    // meanwhile the KBP thread spins: 1 ms of its steps per sleep.
    let mut slept_ms = 0;
    while world.napi(0).bits & kbits::SCHED != 0 {
        assert!(
            slept_ms < 50,
            "napi_synchronize() still sleeping after {slept_ms} ms: KBP holds SCHED ({:?})",
            world.napi(0)
        );
        for _ in 0..10 {
            let outcome = poller.step();
            assert!(
                !matches!(outcome, StepOutcome::Parked { .. }),
                "a spinning poller parked"
            );
            world.platform.advance(100_000);
            check();
        }
        slept_ms += 1;
    }
    let released_after = Config::DEFAULT.idle_release_ns / 1_000_000;
    assert!(
        (released_after..=released_after + 1).contains(&slept_ms),
        "released after {slept_ms} ms (idle release {released_after} ms)"
    );
    let napi = world.napi(0);
    assert_eq!(napi.owner, Owner::Nobody);
    assert!(napi.irq_armed, "released without re-arming its interrupt");
    assert_eq!(poller.stats().idle_releases, 1);
    assert_eq!(poller.instance_stats(0).unwrap().idle_releases, 1);

    // The thread keeps spinning with nothing listed; the next interrupt lists the napi
    // again through the entry hook, and Spin keeps it while packets come.
    for _ in 0..10 {
        assert_eq!(poller.step(), StepOutcome::Idle);
    }
    world.produce(0, 2, 1);
    assert_eq!(world.napi(0).owner, Owner::Kbp);
    let _ = poller.step();
    check();
    assert_eq!(world.napi(0).by_kbp, 5);
    assert_eq!(world.napi(0).owner, Owner::Kbp, "Spin keeps it again");
    invariants::napi_quiescent(&world, 1, PollerPhase::Running).unwrap();
    poller.shutdown();
    invariants::napi_quiescent(&world, 1, PollerPhase::ShutDown).unwrap();
}

/// A TX-completion instance (NO_BUSY_POLL, as `netif_napi_add_tx` marks it) is polled
/// when its interrupt schedules it and handed back after that poll, with its interrupt
/// re-armed, even by a spinning KBP that keeps its RX instance; its next interrupt
/// brings it to KBP again (no softirq).
///
/// catches: the poller asking only the idle policy whether to keep an instance
/// (`RxInstance::busy_pollable` ignored): a spinning KBP busy-polls the TX instance
/// forever, taking the driver's TX queue lock at every empty poll.
#[test]
fn tx_instance_is_released_after_each_poll() {
    let world = NapiWorld::new(SimPlatform::sequential(), 64);
    world.mark_tx(1);
    let ports = world.ports();
    let platform = &world.platform;
    let mut poller = Poller::new(&world.shared, &ports[..2], &platform, Config::DEFAULT).unwrap();
    poller.attach_all();
    let check = || invariants::napi_world(&world, 2).unwrap();

    world.produce(0, 3, 1);
    world.produce(1, 2, 1);
    assert_eq!(world.napi(1).owner, Owner::Kbp);
    let _ = poller.step();
    check();
    assert_eq!((world.napi(0).by_kbp, world.napi(1).by_kbp), (3, 2));
    assert_eq!(
        world.napi(0).owner,
        Owner::Kbp,
        "Spin keeps the RX instance"
    );
    assert_eq!(
        world.napi(1).owner,
        Owner::Nobody,
        "the TX instance is handed back after its poll"
    );
    assert!(world.napi(1).irq_armed);
    assert_eq!(poller.instance_stats(1).unwrap().releases, 1);

    world.produce(1, 1, 1);
    assert_eq!(
        world.napi(1).owner,
        Owner::Kbp,
        "its interrupt brings it back"
    );
    let _ = poller.step();
    check();
    assert_eq!(world.napi(1).by_kbp, 3);
    assert_eq!(world.napi(1).by_softirq, 0);
    assert_eq!(world.napi(1).owner, Owner::Nobody);
    poller.shutdown();
    invariants::napi_quiescent(&world, 2, PollerPhase::ShutDown).unwrap();
}
