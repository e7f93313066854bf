//! kbp.ko's counters file (`/sys/kernel/debug/kbp/stats`) as the host reads it: one
//! parser for the guest test and the fault test. Record layout (kbp-linux/stats.rs):
//!
//! ```text
//! thread <cpu> <mode> rounds packets polls empty_polls budget_exhausted time_exhausted
//!        squeezes parks wakes releases handback_packets errors
//! napi <cpu> <index> <napi_id> <dev> packets polls empty_polls weight_exhausted releases
//!      max_gap_ns owned
//! ```

use std::collections::BTreeMap;

/// Counter positions in a `thread` record's values.
pub const THREAD_PACKETS: usize = 1;
pub const THREAD_PARKS: usize = 7;
pub const THREAD_HANDBACK: usize = 10;
pub const THREAD_ERRORS: usize = 11;
const THREAD_VALUES: usize = 12;
/// Position of `max_gap_ns` in a `napi` record's values.
pub const NAPI_MAX_GAP_NS: usize = 5;
const NAPI_VALUES: usize = 7;

/// (record kind, cpu, index within the thread; 0 for `thread` records).
pub type Key = (String, i64, i64);

/// The numeric fields of every record, by [`Key`].
#[derive(Debug, PartialEq)]
pub struct StatsFile(pub BTreeMap<Key, Vec<u64>>);

impl StatsFile {
    /// Parses the file; None if any record is malformed or there is none.
    pub fn parse(text: &str) -> Option<StatsFile> {
        let mut map = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let numbers = |from: usize, count: usize| -> Option<Vec<u64>> {
                let values: Option<Vec<u64>> = f.get(from..)?.iter().map(|v| v.parse().ok()).collect();
                values.filter(|v| v.len() == count)
            };
            match f.first().copied() {
                Some("thread") => map.insert(("thread".into(), f.get(1)?.parse().ok()?, 0), numbers(3, THREAD_VALUES)?),
                Some("napi") => map.insert(("napi".into(), f.get(1)?.parse().ok()?, f.get(2)?.parse().ok()?), numbers(5, NAPI_VALUES)?),
                _ => return None,
            };
        }
        (!map.is_empty()).then_some(StatsFile(map))
    }

    /// The `thread` records' values, by CPU.
    pub fn threads(&self) -> impl Iterator<Item = (i64, &[u64])> {
        self.0.iter().filter(|((kind, _, _), _)| kind == "thread").map(|((_, cpu, _), v)| (*cpu, v.as_slice()))
    }

    /// Some thread reports errors (overruns or poll-list overflows).
    pub fn has_errors(&self) -> bool {
        self.threads().any(|(_, v)| v[THREAD_ERRORS] != 0)
    }

    /// The longest time between two polls of an owned instance, over all instances:
    /// the longest a packet arriving on an owned instance can have waited for its poll.
    pub fn max_poll_gap_ns(&self) -> Option<u64> {
        self.0.iter().filter(|((kind, _, _), _)| kind == "napi").map(|(_, v)| v[NAPI_MAX_GAP_NS]).max()
    }

    /// Every counter of every record present in both is at least its value in
    /// `before` (a napi record's last two, `max_gap_ns` and `owned`, are not counters).
    pub fn grew_from(&self, before: &StatsFile) -> bool {
        before.0.iter().all(|(key, old)| {
            self.0.get(key).is_none_or(|new| {
                let counters = if key.0 == "napi" { old.len() - 2 } else { old.len() };
                old.iter().zip(new).take(counters).all(|(o, n)| n >= o)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# thread cpu mode rounds packets polls empty_polls budget_exhausted time_exhausted squeezes parks wakes releases handback_packets errors
thread 2 adaptive 255 6 349 345 0 1 1 3 0 4 7 0
# napi cpu index napi_id dev packets polls empty_polls weight_exhausted releases max_gap_ns owned
napi 2 1 66 eth0 6 254 250 0 1 1592324 1
";

    #[test]
    fn reads_the_records_of_the_module() {
        let s = StatsFile::parse(SAMPLE).expect("parses");
        let threads: Vec<_> = s.threads().collect();
        assert_eq!(threads.len(), 1);
        let (cpu, v) = threads[0];
        assert_eq!((cpu, v[THREAD_PACKETS], v[THREAD_PARKS], v[THREAD_HANDBACK]), (2, 6, 3, 7));
        assert!(!s.has_errors());
        assert_eq!(s.0[&("napi".to_string(), 2, 1)], vec![6, 254, 250, 0, 1, 1592324, 1]);
        let second = format!("{SAMPLE}napi 2 2 67 eth0 0 9 9 0 0 2000000 1\n");
        assert_eq!(StatsFile::parse(&second).unwrap().max_poll_gap_ns(), Some(2_000_000));
        assert_eq!(s.max_poll_gap_ns(), Some(1_592_324));
    }

    #[test]
    fn rejects_malformed_records_and_sees_errors_and_shrinking() {
        assert_eq!(StatsFile::parse("thread 2 spin 1 2 3"), None);
        assert_eq!(StatsFile::parse("# only a header\n"), None);
        let before = StatsFile::parse(SAMPLE).unwrap();
        let with_errors = StatsFile::parse(&SAMPLE.replace("4 7 0\n", "4 7 5\n")).unwrap();
        assert!(with_errors.has_errors());
        let shrunk = StatsFile::parse(&SAMPLE.replace("255 6", "255 5")).unwrap();
        assert!(!shrunk.grew_from(&before));
        // max_gap_ns and owned may go down.
        let napi_reset = StatsFile::parse(&SAMPLE.replace("1592324 1", "10 0")).unwrap();
        assert!(napi_reset.grew_from(&before));
    }
}
