//! Kernel tracing in the guest: hist triggers feeding a synthetic event `kbp_lat`, the
//! inside-the-guest delay KBP exists to remove (NET_RX raise to softirq entry for
//! `napi`, wake to run of a polling thread otherwise), read back as a distribution;
//! and a second one, `kbp_ksd`, in every mode: the wake to run of the NIC's interrupt
//! CPU's `ksoftirqd`, the thread NET_RX is deferred to when `__do_softirq` gives up
//! (kernel/softirq.c:543-544, `MAX_SOFTIRQ_TIME` 2 ms and `MAX_SOFTIRQ_RESTART` 10;
//! the `wakeup_softirqd()` at :645), which is how the paper's delay arises.

use serde::Serialize;

use crate::base::Result;
use crate::guest::stats_file::GAP_BUCKETS;
use crate::guest::vm::Guest;

/// The inside-the-guest delay KBP exists to remove, from kernel tracing (hist triggers
/// and a synthetic event), as a distribution in microseconds.
#[derive(Clone, Serialize)]
pub struct Delay {
    /// Mode.
    pub mode: String,
    /// `base` or `competition`.
    pub variant: String,
    /// What was measured: `NET_RX raise -> softirq entry` (napi) or `poller wake ->
    /// running` (the polling thread's sched_waking -> sched_switch).
    pub what: String,
    /// Events measured.
    pub count: u64,
    /// Percentiles and max, microseconds (None when there were no events: a spinning
    /// poller is never woken).
    pub p50_us: Option<u64>,
    /// 99th percentile.
    pub p99_us: Option<u64>,
    /// 99.9th percentile.
    pub p99_9_us: Option<u64>,
    /// Maximum.
    pub max_us: Option<u64>,
    /// KBP modes: kbp.ko's own poll-gap histogram over the traced trial (the growth of
    /// its `poll_gaps` records; log2 buckets from 1024 ns): the times between two polls
    /// of an owned instance, so the bound on how long a packet waits for a spinning
    /// poller.
    pub kbp_poll_gaps: Option<[u64; GAP_BUCKETS]>,
    /// Events the histogram had no room for (more distinct values than its size): the
    /// percentiles are then of the others only.
    pub dropped: u64,
    /// The `ksoftirqd` rows: that thread's scheduling over the same trial, from
    /// `/proc/PID/schedstat`, with the CPU's NET_RX count and time squeezes.
    pub ksoftirqd: Option<KsoftirqdStats>,
}

/// What the IRQ CPU's `ksoftirqd` did over a trial, and how long it waited for the CPU:
/// the deltas of `/proc/PID/schedstat` (time on the CPU, time runnable but waiting,
/// times run), of the CPU's NET_RX count (`/proc/softirqs`) and of its `time_squeeze`
/// (`/proc/net/softnet_stat`: `net_rx_action` out of budget or time with work left).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KsoftirqdStats {
    /// Milliseconds on the CPU.
    pub ran_ms: u64,
    /// Milliseconds runnable but waiting for the CPU.
    pub waited_ms: u64,
    /// Times it was given the CPU.
    pub slices: u64,
    /// NET_RX softirqs run on the CPU.
    pub net_rx: u64,
    /// `net_rx_action` rounds that ended with work left.
    pub time_squeeze: u64,
}

/// Shell command printing `run_ns wait_ns slices net_rx time_squeeze` for CPU `cpu`.
fn ksoftirqd_probe(cpu: u32) -> String {
    // softnet_stat has one row per online CPU; the third column (hex) is time_squeeze.
    format!(
        "for c in /proc/[0-9]*/comm; do read -r n < $c; [ \"$n\" = ksoftirqd/{cpu} ] && k=${{c%/comm}}; done; \
         read -r r w s < $k/schedstat; \
         x=$(awk '/NET_RX:/{{print ${col}}}' /proc/softirqs); \
         q=$(awk 'NR=={row}{{print $3}}' /proc/net/softnet_stat); echo $r $w $s $x $((0x$q))",
        col = cpu + 2,
        row = cpu + 1
    )
}

/// Parses [`ksoftirqd_probe`]'s output.
fn parse_probe(text: &str) -> Option<[u64; 5]> {
    let v: Vec<u64> = text
        .split_whitespace()
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    v.try_into().ok()
}

/// A reading of the IRQ CPU's `ksoftirqd` and NET_RX counters, for [`ksoftirqd_since`].
pub struct KsoftirqdSample([u64; 5]);

/// Reads the counters of `ksoftirqd/<cpu>` and of CPU `cpu`.
pub fn ksoftirqd_sample(guest: &Guest, cpu: u32) -> Result<KsoftirqdSample> {
    let text = guest.check(&ksoftirqd_probe(cpu))?;
    parse_probe(&text)
        .map(KsoftirqdSample)
        .ok_or_else(|| format!("ksoftirqd probe: unreadable {text:?}"))
}

/// What happened between two samples.
pub fn ksoftirqd_since(before: &KsoftirqdSample, after: &KsoftirqdSample) -> KsoftirqdStats {
    let d = |i: usize| after.0[i].saturating_sub(before.0[i]);
    KsoftirqdStats {
        ran_ms: d(0) / 1_000_000,
        waited_ms: d(1) / 1_000_000,
        slices: d(2),
        net_rx: d(3),
        time_squeeze: d(4),
    }
}

const TRACING: &str = "/sys/kernel/tracing";

/// Arms the hist triggers that feed the synthetic event `kbp_lat`: for `napi` the time
/// from raising NET_RX on a CPU to the softirq's entry there; for polling-thread modes
/// the time from waking a `kbp/*` or `napi/*` thread to it running. Clears the
/// histogram (a trial may have run before).
pub fn trace_start(guest: &Guest, mode: &str, ksoftirqd_cpu: u32) -> Result<&'static str> {
    let (what, arm) = if mode == "napi" {
        (
            "NET_RX raise -> softirq entry",
            "echo 'hist:keys=common_cpu:ts0=common_timestamp.usecs if vec == 3' > events/irq/softirq_raise/trigger && \
             echo 'hist:keys=common_cpu:lat=common_timestamp.usecs-$ts0:onmatch(irq.softirq_raise).trace(kbp_lat,$lat) if vec == 3' > events/irq/softirq_entry/trigger",
        )
    } else {
        (
            "poller wake -> running",
            "echo 'hist:keys=pid:ts0=common_timestamp.usecs if comm ~ \"kbp/*\" || comm ~ \"napi/*\"' > events/sched/sched_waking/trigger && \
             echo 'hist:keys=next_pid:lat=common_timestamp.usecs-$ts0:onmatch(sched.sched_waking).trace(kbp_lat,$lat) if next_comm ~ \"kbp/*\" || next_comm ~ \"napi/*\"' > events/sched/sched_switch/trigger",
        )
    };
    let first = guest
        .exec(&format!("test -e {TRACING}/events/synthetic/kbp_lat"))?
        .0
        != 0;
    if first {
        // The mono clock is comparable across CPUs (the wake and the run of a thread may
        // be on different CPUs); the default local clock is not.
        // The ksoftirqd triggers have variables of their own names: two hist triggers
        // of one event may not define the same variable.
        let ksoftirqd = format!("ksoftirqd/{ksoftirqd_cpu}");
        guest.check(&format!(
            "cd {TRACING} && echo mono > trace_clock && echo 'kbp_lat u64 lat' >> synthetic_events && {arm} && \
             echo 'hist:keys=lat:sort=lat:size=16384' > events/synthetic/kbp_lat/trigger && \
             echo 'kbp_ksd u64 lat' >> synthetic_events && \
             echo 'hist:keys=pid:kts0=common_timestamp.usecs if comm == \"{ksoftirqd}\"' >> events/sched/sched_waking/trigger && \
             echo 'hist:keys=next_pid:klat=common_timestamp.usecs-$kts0:onmatch(sched.sched_waking).trace(kbp_ksd,$klat) if next_comm == \"{ksoftirqd}\"' >> events/sched/sched_switch/trigger && \
             echo 'hist:keys=lat:sort=lat:size=16384' > events/synthetic/kbp_ksd/trigger"
        ))?;
    } else {
        guest.check(&format!(
            "for e in kbp_lat kbp_ksd; do echo 'hist:keys=lat:sort=lat:size=16384:clear' >> {TRACING}/events/synthetic/$e/trigger; done"
        ))?;
    }
    Ok(what)
}

/// A latency histogram's distribution: (events, p50, p99, p99.9, max), microseconds.
type Distribution = (u64, Option<u64>, Option<u64>, Option<u64>, Option<u64>);

/// The `Dropped: N` of a hist trigger's totals.
fn dropped(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Dropped:"))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .sum()
}

/// Parses a hist trigger's `{ lat: N } hitcount: C` lines into a [`Distribution`].
fn distribution(text: &str) -> Distribution {
    let mut buckets: Vec<(u64, u64)> = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.trim_start().starts_with("{ lat:"))
    {
        let nums: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|x| x.parse().ok())
            .collect();
        // A negative difference (wrapped) would be a clock artefact: not a delay.
        if let [lat, count] = nums.as_slice()
            && *lat < 1 << 40
        {
            buckets.push((*lat, *count));
        }
    }
    buckets.sort_unstable();
    let count: u64 = buckets.iter().map(|b| b.1).sum();
    let pick = |p: f64| -> Option<u64> {
        // p * count first: (99.9 / 100.0) * 1000.0 is 999.0000000000001, one past
        // rank 999.
        let rank = (p * count as f64 / 100.0).ceil().max(1.0) as u64;
        let mut seen = 0;
        buckets
            .iter()
            .find(|&&(_, c)| {
                seen += c;
                seen >= rank
            })
            .map(|b| b.0)
    };
    (
        count,
        pick(50.0),
        pick(99.0),
        pick(99.9),
        buckets.last().map(|b| b.0),
    )
}

/// Reads the `kbp_lat` histogram and the `kbp_ksd` one: the mode's delay, then the
/// wake to run of `ksoftirqd/<ksoftirqd_cpu>`.
pub fn trace_read(
    guest: &Guest,
    mode: &str,
    variant: &str,
    what: &str,
    ksoftirqd_cpu: u32,
) -> Result<[Delay; 2]> {
    let read = |event: &str, what: String| -> Result<Delay> {
        let text = guest.check(&format!("cat {TRACING}/events/synthetic/{event}/hist"))?;
        let (count, p50_us, p99_us, p99_9_us, max_us) = distribution(&text);
        Ok(Delay {
            mode: mode.into(),
            variant: variant.into(),
            what,
            count,
            p50_us,
            p99_us,
            p99_9_us,
            max_us,
            kbp_poll_gaps: None,
            dropped: dropped(&text),
            ksoftirqd: None,
        })
    };
    Ok([
        read("kbp_lat", what.into())?,
        read(
            "kbp_ksd",
            format!("ksoftirqd/{ksoftirqd_cpu} wake -> running"),
        )?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_give_percentiles() {
        let text = "# event histogram\n#\n{ lat:          3 } hitcount:        980\n\
                    { lat:         40 } hitcount:         15\n{ lat:        400 } hitcount:          4\n\
                    { lat:       5000 } hitcount:          1\n\
                    { lat: 18446744073709551615 } hitcount:          2\n\nTotals:\n    Hits: 1002\n";
        // Ranks 500, 990, 999 and 1000 of 1000 (the wrapped difference is not counted).
        assert_eq!(
            distribution(text),
            (1000, Some(3), Some(40), Some(400), Some(5000))
        );
        assert_eq!(distribution("Totals:\n"), (0, None, None, None, None));
        assert_eq!(dropped(text), 0);
        assert_eq!(
            dropped("Totals:\n    Hits: 10\n    Entries: 3\n    Dropped: 7\n"),
            7
        );
    }

    #[test]
    fn ksoftirqd_probe_reads_its_cpu() {
        let probe = ksoftirqd_probe(0);
        assert!(probe.contains("ksoftirqd/0 ]"), "{probe}");
        assert!(probe.contains("print $2"), "{probe}");
        assert!(probe.contains("NR==1"), "{probe}");
        assert!(ksoftirqd_probe(3).contains("print $5"));
        let a = KsoftirqdSample(parse_probe("1000000 5000000 3 10 2").unwrap());
        let b = KsoftirqdSample(parse_probe("3500000 9000000 7 25 2\n").unwrap());
        assert_eq!(
            ksoftirqd_since(&a, &b),
            KsoftirqdStats {
                ran_ms: 2,
                waited_ms: 4,
                slices: 4,
                net_rx: 15,
                time_squeeze: 0
            }
        );
        assert!(parse_probe("1 2 3").is_none());
        assert!(parse_probe("1 2 3 4 x").is_none());
    }
}
