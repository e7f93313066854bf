//! `cargo xtask faults [--soak-minutes M] [--cycles N]` (alias: `cargo xtask guest-test
//! --faults`): faults and a soak of kbp.ko in the guest, each while UDP echo traffic
//! flows, written to `target/kbp/faults.json` (serial log `target/kbp/faults.log`).
//!
//! Every fault runs the same way ([`Fault::run`], in `fault.rs`): traffic starts, the
//! operations run in the guest (timed there by `kbp-ctl time`), traffic stops a moment
//! later. A packet may be lost only if it was sent while the device was legitimately
//! away (between the start of a link-down or device-unbind operation and `SETTLE` after
//! it ended); any other loss, any kernel warning in the guest log, an operation slower
//! than its bound, or counters that went backwards or report errors fail the fault.
//!
//! The faults, in the order [`run`] injects them; each is one
//! `fault("NAME", ..).run(|g, ops| ..)` block there (search for its name in quotes):
//!
//! | fault | what | module state |
//! |---|---|---|
//! | `reload` | 20 x rmmod/insmod of kbp.ko (modes and thread counts alternate) | loaded and unloaded |
//! | `link-flap` | 20 x `ip link set eth0 down`/`up` | spin, 2 threads |
//! | `channels` | `ethtool -L eth0 combined 1` / `2` (`kbp-ctl channels`), 5 x, 8 flows | spin, 2 threads |
//! | `cpu-hotplug` | CPU 3 (a KBP thread's CPU) offline/online, 3 x; the thread must be pinned to CPU 3 again | spin, 2 threads |
//! | `unbind` | virtio-net unbind/rebind, 3 x; reload to own the new device | spin, 2 threads |
//! | `bad-input` | every invalid parameter ([`BAD_PARAMS`]); garbage written to every module control file | spin, 2 threads |
//! | `soak` | bursts and idle gaps at half the zero-loss rate, 10 min (`--soak-minutes`), stats every 30 s | adaptive, 1 thread |
//!
//! `--cycles N` sets the count of `reload` and `link-flap` (20).

mod fault;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kbp_traffic::zero_loss_search;
use serde::Serialize;

use crate::base::progress::Stage;
use crate::base::{Result, workspace_root};
use crate::build::initramfs::{ECHO_PORT, GUEST_ADDR};
use crate::guest::stats_file::{StatsFile, THREAD_PARKS};
use crate::guest::vm::{Guest, count_warnings};
use crate::harness::{BAD_PARAMS, MODULE_PATH, build_and_boot};
use crate::suites::faults::fault::{Fault, FaultRecord, Ops};

/// Echo rate during the faults (the moderate rate of the guest test).
const RATE: u64 = 2_000;

#[derive(Serialize)]
struct Report {
    kernel: String,
    rate_pps: u64,
    faults: Vec<FaultRecord>,
    kernel_warnings_total: usize,
    passed: bool,
}

fn insmod(args: &str) -> String {
    Ops::timed("load", &format!("insmod {MODULE_PATH} {args}"))
}

fn stats(guest: &Guest) -> Result<String> {
    guest.check("cat /sys/kernel/debug/kbp/stats")
}

/// Options of `cargo xtask faults`.
struct Options {
    soak_minutes: f64,
    cycles: u32,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        soak_minutes: 10.0,
        cycles: 20,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut num = || {
            it.next()
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| format!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--soak-minutes" => o.soak_minutes = num()?,
            "--cycles" => o.cycles = num()? as u32,
            other => {
                return Err(format!(
                    "unknown flag {other} (faults flags: --soak-minutes M --cycles N)"
                ));
            }
        }
    }
    Ok(o)
}

/// Runs every fault.
pub fn run(args: &[String]) -> Result {
    let o = parse(args)?;
    let (release, guest) = build_and_boot("faults.log")?;
    let mut faults = Vec::new();
    let fault = |name, what: String| Fault {
        guest: &guest,
        name,
        what,
        flows: 1,
        rate: RATE,
        bursts: None,
    };

    let cycles = o.cycles;
    faults.push(
        fault(
            "reload",
            format!("{cycles} x rmmod/insmod under traffic (spin/adaptive, 1 and 2 threads)"),
        )
        .run(|g, ops| {
            let variants = [
                "cpus=3 mode=spin",
                "cpus=2,3 mode=adaptive spin_window_us=200",
                "cpus=2,3 mode=spin",
                "cpus=3 mode=adaptive",
            ];
            for i in 0..cycles as usize {
                ops.run(
                    g,
                    &insmod(&format!("ifaces=eth0 {}", variants[i % variants.len()])),
                    false,
                )?;
                std::thread::sleep(Duration::from_millis(300));
                let s = stats(g)?;
                ops.check_stats(&s, None);
                ops.run(g, &Ops::timed("unload", "rmmod kbp"), false)?;
            }
            Ok(())
        })?,
    );

    guest.check(&format!(
        "insmod {MODULE_PATH} ifaces=eth0 cpus=2,3 mode=spin"
    ))?;
    faults.push(fault("link-flap", format!("{cycles} x ip link set eth0 down/up while owned (spin, 2 threads)")).run(|g, ops| {
        let mut before = stats(g)?;
        for _ in 0..cycles {
            let script = format!("{}; {}", Ops::timed("link-down", "ip link set eth0 down"), Ops::timed("link-up", "ip link set eth0 up"));
            ops.run(g, &script, true)?;
            std::thread::sleep(Duration::from_millis(300));
            let now = stats(g)?;
            ops.check_stats(&now, Some(&before));
            before = now;
        }
        let owned = before.lines().filter(|l| l.starts_with("napi ") && l.ends_with(" 1")).count();
        ops.notes.push(format!("after the last flap {owned} instance(s) owned (RX instances are re-taken in spin mode)"));
        if owned == 0 {
            ops.failures.push("ownership did not resume after the link came back".into());
        }
        Ok(())
    })?);

    faults.push(
        fault(
            "channels",
            "ethtool -L eth0 combined 1 then 2, 5 x while owned (kbp-ctl channels)".into(),
        )
        .with_flows(8)
        .run(|g, ops| {
            let mut before = stats(g)?;
            for _ in 0..5 {
                for n in [1, 2] {
                    let out = ops.run(
                        g,
                        &Ops::timed(
                            &format!("channels-{n}"),
                            &format!("kbp-ctl channels eth0 {n}"),
                        ),
                        false,
                    )?;
                    if !out.contains(&format!("combined {n} ")) {
                        ops.failures.push(format!("channel count not {n}: {out}"));
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                let now = stats(g)?;
                ops.check_stats(&now, Some(&before));
                before = now;
            }
            Ok(())
        })?,
    );

    faults.push(fault("cpu-hotplug", "CPU 3 (a KBP thread's CPU) offline and online again, 3 x while owned".into()).run(|g, ops| {
        let mut before = stats(g)?;
        for _ in 0..3 {
            let script = format!(
                "allowed() {{ for c in /proc/[0-9]*/comm; do read -r n < $c 2>/dev/null; [ \"$n\" = kbp/3 ] && \
                 awk -v w=$1 '/^Cpus_allowed_list/ {{print \"ALLOWED-\" w, $2}}' ${{c%comm}}status; done; true; }}; \
                 {}; sleep 1; allowed offline; {}; sleep 0.5; allowed online",
                Ops::timed("cpu-offline", "echo 0 > /sys/devices/system/cpu/cpu3/online"),
                Ops::timed("cpu-online", "echo 1 > /sys/devices/system/cpu/cpu3/online")
            );
            let out = ops.run(g, &script, false)?;
            let allowed = |when: &str| out.lines().find_map(|l| l.strip_prefix(&format!("ALLOWED-{when} "))).unwrap_or("?").trim().to_string();
            let (offline, online) = (allowed("offline"), allowed("online"));
            ops.notes.push(format!("kbp/3 allowed on CPUs {offline} while CPU 3 was offline, {online} after it came back"));
            if online != "3" {
                ops.failures.push(format!("kbp/3 allowed on CPUs {online:?} after CPU 3 came back, expected \"3\""));
            }
            let now = stats(g)?;
            ops.check_stats(&now, Some(&before));
            before = now;
        }
        Ok(())
    })?);

    faults.push(fault("unbind", "virtio-net unbind/rebind while owned (2 threads), then reload to own the new device, 3 x".into()).run(|g, ops| {
        for _ in 0..3 {
            let script = format!(
                "export dev=$(basename $(readlink /sys/class/net/eth0/device)); {}; sleep 1; {}; \
                 ip addr add {GUEST_ADDR}/24 dev eth0; ip link set eth0 up; dmesg | grep 'device unregistered' | tail -n 1",
                Ops::timed("unbind", "echo $dev > /sys/bus/virtio/drivers/virtio_net/unbind"),
                Ops::timed("bind", "echo $dev > /sys/bus/virtio/drivers/virtio_net/bind")
            );
            let out = ops.run(g, &script, true)?;
            if !out.contains("device unregistered") {
                ops.failures.push(format!("no `device unregistered` line: {out}"));
            }
            std::thread::sleep(Duration::from_millis(500));
            let s = stats(g)?;
            ops.check_stats(&s, None);
            if !s.contains("(gone)") {
                ops.failures.push(format!("the stats file does not show the device gone: {s}"));
            }
            ops.run(g, &format!("{}; {}", Ops::timed("unload", "rmmod kbp"), insmod("ifaces=eth0 cpus=2,3 mode=spin")), false)?;
        }
        Ok(())
    })?);

    faults.push(fault("bad-input", "every invalid module parameter, and garbage written to each module control file, while owned".into()).run(|g, ops| {
        let params_before = g.check("grep -r . /sys/module/kbp/parameters")?;
        for (param, args) in BAD_PARAMS {
            // A second instance of the module is refused as a duplicate before its
            // parameters are parsed, so the loaded one goes away for each attempt.
            let script = format!(
                "rmmod kbp; insmod {MODULE_PATH} {args} && echo LOADED; dmesg | grep 'invalid parameter' | tail -n 1; dmesg -c > /dev/null; insmod {MODULE_PATH} ifaces=eth0 cpus=2,3 mode=spin"
            );
            let out = ops.run(g, &script, false)?;
            if out.contains("LOADED") || !out.contains(&format!("invalid parameter {param}")) {
                ops.failures.push(format!("`{args}` was not refused with a line naming {param}: {out}"));
            }
        }
        let params_now = g.check("grep -r . /sys/module/kbp/parameters")?;
        let writes = g.check(
            "for f in /sys/module/kbp/parameters/* /sys/kernel/debug/kbp/stats; do \
             if echo 'garbage 123 -1' > $f 2>/dev/null; then echo ACCEPTED $f; else echo refused $f; fi; done",
        )?;
        let after = g.check("grep -r . /sys/module/kbp/parameters")?;
        if writes.contains("ACCEPTED") {
            ops.failures.push(format!("a control file accepted garbage: {writes}"));
        }
        if after != params_now || params_now != params_before {
            ops.failures.push(format!("parameters changed: {params_before} / {params_now} / {after}"));
        }
        let s = stats(g)?;
        ops.check_stats(&s, None);
        ops.notes.push(format!("{} bad loads refused; writes: {}", BAD_PARAMS.len(), writes.lines().count()));
        Ok(())
    })?);
    guest.check("rmmod kbp")?;

    // Soak: find the adaptive mode's zero-loss rate, then run bursts and gaps at half of
    // it so the thread parks in every gap.
    guest.check(&format!(
        "insmod {MODULE_PATH} ifaces=eth0 cpus=3 mode=adaptive spin_window_us=200"
    ))?;
    let stage = Stage::start("zero-loss search for the soak (kbp-adaptive, 64 B, 2 s trials)");
    let target: SocketAddr = format!("{GUEST_ADDR}:{ECHO_PORT}")
        .parse()
        .expect("address");
    // Searched up to 40 kpps only: the soak runs at half of it, at most 20 kpps bursts.
    let zero_loss = zero_loss_search(target, 64, 1, 500, 40_000, 2.0, 6)
        .map_err(|e| e.to_string())?
        .zero_loss_pps
        .max(1_000);
    println!("[xtask]   zero-loss {zero_loss} pps");
    stage.done();
    let soak_rate = zero_loss / 2;
    let burst = (soak_rate / 20).max(10); // 50 ms of traffic, then 20 ms idle
    let minutes = o.soak_minutes;
    let soak = Fault {
        guest: &guest,
        name: "soak",
        what: format!(
            "{minutes} min kbp-adaptive (spin_window_us=200): bursts of {burst} packets at {soak_rate} pps (half the zero-loss {zero_loss} pps) and 20 ms gaps, stats read every 30 s"
        ),
        flows: 1,
        rate: soak_rate,
        bursts: Some((burst, Duration::from_millis(20))),
    };
    faults.push(soak.run(|g, ops| {
        let t = Instant::now();
        let first = stats(g)?;
        let mut before = first.clone();
        while t.elapsed() < Duration::from_secs_f64(minutes * 60.0) {
            std::thread::sleep(
                Duration::from_secs(30)
                    .min(Duration::from_secs_f64(minutes * 60.0).saturating_sub(t.elapsed())),
            );
            let now = stats(g)?;
            ops.check_stats(&now, Some(&before));
            before = now;
        }
        ops.times
            .entry("soak-traffic".into())
            .or_default()
            .push(t.elapsed().as_secs_f64() * 1e3);
        let parks = |s: &str| {
            StatsFile::parse(s).and_then(|f| {
                f.threads()
                    .find(|&(cpu, _)| cpu == 3)
                    .map(|(_, v)| v[THREAD_PARKS])
            })
        };
        let (p0, p1) = (parks(&first).unwrap_or(0), parks(&before).unwrap_or(0));
        ops.notes.push(format!(
            "the KBP thread parked {} times during the soak",
            p1.saturating_sub(p0)
        ));
        if p1.saturating_sub(p0) < 1_000 {
            ops.failures.push(format!(
                "only {} parks: the bursts did not exercise park/wake",
                p1 - p0
            ));
        }
        Ok(())
    })?);
    guest.check("rmmod kbp")?;

    let log = guest.power_off(Duration::from_secs(60))?;
    let kernel_warnings_total = count_warnings(&log);
    let passed = faults.iter().all(|f| f.passed) && kernel_warnings_total == 0;
    let report = Report {
        kernel: release,
        rate_pps: RATE,
        faults,
        kernel_warnings_total,
        passed,
    };
    let path = workspace_root().join("target/kbp/faults.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    println!("[xtask] wrote {}", path.display());
    if passed {
        Ok(())
    } else {
        let failed: Vec<&str> = report
            .faults
            .iter()
            .filter(|f| !f.passed)
            .map(|f| f.name.as_str())
            .collect();
        Err(format!(
            "faults failed: {failed:?}, kernel warnings in the whole log: {kernel_warnings_total}; see {}",
            path.display()
        ))
    }
}
