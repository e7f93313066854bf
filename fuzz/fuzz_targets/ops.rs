//! Arbitrary bytes -> a configuration (weight, budget, time limit, idle mode) and an
//! operation sequence (packets, steps, clock jumps, disable/enable, events while owned,
//! packets and events during a poll, softirq rounds, socket busy polls), run on kbp-core
//! and the reference model (`kbp_model::ops::run`) and on kbp.ko's protocol over the
//! simulated kernel NAPI (`kbp_model::ops::run_napi`), with the shared invariant checker.
#![no_main]

use kbp_model::ops::{Case, run, run_napi};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let case = Case::from_bytes(data);
    if let Err(violation) = run(&case) {
        panic!("{violation}");
    }
    if let Err(violation) = run_napi(&case) {
        panic!("napi_sim: {violation}");
    }
});
