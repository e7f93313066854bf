//! Every state word x every transition of kbp-core's state machine, checked by the
//! shared invariant checker, plus the reachable set from the idle state.

#![cfg(not(kbp_loom))]

use std::collections::{BTreeSet, VecDeque};

use kbp_core::StateFlags;
use kbp_core::state::*;
use kbp_model::invariants;

type Op = (&'static str, fn(StateFlags) -> Option<StateFlags>);

/// Every transition, reduced to "the word it writes" (None: unchanged).
const OPS: &[Op] = &[
    ("schedule", |s| s.schedule().0),
    ("complete", |s| s.complete().0),
    ("keep_busy", |s| s.keep_busy().0),
    ("try_take_busy", |s| s.try_take_busy().0),
    ("begin_disable", |s| s.begin_disable().0),
    ("try_finish_disable", |s| s.try_finish_disable().0),
    ("enable", |s| s.enable().0),
    ("attach", |s| s.attach().0),
    ("detach", |s| s.detach().0),
];

/// Who may call an operation in a state: owner operations only by the SCHED owner
/// (not a disabler), the others by anybody.
fn allowed(op: &str, s: StateFlags) -> bool {
    match op {
        "complete" | "keep_busy" => s.contains(StateFlags::SCHED) && !s.contains(StateFlags::NPSVC),
        _ => true,
    }
}

fn all_states() -> impl Iterator<Item = StateFlags> {
    (0..=StateFlags::all().bits()).map(StateFlags::from_bits_retain)
}

#[test]
fn every_valid_state_stays_valid_under_every_allowed_operation() {
    let mut checked = 0;
    for s in all_states().filter(|s| invariants::state_word(*s).is_ok()) {
        for (name, op) in OPS {
            if !allowed(name, s) {
                continue;
            }
            let next = op(s).unwrap_or(s);
            invariants::state_word(next)
                .unwrap_or_else(|v| panic!("{name} on {s:?} -> {next:?}: {v}"));
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} pairs checked");
}

#[test]
fn ownership_is_taken_only_from_a_free_word() {
    for s in all_states() {
        let (next, outcome) = s.schedule();
        let won = matches!(outcome, Schedule::Won | Schedule::WonDetached);
        assert_eq!(
            won,
            !s.intersects(StateFlags::SCHED | StateFlags::DISABLE | StateFlags::NPSVC),
            "{s:?}"
        );
        if won {
            assert!(next.unwrap().contains(StateFlags::SCHED));
        }
        if s.contains(StateFlags::SCHED) && !s.intersects(StateFlags::DISABLE | StateFlags::NPSVC) {
            assert_eq!(outcome, Schedule::Missed);
            assert!(
                next.unwrap().contains(StateFlags::MISSED),
                "{s:?}: an event while owned must be remembered"
            );
        }
        if s.intersects(StateFlags::DISABLE | StateFlags::NPSVC) {
            assert_eq!(
                (next, outcome),
                (None, Schedule::Disabled),
                "{s:?}: property 7"
            );
        }
        let (_, taken) = s.try_take_busy();
        if taken == TakeBusy::Taken {
            assert!(
                !s.intersects(StateFlags::SCHED | StateFlags::DISABLE | StateFlags::NPSVC)
                    && s.contains(StateFlags::ATTACHED)
            );
        }
        if s.try_finish_disable().1 == FinishDisable::Disabled {
            assert!(
                !s.contains(StateFlags::SCHED),
                "{s:?}: disable took an owned instance"
            );
        }
    }
}

#[test]
fn complete_keeps_ownership_exactly_when_an_event_was_missed() {
    for s in all_states().filter(|s| allowed("complete", *s) && invariants::state_word(*s).is_ok())
    {
        let (next, outcome) = s.complete();
        let next = next.unwrap();
        assert!(
            !next.intersects(StateFlags::MISSED | StateFlags::BUSY),
            "{s:?}"
        );
        if s.contains(StateFlags::MISSED) {
            assert_eq!(outcome, Complete::Rescheduled);
            assert!(next.contains(StateFlags::SCHED));
        } else {
            assert_eq!(outcome, Complete::Released);
            assert!(!next.contains(StateFlags::SCHED));
        }
        let (kept, outcome) = s.keep_busy();
        if s.contains(StateFlags::DISABLE) || !s.contains(StateFlags::ATTACHED) {
            assert_eq!(
                (kept, outcome),
                (None, KeepBusy::MustRelease),
                "{s:?}: a disabler must get the instance"
            );
        } else {
            assert_eq!(
                kept.unwrap() & (StateFlags::SCHED | StateFlags::BUSY | StateFlags::MISSED),
                StateFlags::SCHED | StateFlags::BUSY
            );
        }
    }
}

#[test]
fn detach_reports_poller_ownership() {
    for s in all_states() {
        match s.detach() {
            (Some(next), Detach::Detached { listed }) => {
                assert!(!next.contains(StateFlags::ATTACHED));
                assert_eq!(
                    listed,
                    s.contains(StateFlags::SCHED) && !s.contains(StateFlags::NPSVC)
                );
            }
            (None, Detach::NotAttached) => assert!(!s.contains(StateFlags::ATTACHED)),
            other => panic!("{s:?}: {other:?}"),
        }
        if s.attach().1 == Attach::Attached {
            assert!(
                !s.contains(StateFlags::SCHED) || s.contains(StateFlags::NPSVC),
                "{s:?}: attached under a foreign owner"
            );
        }
    }
}

#[test]
fn reachable_states_from_idle_are_valid_and_can_return_to_idle() {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([StateFlags::empty()]);
    while let Some(s) = queue.pop_front() {
        if !seen.insert(s.bits()) {
            continue;
        }
        invariants::state_word(s).unwrap_or_else(|v| panic!("reachable {s:?}: {v}"));
        for (name, op) in OPS {
            if allowed(name, s) {
                if let Some(next) = op(s) {
                    queue.push_back(next);
                }
            }
        }
    }
    assert!(seen.len() >= 12, "only {} states reachable", seen.len());
    // From every reachable state, some sequence of allowed operations leads back to a
    // quiescent word (0 or ATTACHED): nothing gets stuck.
    for &bits in &seen {
        let start = StateFlags::from_bits_retain(bits);
        let mut stack = vec![start];
        let mut visited = BTreeSet::new();
        let mut ok = false;
        while let Some(s) = stack.pop() {
            if (s - StateFlags::ATTACHED).is_empty() {
                ok = true;
                break;
            }
            if !visited.insert(s.bits()) {
                continue;
            }
            for (name, op) in OPS {
                if allowed(name, s) && *name != "begin_disable" {
                    if let Some(next) = op(s) {
                        stack.push(next);
                    }
                }
            }
        }
        assert!(ok, "{start:?} cannot return to idle");
    }
}
