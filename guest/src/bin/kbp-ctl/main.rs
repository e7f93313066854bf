//! Guest-side control tool for the tests: what busybox lacks.
//!
//! ```text
//! kbp-ctl time LABEL CMD      run `sh -c CMD`; print `KBP-TIME LABEL <ms> <exit code>`
//!                             (CLOCK_MONOTONIC, so fault operations are timed in the guest)
//! kbp-ctl channels DEV [N]    print DEV's combined channel count (ETHTOOL_GCHANNELS) and
//!                             max; with N, set it first (ETHTOOL_SCHANNELS, as `ethtool -L
//!                             DEV combined N`)
//! kbp-ctl rings DEV [RX [TX]]  print DEV's RX/TX ring sizes and maxima (ETHTOOL_GRINGPARAM);
//!                             with RX (and TX), set them first (ETHTOOL_SRINGPARAM, as
//!                             `ethtool -G DEV rx RX tx TX`; TX unchanged if omitted)
//! kbp-ctl xdp DEV on|off      `on`: load `r0 = XDP_PASS; exit` with bpf(2) and attach it in
//!                             native (driver) mode over rtnetlink (IFLA_XDP, as `ip link
//!                             set DEV xdpdrv ...`); `off`: detach it
//! kbp-ctl udp-hash DEV       hash UDP over IPv4 by addresses and ports for RSS
//!                             (ETHTOOL_SRXFH, as `ethtool -N DEV rx-flow-hash udp4 sdfn`;
//!                             igb hashes UDP by addresses only by default)
//! kbp-ctl bpf-probe           load that program and close it: exit 0 if bpf(2) works, 3
//!                             if the kernel has no bpf(2) (CONFIG_BPF_SYSCALL off)
//! kbp-ctl napi-ids DEV        DEV's NAPI ids, one per line (`napi-get` dump of the netdev
//!                             generic-netlink family; TX-only instances have none)
//! kbp-ctl napi-threaded ID MODE
//!                             set NAPI ID's threaded mode (disabled, enabled, busy-poll)
//!                             through the netdev generic-netlink family (`napi-set`, as
//!                             `ynl --family netdev --do napi-set`): upstream threaded
//!                             busy polling, the bench's `busy-poll` baseline
//! kbp-ctl veth NAME PEER PID  create a veth pair, PEER in the network namespace of PID
//!                             (the bench's container configuration)
//! kbp-ctl offload DEV gro|tso [on|off]
//!                             print DEV's GRO or TSO state (ETHTOOL_GGRO / ETHTOOL_GTSO);
//!                             with on|off, set it first (ETHTOOL_SGRO / ETHTOOL_STSO, as
//!                             `ethtool -K DEV gro|tso on|off`): a veth gets NAPI
//!                             instances from GRO
//! kbp-ctl pin CPU PID...      pin tasks to one CPU (sched_setaffinity)
//! kbp-ctl flood CPU...        softirq competition: per CPU, a pinned thread sending UDP
//!                             datagrams to 127.0.0.1:9 without pause (loopback delivery
//!                             runs in NET_RX on that CPU); runs until killed
//! kbp-ctl spin CPU COUNT NICE COUNT CPU-bound threads pinned to CPU at nice NICE (-20..19),
//!                             each in a loop without system calls; runs until killed
//!                             (the bench's competition for the CPU's ksoftirqd)
//! ```

use std::os::fd::AsRawFd;
use std::process::{Command, ExitCode};
use std::time::Instant;

mod bpf;
mod netlink;

fn usage() -> ExitCode {
    eprintln!(
        "usage: kbp-ctl time LABEL CMD | channels DEV [N] | rings DEV [RX [TX]] | udp-hash DEV | xdp DEV on|off | bpf-probe | napi-ids DEV | napi-threaded ID MODE | veth NAME PEER PID | offload DEV gro|tso [on|off] | pin CPU PID... | flood CPU... | spin CPU COUNT NICE"
    );
    ExitCode::from(2)
}

/// Exit code when the running kernel has no bpf(2) (not a failure of the device).
const EXIT_UNSUPPORTED: u8 = 3;

/// `struct ethtool_channels` (include/uapi/linux/ethtool.h).
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// `struct ethtool_ringparam` (include/uapi/linux/ethtool.h).
#[repr(C)]
#[derive(Default)]
struct EthtoolRingparam {
    cmd: u32,
    rx_max_pending: u32,
    rx_mini_max_pending: u32,
    rx_jumbo_max_pending: u32,
    tx_max_pending: u32,
    rx_pending: u32,
    rx_mini_pending: u32,
    rx_jumbo_pending: u32,
    tx_pending: u32,
}

/// An ethtool ioctl argument: a `#[repr(C)]` uapi struct whose first field is the
/// `u32` command that tells the kernel which struct it is.
///
/// # Safety
///
/// The implementing type must be exactly the uapi struct of every command it is used
/// with (the kernel reads and writes that many bytes through the pointer).
unsafe trait EthtoolData {}

/// The head of `struct ethtool_rxnfc` (include/uapi/linux/ethtool.h): for
/// ETHTOOL_SRXFH without FLOW_RSS the kernel copies only `cmd`, `flow_type` and `data`
/// (net/ethtool/ioctl.c, `ethtool_rxnfc_copy_struct`).
#[repr(C)]
#[derive(Default)]
struct EthtoolRxfhFields {
    cmd: u32,
    flow_type: u32,
    data: u64,
}

// SAFETY: the first 16 bytes of `struct ethtool_rxnfc`, all ETHTOOL_SRXFH reads when
// `flow_type` has no FLOW_RSS bit.
unsafe impl EthtoolData for EthtoolRxfhFields {}
// SAFETY: `struct ethtool_channels`, for ETHTOOL_GCHANNELS / ETHTOOL_SCHANNELS.
unsafe impl EthtoolData for EthtoolChannels {}
// SAFETY: `struct ethtool_ringparam`, for ETHTOOL_GRINGPARAM / ETHTOOL_SRINGPARAM.
unsafe impl EthtoolData for EthtoolRingparam {}

/// `struct ethtool_value` (include/uapi/linux/ethtool.h).
#[repr(C)]
#[derive(Default)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

// SAFETY: `struct ethtool_value`, for the legacy feature commands (ETHTOOL_[GS]GRO,
// ETHTOOL_[GS]TSO).
unsafe impl EthtoolData for EthtoolValue {}

const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_SCHANNELS: u32 = 0x3d;
const ETHTOOL_GRINGPARAM: u32 = 0x10;
const ETHTOOL_SRINGPARAM: u32 = 0x11;
const ETHTOOL_SRXFH: u32 = 0x2a;
const UDP_V4_FLOW: u32 = 0x02;
/// RXH_IP_SRC | RXH_IP_DST | RXH_L4_B_0_1 | RXH_L4_B_2_3.
const RXH_SDFN: u64 = (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7);
const SIOCETHTOOL: libc::c_ulong = 0x8946;

/// One SIOCETHTOOL ioctl on `dev` with `data`.
fn ethtool<T: EthtoolData>(dev: &str, data: &mut T) -> std::io::Result<()> {
    // SAFETY: a plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr
        .ifr_name
        .iter_mut()
        .zip(dev.as_bytes().iter().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (data as *mut T).cast();
    // SAFETY: `ifr` names the device and points at a live uapi struct of the command
    // in its first field (`EthtoolData`).
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL, &mut ifr) };
    let err = std::io::Error::last_os_error();
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    if rc < 0 { Err(err) } else { Ok(()) }
}

/// `kbp-ctl offload DEV gro|tso [on|off]`: sets the feature if asked, then prints
/// `DEV FEATURE on|off` as the device reports it.
fn offload(dev: &str, feature: &str, set: Option<bool>) -> std::io::Result<String> {
    let (get, put) = match feature {
        "gro" => (ETHTOOL_GGRO, ETHTOOL_SGRO),
        "tso" => (ETHTOOL_GTSO, ETHTOOL_STSO),
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "feature must be gro or tso",
            ));
        }
    };
    if let Some(on) = set {
        ethtool(
            dev,
            &mut EthtoolValue {
                cmd: put,
                data: u32::from(on),
            },
        )?;
    }
    let mut value = EthtoolValue { cmd: get, data: 0 };
    ethtool(dev, &mut value)?;
    Ok(format!(
        "{dev} {feature} {}",
        if value.data != 0 { "on" } else { "off" }
    ))
}

fn channels(dev: &str, set: Option<u32>) -> std::io::Result<String> {
    if let Some(n) = set {
        let mut get = EthtoolChannels {
            cmd: ETHTOOL_GCHANNELS,
            ..Default::default()
        };
        ethtool(dev, &mut get)?;
        let mut req = EthtoolChannels {
            cmd: ETHTOOL_SCHANNELS,
            combined_count: n,
            ..get
        };
        // Combined channels only; `other_count` stays as the driver reports it (igb
        // refuses any value but its one link vector, virtio-net has none).
        req.rx_count = 0;
        req.tx_count = 0;
        ethtool(dev, &mut req)?;
    }
    let mut get = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    ethtool(dev, &mut get)?;
    Ok(format!(
        "combined {} max {}",
        get.combined_count, get.max_combined
    ))
}

/// `ethtool -G DEV rx RX tx TX` (TX unchanged when `None`), then the sizes and maxima.
fn rings(dev: &str, set: Option<(u32, Option<u32>)>) -> std::io::Result<String> {
    let get = || -> std::io::Result<EthtoolRingparam> {
        let mut r = EthtoolRingparam {
            cmd: ETHTOOL_GRINGPARAM,
            ..Default::default()
        };
        ethtool(dev, &mut r)?;
        Ok(r)
    };
    if let Some((rx, tx)) = set {
        let now = get()?;
        let mut req = EthtoolRingparam {
            cmd: ETHTOOL_SRINGPARAM,
            rx_pending: rx,
            tx_pending: tx.unwrap_or(now.tx_pending),
            ..now
        };
        ethtool(dev, &mut req)?;
    }
    let r = get()?;
    Ok(format!(
        "rx {} max {} tx {} max {}",
        r.rx_pending, r.rx_max_pending, r.tx_pending, r.tx_max_pending
    ))
}

/// `XDP_FLAGS_DRV_MODE` (include/uapi/linux/if_link.h): native, in the driver's NAPI poll.
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

fn ifindex(dev: &str) -> std::io::Result<u32> {
    let name = std::ffi::CString::new(dev).map_err(std::io::Error::other)?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(std::io::Error::last_os_error()),
        index => Ok(index),
    }
}

/// Attaches (`on`) the XDP_PASS program to `dev` in native mode, or detaches it.
fn xdp(dev: &str, on: bool) -> std::io::Result<()> {
    let index = ifindex(dev)?;
    if on {
        // The attached device holds its own reference; our fd may close afterwards.
        let prog = bpf::load_xdp_pass()?;
        netlink::xdp_set(index, prog.as_raw_fd(), XDP_FLAGS_DRV_MODE)
    } else {
        netlink::xdp_set(index, -1, XDP_FLAGS_DRV_MODE)
    }
}

/// `NETDEV_CMD_NAPI_GET`, `NETDEV_CMD_NAPI_SET` and their attributes
/// (include/uapi/linux/netdev.h, Linux 7.2).
const NETDEV_CMD_NAPI_GET: u8 = 11;
const NETDEV_CMD_NAPI_SET: u8 = 14;
const NETDEV_A_NAPI_IFINDEX: u16 = 1;
const NETDEV_A_NAPI_ID: u16 = 2;
const NETDEV_A_NAPI_THREADED: u16 = 8;

/// The NAPI ids of `dev`, ascending.
fn napi_ids(dev: &str) -> std::io::Result<Vec<u32>> {
    let index = ifindex(dev)?;
    let family = netlink::genl_family("netdev")?;
    let objects = netlink::genl_dump_u32(
        family,
        NETDEV_CMD_NAPI_GET,
        &[(NETDEV_A_NAPI_IFINDEX, index)],
    )?;
    let mut ids: Vec<u32> = objects
        .iter()
        .filter_map(|attrs| {
            attrs
                .iter()
                .find(|(k, v)| *k == NETDEV_A_NAPI_ID && v.len() == 4)
                .map(|(_, v)| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
        })
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

fn napi_threaded(id: u32, mode: &str) -> std::io::Result<()> {
    let value = match mode {
        "disabled" => 0,
        "enabled" => 1,
        "busy-poll" => 2,
        _ => {
            return Err(std::io::Error::other(format!(
                "unknown mode {mode} (disabled, enabled, busy-poll)"
            )));
        }
    };
    let family = netlink::genl_family("netdev")?;
    netlink::genl_request_u32(
        family,
        NETDEV_CMD_NAPI_SET,
        &[(NETDEV_A_NAPI_ID, id), (NETDEV_A_NAPI_THREADED, value)],
    )
}

fn pin(cpu: usize, pid: i32) -> std::io::Result<()> {
    // SAFETY: `cpu_set_t` is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is checked by the caller against CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn flood(cpus: &[usize]) -> std::io::Result<()> {
    let mut threads = Vec::new();
    for &cpu in cpus {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        threads.push(std::thread::spawn(move || {
            if let Err(e) = pin(cpu, 0) {
                eprintln!("kbp-ctl flood: pin to CPU {cpu}: {e}");
            }
            let payload = [0u8; 18];
            loop {
                let _ = socket.send_to(&payload, "127.0.0.1:9");
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn spin(cpu: usize, count: usize, nice: i32) -> std::io::Result<()> {
    let mut threads = Vec::new();
    for _ in 0..count {
        threads.push(std::thread::spawn(move || {
            if let Err(e) = pin(cpu, 0) {
                eprintln!("kbp-ctl spin: pin to CPU {cpu}: {e}");
            }
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            // Linux's setpriority(PRIO_PROCESS, tid) sets one thread's nice value.
            // SAFETY: plain system call on this thread's id.
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } != 0 {
                eprintln!(
                    "kbp-ctl spin: nice {nice}: {}",
                    std::io::Error::last_os_error()
                );
            }
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn report(result: std::io::Result<String>, what: &str) -> ExitCode {
    match result {
        Ok(text) => {
            if !text.is_empty() {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        // Only the kernel's missing bpf(2), not a driver's EOPNOTSUPP.
        Err(e)
            if e.get_ref()
                .is_some_and(|inner| inner.is::<bpf::NoBpfSyscall>()) =>
        {
            eprintln!("kbp-ctl: {what}: unsupported: {e}");
            ExitCode::from(EXIT_UNSUPPORTED)
        }
        Err(e) => {
            eprintln!("kbp-ctl: {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["time", label, command] => {
            let t = Instant::now();
            let status = Command::new("/bin/sh").arg("-c").arg(command).status();
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let code = status.map(|s| s.code().unwrap_or(-1)).unwrap_or(127);
            println!("KBP-TIME {label} {ms:.3} {code}");
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        ["channels", dev] | ["channels", dev, _] => {
            let set = match args.get(2).map(|n| n.parse::<u32>()) {
                None => None,
                Some(Ok(n)) => Some(n),
                Some(Err(_)) => {
                    eprintln!("kbp-ctl: bad channel count");
                    return ExitCode::from(2);
                }
            };
            match channels(dev, set) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("kbp-ctl: {dev}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        ["rings", dev, values @ ..] if values.len() <= 2 => {
            let parsed: Option<Vec<u32>> = values.iter().map(|v| v.parse().ok()).collect();
            let Some(parsed) = parsed else {
                return usage();
            };
            let set = parsed.first().map(|&rx| (rx, parsed.get(1).copied()));
            report(rings(dev, set), dev)
        }
        ["xdp", dev, state @ ("on" | "off")] => report(
            xdp(dev, *state == "on").map(|()| String::new()),
            &format!("xdp {dev} {state}"),
        ),
        ["bpf-probe"] => report(
            bpf::load_xdp_pass().map(|_| "bpf(2) loads XDP programs".to_string()),
            "bpf-probe",
        ),
        ["udp-hash", dev] => report(
            ethtool(
                dev,
                &mut EthtoolRxfhFields {
                    cmd: ETHTOOL_SRXFH,
                    flow_type: UDP_V4_FLOW,
                    data: RXH_SDFN,
                },
            )
            .map(|()| "udp4 hashed by addresses and ports".to_string()),
            dev,
        ),
        ["napi-ids", dev] => report(
            napi_ids(dev).map(|ids| {
                ids.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            }),
            dev,
        ),
        ["napi-threaded", id, mode] => match id.parse::<u32>() {
            Ok(id) => report(
                napi_threaded(id, mode).map(|()| String::new()),
                &format!("napi {id}"),
            ),
            Err(_) => usage(),
        },
        ["veth", name, peer, pid] => match pid.parse::<u32>() {
            Ok(pid) => report(
                netlink::veth(name, peer, pid).map(|()| String::new()),
                &format!("veth {name}"),
            ),
            Err(_) => usage(),
        },
        ["offload", dev, feature, state @ ..] if state.len() <= 1 => {
            let set = match state.first() {
                None => None,
                Some(&"on") => Some(true),
                Some(&"off") => Some(false),
                Some(_) => return usage(),
            };
            report(
                offload(dev, feature, set),
                &format!("offload {dev} {feature}"),
            )
        }
        ["pin", cpu, pids @ ..] if !pids.is_empty() => {
            let Some(cpu) = cpu
                .parse::<usize>()
                .ok()
                .filter(|&c| c < libc::CPU_SETSIZE as usize)
            else {
                return usage();
            };
            let mut code = ExitCode::SUCCESS;
            for pid in pids {
                let Ok(pid) = pid.parse::<i32>() else {
                    return usage();
                };
                if report(pin(cpu, pid).map(|()| String::new()), &format!("pin {pid}"))
                    != ExitCode::SUCCESS
                {
                    code = ExitCode::FAILURE;
                }
            }
            code
        }
        ["flood", cpus @ ..] if !cpus.is_empty() => {
            let cpus: Option<Vec<usize>> = cpus
                .iter()
                .map(|c| {
                    c.parse()
                        .ok()
                        .filter(|&c: &usize| c < libc::CPU_SETSIZE as usize)
                })
                .collect();
            let Some(cpus) = cpus else { return usage() };
            report(flood(&cpus).map(|()| String::new()), "flood")
        }
        ["spin", cpu, count, nice] => {
            let cpu = cpu
                .parse::<usize>()
                .ok()
                .filter(|&c| c < libc::CPU_SETSIZE as usize);
            let count = count.parse::<usize>().ok().filter(|&n| n > 0);
            let nice = nice.parse::<i32>().ok().filter(|n| (-20..=19).contains(n));
            let (Some(cpu), Some(count), Some(nice)) = (cpu, count, nice) else {
                return usage();
            };
            report(spin(cpu, count, nice).map(|()| String::new()), "spin")
        }
        _ => usage(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethtool_structs_match_the_uapi_sizes() {
        // include/uapi/linux/ethtool.h: 9 u32 each.
        assert_eq!(std::mem::size_of::<EthtoolChannels>(), 36);
        assert_eq!(std::mem::size_of::<EthtoolRingparam>(), 36);
        assert_eq!(std::mem::size_of::<EthtoolValue>(), 8);
        assert_eq!(std::mem::offset_of!(EthtoolRingparam, rx_max_pending), 4);
        assert_eq!(std::mem::offset_of!(EthtoolRingparam, tx_max_pending), 16);
        assert_eq!(std::mem::offset_of!(EthtoolRingparam, rx_pending), 20);
        assert_eq!(std::mem::offset_of!(EthtoolRingparam, tx_pending), 32);
    }
}
