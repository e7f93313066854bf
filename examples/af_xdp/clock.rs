//! The one clock of the measurement (sender stamps, consumer reads): CLOCK_MONOTONIC,
//! and the calling thread's CPU time.

/// CLOCK_MONOTONIC in nanoseconds.
pub fn monotonic_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

/// The calling thread's CPU time in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    read(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and both clocks exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Pins the calling thread to `cpu` (best effort: a machine with fewer CPUs ignores it).
pub fn pin_to(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is an empty set; CPU_SET stays inside it for
    // cpu < CPU_SETSIZE, and sched_setaffinity(0, ..) affects this thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu < libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

/// Gives the calling thread SCHED_FIFO priority 50 (so a compile on the same CPU does
/// not preempt it); false when refused.
pub fn set_fifo() -> bool {
    let param = libc::sched_param { sched_priority: 50 };
    // SAFETY: sched_setscheduler(0, ..) on the calling thread with a valid param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
}
