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
    /// Interface names (bytes of the `ifaces` parameter) and how many.
    pub(crate) ifaces: [(usize, usize); MAX_DEVS],
    pub(crate) nifaces: usize,
    pub(crate) ifaces_raw: &'static [u8],
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

        let mut ifaces = [(0usize, 0usize); MAX_DEVS];
        let mut nifaces = 0;
        for (start, len) in list_items(ifaces_raw) {
            if len == 0 || len >= 16 {
                return Err(reject(
                    "ifaces",
                    format_args!(
                        "empty or over-long interface name in {:?}",
                        BStrDisplay(ifaces_raw)
                    ),
                ));
            }
            if nifaces == MAX_DEVS {
                return Err(reject(
                    "ifaces",
                    format_args!("at most {} interfaces", MAX_DEVS),
                ));
            }
            ifaces[nifaces] = (start, len);
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

    /// The `i`th interface name.
    pub(crate) fn iface(&self, i: usize) -> &'static [u8] {
        let (start, len) = self.ifaces[i];
        &self.ifaces_raw[start..start + len]
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
