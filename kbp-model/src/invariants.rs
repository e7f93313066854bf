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
    /// Property number (1-9 of `napi-semantics.md`; 10: a SCHED holder lets go of a
    /// quiet instance in bounded time, see [`IdleRelease`]).
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
                // Owned and listed, perhaps with an event missed meanwhile (the owner
                // polls it again).
                let kept = core - StateFlags::MISSED;
                let owned =
                    kept == StateFlags::SCHED || kept == StateFlags::SCHED | StateFlags::BUSY;
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

/// Property 10, a SCHED holder lets go in bounded time: the kernel waits for SCHED to
/// clear in `napi_synchronize()` (include/linux/netdevice.h:617-624; `e1000e_down()`
/// calls it under RTNL once the device is quiet), so the poller may keep an instance
/// owned (BUSY) after a poll only if one of its polls found work less than
/// `idle_release_ns` before, counting from the first poll of its ownership. With
/// nothing arriving, an owned instance is released by its first poll at least
/// `idle_release_ns` after its last packet, whatever the idle policy says.
///
/// Feed it every instance's counters after each operation (any order of operations;
/// an instance's changes are seen through its poll, packet and release counts). The
/// time of a poll is the instance's `last_poll_ns` (an instance is polled at most once
/// per round); when its window starts and whether it is kept are the checker's own.
pub struct IdleRelease {
    idle_release_ns: kbp_core::Nanos,
    /// Per instance: (polls, packets, releases) at the last check.
    seen: [(u64, u64, u64); CAP],
    /// Per instance: when the poller's current ownership last found work (or was
    /// first polled).
    quiet_since: [Option<kbp_core::Nanos>; CAP],
}

impl IdleRelease {
    /// For a poller configured with `config`.
    pub fn new(config: &Config) -> Self {
        IdleRelease {
            idle_release_ns: config.idle_release_ns,
            seen: [(0, 0, 0); CAP],
            quiet_since: [None; CAP],
        }
    }

    /// After an operation: `stats(id)` is instance `id`'s counters now.
    pub fn check<const N: usize>(
        &mut self,
        shared: &Shared<crate::sync::Word, N>,
        instances: usize,
        stats: impl Fn(usize) -> Option<kbp_core::InstanceStats>,
    ) -> Check {
        for id in 0..instances.min(CAP) {
            let s = stats(id).unwrap_or_default();
            let (polls, packets, releases) = self.seen[id];
            self.seen[id] = (s.polls, s.packets, s.releases);
            if s.releases != releases {
                // Released by its last poll (one poll per round): a new ownership
                // starts at its next poll.
                self.quiet_since[id] = None;
                continue;
            }
            if s.polls == polls {
                continue;
            }
            let Some(polled_at) = s.last_poll_ns else {
                return fail(
                    10,
                    format!("instance {id} polled and owned but no poll time"),
                );
            };
            let since = *self.quiet_since[id].get_or_insert(polled_at);
            if s.packets != packets {
                self.quiet_since[id] = Some(polled_at);
                continue;
            }
            let flags = shared.flags(id);
            if flags.contains(StateFlags::BUSY)
                && polled_at.saturating_sub(since) >= self.idle_release_ns
            {
                return fail(
                    10,
                    format!(
                        "instance {id} kept owned ({flags:?}) by a poll at {polled_at} ns, \
                         without work since {since} ns (idle release {} ns): \
                         napi_synchronize() would wait for it",
                        self.idle_release_ns
                    ),
                );
            }
        }
        Ok(())
    }
}

// ----- the NAPI side: kbp-core's `napi` protocol over the simulated kernel -----

use kbp_core::{NapiPort, PollerStats};

use crate::napi_sim::{NapiRef, NapiSnapshot, NapiWorld, Owner, kbits};

/// Properties 1 and 2 of one simulated `napi->state`: IN_BUSY_POLL and SCHED_THREADED
/// only with SCHED; somebody holds SCHED exactly when it is set (the ghost owner);
/// NPSVC only for the disabler. (MISSED without SCHED is legal in the kernel: a prep
/// while disabled sets it and `napi_enable_locked`, dev.c:7744, leaves it.)
pub fn napi_word(id: usize, s: &NapiSnapshot) -> Check {
    let sched = s.bits & kbits::SCHED != 0;
    if s.bits & (kbits::IN_BUSY_POLL | kbits::SCHED_THREADED) != 0 && !sched {
        return fail(1, format!("napi {id}: {:#x} without SCHED", s.bits));
    }
    if sched != (s.owner != Owner::Nobody) {
        return fail(
            2,
            format!("napi {id}: state {:#x} but owner {:?}", s.bits, s.owner),
        );
    }
    if (s.bits & kbits::NPSVC != 0) != (s.owner == Owner::Disabler) {
        return fail(
            7,
            format!("napi {id}: state {:#x}, owner {:?}", s.bits, s.owner),
        );
    }
    Ok(())
}

/// Checked by the poller thread between its steps (or between sequential operations):
/// every napi word well-formed (see [`napi_word`]); KBP polls a napi exactly when its
/// own word owns it (the hook diverted the napi's SCHED and KBP's token was minted for
/// it: never two owners, never one without the other); **owned by the poller => its
/// interrupt is masked**; a deleted instance is owned by nobody on KBP's side.
pub fn napi_world(world: &NapiWorld, instances: usize) -> Check {
    shared(&world.shared, instances)?;
    for id in 0..instances {
        // A consistent pair: an interrupt on another CPU may be inside the hook, which
        // changes KBP's word and then the napi's owner; the poller (the caller) is the
        // only one that changes them back.
        let (kbp, s) = (0..1000)
            .map(|_| {
                let before = world.shared.flags(id);
                let s = world.napi(id);
                (before, s, world.shared.flags(id))
            })
            .find(|(before, _, after)| before == after)
            .map(|(kbp, s, _)| (kbp, s))
            .expect("KBP's word keeps changing");
        napi_word(id, &s)?;
        let kbp_owns = kbp.contains(StateFlags::SCHED) && !kbp.contains(StateFlags::NPSVC);
        if s.owner == Owner::Kbp && !kbp_owns {
            return fail(
                2,
                format!("napi {id} diverted to KBP, but KBP's word is {kbp:?}: nobody polls it"),
            );
        }
        if kbp_owns && !matches!(s.owner, Owner::Kbp | Owner::Hook) && !s.deleted {
            return fail(
                2,
                format!(
                    "KBP's word owns instance {id} ({kbp:?}) but the napi is held by {:?}",
                    s.owner
                ),
            );
        }
        if s.owner == Owner::Kbp && s.irq_armed {
            return fail(
                2,
                format!("napi {id} owned by the poller with its interrupt armed"),
            );
        }
        if s.deleted && kbp_owns {
            return fail(2, format!("deleted napi {id} still owned by KBP ({kbp:?})"));
        }
    }
    Ok(())
}

/// Properties 4, 5 and 9 of the simulated kernel at quiescence (no interrupt in flight,
/// softirqs run, the poller stepped until idle, disables finished): every packet of an
/// enabled instance consumed, by KBP or by the kernel's path, and none twice; nothing
/// held by an interrupt, the hook, a softirq list or a busy poller; an idle napi has its
/// interrupt armed; while running, a napi KBP holds is on KBP's list; after shutdown
/// KBP holds nothing and serves nothing.
pub fn napi_quiescent(world: &NapiWorld, instances: usize, phase: PollerPhase) -> Check {
    napi_world(world, instances)?;
    for id in 0..instances {
        let s = world.napi(id);
        if s.consumed() + s.pending != s.produced {
            return fail(
                4,
                format!(
                    "napi {id}: {} produced, {} consumed, {} pending",
                    s.produced,
                    s.consumed(),
                    s.pending
                ),
            );
        }
        if s.deleted {
            continue;
        }
        let disabled = s.owner == Owner::Disabler;
        if !disabled && s.pending != 0 {
            return fail(
                4,
                format!("napi {id}: {} packets left ({:?})", s.pending, s.owner),
            );
        }
        match s.owner {
            Owner::Nobody if !s.irq_armed => {
                return fail(
                    4,
                    format!("napi {id} idle with its interrupt masked: the next packet is lost"),
                );
            }
            Owner::Irq | Owner::Hook | Owner::Softirq | Owner::BusyPoll => {
                return fail(5, format!("napi {id} held by {:?} at quiescence", s.owner));
            }
            Owner::Kbp if phase == PollerPhase::ShutDown => {
                return fail(9, format!("napi {id} still held by KBP after shutdown"));
            }
            Owner::Kbp => {
                let mut listed = false;
                world
                    .shared
                    .list()
                    .for_each_listed(|other| listed |= other == id);
                if !listed {
                    return fail(4, format!("napi {id} held by KBP but not listed"));
                }
            }
            _ => {}
        }
        if phase == PollerPhase::ShutDown && world.shared.flags(id).contains(StateFlags::ATTACHED) {
            return fail(9, format!("instance {id} still attached after shutdown"));
        }
    }
    Ok(())
}

/// The counters agree (before shutdown): each instance's packets as the poller counted
/// them plus what the hand-back polls took are what the simulated driver handed to KBP;
/// the per-instance counters add up to the poller's.
pub fn napi_counters(
    world: &NapiWorld,
    ports: &[NapiPort<NapiRef<'_>>],
    stats: &PollerStats,
    instance: impl Fn(usize) -> Option<kbp_core::InstanceStats>,
) -> Check {
    let mut sum = kbp_core::InstanceStats::default();
    for (id, port) in ports.iter().enumerate() {
        let i = instance(id).unwrap_or_default();
        let by_kbp = u64::from(world.napi(id).by_kbp);
        if i.packets + port.release_packets() != by_kbp {
            return fail(
                0,
                format!(
                    "napi {id}: poller counted {} + {} at hand-back, driver gave KBP {by_kbp}",
                    i.packets,
                    port.release_packets()
                ),
            );
        }
        sum.packets += i.packets;
        sum.polls += i.polls;
        sum.empty_polls += i.empty_polls;
        sum.releases += i.releases;
        sum.idle_releases += i.idle_releases;
    }
    counters_add_up(&sum, stats)
}

/// The per-instance counters summed (`sum`) equal the poller's own.
pub fn counters_add_up(sum: &kbp_core::InstanceStats, stats: &PollerStats) -> Check {
    let pairs = [
        ("packets", sum.packets, stats.packets),
        ("polls", sum.polls, stats.polls),
        ("empty polls", sum.empty_polls, stats.empty_polls),
        ("releases", sum.releases, stats.releases),
        ("idle releases", sum.idle_releases, stats.idle_releases),
    ];
    for (what, per_instance, poller) in pairs {
        if per_instance != poller {
            return fail(
                0,
                format!("{what}: instances add up to {per_instance}, the poller counted {poller}"),
            );
        }
    }
    Ok(())
}

/// "Owned by the poller => its interrupt is masked" for the simulated NIC of
/// [`crate::sim`]: an instance the poller keeps between polls (BUSY) has its interrupt
/// masked.
pub fn kept_masked(nic: &SimNic, instances: usize) -> Check {
    for id in 0..instances {
        let flags = nic.shared.flags(id);
        if flags.contains(StateFlags::BUSY) && nic.rx(id).irq_armed {
            return fail(
                2,
                format!("instance {id} kept by the poller ({flags:?}) with its interrupt armed"),
            );
        }
    }
    Ok(())
}
