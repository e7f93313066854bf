//! loom models of kbp-core: every interleaving (up to `LOOM_MAX_PREEMPTIONS`) of the
//! interrupt side, the poller and a disabler, on loom's atomics.
//!
//! Models a-e and j run kbp-core over the simulated NIC of `kbp_model::sim`; model l runs
//! kbp-core's `binding` (how kbp.ko gives a device up while its hook adopts); models f-i,
//! k and m run kbp.ko's protocol (kbp-core's `napi` module: the `__napi_schedule` entry
//! hook and `NapiPort`) over the simulated kernel `napi->state` and virtio-like driver of
//! `kbp_model::napi_sim`, checked by the same checker (`invariants::napi_world`, after
//! every poller step, and `invariants::napi_quiescent` at the end). Each of f-i and k-m
//! names a one-line bug it catches; each was seeded, seen to fail, and reverted.
//!
//! Run with `RUSTFLAGS="--cfg kbp_loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p kbp-model
//! --release --test loom_models`. Each model checks, through the shared checker:
//! no deadlock (loom reports a thread blocked forever, which is how a lost wake-up of a
//! parked poller shows), every produced packet consumed at quiescence, and never two
//! polls of one instance at once (asserted inside the simulated instance).

#![cfg(kbp_loom)]

use kbp_core::{Config, IdleMode, Poller};
use kbp_model::invariants::{self, PollerPhase};
use kbp_model::sim::{RxPort, SimNic, SimPlatform};
use kbp_model::sync::{Arc, Word, thread};

/// Adaptive with a zero window: release after every poll, park whenever idle; the mode
/// with the most interrupt/park traffic.
const RELEASE_EVERY_POLL: Config = Config {
    idle: IdleMode::Adaptive { window_ns: 0 },
    ..Config::DEFAULT
};

fn consumed(nic: &SimNic, instances: usize) -> u32 {
    (0..instances).map(|id| nic.rx(id).consumed).sum()
}

/// A poller over the simulated NIC's instances.
type SimPoller<'a> = Poller<'a, Word, RxPort<'a>, &'a SimPlatform, 4>;

/// Runs `f` on the current (loom main) thread with a poller over `nic`'s first
/// `instances` instances, every one attached.
fn with_sim_poller<T>(
    nic: &SimNic,
    instances: usize,
    config: Config,
    f: impl FnOnce(&mut SimPoller<'_>) -> T,
) -> T {
    let ports = nic.ports();
    let platform = &nic.platform;
    let mut poller = Poller::new(&nic.shared, &ports[..instances], &platform, config).unwrap();
    poller.attach_all();
    f(&mut poller)
}

/// Steps `poller` until `total` packets were consumed, checking the shared invariants
/// after every step.
fn step_until(poller: &mut SimPoller<'_>, nic: &SimNic, instances: usize, total: u32) {
    while consumed(nic, instances) < total {
        let _ = poller.step();
        invariants::shared(&nic.shared, instances).unwrap();
    }
}

/// Runs the poller on the current (loom main) thread until `total` packets were consumed,
/// checking the shared invariants after every step; then shuts it down.
fn poll_until(nic: &SimNic, config: Config, instances: usize, total: u32) {
    with_sim_poller(nic, instances, config, |poller| {
        step_until(poller, nic, instances, total);
        poller.shutdown();
    });
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
        with_sim_poller(&nic, 1, RELEASE_EVERY_POLL, |poller| {
            // One packet is listed before the race starts, so the second one can land
            // while the poller owns the instance (after its poll, before its complete).
            nic.produce(0, 1);
            let producers = spawn_producers(&nic, &[0]);
            step_until(poller, &nic, 1, 2);
            poller.shutdown();
            join(producers);
        });
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
                nic.ports()[0].rearm();
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
        with_sim_poller(&nic, 2, Config::DEFAULT, |poller| {
            let _ = poller.step();
            invariants::shared(&nic.shared, 2).unwrap();
            poller.shutdown();
        });
        producer.join().unwrap();
        invariants::quiescent(&nic, 2, PollerPhase::ShutDown).unwrap();
    });
}

// ----- kbp.ko's protocol over the simulated kernel (kbp_model::napi_sim) -----

use kbp_core::NapiPort;
use kbp_model::napi_sim::{NapiRef, NapiWorld, Owner};

fn new_world() -> Arc<NapiWorld> {
    Arc::new(NapiWorld::new(
        SimPlatform::blocking(),
        Config::DEFAULT.weight,
    ))
}

fn napi_consumed(world: &NapiWorld, instances: usize) -> u32 {
    (0..instances).map(|id| world.napi(id).consumed()).sum()
}

/// A poller over the simulated kernel's instances, through kbp.ko's `NapiPort`.
type NapiPoller<'a> = Poller<'a, Word, NapiPort<NapiRef<'a>>, &'a SimPlatform, 4>;

/// Runs `f` on the current (loom main) thread with a poller over `world`'s first
/// instance, attached.
fn with_napi_poller<T>(
    world: &NapiWorld,
    config: Config,
    f: impl FnOnce(&mut NapiPoller<'_>) -> T,
) -> T {
    let ports = world.ports();
    let platform = &world.platform;
    let mut poller = Poller::new(&world.shared, &ports[..1], &platform, config).unwrap();
    poller.attach_all();
    f(&mut poller)
}

/// One poller step and the checker, from the poller thread.
fn napi_step(poller: &mut NapiPoller<'_>, world: &NapiWorld, instances: usize) {
    let _ = poller.step();
    invariants::napi_world(world, instances).unwrap();
}

/// (f) An interrupt races KBP's release (adaptive, window 0: KBP hands the instance back
/// after every poll): the packet lands before the hand-back's poll (taken by it), while
/// it re-arms (the driver's re-check or the interrupt schedules again, and the hook
/// diverts it back to KBP), or after (a new interrupt). A lost one parks the poller
/// forever (loom: deadlock).
///
/// catches: `NapiPort::release` clearing IN_BUSY_POLL after its final poll instead of
/// before (the driver's `napi_complete_done` then returns false: SCHED is never given
/// back, the interrupt stays masked, the packet is never polled).
#[test]
fn f_irq_races_kbp_release() {
    model(|| {
        let world = new_world();
        with_napi_poller(&world, RELEASE_EVERY_POLL, |poller| {
            world.produce(0, 1, 1);
            let irq = {
                let world = world.clone();
                thread::spawn(move || world.produce(0, 1, 1))
            };
            while napi_consumed(&world, 1) < 2 {
                napi_step(poller, &world, 1);
            }
            poller.shutdown();
            irq.join().unwrap();
            assert_eq!(
                world.napi(0).by_softirq,
                0,
                "an attached instance went to the softirq"
            );
            invariants::napi_quiescent(&world, 1, PollerPhase::ShutDown).unwrap();
        });
    });
}

/// (g) `napi_disable` races a spinning KBP (Spin: KBP keeps the instance with
/// IN_BUSY_POLL and its interrupt masked): KBP must let go within a poll of seeing
/// DISABLE, the disabler gets SCHED|NPSVC, a packet while disabled only sets MISSED,
/// and `napi_enable` (virtio's schedule after it) gives the instance back to KBP.
///
/// catches: `NapiPort::must_release` ignoring DISABLE (KBP keeps the instance forever;
/// the disabler never finishes: loom exceeds its branch bound).
#[test]
fn g_napi_disable_races_spinning_kbp() {
    model(|| {
        let world = new_world();
        with_napi_poller(&world, Config::DEFAULT, |poller| {
            world.produce(0, 1, 1);
            let disabler = {
                let world = world.clone();
                thread::spawn(move || {
                    world.disable(0, thread::yield_now);
                    assert!(world.is_disabled(0));
                    world.produce(0, 1, 2);
                    assert!(world.enable(0, 2));
                })
            };
            while napi_consumed(&world, 1) < 2 {
                napi_step(poller, &world, 1);
            }
            disabler.join().unwrap();
            poller.shutdown();
            invariants::napi_quiescent(&world, 1, PollerPhase::ShutDown).unwrap();
        });
    });
}

/// (h) The module unloads (`Poller::shutdown`, then the hook is unregistered) while an
/// interrupt is in flight: whether the hook runs before the detach (KBP polls it and
/// hands it back), after it (`Fallback`: the hook completes KBP's word and passes
/// through) or not at all, the packet reaches the softirq path or KBP, and nothing is
/// left owned.
///
/// catches: `on_schedule` answering `Divert` instead of `PassThrough` after a
/// `Fallback` (the instance is handed to a poller that no longer serves it: the packet
/// is never polled, the napi stays held).
#[test]
fn h_unload_races_irq_in_flight() {
    model(|| {
        let world = new_world();
        let irq = {
            let world = world.clone();
            thread::spawn(move || world.produce(0, 1, 1))
        };
        with_napi_poller(&world, Config::DEFAULT, |poller| {
            napi_step(poller, &world, 1);
            poller.shutdown();
            world.unhook();
        });
        irq.join().unwrap();
        assert_eq!(napi_consumed(&world, 1), 1);
        invariants::napi_quiescent(&world, 1, PollerPhase::ShutDown).unwrap();
    });
}

/// (i) The driver deletes an instance KBP is spinning on: `napi_disable` (KBP lets go),
/// then `__netif_napi_del_locked` (the delete observer empties KBP's slot, the instance
/// is freed), while KBP keeps stepping. KBP must never touch the instance after it let
/// go (the simulation panics on a touch after deletion) and must own nothing of it.
///
/// catches: `NapiPort::release` reading `napi->weight` after its final poll (the
/// instance may be deleted by then: "touched after deletion").
#[test]
fn i_napi_delete_races_kbp() {
    model(|| {
        let world = new_world();
        with_napi_poller(&world, Config::DEFAULT, |poller| {
            world.produce(0, 1, 1);
            let deleter = {
                let world = world.clone();
                thread::spawn(move || {
                    world.disable(0, thread::yield_now);
                    world.delete(0);
                })
            };
            while !world.napi(0).deleted {
                napi_step(poller, &world, 1);
            }
            napi_step(poller, &world, 1);
            deleter.join().unwrap();
            poller.shutdown();
            invariants::napi_quiescent(&world, 1, PollerPhase::ShutDown).unwrap();
        });
    });
}

/// (j) The poller detaches an instance while it runs ([`Poller::detach`]), racing an
/// interrupt, and shuts down without another step: an interrupt that won SCHED before
/// the detach listed the instance, so the poller owes it a release even though the
/// shutdown's own detach finds it detached; one that comes later takes the normal path
/// (`Fallback`). Either way the packet is consumed and the instance ends idle with its
/// interrupt armed. Catches `shutdown` counting only the instances it detaches itself
/// (`owed` starting at 0 instead of the instances still `detaching`): the token stays on
/// the list and the instance is never released. Seeded, seen to fail, reverted.
#[test]
fn j_detach_while_running_races_irq() {
    model(|| {
        let nic = new_nic();
        with_sim_poller(&nic, 1, RELEASE_EVERY_POLL, |poller| {
            let producers = spawn_producers(&nic, &[0]);
            assert!(poller.detach(0));
            invariants::shared(&nic.shared, 1).unwrap();
            poller.shutdown();
            join(producers);
            invariants::quiescent(&nic, 1, PollerPhase::ShutDown).unwrap();
            assert!(!poller.is_detaching(0));
        });
    });
}

/// (k) kbp.ko retires an owned instance's slot (its device unregistered or left the
/// namespace it was named in: `Worker::retire_dev`) while a spinning KBP holds it and
/// an interrupt brings a packet: KBP lets go at its next poll, later schedules take the
/// kernel's path (the hook no longer looks the slot up), and every packet is polled
/// once.
///
/// catches: `NapiPort::must_release` ignoring `Napi::served` (KBP keeps a retired
/// instance forever, IN_BUSY_POLL set and its interrupt masked).
#[test]
fn k_retire_races_spinning_kbp() {
    model(|| {
        let world = new_world();
        with_napi_poller(&world, Config::DEFAULT, |poller| {
            world.produce(0, 1, 1);
            let notifier = {
                let world = world.clone();
                thread::spawn(move || {
                    world.retire(0);
                    world.produce(0, 1, 2);
                })
            };
            while napi_consumed(&world, 1) < 2 {
                napi_step(poller, &world, 1);
            }
            notifier.join().unwrap();
            napi_step(poller, &world, 1);
            assert_ne!(
                world.napi(0).owner,
                Owner::Kbp,
                "a retired instance is still KBP's after a poll"
            );
            poller.shutdown();
            invariants::napi_quiescent(&world, 1, PollerPhase::ShutDown).unwrap();
        });
    });
}

/// (m) A TX-completion instance (NO_BUSY_POLL, as `netif_napi_add_tx` marks it) under
/// a spinning KBP races its interrupt: KBP polls it when diverted and hands it back
/// after every poll (spin keeps only busy-pollable instances), the packet landing
/// before, during or after the hand-back is polled once, by KBP, and at the end the
/// instance is the kernel's with its interrupt armed.
///
/// catches: the poller asking only the idle policy whether to keep an instance
/// (`RxInstance::busy_pollable` ignored): the spinning KBP keeps the TX instance.
#[test]
fn m_tx_instance_released_by_spinning_kbp_races_irq() {
    model(|| {
        let world = new_world();
        world.mark_tx(0);
        with_napi_poller(&world, Config::DEFAULT, |poller| {
            world.produce(0, 1, 1);
            let irq = {
                let world = world.clone();
                thread::spawn(move || world.produce(0, 1, 1))
            };
            while napi_consumed(&world, 1) < 2 {
                napi_step(poller, &world, 1);
            }
            irq.join().unwrap();
            napi_step(poller, &world, 1);
            assert_eq!(
                world.napi(0).by_softirq,
                0,
                "a TX instance went to the softirq"
            );
            assert_eq!(
                world.napi(0).owner,
                Owner::Nobody,
                "a spinning KBP kept a TX instance after its poll"
            );
            poller.shutdown();
        });
        invariants::napi_quiescent(&world, 1, PollerPhase::ShutDown).unwrap();
    });
}

use kbp_core::binding::{self, Bind, DeviceWord, SlotWord, Unserve};

/// kbp.ko's device table and two slots, on loom's atomics (kbp-core's `binding`, which
/// kbp.ko's `Context::unserve` and `Slot::claim` run).
struct Binding {
    devices: [DeviceWord<Word>; 2],
    slots: [SlotWord<Word>; 2],
}

/// (l) A device is given up (kbp.ko's notifier at NETDEV_UNREGISTER, and the unload at
/// the same time) while the entry hook adopts a new instance of it into one slot (`Slot::claim`) and,
/// on another CPU, the delete observer empties a slot that held an instance of it and a
/// new instance of another served device takes that slot. At the end the new instance
/// of the gone device is retired (the hook passes it through to the kernel's path:
/// `Bind::Retired` when the adopter saw the device gone, else the notifier retired
/// it), the other device's instance is still served, and exactly one caller gave the
/// device up (kbp.ko puts its reference once).
///
/// catches: `SlotWord::bind` returning `Bind::Served` without confirming the device
/// (its read-modify-write of the device word): the notifier's pass over the slots can
/// run before the adopter's bind, and the new instance stays KBP's after its device
/// unregistered (the review's `Slot::claim` vs `Worker::retire_dev` race). Seeded, seen
/// to fail, reverted; so were `bind` confirming with a plain load of the device word
/// (`device.is_served()`: the store-buffering race, both sides read the old values) and
/// `SlotWord::retire` as a load, a check of the device and a separate store (the shape
/// of kbp.ko's old `dev` and `retired` fields: device 1's new instance is retired).
#[test]
fn l_unserve_races_adopt_and_slot_reuse() {
    model(|| {
        let b = Arc::new(Binding {
            devices: [DeviceWord::new(), DeviceWord::new()],
            slots: [SlotWord::new(), SlotWord::new()],
        });
        b.devices[0].serve();
        b.devices[1].serve();
        // Slot 0 holds an instance of device 0 that its driver is deleting.
        assert_eq!(b.slots[0].bind(0, &b.devices[0]), Bind::Served);
        let adopter = {
            let b = b.clone();
            thread::spawn(move || b.slots[1].bind(0, &b.devices[0]))
        };
        let reuse = {
            let b = b.clone();
            thread::spawn(move || {
                b.slots[0].clear();
                b.slots[0].bind(1, &b.devices[1])
            })
        };
        let unload = {
            let b = b.clone();
            thread::spawn(move || binding::unserve(&b.devices[0], 0, b.slots.iter()))
        };
        let notifier = binding::unserve(&b.devices[0], 0, b.slots.iter());
        let adopted = adopter.join().unwrap();
        let reused = reuse.join().unwrap();
        let unload = unload.join().unwrap();
        assert!(
            [notifier, unload].contains(&Unserve::Won) && notifier != unload,
            "the device was given up {} times",
            [notifier, unload]
                .iter()
                .filter(|&&u| u == Unserve::Won)
                .count()
        );
        assert_eq!(b.slots[1].dev(), Some(0));
        assert!(
            !b.slots[1].served(),
            "an instance adopted as its device went ({adopted:?}) is still served"
        );
        assert_eq!(reused, Bind::Served);
        assert_eq!(
            b.slots[0].dev(),
            Some(1),
            "adopted {adopted:?} reused {reused:?} notifier {notifier:?} served {}",
            b.slots[0].served()
        );
        assert!(
            b.slots[0].served(),
            "retiring device 0 retired device 1's instance"
        );
    });
}
