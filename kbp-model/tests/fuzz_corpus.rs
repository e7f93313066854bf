//! Replays the committed fuzz corpus (`fuzz/corpus/ops`) through the same entry point
//! the fuzz target uses, so the default test command covers it without cargo-fuzz.

#![cfg(not(kbp_loom))]

use kbp_model::ops::{Case, run, run_napi};

#[test]
fn committed_fuzz_corpus_passes() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/ops");
    let mut replayed = 0;
    for entry in std::fs::read_dir(dir).expect("fuzz corpus directory") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let case = Case::from_bytes(&data);
        if let Err(v) = run(&case) {
            panic!("{}: {v}", path.display());
        }
        if let Err(v) = run_napi(&case) {
            panic!("{} (napi_sim): {v}", path.display());
        }
        replayed += 1;
    }
    assert!(replayed >= 3, "only {replayed} corpus entries");
}
