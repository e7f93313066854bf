//! Probes of a running guest through its agent: the NET_RX softirq counts, the CPU
//! sampler (polling threads and the whole guest) and eth0's RX queue count.

use crate::base::Result;
use crate::guest::vm::{Guest, VCPUS};

/// The NET_RX row of a guest's `/proc/softirqs`, per CPU.
pub fn net_rx_softirqs(guest: &Guest) -> Result<Vec<u64>> {
    let text = guest.check("cat /proc/softirqs")?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("NET_RX:"))
        .ok_or("no NET_RX line in /proc/softirqs")?;
    Ok(line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse::<u64>().ok())
        .collect())
}

/// Shell snippet: the PIDs of the polling threads (`kbp/*`, `napi/*`).
pub const POLLER_PIDS: &str = "pollers() { for c in /proc/[0-9]*/comm; do read -r n < $c 2>/dev/null; \
    case $n in kbp/*|napi/*) p=${c%/comm}; echo ${p#/proc/};; esac; done; }";

/// Ticks (10 ms) of the polling threads and the guest's busy and total jiffies.
pub fn cpu_sample(guest: &Guest) -> Result<(f64, f64, f64)> {
    let script = format!(
        "{POLLER_PIDS}; t=0; for p in $(pollers); do read -r l < /proc/$p/stat; set -- $l; t=$((t + ${{14}} + ${{15}})); done; \
         read -r cpu user nice system idle iowait rest < /proc/stat; echo $t $user $nice $system $idle $iowait $rest"
    );
    let out = guest.check(&script)?;
    let v: Vec<f64> = out
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 6 {
        return Err(format!("cpu sample: {out}"));
    }
    let total: f64 = v[1..].iter().sum();
    let idle = v[4] + v[5];
    Ok((v[0], total - idle, total))
}

/// Polling threads' and the whole guest's CPU between two samples, percent of one CPU.
pub fn cpu_between(a: (f64, f64, f64), b: (f64, f64, f64)) -> (f64, f64) {
    let jiffies_per_cpu = (b.2 - a.2) / f64::from(VCPUS);
    if jiffies_per_cpu <= 0.0 {
        return (0.0, 0.0);
    }
    (
        (b.0 - a.0) / jiffies_per_cpu * 100.0,
        (b.1 - a.1) / jiffies_per_cpu * 100.0,
    )
}

/// RX queues of the guest's eth0.
pub fn eth0_rx_queues(guest: &Guest) -> Result<u32> {
    guest
        .check("ls -d /sys/class/net/eth0/queues/rx-* | wc -l")?
        .trim()
        .parse()
        .map_err(|e| format!("RX queue count: {e}"))
}

/// Busy and total jiffies of each guest CPU (`cpuN` rows of /proc/stat; idle and
/// iowait are not busy).
pub fn cpu_jiffies_per_cpu(guest: &Guest) -> Result<Vec<(u64, u64)>> {
    let text = guest.check("grep '^cpu[0-9]' /proc/stat")?;
    Ok(text
        .lines()
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect())
}

/// Percent busy of each guest CPU between two [`cpu_jiffies_per_cpu`] samples.
pub fn busy_percent_between(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<u64> {
    a.iter()
        .zip(b)
        .map(|(&(busy_a, total_a), &(busy_b, total_b))| {
            let total = total_b.saturating_sub(total_a);
            if total == 0 {
                0
            } else {
                busy_b.saturating_sub(busy_a) * 100 / total
            }
        })
        .collect()
}
