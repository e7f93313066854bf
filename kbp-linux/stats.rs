// SPDX-License-Identifier: GPL-2.0
//! Counters for debugfs: the KBP thread copies kbp-core's counters into relaxed atomics
//! (every few hundred steps, before parking and at exit); `/sys/kernel/debug/kbp/stats`
//! prints them, one record per line under a header line, softnet_stat style.

use core::fmt::Write;

use kbp_core::{GapHistogram, IdleMode, InstanceStats, Platform, Poller, PollerStats, GAP_BUCKETS};
use kernel::prelude::*;
use kernel::sync::atomic::{ordering::Relaxed, Atomic};

use crate::env::KernelWord;
use crate::port::NapiPort;
use crate::worker::{Worker, CAP};

const THREAD_FIELDS: usize = 12;
const NAPI_FIELDS: usize = 7;

/// Published counters.
pub(crate) struct Stats {
    pub(crate) thread: [Atomic<u64>; THREAD_FIELDS],
    pub(crate) napi: [[Atomic<u64>; NAPI_FIELDS]; CAP],
    /// Each instance's poll-gap histogram (kbp-core's [`GapHistogram`]).
    pub(crate) poll_gaps: [[Atomic<u64>; GAP_BUCKETS]; CAP],
}

impl Stats {
    pub(crate) const fn new() -> Self {
        Stats {
            thread: [const { Atomic::new(0) }; THREAD_FIELDS],
            napi: [const { [const { Atomic::new(0) }; NAPI_FIELDS] }; CAP],
            poll_gaps: [const { [const { Atomic::new(0) }; GAP_BUCKETS] }; CAP],
        }
    }

    /// Copies the poller's and the ports' counters (KBP thread only).
    pub(crate) fn publish<P: Platform>(&self, poller: &Poller<'_, KernelWord, NapiPort, P, CAP>, ports: &[NapiPort]) {
        let s: &PollerStats = poller.stats();
        let handback: u64 = ports.iter().map(|p| p.release_packets.get()).sum();
        let values = [s.rounds, s.packets, s.polls, s.empty_polls, s.budget_exhausted, s.time_exhausted, s.squeezes, s.parks, s.wakes, s.releases, handback, s.overruns + s.list_overflows];
        for (cell, v) in self.thread.iter().zip(values) {
            cell.store(v, Relaxed);
        }
        for (id, port) in ports.iter().enumerate() {
            let i: InstanceStats = poller.instance_stats(id).copied().unwrap_or_default();
            let values = [i.packets, i.polls, i.empty_polls, i.weight_exhausted, i.releases, i.max_gap_ns, u64::from(port.owned())];
            for (cell, v) in self.napi[id].iter().zip(values) {
                cell.store(v, Relaxed);
            }
            for (cell, v) in self.poll_gaps[id].iter().zip(i.poll_gaps.0) {
                cell.store(v, Relaxed);
            }
        }
    }
}

/// Writes the text of the stats file: a header line, one `thread` record per KBP
/// thread, a header line, one `napi` record per instance, a header line (each bucket's
/// lower bound in ns), one `poll_gaps` record per instance.
pub(crate) fn format(workers: &[KBox<Worker>], out: &mut impl Write) -> core::fmt::Result {
    writeln!(out, "# thread cpu mode rounds packets polls empty_polls budget_exhausted time_exhausted squeezes parks wakes releases handback_packets errors")?;
    for w in workers {
        let mode = match w.config.idle {
            IdleMode::Spin => "spin",
            IdleMode::Adaptive { .. } => "adaptive",
        };
        write!(out, "thread {} {}", w.cpu, mode)?;
        write_values(out, &w.stats.thread)?;
    }
    writeln!(out, "# napi cpu index napi_id dev packets polls empty_polls weight_exhausted releases max_gap_ns owned")?;
    instance_records(out, workers, "napi", |stats, id| stats.napi.get(id).map(|c| &c[..]))?;
    write!(out, "# poll_gaps cpu index napi_id dev")?;
    for k in 0..GAP_BUCKETS {
        write!(out, " ge{}ns", GapHistogram::lower_bound_ns(k))?;
    }
    writeln!(out)?;
    instance_records(out, workers, "poll_gaps", |stats, id| stats.poll_gaps.get(id).map(|c| &c[..]))
}

/// One `<kind> <cpu> <index> <napi_id> <dev> <values>` record per instance.
fn instance_records(
    out: &mut impl Write,
    workers: &[KBox<Worker>],
    kind: &str,
    values: impl Fn(&Stats, usize) -> Option<&[Atomic<u64>]>,
) -> core::fmt::Result {
    for w in workers {
        for id in 0..w.count {
            if let Some(cells) = values(&w.stats, id) {
                write!(out, "{kind} {} {} {} {}", w.cpu, id, w.napi_id(id), crate::params::BStrText(w.dev_name(id)))?;
                write_values(out, cells)?;
            }
        }
    }
    Ok(())
}

/// The rest of a record: each value after a space, then the end of the line.
fn write_values(out: &mut impl Write, cells: &[Atomic<u64>]) -> core::fmt::Result {
    for cell in cells {
        write!(out, " {}", cell.load(Relaxed))?;
    }
    writeln!(out)
}

/// A `fmt::Write` into a byte buffer that stops (without error) when full.
pub(crate) struct BufWriter<'a> {
    pub(crate) buf: &'a mut [u8],
    pub(crate) len: usize,
}

impl Write for BufWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}
