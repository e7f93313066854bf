//! Arbitrary bytes -> a configuration (weight, budget, time limit, idle mode) and an
//! operation sequence (packets, steps, clock jumps, disable/enable), run on kbp-core and
//! the reference model with the shared invariant checker (`kbp_model::ops::run`).
#![no_main]

use kbp_model::ops::{Case, run};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = run(&Case::from_bytes(data)) {
        panic!("{violation}");
    }
});
