//! Stage banners, elapsed time, and running commands with their output shown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::base::Result;

/// A stage of a long task, printed with its elapsed time when it ends.
pub struct Stage {
    name: String,
    start: Instant,
}

impl Stage {
    /// Prints the banner.
    pub fn start(name: impl Into<String>) -> Stage {
        let name = name.into();
        println!("[xtask] {name} ...");
        Stage {
            name,
            start: Instant::now(),
        }
    }

    /// Seconds since the stage started.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Prints the end line.
    pub fn done(self) -> f64 {
        let s = self.elapsed();
        println!("[xtask] {} done in {:.1} s", self.name, s);
        s
    }
}

/// Runs a command, failing with its name and status.
pub fn run(cmd: &mut Command) -> Result {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

/// Runs a command and returns its stdout.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a long command (a kernel build), printing a progress line every `every` output
/// lines with the stage's elapsed time, and the last lines on failure.
pub fn run_long(cmd: &mut Command, stage: &Stage, every: usize) -> Result {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(|l| l.ok())
            .collect::<Vec<_>>()
    });
    let mut tail = std::collections::VecDeque::new();
    for (n, line) in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(|l| l.ok())
        .enumerate()
    {
        if n % every == 0 {
            println!("[xtask]   {:>6.0} s  {}", stage.elapsed(), line.trim());
        }
        tail.push_back(line);
        if tail.len() > 30 {
            tail.pop_front();
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let errors = err_thread.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    for line in tail.iter().chain(
        errors
            .iter()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev(),
    ) {
        eprintln!("  | {line}");
    }
    Err(format!("{cmd:?} failed with {status}"))
}

/// FNV-1a over some byte strings: a stable cache key.
pub fn fnv1a(parts: &[&[u8]]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(b"\0") {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}
