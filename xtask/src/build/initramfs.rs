//! The guest userland: busybox-static, the project's static guest binaries (built with
//! `+crt-static`), Debian's `nft` with the shared libraries `ldd` lists for it (the
//! bench's container NAT), extra files (e.g. kernel modules) and an init script; packed
//! as a gzip'd newc cpio.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::base::progress::{Stage, output, run};
use crate::base::{Result, workspace_root};

/// The guest's address on the test network (the host side of the tap is .1).
pub const GUEST_ADDR: &str = "10.77.0.2";
/// The host's address on the tap.
pub const HOST_ADDR: &str = "10.77.0.1";
/// The echo server's UDP port.
pub const ECHO_PORT: u16 = 9000;
/// The agent's TCP port.
pub const AGENT_PORT: u16 = 7000;
/// `kbp-tcp`'s echo port (request/response over one connection).
pub const TCP_ECHO_PORT: u16 = 9001;
/// `kbp-tcp`'s sink port (host -> guest bulk).
pub const TCP_SINK_PORT: u16 = 9002;
/// `kbp-tcp`'s source port (guest -> host bulk).
pub const TCP_SOURCE_PORT: u16 = 9003;
/// Where `kbp-tcp`'s source writes its sender counters after a transfer.
pub const TCP_SOURCE_REPORT: &str = "/tmp/kbp-tcp-source.txt";

const GUEST_BINARIES: &[&str] = &["kbp-echo", "kbp-agent", "kbp-ctl", "kbp-tcp"];

/// Host programs copied into the guest's `/bin`, with their shared libraries (at the
/// paths the host's loader found them).
const HOST_PROGRAMS: &[&str] = &["/usr/sbin/nft"];

/// The files a dynamically linked `program` loads: `ldd`'s absolute paths (the
/// libraries and the dynamic loader; the vDSO has none).
fn shared_libraries(program: &str) -> Result<Vec<PathBuf>> {
    let listing = output(Command::new("ldd").arg(program))?;
    let libs: Vec<PathBuf> = listing
        .lines()
        .filter_map(|line| line.split_whitespace().find(|word| word.starts_with('/')))
        .map(PathBuf::from)
        .collect();
    if libs.is_empty() {
        return Err(format!("ldd {program} listed no libraries: {listing}"));
    }
    Ok(libs)
}

fn init_script() -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mkdir -p /tmp
# Free skbs where they are released instead of deferring them to the allocating CPU:
# a deferred free kicks NET_RX_SOFTIRQ on that CPU, which would blur the NET_RX counts
# the test compares (the KBP thread cannot flush defer lists: not exported).
echo 0 > /proc/sys/net/core/skb_defer_max
# This guest's vCPUs are host threads on a 2-core machine and can stall for tens of
# milliseconds; the default 208 KiB socket buffer holds only ~90 full-size frames.
# A larger default keeps such stalls from becoming drops in the echo server (all modes).
echo 4194304 > /proc/sys/net/core/rmem_max
echo 4194304 > /proc/sys/net/core/rmem_default
ip link set lo up
ip addr add {GUEST_ADDR}/24 dev eth0
ip link set eth0 up
# Transmit a connected socket's packets on the queue paired with the RX queue it last
# received on (XPS by receive queue), in every mode. With XPS by CPU only (virtio-net's
# default), a TCP receiver's ACKs leave on the queue of whichever CPU sends them (each
# is ooo_okay), the host tap steers the flow to the queue of the guest's latest packet,
# and one flow's segments end up in both RX rings: delivered out of order whenever the
# receive path does not run on a CPU of its queue's XPS group (KBP's thread), and the
# sender retransmits (issue 13). Unconnected UDP sockets record no RX queue: unaffected.
for q in /sys/class/net/eth0/queues/tx-*; do i=${{q##*tx-}}; echo $((1 << i)) > $q/xps_rxqs; done
echo "KBP-GUEST-UP $(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) rx_queues=$(ls -d /sys/class/net/eth0/queues/rx-* | wc -l)"
kbp-echo 0.0.0.0:{ECHO_PORT} &
kbp-tcp 0.0.0.0 &
kbp-agent 0.0.0.0:{AGENT_PORT}
echo KBP-GUEST-POWEROFF
poweroff -f
"#
    )
}

/// Builds the static guest binaries; returns their directory.
fn guest_binaries() -> Result<PathBuf> {
    let stage = Stage::start("build static guest binaries");
    let root = workspace_root();
    let target_dir = root.join("target/guest");
    run(Command::new("cargo")
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "kbp-guest",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--config",
            r#"build.rustflags=["-C","target-feature=+crt-static"]"#,
        ])
        .arg("--target-dir")
        .arg(&target_dir))?;
    stage.done();
    Ok(target_dir.join("x86_64-unknown-linux-gnu/release"))
}

/// Builds `target/kbp/initramfs.<pid>.cpio.gz` with `extra` files copied to the given
/// guest paths (absolute, e.g. `/lib/modules/kbp.ko`).
///
/// The staging directory and the image are this process's own (named by its pid), so
/// two xtask runs in one tree cannot pack into each other's image: a bench whose boot
/// found `bin/kbp-agent` gone, because another run had wiped the shared staging
/// directory mid-pack, is what happened when they shared one (2026-11-29). Images of
/// processes that have exited are removed here.
pub fn build(extra: &[(PathBuf, &str)]) -> Result<PathBuf> {
    let bins = guest_binaries()?;
    let stage = Stage::start("pack initramfs");
    let out_dir = workspace_root().join("target/kbp");
    remove_stale_images(&out_dir);
    let pid = std::process::id();
    let root = out_dir.join(format!("initramfs-root.{pid}"));
    let _ = std::fs::remove_dir_all(&root);
    for dir in [
        "bin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "lib/modules",
        "sys/kernel/debug",
    ] {
        std::fs::create_dir_all(root.join(dir)).map_err(|e| e.to_string())?;
    }
    let copy = |from: &Path, to: &Path| {
        std::fs::copy(from, to)
            .map(|_| ())
            .map_err(|e| format!("copy {} -> {}: {e}", from.display(), to.display()))
    };
    copy(Path::new("/bin/busybox"), &root.join("bin/busybox"))?;
    for bin in GUEST_BINARIES {
        copy(&bins.join(bin), &root.join("bin").join(bin))?;
    }
    for program in HOST_PROGRAMS {
        let name = Path::new(program)
            .file_name()
            .ok_or_else(|| format!("{program}: no file name"))?;
        copy(Path::new(program), &root.join("bin").join(name))?;
        for lib in shared_libraries(program)? {
            let dest = root.join(lib.strip_prefix("/").unwrap_or(&lib));
            std::fs::create_dir_all(dest.parent().expect("an absolute path has a parent"))
                .map_err(|e| e.to_string())?;
            copy(&lib, &dest)?;
        }
    }
    for (from, to) in extra {
        let dest = root.join(to.trim_start_matches('/'));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        copy(from, &dest)?;
    }
    let init = root.join("init");
    std::fs::write(&init, init_script()).map_err(|e| e.to_string())?;
    run(Command::new("chmod").arg("755").arg(&init))?;
    run(Command::new("mknod")
        .args(["-m", "600"])
        .arg(root.join("dev/console"))
        .args(["c", "5", "1"]))?;
    let image = out_dir.join(format!("initramfs.{pid}.cpio.gz"));
    let script = format!(
        "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
        root.display(),
        image.display()
    );
    run(Command::new("sh").args(["-c", &script]))?;
    let _ = std::fs::remove_dir_all(&root);
    stage.done();
    Ok(image)
}

/// Removes the images and staging directories [`build`] left for processes that no
/// longer run.
fn remove_stale_images(out_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(out_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("initramfs.")
            .and_then(|rest| rest.strip_suffix(".cpio.gz"))
            .or_else(|| name.strip_prefix("initramfs-root."));
        let stale = pid.is_some_and(|pid| {
            pid.parse::<u32>()
                .map_or(true, |pid| !Path::new(&format!("/proc/{pid}")).exists())
        });
        if stale {
            let path = entry.path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
}
