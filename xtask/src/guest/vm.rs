//! A running test guest: a network namespace of our own holding a tap, QEMU (TCG, 4
//! vCPUs, by default virtio-net with 2 queue pairs on a multi-queue tap; [`Nic`] for the
//! other models) on that tap, and a TCP client for the guest's agent. No traffic leaves
//! the namespace.
//!
//! The xtask process itself enters the namespace (`setns`) before booting, so its
//! sockets (the load generator, the agent client) and its children (QEMU) live there.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::base::Result;
use crate::base::progress::run;
use crate::build::initramfs::{AGENT_PORT, GUEST_ADDR, HOST_ADDR};
use crate::build::qemu::{self, Qemu};

/// Queue pairs of the guest's virtio-net.
pub const QUEUE_PAIRS: u32 = 2;
/// Guest vCPUs.
pub const VCPUS: u32 = 4;

/// Lines of the guest log that count as kernel warnings. The debug kernel's reports
/// are covered too: lockdep's ("WARNING: possible circular locking dependency
/// detected", "WARNING: inconsistent lock state", "WARNING: suspicious RCU usage"),
/// "BUG: sleeping function called from invalid context", "BUG: KASAN: ...",
/// "BUG: KFENCE: ...", hung tasks ("INFO: task ... blocked for more than"), RCU stalls
/// ("rcu: INFO: rcu_preempt detected stalls"), "ODEBUG:" object misuse, hard lockups
/// and workqueue lockups.
pub const WARNING_MARKERS: &[&str] = &[
    "WARNING:",
    "BUG:",
    "Oops",
    "soft lockup",
    "hard LOCKUP",
    "detected stall",
    "self-detected stall",
    "rcu_tasks",
    "blocked for more than",
    "ODEBUG:",
    "UBSAN:",
    "Kernel panic",
];

/// The guest's NIC model (`--nic`), each driven by the guest kernel's real driver.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Nic {
    /// virtio-net with [`QUEUE_PAIRS`] queue pairs (`virtio_net`): the default.
    Virtio,
    /// Intel 82574L (`e1000e`): one RX and one TX queue, one NAPI for both.
    E1000e,
    /// VMware's paravirtual NIC (`vmxnet3`).
    Vmxnet3,
    /// Intel 82576 (`igb`): multi-queue with MSI-X, a NAPI per queue vector; needs
    /// QEMU 8.0 or later ([`crate::build::qemu::backports`]).
    Igb,
}

impl Nic {
    /// Every model, in `--nic`'s order.
    pub const ALL: [Nic; 4] = [Nic::Virtio, Nic::E1000e, Nic::Vmxnet3, Nic::Igb];

    /// Parses `--nic`'s value.
    pub fn parse(name: &str) -> Result<Nic> {
        Nic::ALL
            .into_iter()
            .find(|n| n.name() == name)
            .ok_or_else(|| format!("--nic {name}: expected virtio, e1000e, vmxnet3 or igb"))
    }

    /// `--nic`'s value for it, also the guest driver's name except for virtio.
    pub fn name(self) -> &'static str {
        match self {
            Nic::Virtio => "virtio",
            Nic::E1000e => "e1000e",
            Nic::Vmxnet3 => "vmxnet3",
            Nic::Igb => "igb",
        }
    }

    /// The QEMU that models it: the system's, or the backport for igb.
    pub fn qemu(self) -> Result<Qemu> {
        match self {
            Nic::Igb => qemu::backports(),
            Nic::Virtio | Nic::E1000e | Nic::Vmxnet3 => qemu::system(),
        }
    }

    /// RX queues the guest's driver must show, where the model fixes it: virtio-net's
    /// [`QUEUE_PAIRS`]; the others choose by vector and CPU count (recorded, not
    /// checked).
    pub fn expected_rx_queues(self) -> Option<u32> {
        match self {
            Nic::Virtio => Some(QUEUE_PAIRS),
            Nic::E1000e | Nic::Vmxnet3 | Nic::Igb => None,
        }
    }

    /// An extended regular expression matching its interrupts' names in the guest's
    /// `/proc/interrupts` (virtio-net's are `virtio0-input.0` and so on; the Intel and
    /// VMware drivers name theirs after the interface, `eth0-rx-0`, `eth0-TxRx-0`,
    /// `eth0-rxtx-0`, `eth0`).
    pub fn irq_names(self) -> &'static str {
        match self {
            Nic::Virtio => "virtio0-",
            Nic::E1000e | Nic::Vmxnet3 | Nic::Igb => "eth0",
        }
    }

    /// QEMU's `-netdev` and `-device` values for it on `tap0`.
    fn qemu_args(self) -> (String, String) {
        let tap = "tap,id=n0,ifname=tap0,script=no,downscript=no";
        match self {
            Nic::Virtio => (
                format!("{tap},queues={QUEUE_PAIRS}"),
                format!(
                    "virtio-net-pci,netdev=n0,mq=on,vectors={}",
                    2 * QUEUE_PAIRS + 2
                ),
            ),
            Nic::E1000e | Nic::Vmxnet3 | Nic::Igb => {
                (tap.to_string(), format!("{},netdev=n0", self.name()))
            }
        }
    }
}

/// How QEMU's TCG runs the vCPUs.
///
/// `MultiThread` (MTTCG, one host thread per vCPU) is QEMU's default and the only mode
/// in which a polling vCPU does not slow the others down: the bench uses it. But under
/// QEMU 7.2's MTTCG the guest kernel's cross-CPU text patching (`smp_text_poke_*`: ftrace
/// call sites, static keys) is not reliable under interrupt load: toggling the function
/// tracer on `__napi_schedule` 300 times while `kbp-ctl flood 0 1 2` runs, without
/// kbp.ko loaded, oopsed with `Oops: int3` at a patched site (ttwu_do_activate+0x8f, a
/// static key) in 3 runs of 3; with `thread=single` it ran all 300 cycles clean.
/// kbp.ko patches two call sites (its ftrace hooks) at every load and unload, so the
/// suites that load and unload it under traffic (the guest test, the faults) run
/// `SingleThread`: one host thread runs every vCPU in turn, and code patching is exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tcg {
    /// `-accel tcg` (MTTCG).
    MultiThread,
    /// `-accel tcg,thread=single`.
    SingleThread,
    /// `-accel tcg,thread=single -icount shift=0,sleep=on`: virtual time counts
    /// instructions (one per nanosecond) while a vCPU executes, so the guest's own clock
    /// measures the work it did, exactly, whatever the host's load; while every vCPU
    /// idles, the clock follows the host's (with `sleep=off` it would jump to the next
    /// timer at once, and an idle guest would race through its timers: thousands of
    /// seconds of virtual time, and of timer work, per second). icount serializes the
    /// vCPUs (one thread),
    /// and a guest with more than one vCPU hangs at boot under it: the kernel boots with
    /// `maxcpus=1` and [`Guest::boot`] brings the other vCPUs online once the agent
    /// answers. It also boots with `virtio_net.napi_tx=0`: TX completions are reaped
    /// when the next packet is sent instead of by a TX interrupt and NAPI poll, so a
    /// packet's instruction count does not depend on when, in host time, QEMU's I/O
    /// thread completes the transmit (a TX interrupt can find KBP's thread running or
    /// parked, and the work it causes differs).
    Icount,
}

impl Tcg {
    fn accel(self) -> &'static str {
        match self {
            Tcg::MultiThread => "tcg",
            Tcg::SingleThread | Tcg::Icount => "tcg,thread=single",
        }
    }

    /// QEMU arguments beyond `-accel`.
    fn extra_args(self) -> &'static [&'static str] {
        match self {
            Tcg::Icount => &["-icount", "shift=0,sleep=on"],
            Tcg::MultiThread | Tcg::SingleThread => &[],
        }
    }

    /// Kernel command line beyond the common one.
    fn extra_append(self) -> &'static str {
        match self {
            Tcg::Icount => " maxcpus=1 virtio_net.napi_tx=0",
            Tcg::MultiThread | Tcg::SingleThread => "",
        }
    }
}

/// A booted guest; dropping it kills QEMU and removes the namespace.
pub struct Guest {
    netns: String,
    home_netns: File,
    qemu: Option<Child>,
    /// The machine-wide guest lock (see [`GUEST_LOCK`]), held while the guest runs.
    _lock: File,
    /// The serial console log.
    pub log: PathBuf,
    /// Seconds from starting QEMU to the agent answering.
    pub boot_seconds: f64,
    /// The NIC model the guest was given.
    pub nic: Nic,
    /// The QEMU that runs it (`--version`'s first line).
    pub qemu_version: String,
}

/// One guest at a time on this machine: the suites time operations and count losses,
/// and a second TCG guest on the same cores would measure both against each other. A
/// guest boots only with an exclusive `flock` on this file, held until it is dropped.
const GUEST_LOCK: &str = "/tmp/kbp-guest.lock";

/// Takes [`GUEST_LOCK`], waiting (and saying so) while another guest holds it.
fn lock_guest() -> Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(GUEST_LOCK)
        .map_err(|e| format!("{GUEST_LOCK}: {e}"))?;
    let lock = |flags| {
        // SAFETY: an open file descriptor; flock only changes the lock on its file.
        unsafe { libc::flock(file.as_raw_fd(), flags) }
    };
    if lock(libc::LOCK_EX | libc::LOCK_NB) != 0 {
        println!("[xtask]   another guest runs on this machine ({GUEST_LOCK}); waiting for it");
        if lock(libc::LOCK_EX) != 0 {
            return Err(format!(
                "flock {GUEST_LOCK}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(file)
}

fn setns(file: &File) -> Result {
    // SAFETY: `file` is an open namespace file descriptor for the call's duration;
    // setns only switches the calling thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("setns: {}", std::io::Error::last_os_error()))
    }
}

/// Counts the kernel-warning lines in a guest log.
pub fn count_warnings(log: &str) -> usize {
    log.lines()
        .filter(|l| WARNING_MARKERS.iter().any(|m| l.contains(m)))
        .count()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Guest {
    /// The QEMU process's id, while it runs.
    pub fn qemu_pid(&self) -> Option<u32> {
        self.qemu.as_ref().map(Child::id)
    }

    /// Creates the namespace and tap, boots QEMU, waits for the agent.
    pub fn boot(
        bzimage: &Path,
        initramfs: &Path,
        log: &Path,
        timeout: Duration,
        tcg: Tcg,
        nic: Nic,
    ) -> Result<Guest> {
        // Before entering the namespace, which has no route out: the backported QEMU
        // may have to be downloaded.
        let qemu_build = nic.qemu()?;
        let lock = lock_guest()?;
        let netns = format!("kbp-test-{}", std::process::id());
        let home_netns = File::open("/proc/self/ns/net").map_err(|e| e.to_string())?;
        run(Command::new("ip").args(["netns", "add", &netns]))?;
        let mut guest = Guest {
            netns: netns.clone(),
            home_netns,
            qemu: None,
            _lock: lock,
            log: log.to_path_buf(),
            boot_seconds: 0.0,
            nic,
            qemu_version: qemu_build.version.clone(),
        };
        let ns_file = File::open(format!("/var/run/netns/{netns}")).map_err(|e| e.to_string())?;
        setns(&ns_file)?;
        run(Command::new("ip").args(["link", "set", "lo", "up"]))?;
        run(Command::new("ip")
            .args(["tuntap", "add", "dev", "tap0", "mode", "tap"])
            // A multi-queue tap only for virtio-net's queue pairs: QEMU opens the others'
            // single queue without IFF_MULTI_QUEUE, which a multi-queue tap refuses.
            .args((nic == Nic::Virtio).then_some("multi_queue")))?;
        run(Command::new("ip").args(["addr", "add", &format!("{HOST_ADDR}/24"), "dev", "tap0"]))?;
        run(Command::new("ip").args(["link", "set", "tap0", "up"]))?;

        let _ = std::fs::remove_file(log);
        let (netdev, device) = nic.qemu_args();
        let start = Instant::now();
        let qemu = Command::new(&qemu_build.binary)
            .args(&qemu_build.firmware_args)
            .args([
                "-name",
                "kbp-guest,debug-threads=on",
                "-accel",
                tcg.accel(),
                "-smp",
                &VCPUS.to_string(),
                "-m",
                "1024",
                "-no-reboot",
                "-display",
                "none",
                "-vga",
                "none",
                "-monitor",
                "none",
            ])
            .arg("-kernel")
            .arg(bzimage)
            .arg("-initrd")
            .arg(initramfs)
            // tsc=reliable: under TCG the clocksource watchdog otherwise finds the TSC
            // unstable some seconds after boot, and the static-key flip that follows is
            // patched with int3 while other vCPUs run the code: a fatal int3 Oops (seen).
            // Declaring it unstable from the start avoids the flip but leaves the HPET as
            // clocksource, an emulated MMIO read per clock read; TCG's TSC is derived from
            // the host clock and monotonic, so it is declared reliable (no watchdog).
            .args([
                "-append",
                &format!(
                    "console=ttyS0 panic=-1 loglevel=6 tsc=reliable{}",
                    tcg.extra_append()
                ),
            ])
            .args(tcg.extra_args())
            .arg("-serial")
            .arg(format!("file:{}", log.display()))
            .args(["-netdev", &netdev, "-device", &device])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", qemu_build.binary.display()))?;
        guest.qemu = Some(qemu);

        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("KBP-AGENT-READY") {
                break;
            }
            if let Some(status) = guest
                .qemu
                .as_mut()
                .and_then(|q| q.try_wait().ok().flatten())
            {
                let mut err = String::new();
                if let Some(mut e) = guest.qemu.as_mut().and_then(|q| q.stderr.take()) {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!(
                    "QEMU exited ({status}) before the guest came up: {}\n--- last lines of {} ---\n{}",
                    err.trim(),
                    log.display(),
                    tail(log, 40)
                ));
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "the guest did not come up within {} s\n--- last lines of {} ---\n{}",
                    timeout.as_secs(),
                    log.display(),
                    tail(log, 40)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        guest.boot_seconds = start.elapsed().as_secs_f64();
        // The agent prints READY just before accept(); give it a moment, then check.
        let mut last = String::new();
        for _ in 0..50 {
            match guest.exec("true") {
                Ok(_) => {
                    if tcg == Tcg::Icount {
                        guest.check(&format!(
                            "for c in $(seq 1 {}); do echo 1 > /sys/devices/system/cpu/cpu$c/online; done; \
                             test $(grep -c ^processor /proc/cpuinfo) = {VCPUS}",
                            VCPUS - 1
                        ))?;
                    }
                    return Ok(guest);
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!("the guest agent does not answer: {last}"))
    }

    /// Runs a shell command in the guest; returns its exit code and output.
    pub fn exec(&self, command: &str) -> Result<(i32, String)> {
        let addr: SocketAddr = format!("{GUEST_ADDR}:{AGENT_PORT}")
            .parse()
            .expect("address");
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| format!("agent connect: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(300)))
            .map_err(|e| e.to_string())?;
        writeln!(stream, "{command}").map_err(|e| e.to_string())?;
        let mut text = String::new();
        BufReader::new(stream)
            .read_to_string(&mut text)
            .map_err(|e| format!("agent read ({command}): {e}"))?;
        let (body, trailer) = text
            .rsplit_once("KBP-EXIT ")
            .ok_or_else(|| format!("agent: no exit trailer for `{command}`: {text}"))?;
        let code = trailer.trim().parse().unwrap_or(-1);
        Ok((code, body.trim_end().to_string()))
    }

    /// Runs a command that must succeed; returns its output.
    pub fn check(&self, command: &str) -> Result<String> {
        match self.exec(command)? {
            (0, out) => Ok(out),
            (code, out) => Err(format!("guest: `{command}` exited {code}: {out}")),
        }
    }

    /// Powers the guest off and waits for QEMU; returns the whole serial log.
    pub fn power_off(mut self, timeout: Duration) -> Result<String> {
        let _ = self.exec("poweroff");
        let start = Instant::now();
        if let Some(qemu) = self.qemu.as_mut() {
            loop {
                if qemu.try_wait().map_err(|e| e.to_string())?.is_some() {
                    break;
                }
                if start.elapsed() > timeout {
                    let _ = qemu.kill();
                    let _ = qemu.wait();
                    return Err(format!(
                        "the guest did not power off within {} s\n{}",
                        timeout.as_secs(),
                        tail(&self.log, 30)
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.qemu = None;
        std::fs::read_to_string(&self.log).map_err(|e| e.to_string())
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut qemu) = self.qemu.take() {
            let _ = qemu.kill();
            let _ = qemu.wait();
        }
        let _ = setns(&self.home_netns);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::{Nic, count_warnings};

    #[test]
    fn every_nic_model_parses_from_its_name_and_no_other_does() {
        for nic in Nic::ALL {
            assert_eq!(Nic::parse(nic.name()), Ok(nic));
        }
        assert!(Nic::parse("e1000").is_err());
        assert!(Nic::parse("virtio-net").is_err());
        // Only virtio-net is on a multi-queue tap with a fixed queue count.
        assert!(Nic::Virtio.qemu_args().0.contains("queues="));
        assert_eq!(
            Nic::Igb.qemu_args(),
            (
                "tap,id=n0,ifname=tap0,script=no,downscript=no".into(),
                "igb,netdev=n0".into()
            )
        );
    }

    #[test]
    fn debug_kernel_reports_count_as_warnings() {
        let reports = [
            "[   12.3] WARNING: possible circular locking dependency detected",
            "[   12.3] WARNING: inconsistent lock state",
            "[   12.3] WARNING: suspicious RCU usage",
            "[   12.3] BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580",
            "[   12.3] BUG: KASAN: slab-use-after-free in napi_poll+0x1/0x2",
            "[   12.3] BUG: KFENCE: out-of-bounds read in kbp_poll+0x1/0x2",
            "[  130.0] INFO: task kworker/0:1:42 blocked for more than 60 seconds.",
            "[   40.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
            "[   40.0] rcu: INFO: rcu_preempt self-detected stall on CPU",
            "[   40.0] watchdog: BUG: soft lockup - CPU#3 stuck for 26s! [kbp/3:99]",
            "[   40.0] NMI watchdog: Watchdog detected hard LOCKUP on cpu 3",
            "[   40.0] ODEBUG: free active (active state 0) object: 0000 object type: timer_list",
        ];
        assert_eq!(count_warnings(&reports.join("\n")), reports.len());
        assert_eq!(
            count_warnings("[ 1.0] virtio_net virtio0 eth0: XDP request 6 queues but max is 2."),
            0
        );
    }
}
