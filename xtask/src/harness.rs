//! Layer 3, what every suite shares: [`build_and_boot`] (toolchain, kernel, module,
//! initramfs, then a booted guest), `cargo xtask guest-run` ([`run_commands`]), and the
//! constants and types more than one suite uses: where the module lives in the guest
//! ([`MODULE_PATH`]), the loads that must be refused ([`BAD_PARAMS`]), how to find the
//! NIC's device and driver for an unbind ([`DEVICE_AND_DRIVER`]), the drop
//! counters read around traffic ([`Drops`]) and the zero-loss search's ceiling
//! ([`ZERO_LOSS_CEILING_PPS`]). Uses [`crate::base`], [`crate::build`] and
//! [`crate::guest`]; the suites above it use it.

use std::time::Duration;

use serde::Serialize;

use crate::base::progress::{Stage, output};
use crate::base::{Result, workspace_root};
use crate::build::kernel::Flavor;
use crate::build::{initramfs, kernel, module, toolchain};
use crate::guest::probes::snmp_field;
use crate::guest::vm::{Guest, Nic, QUEUE_PAIRS, Tcg, VCPUS};

/// Where the module lives in the guest.
pub const MODULE_PATH: &str = "/lib/modules/kbp.ko";

/// Loads that must be refused: (parameter named in the error, insmod arguments).
pub const BAD_PARAMS: &[(&str, &str)] = &[
    ("ifaces", "ifaces=nosuch0"),
    ("ifaces", "ifaces="),
    // No NAPI instance to own: loopback receives through the backlog (netif_rx).
    ("ifaces", "ifaces=lo"),
    // NAME@PID: the interface in the network namespace of process PID.
    ("ifaces", "ifaces=eth0@"),
    ("ifaces", "ifaces=eth0@0"),
    ("ifaces", "ifaces=eth0@12345678"),
    ("ifaces", "ifaces=eth0@4194303"),
    ("ifaces", "ifaces=nosuch0@1"),
    ("ifaces", "ifaces=eth0,eth0@1"),
    ("cpus", "ifaces=eth0 cpus=99"),
    ("cpus", "ifaces=eth0 cpus=3,3"),
    ("cpus", "ifaces=eth0 cpus=1-x"),
    ("mode", "ifaces=eth0 mode=turbo"),
    ("budget", "ifaces=eth0 budget=0"),
    ("weight", "ifaces=eth0 weight=100000"),
    ("time_limit_us", "ifaces=eth0 time_limit_us=0"),
    ("idle_release_us", "ifaces=eth0 idle_release_us=0"),
    (
        "spin_window_us",
        "ifaces=eth0 mode=adaptive spin_window_us=99999999",
    ),
];

/// Shell: `dev` is eth0's bus device (`virtio0`, a PCI address) and `drv` its driver's
/// sysfs directory (`/sys/bus/virtio/drivers/virtio_net`, `/sys/bus/pci/drivers/igb`),
/// for `echo $dev > $drv/unbind` on any NIC model; both exported, for the `sh -c` of
/// `kbp-ctl time` (unexported, `$drv` was empty there and the unbind wrote `/unbind`).
pub const DEVICE_AND_DRIVER: &str = "dev=$(basename $(readlink /sys/class/net/eth0/device)); \
    drv=$(readlink -f /sys/class/net/eth0/device/driver); export dev drv";

/// The zero-loss search's upper bound: above what this emulated guest sustains (56 kpps
/// of 64 B echo in `napi` mode, measured once the meter's own sockets stopped dropping
/// replies; the old 40 kpps bound was reached).
pub const ZERO_LOSS_CEILING_PPS: u64 = 80_000;

/// Drop counters read around a scenario.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Drops {
    /// `Udp: RcvbufErrors` of the guest's /proc/net/snmp.
    pub guest_udp_rcvbuf_errors: u64,
    /// The guest's eth0 `rx_dropped` (virtio-net counts the buffers its receive path
    /// drops: XDP verdicts, buffers it could not turn into an skb).
    pub guest_dev_rx_dropped: u64,
    /// TX drops of the host's tap0 (packets the emulated NIC did not take).
    pub host_tap_tx_dropped: u64,
    /// `Udp: RcvbufErrors` of the test namespace on the host: replies the load
    /// generator's sockets had no room for.
    pub host_udp_rcvbuf_errors: u64,
}

/// `Udp: RcvbufErrors` from a /proc/net/snmp text.
fn udp_rcvbuf_errors(snmp: &str) -> u64 {
    snmp_field(snmp, "Udp:", "RcvbufErrors")
}

impl Drops {
    pub(crate) fn read(guest: &Guest) -> Result<Drops> {
        let rcvbuf = udp_rcvbuf_errors(&guest.check("grep '^Udp:' /proc/net/snmp")?);
        let dev_rx_dropped = guest
            .check("cat /sys/class/net/eth0/statistics/rx_dropped")?
            .trim()
            .parse()
            .unwrap_or(0);
        // This process is inside the test namespace (setns), so `ip` sees its tap0 and
        // this thread's /proc/net/snmp is that namespace's.
        let link =
            output(std::process::Command::new("ip").args(["-j", "-s", "link", "show", "tap0"]))?;
        let tap = serde_json::from_str::<serde_json::Value>(&link)
            .ok()
            .and_then(|v| v[0]["stats64"]["tx"]["dropped"].as_u64())
            .unwrap_or(0);
        let host_rcvbuf = udp_rcvbuf_errors(
            &std::fs::read_to_string("/proc/thread-self/net/snmp")
                .map_err(|e| format!("/proc/thread-self/net/snmp: {e}"))?,
        );
        Ok(Drops {
            guest_udp_rcvbuf_errors: rcvbuf,
            guest_dev_rx_dropped: dev_rx_dropped,
            host_tap_tx_dropped: tap,
            host_udp_rcvbuf_errors: host_rcvbuf,
        })
    }

    pub(crate) fn since(self, before: Drops) -> Drops {
        Drops {
            guest_udp_rcvbuf_errors: self
                .guest_udp_rcvbuf_errors
                .saturating_sub(before.guest_udp_rcvbuf_errors),
            guest_dev_rx_dropped: self
                .guest_dev_rx_dropped
                .saturating_sub(before.guest_dev_rx_dropped),
            host_tap_tx_dropped: self
                .host_tap_tx_dropped
                .saturating_sub(before.host_tap_tx_dropped),
            host_udp_rcvbuf_errors: self
                .host_udp_rcvbuf_errors
                .saturating_sub(before.host_udp_rcvbuf_errors),
        }
    }
}

/// Builds what the guest needs (toolchain, kernel, module, initramfs) and boots it;
/// returns the kernel release and the running guest. The serial log is
/// `target/kbp/<log_name>`.
pub fn build_and_boot(log_name: &str, tcg: Tcg) -> Result<(String, Guest)> {
    build_and_boot_with(log_name, Flavor::Normal, tcg, Nic::Virtio)
}

/// [`build_and_boot`] on the kernel of `flavor` with the NIC model `nic`; the debug
/// kernel (lockdep and the other checkers, under TCG) gets a longer boot timeout.
pub fn build_and_boot_with(
    log_name: &str,
    flavor: Flavor,
    tcg: Tcg,
    nic: Nic,
) -> Result<(String, Guest)> {
    let tc = toolchain::ensure()?;
    let k = kernel::build_flavor(&tc, flavor)?;
    let ko = module::build(&tc, &k)?;
    let image = initramfs::build(&[(ko, MODULE_PATH)])?;
    let out_dir = workspace_root().join("target/kbp");
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;

    let stage = Stage::start(match nic {
        Nic::Virtio => {
            format!("boot guest ({VCPUS} vCPUs, virtio-net {QUEUE_PAIRS} queue pairs, TCG)")
        }
        other => format!("boot guest ({VCPUS} vCPUs, {} NIC, TCG)", other.name()),
    });
    // TCG with several vCPUs occasionally trips over the kernel's boot-time code
    // patching (an int3 Oops before userspace); such a boot is retried, and said so.
    let mut attempt = 1;
    let guest = loop {
        match Guest::boot(
            &k.bzimage,
            &image,
            &out_dir.join(log_name),
            match flavor {
                Flavor::Normal => Duration::from_secs(180),
                Flavor::Debug => Duration::from_secs(900),
            },
            tcg,
            nic,
        ) {
            Ok(guest) => break guest,
            Err(e) if attempt < 3 && e.contains("before the guest came up") => {
                println!(
                    "[xtask]   boot attempt {attempt} failed, retrying: {}",
                    e.lines().next().unwrap_or("")
                );
                let _ = std::fs::copy(
                    out_dir.join(log_name),
                    out_dir.join(format!("{log_name}.failed-boot-{attempt}")),
                );
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    println!(
        "[xtask]   guest up in {:.1} s ({})",
        guest.boot_seconds, guest.qemu_version
    );
    stage.done();
    Ok((k.release, guest))
}

/// `cargo xtask guest-run [--icount] [--nic NAME] CMD...`: boots the guest (module in
/// the initramfs), runs each command through the agent and prints its output; for
/// investigating by hand. `--icount`: under [`Tcg::Icount`] (virtual time counts
/// instructions); `--nic NAME`: the guest's NIC model (virtio, e1000e, vmxnet3).
pub fn run_commands(args: &[String]) -> Result {
    let (tcg, args) = match args.split_first() {
        Some((flag, rest)) if flag == "--icount" => (Tcg::Icount, rest),
        _ => (Tcg::MultiThread, args),
    };
    let (nic, commands) = match args {
        [flag, name, rest @ ..] if flag == "--nic" => (Nic::parse(name)?, rest),
        _ => (Nic::Virtio, args),
    };
    let tc = toolchain::ensure()?;
    let k = kernel::build(&tc)?;
    let ko = module::build(&tc, &k)?;
    let image = initramfs::build(&[(ko, MODULE_PATH)])?;
    let out_dir = workspace_root().join("target/kbp");
    let guest = Guest::boot(
        &k.bzimage,
        &image,
        &out_dir.join("guest-run.log"),
        Duration::from_secs(180),
        tcg,
        nic,
    )?;
    for command in commands {
        let (code, out) = guest.exec(command)?;
        println!("$ {command}\n{out}\n[exit {code}]");
    }
    guest.power_off(Duration::from_secs(60)).map(|_| ())
}
