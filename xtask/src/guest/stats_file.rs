//! kbp.ko's counters file (`/sys/kernel/debug/kbp/stats`) as the host reads it: one
//! parser for the guest test and the fault test. Record layout (kbp-linux/stats.rs):
//!
//! ```text
//! thread <cpu> <mode> rounds packets polls empty_polls budget_exhausted time_exhausted
//!        squeezes parks wakes releases handback_packets errors idle_releases
//! napi <cpu> <index> <napi_id> <dev> packets polls empty_polls weight_exhausted releases
//!      max_gap_ns owned
//! poll_gaps <cpu> <index> <napi_id> <dev> <16 log2 buckets: below 1024 ns, then from
//!      1024 ns, 2048 ns, ..., the last from 2^24 ns up>
//! ```

use std::collections::BTreeMap;

use crate::base::Result;
use crate::guest::vm::Guest;

/// Counter positions in a `thread` record's values.
pub const THREAD_PACKETS: usize = 1;
pub const THREAD_PARKS: usize = 7;
pub const THREAD_HANDBACK: usize = 10;
pub const THREAD_ERRORS: usize = 11;
/// Of the releases, those of an instance idle for `idle_release_us` that the idle
/// policy would have kept (kbp-core's `PollerStats::idle_releases`).
pub const THREAD_IDLE_RELEASES: usize = 12;
const THREAD_VALUES: usize = 13;
const NAPI_VALUES: usize = 7;
/// Buckets of a `poll_gaps` record: kbp-core's histogram, whose geometry is used here.
pub use kbp_core::GAP_BUCKETS;
use kbp_core::GapHistogram;

/// (record kind, cpu, index within the thread; 0 for `thread` records).
pub type Key = (String, i64, i64);

/// The numeric fields of every record, by [`Key`].
#[derive(Debug, PartialEq)]
pub struct StatsFile(pub BTreeMap<Key, Vec<u64>>);

/// Packets of the `napi` records summed by device name (`eth0`, `veth0`, `ceth0@PID`;
/// `(gone)` once a device unregistered).
pub fn napi_packets_by_dev(text: &str) -> BTreeMap<String, u64> {
    let mut by_dev = BTreeMap::new();
    for f in text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.first() == Some(&"napi"))
    {
        if let (Some(dev), Some(Ok(packets))) = (f.get(4), f.get(5).map(|v| v.parse::<u64>())) {
            *by_dev.entry(dev.to_string()).or_default() += packets;
        }
    }
    by_dev
}

impl StatsFile {
    /// Parses the file; None if any record is malformed or there is none.
    pub fn parse(text: &str) -> Option<StatsFile> {
        let mut map = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            let numbers = |from: usize, count: usize| -> Option<Vec<u64>> {
                let values: Option<Vec<u64>> =
                    f.get(from..)?.iter().map(|v| v.parse().ok()).collect();
                values.filter(|v| v.len() == count)
            };
            match f.first().copied() {
                Some("thread") => map.insert(
                    ("thread".into(), f.get(1)?.parse().ok()?, 0),
                    numbers(3, THREAD_VALUES)?,
                ),
                Some("napi") => map.insert(
                    (
                        "napi".into(),
                        f.get(1)?.parse().ok()?,
                        f.get(2)?.parse().ok()?,
                    ),
                    numbers(5, NAPI_VALUES)?,
                ),
                Some("poll_gaps") => map.insert(
                    (
                        "poll_gaps".into(),
                        f.get(1)?.parse().ok()?,
                        f.get(2)?.parse().ok()?,
                    ),
                    numbers(5, GAP_BUCKETS)?,
                ),
                _ => return None,
            };
        }
        (!map.is_empty()).then_some(StatsFile(map))
    }

    /// Reads the file in `guest`; None when kbp.ko is not loaded.
    pub fn read(guest: &Guest) -> Result<Option<StatsFile>> {
        let (code, text) = guest.exec("cat /sys/kernel/debug/kbp/stats")?;
        if code != 0 {
            return Ok(None);
        }
        StatsFile::parse(&text)
            .map(Some)
            .ok_or_else(|| format!("unreadable stats file: {text}"))
    }

    /// Packets processed by each thread, by CPU order (hand-back polls included).
    pub fn thread_packets(&self) -> Vec<u64> {
        self.threads()
            .map(|(_, v)| v[THREAD_PACKETS] + v[THREAD_HANDBACK])
            .collect()
    }

    /// Packets of each instance, by (thread CPU, index).
    pub fn napi_packets(&self) -> BTreeMap<(i64, i64), u64> {
        self.0
            .iter()
            .filter(|((kind, _, _), _)| kind == "napi")
            .map(|((_, cpu, index), v)| ((*cpu, *index), v[0]))
            .collect()
    }

    /// The `thread` records' values, by CPU.
    pub fn threads(&self) -> impl Iterator<Item = (i64, &[u64])> {
        self.0
            .iter()
            .filter(|((kind, _, _), _)| kind == "thread")
            .map(|((_, cpu, _), v)| (*cpu, v.as_slice()))
    }

    /// Some thread reports errors (overruns or poll-list overflows).
    pub fn has_errors(&self) -> bool {
        self.threads().any(|(_, v)| v[THREAD_ERRORS] != 0)
    }

    /// All instances' poll-gap histograms added up.
    pub fn poll_gaps(&self) -> [u64; GAP_BUCKETS] {
        let mut sum = [0; GAP_BUCKETS];
        for (_, v) in self
            .0
            .iter()
            .filter(|((kind, _, _), _)| kind == "poll_gaps")
        {
            sum.iter_mut().zip(v).for_each(|(s, v)| *s += v);
        }
        sum
    }

    /// Every counter of every record present in both is at least its value in
    /// `before` (a napi record's last two, `max_gap_ns` and `owned`, are not counters).
    pub fn grew_from(&self, before: &StatsFile) -> bool {
        before.0.iter().all(|(key, old)| {
            self.0.get(key).is_none_or(|new| {
                let counters = if key.0 == "napi" {
                    old.len() - 2
                } else {
                    old.len()
                };
                old.iter().zip(new).take(counters).all(|(o, n)| n >= o)
            })
        })
    }
}

/// The bucket of a poll-gap histogram that holds its `p`-th percentile (None if empty).
pub fn gap_percentile_bucket(hist: &[u64; GAP_BUCKETS], p: f64) -> Option<usize> {
    let total: u64 = hist.iter().sum();
    let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    (total > 0).then(|| {
        hist.iter().position(|&c| {
            seen += c;
            seen >= rank
        })
    })?
}

/// What bucket `k` says of a gap: below its upper bound (the next bucket's lower
/// bound), or at least its lower bound for the last, open bucket.
pub fn gap_bucket_text(k: usize) -> String {
    if k + 1 >= GAP_BUCKETS {
        return format!(
            "≥ {:.1} ms",
            GapHistogram::lower_bound_ns(GAP_BUCKETS - 1) as f64 / 1e6
        );
    }
    let upper_us = GapHistogram::lower_bound_ns(k + 1) as f64 / 1e3;
    if upper_us < 1000.0 {
        format!("< {upper_us:.0} µs")
    } else {
        format!("< {:.2} ms", upper_us / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# thread cpu mode rounds packets polls empty_polls budget_exhausted time_exhausted squeezes parks wakes releases handback_packets errors idle_releases
thread 2 adaptive 255 6 349 345 0 1 1 3 0 4 7 0 1
# napi cpu index napi_id dev packets polls empty_polls weight_exhausted releases max_gap_ns owned
napi 2 1 66 eth0 6 254 250 0 1 1592324 1
# poll_gaps cpu index napi_id dev ge0ns ge1024ns ge2048ns ge4096ns ge8192ns ge16384ns ge32768ns ge65536ns ge131072ns ge262144ns ge524288ns ge1048576ns ge2097152ns ge4194304ns ge8388608ns ge16777216ns
poll_gaps 2 1 66 eth0 0 0 3 200 40 5 2 1 0 0 0 1 0 0 0 0
";

    #[test]
    fn sums_packets_by_device() {
        let text = format!(
            "{SAMPLE}napi 3 0 67 veth0 40 9 9 0 0 1 1\nnapi 3 1 68 ceth0@79 41 9 9 0 0 1 1\n\
             napi 3 2 69 eth0 4 9 9 0 0 1 1\n"
        );
        let by_dev = napi_packets_by_dev(&text);
        assert_eq!(by_dev["eth0"], 10);
        assert_eq!(by_dev["veth0"], 40);
        assert_eq!(by_dev["ceth0@79"], 41);
        assert_eq!(by_dev.len(), 3);
    }

    #[test]
    fn reads_the_records_of_the_module() {
        let s = StatsFile::parse(SAMPLE).expect("parses");
        let threads: Vec<_> = s.threads().collect();
        assert_eq!(threads.len(), 1);
        let (cpu, v) = threads[0];
        assert_eq!(
            (
                cpu,
                v[THREAD_PACKETS],
                v[THREAD_PARKS],
                v[THREAD_HANDBACK],
                v[THREAD_IDLE_RELEASES]
            ),
            (2, 6, 3, 7, 1)
        );
        assert!(!s.has_errors());
        assert_eq!(
            s.0[&("napi".to_string(), 2, 1)],
            vec![6, 254, 250, 0, 1, 1592324, 1]
        );
        let mut gaps = [0; GAP_BUCKETS];
        gaps[2..8].copy_from_slice(&[3, 200, 40, 5, 2, 1]);
        gaps[11] = 1;
        assert_eq!(s.poll_gaps(), gaps);
        assert_eq!(
            StatsFile::parse(&format!("{SAMPLE}poll_gaps 2 2 67 eth0 1 2 3\n")),
            None
        );
        // 252 gaps: the median is in bucket 3 (4-8 us), the 99th percentile (rank 250)
        // in bucket 6, the maximum in bucket 11.
        assert_eq!(gap_percentile_bucket(&gaps, 50.0), Some(3));
        assert_eq!(gap_percentile_bucket(&gaps, 99.0), Some(6));
        assert_eq!(gap_percentile_bucket(&gaps, 100.0), Some(11));
        assert_eq!(gap_percentile_bucket(&[0; GAP_BUCKETS], 50.0), None);
        assert_eq!(
            (
                gap_bucket_text(0),
                gap_bucket_text(5),
                gap_bucket_text(11),
                gap_bucket_text(15)
            ),
            (
                "< 1 µs".into(),
                "< 33 µs".into(),
                "< 2.10 ms".into(),
                "≥ 16.8 ms".into()
            )
        );
    }

    #[test]
    fn rejects_malformed_records_and_sees_errors_and_shrinking() {
        assert_eq!(StatsFile::parse("thread 2 spin 1 2 3"), None);
        // A thread record of the module before idle_releases (12 values) is malformed.
        assert_eq!(
            StatsFile::parse("thread 2 spin 255 6 349 345 0 1 1 3 0 4 7 0\n"),
            None
        );
        assert_eq!(StatsFile::parse("# only a header\n"), None);
        let before = StatsFile::parse(SAMPLE).unwrap();
        let with_errors = StatsFile::parse(&SAMPLE.replace("4 7 0 1\n", "4 7 5 1\n")).unwrap();
        assert!(with_errors.has_errors());
        let shrunk = StatsFile::parse(&SAMPLE.replace("255 6", "255 5")).unwrap();
        assert!(!shrunk.grew_from(&before));
        // max_gap_ns and owned may go down.
        let napi_reset = StatsFile::parse(&SAMPLE.replace("1592324 1", "10 0")).unwrap();
        assert!(napi_reset.grew_from(&before));
    }
}
