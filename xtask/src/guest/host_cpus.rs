//! Where QEMU's threads run on the host, and whether the guest is oversubscribed.
//!
//! Under TCG a vCPU is a host thread (MTTCG names them `CPU n/TCG` with QEMU's
//! `-name ...,debug-threads=on`; single-threaded TCG has one `ALL CPUs/TCG`), and the
//! virtio-net traffic of the tap is moved by QEMU's main loop, the I/O thread (the
//! process's first thread). When the host has a core for each vCPU thread, one for
//! the I/O thread and at least one more for the load generator, [`plan`] pins each of
//! them to a core of its own ([`apply`]: `sched_setaffinity` on the thread ids found in
//! `/proc/PID/task/*/comm`); when it has not, the run is oversubscribed and the plan
//! says so in one line, which the bench report opens with: its wall-clock figures then
//! measure the emulator's share-out of the cores as much as the guest.

use std::fmt::Write;

use crate::base::Result;

/// Parses a CPU list as the kernel prints them (`0-3,6,8-9`): sorted, without
/// duplicates.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        let bad = || format!("bad CPU list {text:?} (e.g. 0-3,6)");
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part.trim(), part.trim()),
        };
        let lo: usize = lo.parse().map_err(|_| bad())?;
        let hi: usize = hi.parse().map_err(|_| bad())?;
        if lo > hi || hi >= libc::CPU_SETSIZE as usize {
            return Err(bad());
        }
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Prints a sorted CPU list compactly (`0-3,6`).
pub fn cpu_list_text(cpus: &[usize]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        if !s.is_empty() {
            s.push(',');
        }
        if j > i {
            let _ = write!(s, "{}-{}", cpus[i], cpus[j]);
        } else {
            let _ = write!(s, "{}", cpus[i]);
        }
        i = j + 1;
    }
    s
}

/// QEMU's threads that matter for the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuThreads {
    /// vCPU threads, `(vCPU index, thread id)`, by index; single-threaded TCG's one
    /// thread for all vCPUs has no index (`None`).
    pub vcpus: Vec<(Option<u32>, i32)>,
    /// The main loop (I/O) thread: the process's first thread.
    pub io: i32,
}

/// Sorts QEMU's threads from their `(tid, comm)`: `CPU n/TCG` (or `CPU n/KVM`) is vCPU
/// n, `ALL CPUs/TCG` is single-threaded TCG's one vCPU thread, the thread whose id is
/// the process's is the I/O thread. Other threads (RCU, thread-pool workers) are left
/// alone.
pub fn classify(pid: i32, threads: &[(i32, String)]) -> QemuThreads {
    let mut vcpus: Vec<(Option<u32>, i32)> = threads
        .iter()
        .filter_map(|(tid, comm)| {
            let comm = comm.trim();
            if comm.starts_with("ALL CPUs/") {
                return Some((None, *tid));
            }
            let rest = comm.strip_prefix("CPU ")?;
            let (n, accel) = rest.split_once('/')?;
            (accel == "TCG" || accel == "KVM")
                .then(|| n.parse().ok().map(|n| (Some(n), *tid)))
                .flatten()
        })
        .collect();
    vcpus.sort_unstable();
    QemuThreads { vcpus, io: pid }
}

/// Where each thread goes, and the line saying whether the run is oversubscribed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// `(thread id, core)` for every pinned thread; empty when oversubscribed.
    pub pins: Vec<(i32, usize)>,
    /// The cores left to the load generator (the xtask process) when pinned.
    pub spare: Vec<usize>,
    /// Oversubscribed: fewer host cores than vCPU threads + I/O thread + 1.
    pub oversubscribed: bool,
    /// One line for the report: the cores, the threads, and what it means.
    pub line: String,
}

/// Plans the layout of `threads` (of a guest with `vcpus` vCPUs) on `cores`, the host
/// cores the run may use (`--host-cpus`, or the xtask's own affinity). Pinning needs a
/// core per vCPU thread, one for the I/O thread and one for the load generator.
pub fn plan(cores: &[usize], vcpus: u32, threads: &QemuThreads) -> Plan {
    let n = threads.vcpus.len();
    let need = n + 2;
    let serialized = if threads.vcpus.iter().any(|v| v.0.is_none()) {
        format!(" (single-threaded TCG: the {vcpus} vCPUs take turns on one thread)")
    } else {
        String::new()
    };
    let what = if n == vcpus as usize && serialized.is_empty() {
        format!("{vcpus} vCPUs + I/O thread + load generator")
    } else {
        format!("{vcpus} vCPUs on {n} vCPU thread(s) + I/O thread + load generator{serialized}")
    };
    let cores_text = format!(
        "{} host core{} ({})",
        cores.len(),
        if cores.len() == 1 { "" } else { "s" },
        cpu_list_text(cores)
    );
    if n == 0 {
        // Without thread names the layout is unknown; judged by the vCPU count.
        let oversubscribed = cores.len() < vcpus as usize + 2;
        return Plan {
            pins: Vec::new(),
            spare: Vec::new(),
            oversubscribed,
            line: format!(
                "{}: {cores_text} for {vcpus} vCPUs + I/O thread + load generator; no vCPU threads found (QEMU without debug-threads?): not pinned",
                if oversubscribed {
                    "oversubscribed"
                } else {
                    "not oversubscribed"
                }
            ),
        };
    }
    if cores.len() < need {
        return Plan {
            pins: Vec::new(),
            spare: Vec::new(),
            oversubscribed: true,
            line: format!(
                "oversubscribed: {cores_text} for {what}: wall-clock ratios are emulator-bound \
                 (pinning needs {need} (a core per vCPU thread, one for the I/O thread, one for the load generator): not pinned)"
            ),
        };
    }
    let mut pins: Vec<(i32, usize)> = threads
        .vcpus
        .iter()
        .zip(cores)
        .map(|(&(_, tid), &core)| (tid, core))
        .collect();
    pins.push((threads.io, cores[n]));
    let spare = cores[n + 1..].to_vec();
    let vcpu_text: Vec<String> = threads
        .vcpus
        .iter()
        .zip(cores)
        .map(|(&(i, _), &core)| match i {
            Some(i) => format!("vCPU {i} -> {core}"),
            None => format!("all vCPUs -> {core}"),
        })
        .collect();
    Plan {
        line: format!(
            "not oversubscribed: {cores_text} for {what}: each pinned to a core of its own ({}, I/O thread -> {}, load generator -> {})",
            vcpu_text.join(", "),
            cores[n],
            cpu_list_text(&spare)
        ),
        pins,
        spare,
        oversubscribed: false,
    }
}

/// The CPUs the calling thread may run on.
pub fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: `cpu_set_t` is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed; pid 0 is the
    // calling thread.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Err(format!(
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the set's size.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Sets the affinity of thread `tid` (0: the calling thread) to `cpus`.
pub fn set_affinity(tid: i32, cpus: &[usize]) -> Result {
    // SAFETY: `cpu_set_t` is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(format!("CPU {cpu} out of range"));
        }
        // SAFETY: `cpu` is below CPU_SETSIZE (checked above).
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; sched_setaffinity only
    // changes the affinity of thread `tid`.
    if unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(format!(
            "sched_setaffinity({tid}, {}): {}",
            cpu_list_text(cpus),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The `(tid, comm)` of every thread of process `pid`.
pub fn threads_of(pid: u32) -> Result<Vec<(i32, String)>> {
    let dir = format!("/proc/{pid}/task");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // A thread may exit between the listing and the read: skip it.
        if let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) {
            out.push((tid, comm.trim_end().to_string()));
        }
    }
    Ok(out)
}

/// Lays out the running QEMU `pid` (a guest of `vcpus` vCPUs) on `cores`: plans and,
/// when the host has enough cores, pins. Returns the plan.
pub fn apply(pid: u32, vcpus: u32, cores: &[usize]) -> Result<Plan> {
    let threads = classify(pid as i32, &threads_of(pid)?);
    let p = plan(cores, vcpus, &threads);
    for &(tid, core) in &p.pins {
        set_affinity(tid, &[core])?;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_and_print() {
        assert_eq!(parse_cpu_list("0-3,6").unwrap(), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_cpu_list(" 5,1,1-2 ").unwrap(), vec![1, 2, 5]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("0-100000").is_err());
        assert_eq!(cpu_list_text(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(cpu_list_text(&[4]), "4");
        assert_eq!(cpu_list_text(&[]), "");
    }

    fn mttcg(pid: i32, vcpus: i32) -> Vec<(i32, String)> {
        let mut t = vec![(pid, "qemu-system-x86".to_string())];
        t.push((pid + 1, "call_rcu".to_string()));
        for i in (0..vcpus).rev() {
            t.push((pid + 10 + i, format!("CPU {i}/TCG")));
        }
        t.push((pid + 30, "worker".to_string()));
        t
    }

    #[test]
    fn threads_are_classified_by_name() {
        let t = classify(100, &mttcg(100, 4));
        assert_eq!(t.io, 100);
        assert_eq!(
            t.vcpus,
            vec![
                (Some(0), 110),
                (Some(1), 111),
                (Some(2), 112),
                (Some(3), 113)
            ]
        );
        let single = classify(
            7,
            &[(7, "qemu-system-x86".into()), (9, "ALL CPUs/TCG".into())],
        );
        assert_eq!(single.vcpus, vec![(None, 9)]);
        // Not vCPU threads.
        let none = classify(7, &[(8, "CPU x/TCG".into()), (9, "CPUs/TCG".into())]);
        assert!(none.vcpus.is_empty());
    }

    #[test]
    fn two_cores_for_four_vcpus_is_oversubscribed() {
        let p = plan(&[0, 1], 4, &classify(100, &mttcg(100, 4)));
        assert!(p.oversubscribed);
        assert!(p.pins.is_empty());
        assert_eq!(
            p.line,
            "oversubscribed: 2 host cores (0-1) for 4 vCPUs + I/O thread + load generator: wall-clock ratios are emulator-bound \
             (pinning needs 6 (a core per vCPU thread, one for the I/O thread, one for the load generator): not pinned)"
        );
    }

    #[test]
    fn five_cores_leave_no_core_for_the_load_generator() {
        let p = plan(&[0, 1, 2, 3, 4], 4, &classify(100, &mttcg(100, 4)));
        assert!(p.oversubscribed);
        assert!(p.pins.is_empty());
    }

    #[test]
    fn enough_cores_pin_each_thread_to_its_own() {
        let p = plan(&[2, 3, 4, 5, 6, 7, 8], 4, &classify(100, &mttcg(100, 4)));
        assert!(!p.oversubscribed);
        assert_eq!(
            p.pins,
            vec![(110, 2), (111, 3), (112, 4), (113, 5), (100, 6)]
        );
        assert_eq!(p.spare, vec![7, 8]);
        assert_eq!(
            p.line,
            "not oversubscribed: 7 host cores (2-8) for 4 vCPUs + I/O thread + load generator: each pinned to a core of its own \
             (vCPU 0 -> 2, vCPU 1 -> 3, vCPU 2 -> 4, vCPU 3 -> 5, I/O thread -> 6, load generator -> 7-8)"
        );
    }

    #[test]
    fn single_threaded_tcg_is_said() {
        let t = classify(
            7,
            &[(7, "qemu-system-x86".into()), (9, "ALL CPUs/TCG".into())],
        );
        let p = plan(&[0, 1, 2], 4, &t);
        assert!(!p.oversubscribed);
        assert_eq!(p.pins, vec![(9, 0), (7, 1)]);
        assert!(p.line.contains("take turns on one thread"), "{}", p.line);
        assert!(p.line.contains("all vCPUs -> 0"), "{}", p.line);
    }

    #[test]
    fn no_vcpu_threads_is_not_pinned() {
        let p = plan(&[0, 1, 2, 3, 4, 5, 6, 7], 4, &classify(7, &[]));
        assert!(!p.oversubscribed);
        assert!(p.pins.is_empty());
        assert!(p.line.contains("no vCPU threads found"), "{}", p.line);
        assert!(plan(&[0, 1], 4, &classify(7, &[])).oversubscribed);
    }

    #[test]
    fn this_process_has_an_affinity() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let me = threads_of(std::process::id()).unwrap();
        assert!(me.iter().any(|(tid, _)| *tid as u32 == std::process::id()));
    }
}
