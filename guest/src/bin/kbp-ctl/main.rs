//! Guest-side control tool for the tests: what busybox lacks.
//!
//! ```text
//! kbp-ctl time LABEL CMD      run `sh -c CMD`; print `KBP-TIME LABEL <ms> <exit code>`
//!                             (CLOCK_MONOTONIC, so fault operations are timed in the guest)
//! kbp-ctl channels DEV [N]    print DEV's combined channel count (ETHTOOL_GCHANNELS) and
//!                             max; with N, set it first (ETHTOOL_SCHANNELS, as `ethtool -L
//!                             DEV combined N`)
//! kbp-ctl napi-threaded ID MODE
//!                             set NAPI ID's threaded mode (disabled, enabled, busy-poll)
//!                             through the netdev generic-netlink family (`napi-set`, as
//!                             `ynl --family netdev --do napi-set`): upstream threaded
//!                             busy polling, the bench's `busy-poll` baseline
//! kbp-ctl veth NAME PEER PID  create a veth pair, PEER in the network namespace of PID
//!                             (the bench's container configuration)
//! kbp-ctl pin CPU PID...      pin tasks to one CPU (sched_setaffinity)
//! kbp-ctl flood CPU...        softirq competition: per CPU, a pinned thread sending UDP
//!                             datagrams to 127.0.0.1:9 without pause (loopback delivery
//!                             runs in NET_RX on that CPU); runs until killed
//! ```

use std::process::{Command, ExitCode};
use std::time::Instant;

mod netlink;

fn usage() -> ExitCode {
    eprintln!(
        "usage: kbp-ctl time LABEL CMD | channels DEV [N] | napi-threaded ID MODE | veth NAME PEER PID | pin CPU PID... | flood CPU..."
    );
    ExitCode::from(2)
}

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

const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_SCHANNELS: u32 = 0x3d;
const SIOCETHTOOL: libc::c_ulong = 0x8946;

/// One SIOCETHTOOL ioctl on `dev` with `data`.
fn ethtool(dev: &str, data: &mut EthtoolChannels) -> std::io::Result<()> {
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
    ifr.ifr_ifru.ifru_data = (data as *mut EthtoolChannels).cast();
    // SAFETY: `ifr` names the device and points at a live `ethtool_channels`.
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL, &mut ifr) };
    let err = std::io::Error::last_os_error();
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    if rc < 0 { Err(err) } else { Ok(()) }
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
        req.rx_count = 0;
        req.tx_count = 0;
        req.other_count = 0;
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

/// `NETDEV_CMD_NAPI_SET` and its attributes (include/uapi/linux/netdev.h, Linux 7.2).
const NETDEV_CMD_NAPI_SET: u8 = 14;
const NETDEV_A_NAPI_ID: u16 = 2;
const NETDEV_A_NAPI_THREADED: u16 = 8;

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

fn report(result: std::io::Result<String>, what: &str) -> ExitCode {
    match result {
        Ok(text) => {
            if !text.is_empty() {
                println!("{text}");
            }
            ExitCode::SUCCESS
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
        _ => usage(),
    }
}
