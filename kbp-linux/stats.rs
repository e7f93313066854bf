// SPDX-License-Identifier: GPL-2.0
//! Counters for debugfs, a leaf: a KBP thread copies kbp-core's counters into a
//! [`Snapshot`] of relaxed atomics (every few hundred steps, just before each park and
//! at exit, only the records that changed); [`format`] prints snapshots as
//! `/sys/kernel/debug/kbp/stats`, one record per line under a header line, softnet_stat
//! style. Nothing here touches a kernel object.

use core::fmt::Write;

use kbp_core::{GapHistogram, InstanceStats, PollerStats, GAP_BUCKETS};
use kernel::sync::atomic::{ordering::Relaxed, Atomic};

const THREAD_FIELDS: usize = 13;
const NAPI_FIELDS: usize = 7;

/// One thread's published counters, for up to `N` instances.
pub(crate) struct Snapshot<const N: usize> {
    thread: [Atomic<u64>; THREAD_FIELDS],
    napi: [[Atomic<u64>; NAPI_FIELDS]; N],
    poll_gaps: [[Atomic<u64>; GAP_BUCKETS]; N],
}

/// What a thread publishes about one instance.
#[derive(Clone, Copy, PartialEq)]
pub(crate) struct InstanceRecord {
    pub(crate) stats: InstanceStats,
    /// KBP keeps the instance with IN_BUSY_POLL (its interrupt masked).
    pub(crate) owned: bool,
}

impl<const N: usize> Snapshot<N> {
    pub(crate) const fn new() -> Self {
        Snapshot {
            thread: [const { Atomic::new(0) }; THREAD_FIELDS],
            napi: [const { [const { Atomic::new(0) }; NAPI_FIELDS] }; N],
            poll_gaps: [const { [const { Atomic::new(0) }; GAP_BUCKETS] }; N],
        }
    }

    /// Copies the poller's counters, the hand-back packets and each instance's record
    /// that differs from the one `last` says was published before (the publishing
    /// thread only, which owns `last`).
    ///
    /// Skipping unchanged records is what makes publishing cheap enough to do at every
    /// park: an adaptive thread with `spin_window_us=0` parks after every packet, and
    /// rewriting all `N` records (`N` x 23 stores, each an out-of-line
    /// `atomic64_set` helper) cost about 3.4k instructions per packet, measured under
    /// icount (2026-11-29), most of KBP's per-packet cost over threaded NAPI.
    pub(crate) fn publish(
        &self,
        last: &mut Published<N>,
        s: &PollerStats,
        handback: u64,
        instance: impl Fn(usize) -> InstanceRecord,
    ) {
        let values = [
            s.rounds,
            s.packets,
            s.polls,
            s.empty_polls,
            s.budget_exhausted,
            s.time_exhausted,
            s.squeezes,
            s.parks,
            s.wakes,
            s.releases,
            handback,
            s.overruns + s.list_overflows,
            s.idle_releases,
        ];
        store_all(&self.thread, &values);
        let slots = self.napi.iter().zip(&self.poll_gaps).zip(&mut last.0);
        for (id, ((napi, gaps), published)) in slots.enumerate() {
            let r = instance(id);
            if published.as_ref() == Some(&r) {
                continue;
            }
            *published = Some(r);
            let i = &r.stats;
            let values = [
                i.packets,
                i.polls,
                i.empty_polls,
                i.weight_exhausted,
                i.releases,
                i.max_gap_ns,
                u64::from(r.owned),
            ];
            store_all(napi, &values);
            store_all(gaps, &i.poll_gaps.0);
        }
    }
}

/// The records a thread last published, one per instance slot (`None`: not yet). Owned
/// by the publishing thread; a few KiB, so it lives on the heap with the poller.
pub(crate) struct Published<const N: usize>([Option<InstanceRecord>; N]);

impl<const N: usize> Published<N> {
    pub(crate) const fn new() -> Self {
        Published([None; N])
    }
}

fn store_all(cells: &[Atomic<u64>], values: &[u64]) {
    for (cell, v) in cells.iter().zip(values) {
        cell.store(*v, Relaxed);
    }
}

/// A thread as the stats file shows it, with its instances: each one's index in the
/// thread, `napi_id` (-1 while its slot is empty) and device name; `None` for a slot
/// that was never used.
pub(crate) struct ThreadView<'a, const N: usize> {
    pub(crate) cpu: i32,
    pub(crate) mode: &'static str,
    pub(crate) snapshot: &'a Snapshot<N>,
    pub(crate) instances: [Option<(i32, &'a [u8])>; N],
}

/// Writes the text of the stats file: a header line, one `thread` record per KBP
/// thread, a header line, one `napi` record per instance, a header line (each bucket's
/// lower bound in ns), one `poll_gaps` record per instance. `threads()` yields the
/// threads afresh for each section.
pub(crate) fn format<'a, const N: usize, I>(
    out: &mut impl Write,
    threads: impl Fn() -> I,
) -> core::fmt::Result
where
    I: Iterator<Item = ThreadView<'a, N>>,
{
    writeln!(
        out,
        "# thread cpu mode rounds packets polls empty_polls budget_exhausted \
         time_exhausted squeezes parks wakes releases handback_packets errors idle_releases"
    )?;
    for t in threads() {
        write!(out, "thread {} {}", t.cpu, t.mode)?;
        write_values(out, &t.snapshot.thread)?;
    }
    writeln!(
        out,
        "# napi cpu index napi_id dev packets polls empty_polls weight_exhausted releases \
         max_gap_ns owned"
    )?;
    for t in threads() {
        records(out, "napi", &t, &t.snapshot.napi)?;
    }
    write!(out, "# poll_gaps cpu index napi_id dev")?;
    for k in 0..GAP_BUCKETS {
        write!(out, " ge{}ns", GapHistogram::lower_bound_ns(k))?;
    }
    writeln!(out)?;
    for t in threads() {
        records(out, "poll_gaps", &t, &t.snapshot.poll_gaps)?;
    }
    Ok(())
}

/// One `<kind> <cpu> <index> <napi_id> <dev> <values>` record per used instance.
fn records<const N: usize, const F: usize>(
    out: &mut impl Write,
    kind: &str,
    t: &ThreadView<'_, N>,
    cells: &[[Atomic<u64>; F]; N],
) -> core::fmt::Result {
    for (index, (instance, cells)) in t.instances.iter().zip(cells).enumerate() {
        let Some((napi_id, dev)) = instance else {
            continue;
        };
        write!(out, "{kind} {} {index} {napi_id} ", t.cpu)?;
        for &b in *dev {
            out.write_char(if b.is_ascii_graphic() { b as char } else { '?' })?;
        }
        write_values(out, cells)?;
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
        let room = self.buf.len().saturating_sub(self.len);
        let n = s.len().min(room);
        if let (Some(dst), Some(src)) = (
            self.buf.get_mut(self.len..self.len + n),
            s.as_bytes().get(..n),
        ) {
            dst.copy_from_slice(src);
            self.len += n;
        }
        Ok(())
    }
}
