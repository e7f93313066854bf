//! Random operation sequences on kbp-core and the sequential reference model, with the
//! shared invariant checker after every operation (see `kbp_model::ops`).

#![cfg(not(kbp_loom))]

use kbp_core::{Config, IdleMode};
use kbp_model::ops::{Case, Op, run};
use kbp_model::sim::CAP;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn op() -> impl Strategy<Value = Op> {
    let id = 0..CAP as u8;
    prop_oneof![
        4 => (id.clone(), any::<u8>()).prop_map(|(id, n)| Op::Produce { id, n }),
        5 => Just(Op::Step),
        1 => (0u32..5_000_000).prop_map(|ns| Op::Advance { ns }),
        1 => id.clone().prop_map(|id| Op::BeginDisable { id }),
        1 => id.clone().prop_map(|id| Op::FinishDisable { id }),
        1 => id.prop_map(|id| Op::Enable { id }),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    let idle = prop_oneof![
        Just(IdleMode::Spin),
        (0u64..20_000).prop_map(|window_ns| IdleMode::Adaptive { window_ns })
    ];
    (1u32..=16, 1u32..=64, 1_000u64..=20_000, idle).prop_map(
        |(weight, budget, time_limit_ns, idle)| Config {
            weight,
            budget,
            time_limit_ns,
            idle,
        },
    )
}

fn case() -> impl Strategy<Value = Case> {
    (config(), 1..=CAP, prop::collection::vec(op(), 0..120)).prop_map(|(config, instances, ops)| {
        Case {
            config,
            instances,
            ops,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/proptest_ops.txt"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn kbp_core_matches_the_reference_and_keeps_every_invariant(case in case()) {
        if let Err(v) = run(&case) {
            prop_assert!(false, "{v}");
        }
    }
}

#[test]
fn fuzzer_decoding_covers_every_operation() {
    let mut x = 0x2545_f491_u32;
    let bytes: Vec<u8> = (0..3000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    let case = Case::from_bytes(&bytes);
    for want in [
        "Produce",
        "Step",
        "Advance",
        "BeginDisable",
        "FinishDisable",
        "Enable",
    ] {
        assert!(
            case.ops
                .iter()
                .any(|op| format!("{op:?}").starts_with(want)),
            "{want} never decoded"
        );
    }
    run(&case).unwrap();
}

/// Found by this suite: a disable under a full-weight load never finished, because
/// `work == weight` kept the instance owned without looking at DISABLE.
#[test]
fn regression_disable_finishes_under_full_weight_polls() {
    let config = Config {
        weight: 1,
        budget: 1,
        time_limit_ns: 1_000,
        idle: IdleMode::Spin,
    };
    let ops = vec![
        Op::Produce { id: 0, n: 221 },
        Op::Produce { id: 0, n: 204 },
        Op::BeginDisable { id: 0 },
        Op::Produce { id: 0, n: 60 },
    ];
    run(&Case {
        config,
        instances: 1,
        ops,
    })
    .unwrap();
}

/// Found by this suite: the quiescence check wrongly demanded BUSY of an instance still
/// owned after a full-weight poll; owned-and-listed is the real requirement.
#[test]
fn regression_owned_after_full_weight_poll_is_listed() {
    let config = Config {
        weight: 1,
        budget: 1,
        time_limit_ns: 1_000,
        idle: IdleMode::Spin,
    };
    let ops = vec![Op::BeginDisable { id: 0 }, Op::Produce { id: 0, n: 2 }];
    run(&Case {
        config,
        instances: 1,
        ops,
    })
    .unwrap();
}
