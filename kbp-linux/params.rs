// SPDX-License-Identifier: GPL-2.0
//! Module parameters, read from the glue and validated. Any bad value refuses the load
//! with -EINVAL and one dmesg line naming the parameter.

use kbp_core::{Config, IdleMode};
use kernel::prelude::*;

use crate::sys;

/// Most interfaces the module serves.
pub(crate) const MAX_DEVS: usize = 4;
/// Most KBP threads (one per CPU in `cpus`).
pub(crate) const MAX_THREADS: usize = 8;

/// Validated parameters.
pub(crate) struct Params {
    pub(crate) config: Config,
    /// One KBP thread per CPU, in the order given.
    pub(crate) cpus: [i32; MAX_THREADS],
    pub(crate) ncpus: usize,
    pub(crate) fifo: bool,
    /// The `ifaces` items and how many.
    pub(crate) ifaces: [Iface; MAX_DEVS],
    pub(crate) nifaces: usize,
    pub(crate) ifaces_raw: &'static [u8],
}

/// Largest process id (`PID_MAX_LIMIT` on 64-bit, include/linux/threads.h:34; ids are
/// below it).
const PID_MAX: u32 = 4 * 1024 * 1024 - 1;

/// One item of `ifaces`: `NAME` (the interface in init_net) or `NAME@PID` (the
/// interface in the network namespace of process PID, as the loading process sees
/// PIDs). The item splits at its last `@`, so a name containing `@` is written
/// `NAME@1` (init's namespace).
#[derive(Clone, Copy, Default)]
pub(crate) struct Iface {
    /// The item's start in the parameter, and its length.
    start: usize,
    len: usize,
    /// Length of the name (the item's first bytes).
    name_len: usize,
    /// The process whose network namespace holds the interface (None: init_net).
    pub(crate) pid: Option<u32>,
}

/// A decimal process id, 1..=[`PID_MAX`].
fn parse_pid(text: &[u8]) -> Option<u32> {
    if text.is_empty() || text.len() > 7 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let pid = text.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    (1..=PID_MAX).contains(&pid).then_some(pid)
}

/// Parses one `ifaces` item at `start..start + len` of `raw`.
fn parse_iface(raw: &[u8], start: usize, len: usize) -> Result<Iface> {
    let item = &raw[start..start + len];
    let bad = |why: core::fmt::Arguments<'_>| reject("ifaces", why);
    let (name_len, pid) = match item.iter().rposition(|&b| b == b'@') {
        None => (len, None),
        Some(at) => match parse_pid(&item[at + 1..]) {
            Some(pid) => (at, Some(pid)),
            None => {
                return Err(bad(format_args!(
                    "{:?}: {:?} is not a process id 1..={} (NAME@PID names the interface \
                     NAME in the network namespace of process PID)",
                    BStrDisplay(item),
                    BStrDisplay(&item[at + 1..]),
                    PID_MAX
                )))
            }
        },
    };
    if name_len == 0 || name_len >= 16 {
        return Err(bad(format_args!(
            "empty or over-long interface name in {:?} (1 to 15 bytes)",
            BStrDisplay(item)
        )));
    }
    Ok(Iface {
        start,
        len,
        name_len,
        pid,
    })
}

fn reject(param: &str, why: core::fmt::Arguments<'_>) -> Error {
    pr_err!("invalid parameter {}: {}\n", param, why);
    EINVAL
}

impl Params {
    /// Reads and checks every parameter.
    pub(crate) fn read() -> Result<Params> {
        let (ifaces_raw, mode, cpus_raw) = sys::param_strings();
        let (weight, budget, time_limit_us, window_us, fifo) = sys::param_numbers();

        let idle = match mode {
            b"spin" => IdleMode::Spin,
            b"adaptive" => IdleMode::Adaptive {
                window_ns: u64::from(window_us) * 1_000,
            },
            _ => {
                return Err(reject(
                    "mode",
                    format_args!(
                        "unknown mode {:?} (expected spin or adaptive)",
                        BStrDisplay(mode)
                    ),
                ))
            }
        };
        let config = Config {
            weight,
            budget,
            time_limit_ns: u64::from(time_limit_us) * 1_000,
            idle,
            idle_release_ns: u64::from(sys::param_idle_release_us()) * 1_000,
        };
        if let Err(e) = config.validate() {
            return Err(reject(e.param, format_args!("expected {}", e.expected)));
        }
        if let IdleMode::Spin = idle {
            if window_us as u64 * 1_000 > Config::MAX_WINDOW_NS {
                return Err(reject(
                    "spin_window_us",
                    format_args!("expected 0..=10000000 microseconds"),
                ));
            }
        }

        let (cpus, ncpus) = parse_cpus(cpus_raw)?;

        let mut ifaces = [Iface::default(); MAX_DEVS];
        let mut nifaces = 0;
        for (start, len) in list_items(ifaces_raw) {
            if len == 0 {
                return Err(reject(
                    "ifaces",
                    format_args!("empty item in {:?}", BStrDisplay(ifaces_raw)),
                ));
            }
            if nifaces == MAX_DEVS {
                return Err(reject(
                    "ifaces",
                    format_args!("at most {} interfaces", MAX_DEVS),
                ));
            }
            ifaces[nifaces] = parse_iface(ifaces_raw, start, len)?;
            nifaces += 1;
        }
        Ok(Params {
            config,
            cpus,
            ncpus,
            fifo,
            ifaces,
            nifaces,
            ifaces_raw,
        })
    }

    /// The `i`th item as given (`eth0`, `eth0@1234`).
    pub(crate) fn iface(&self, i: usize) -> &'static [u8] {
        let f = &self.ifaces[i];
        &self.ifaces_raw[f.start..f.start + f.len]
    }

    /// The `i`th interface's name (the item without `@PID`).
    pub(crate) fn iface_name(&self, i: usize) -> &'static [u8] {
        let f = &self.ifaces[i];
        &self.ifaces_raw[f.start..f.start + f.name_len]
    }
}

/// The (start, length) of each comma-separated item of `raw` (one empty item if empty).
fn list_items(raw: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = 0;
    Iterator::chain(raw.iter(), core::iter::once(&b','))
        .enumerate()
        .filter(|&(_, &b)| b == b',')
        .map(move |(i, _)| {
            let item = (start, i - start);
            start = i + 1;
            item
        })
}

/// A decimal CPU number (at most four digits, so it cannot overflow).
fn parse_cpu(text: &[u8]) -> Option<i32> {
    if text.is_empty() || text.len() > 4 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0, |n, &d| n * 10 + i32::from(d - b'0')))
}

/// `cpus`: a list of CPUs and ranges (`2,3`, `1-3`); empty means the last online CPU.
/// Every CPU must be online, and none may appear twice.
fn parse_cpus(raw: &[u8]) -> Result<([i32; MAX_THREADS], usize)> {
    let mut cpus = [0i32; MAX_THREADS];
    if raw.is_empty() {
        cpus[0] = (0..256).rev().find(|&c| sys::cpu_usable(c)).unwrap_or(0);
        return Ok((cpus, 1));
    }
    let bad = |why: core::fmt::Arguments<'_>| reject("cpus", why);
    let mut n = 0;
    for (start, len) in list_items(raw) {
        let item = &raw[start..start + len];
        let (first, last) = match item.iter().position(|&b| b == b'-') {
            Some(dash) => (parse_cpu(&item[..dash]), parse_cpu(&item[dash + 1..])),
            None => (parse_cpu(item), parse_cpu(item)),
        };
        let (Some(first), Some(last)) = (first, last) else {
            return Err(bad(format_args!(
                "{:?} is not a CPU number or a range like 1-3",
                BStrDisplay(item)
            )));
        };
        if first > last {
            return Err(bad(format_args!("empty range {:?}", BStrDisplay(item))));
        }
        for cpu in first..=last {
            if !sys::cpu_usable(cpu) {
                return Err(bad(format_args!("CPU {} is offline or out of range", cpu)));
            }
            if cpus[..n].contains(&cpu) {
                return Err(bad(format_args!("CPU {} is listed twice", cpu)));
            }
            if n == MAX_THREADS {
                return Err(bad(format_args!(
                    "at most {} CPUs (one KBP thread each)",
                    MAX_THREADS
                )));
            }
            cpus[n] = cpu;
            n += 1;
        }
    }
    Ok((cpus, n))
}

/// Shows CPU numbers as a comma-separated list in a log line.
pub(crate) struct CpuList<'a>(pub &'a [i32]);

impl kernel::fmt::Display for CpuList<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, cpu) in self.0.iter().enumerate() {
            f.write_fmt(format_args!("{}{}", if i == 0 { "" } else { "," }, cpu))?;
        }
        Ok(())
    }
}

/// Shows a byte string as text (lossy) in a log line.
pub(crate) struct BStrDisplay<'a>(pub &'a [u8]);

impl core::fmt::Debug for BStrDisplay<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("\"")?;
        for &b in self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                f.write_fmt(format_args!("{}", b as char))?;
            } else {
                f.write_fmt(format_args!("\\x{:02x}", b))?;
            }
        }
        f.write_str("\"")
    }
}

/// Shows a byte string as plain text (non-printable bytes as `?`).
pub(crate) struct BStrText<'a>(pub &'a [u8]);

impl BStrText<'_> {
    fn write(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for &b in self.0 {
            let c = if b.is_ascii_graphic() { b as char } else { '?' };
            f.write_fmt(format_args!("{}", c))?;
        }
        Ok(())
    }
}

impl core::fmt::Display for BStrText<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.write(f)
    }
}

impl kernel::fmt::Display for BStrText<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.write(f)
    }
}
