//! Probes of a running guest through its agent: the NET_RX softirq counts, the CPU
//! samplers (polling threads and the whole guest; each guest CPU) and eth0's RX queue
//! count; and the host's own busy and stolen CPU time.

use std::collections::BTreeMap;

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

/// A field of a /proc/net/snmp text: `section` is `Udp:`, `Tcp:`, ... (0 when absent).
pub fn snmp_field(snmp: &str, section: &str, name: &str) -> u64 {
    let mut lines = snmp.lines().filter(|l| l.starts_with(section));
    let (names, values) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Busy and total jiffies of each guest CPU (`cpuN` rows of /proc/stat; idle, iowait
/// and steal are not busy).
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
            // user nice system idle iowait irq softirq steal (guest and guest_nice
            // are counted in user and nice already); busy is neither idle nor stolen.
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            let steal = v.get(7).copied().unwrap_or(0);
            (total - idle - steal, total)
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

/// The host's aggregate `cpu` row of /proc/stat: (busy, steal, total) jiffies. Where
/// the host is itself a virtual machine, the time its hypervisor takes back (steal)
/// moves every wall-clock figure of a TCG guest.
pub fn host_cpu_jiffies() -> Result<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    let v: Vec<u64> = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or("no cpu row in /proc/stat")?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest, guest_nice are in user).
    let total: u64 = v.iter().take(8).sum();
    let steal = v.get(7).copied().unwrap_or(0);
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Ok((total - idle - steal, steal, total))
}

/// Host busy and steal percent (of all host CPUs) between two [`host_cpu_jiffies`].
pub fn host_busy_steal_percent(a: (u64, u64, u64), b: (u64, u64, u64)) -> (u64, u64) {
    let total = b.2.saturating_sub(a.2);
    if total == 0 {
        return (0, 0);
    }
    (
        b.0.saturating_sub(a.0) * 100 / total,
        b.1.saturating_sub(a.1) * 100 / total,
    )
}

/// Every guest thread's CPU ticks (utime + stime, 10 ms each) by thread id, with its
/// name and the CPU it last ran on (`/proc/*/task/*/stat`).
pub fn thread_ticks(guest: &Guest) -> Result<BTreeMap<u32, (String, u64, u32)>> {
    let text = guest.check("cat /proc/[0-9]*/task/[0-9]*/stat 2>/dev/null; true")?;
    Ok(text.lines().filter_map(parse_thread_stat).collect())
}

/// One `/proc/PID/task/TID/stat` line: (tid, (comm, utime + stime, processor)).
fn parse_thread_stat(line: &str) -> Option<(u32, (String, u64, u32))> {
    let (tid, rest) = line.split_once(" (")?;
    let (comm, fields) = rest.rsplit_once(") ")?;
    let f: Vec<&str> = fields.split_whitespace().collect();
    // fields[0] is field 3 (state): utime 14, stime 15, processor 39.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let cpu = f.get(36)?.parse().ok()?;
    Some((tid.trim().parse().ok()?, (comm.to_string(), ticks, cpu)))
}

/// The `n` threads that used the most CPU between two [`thread_ticks`], as
/// `comm/tid@cpu ticks`, most first.
pub fn busiest_threads(
    a: &BTreeMap<u32, (String, u64, u32)>,
    b: &BTreeMap<u32, (String, u64, u32)>,
    n: usize,
) -> Vec<(String, u64)> {
    let mut used: Vec<(String, u64)> = b
        .iter()
        .map(|(tid, (comm, ticks, cpu))| {
            let before = a.get(tid).map_or(0, |t| t.1);
            (format!("{comm}/{tid}@{cpu}"), ticks.saturating_sub(before))
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    used.sort_by(|x, y| y.1.cmp(&x.1));
    used.truncate(n);
    used
}

/// Each guest CPU's time split between two [`cpu_columns_per_cpu`] samples, percent:
/// `[user + nice, system, irq, softirq]`.
pub fn cpu_split_between(a: &[Vec<u64>], b: &[Vec<u64>]) -> Vec<[u64; 4]> {
    a.iter()
        .zip(b)
        .map(|(a, b)| {
            let d = |i: usize| b.get(i).copied().unwrap_or(0) - a.get(i).copied().unwrap_or(0);
            let total: u64 = (0..8).map(d).sum();
            if total == 0 {
                return [0; 4];
            }
            [d(0) + d(1), d(2), d(5), d(6)].map(|x| x * 100 / total)
        })
        .collect()
}

/// The first eight columns of each `cpuN` row of /proc/stat (user nice system idle
/// iowait irq softirq steal).
pub fn cpu_columns_per_cpu(guest: &Guest) -> Result<Vec<Vec<u64>>> {
    let text = guest.check("grep '^cpu[0-9]' /proc/stat")?;
    Ok(text
        .lines()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(8)
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .collect())
}

/// Interrupts of eth0's virtio queues (`virtioN-input.M`, `virtioN-output.M` rows of
/// /proc/interrupts), summed per guest CPU.
pub fn virtio_net_irqs_per_cpu(guest: &Guest) -> Result<Vec<u64>> {
    let text = guest.check("grep -E 'virtio[0-9]+-(input|output)' /proc/interrupts; true")?;
    let mut per_cpu = vec![0u64; VCPUS as usize];
    for line in text.lines() {
        let counts = line.split_whitespace().skip(1).take(VCPUS as usize);
        for (sum, n) in per_cpu.iter_mut().zip(counts) {
            *sum += n.parse::<u64>().unwrap_or(0);
        }
    }
    Ok(per_cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_thread_stat_reads_comm_with_spaces_ticks_and_cpu() {
        let line = "77 (kbp echo) S 1 77 1 0 -1 4194560 90 0 0 0 12 30 0 0 20 0 1 0 300 \
                    1000 50 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 2 0 0 0 0 0";
        assert_eq!(
            parse_thread_stat(line),
            Some((77, ("kbp echo".to_string(), 42, 2)))
        );
        assert_eq!(parse_thread_stat("garbage"), None);
    }
}
