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
//! kbp-ctl pin CPU PID...      pin tasks to one CPU (sched_setaffinity)
//! kbp-ctl flood CPU...        softirq competition: per CPU, a pinned thread sending UDP
//!                             datagrams to 127.0.0.1:9 without pause (loopback delivery
//!                             runs in NET_RX on that CPU); runs until killed
//! ```

use std::process::{Command, ExitCode};

fn usage() -> ExitCode {
    eprintln!("usage: kbp-ctl time LABEL CMD | channels DEV [N] | napi-threaded ID MODE | pin CPU PID... | flood CPU...");
    ExitCode::from(2)
}
use std::time::Instant;

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
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(dev.as_bytes().iter().take(libc::IFNAMSIZ - 1)) {
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
        let mut get = EthtoolChannels { cmd: ETHTOOL_GCHANNELS, ..Default::default() };
        ethtool(dev, &mut get)?;
        let mut req = EthtoolChannels { cmd: ETHTOOL_SCHANNELS, combined_count: n, ..get };
        req.rx_count = 0;
        req.tx_count = 0;
        req.other_count = 0;
        ethtool(dev, &mut req)?;
    }
    let mut get = EthtoolChannels { cmd: ETHTOOL_GCHANNELS, ..Default::default() };
    ethtool(dev, &mut get)?;
    Ok(format!("combined {} max {}", get.combined_count, get.max_combined))
}

/// Just enough generic netlink for `napi-set`: resolve a family, send a `do` request
/// with u32 attributes, read the ack.
mod genl {
    use std::io;

    /// (attribute type, payload) of a reply.
    type Attrs = Vec<(u16, Vec<u8>)>;

    const NETLINK_GENERIC: i32 = 16;
    const GENL_ID_CTRL: u16 = 0x10;
    const CTRL_CMD_GETFAMILY: u8 = 3;
    const CTRL_ATTR_FAMILY_ID: u16 = 1;
    const CTRL_ATTR_FAMILY_NAME: u16 = 2;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const NLMSG_ERROR: u16 = 2;

    fn attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
        buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(payload);
        buf.resize(buf.len().next_multiple_of(4), 0);
    }

    /// Sends one request and reads replies until the ack; returns the ack's error
    /// (0 or -errno) and the first reply's attributes.
    fn transact(kind: u16, cmd: u8, attrs: &[u8]) -> io::Result<(i32, Attrs)> {
        // SAFETY: a plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_GENERIC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut msg = Vec::new();
        msg.extend_from_slice(&((16 + 4 + attrs.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        msg.extend_from_slice(&[cmd, 1, 0, 0]); // genlmsghdr: cmd, version
        msg.extend_from_slice(attrs);
        // SAFETY: `msg` is a valid buffer; the default destination of a netlink socket is the kernel.
        let sent = unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) };
        let mut result = Err(io::Error::last_os_error());
        if sent >= 0 {
            result = receive(fd);
        }
        // SAFETY: `fd` is ours.
        unsafe { libc::close(fd) };
        result
    }

    fn receive(fd: i32) -> io::Result<(i32, Attrs)> {
        let mut attrs = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut at = 0;
            let n = n as usize;
            while at + 16 <= n {
                let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
                let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
                if len < 16 || at + len > n {
                    return Err(io::Error::other("short netlink message"));
                }
                if kind == NLMSG_ERROR {
                    let errno = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().expect("4 bytes"));
                    return Ok((errno, attrs));
                }
                if attrs.is_empty() {
                    let mut a = at + 20;
                    while a + 4 <= at + len {
                        let alen = u16::from_ne_bytes(buf[a..a + 2].try_into().expect("2 bytes")) as usize;
                        let akind = u16::from_ne_bytes(buf[a + 2..a + 4].try_into().expect("2 bytes")) & 0x3fff;
                        if alen < 4 || a + alen > at + len {
                            break;
                        }
                        attrs.push((akind, buf[a + 4..a + alen].to_vec()));
                        a += alen.next_multiple_of(4);
                    }
                }
                at += len.next_multiple_of(4);
            }
        }
    }

    /// The id of generic netlink family `name`.
    pub fn family(name: &str) -> io::Result<u16> {
        let mut attrs = Vec::new();
        let mut cname = name.as_bytes().to_vec();
        cname.push(0);
        attr(&mut attrs, CTRL_ATTR_FAMILY_NAME, &cname);
        let (errno, reply) = transact(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, &attrs)?;
        if errno != 0 {
            return Err(io::Error::from_raw_os_error(-errno));
        }
        reply
            .iter()
            .find(|(k, _)| *k == CTRL_ATTR_FAMILY_ID)
            .and_then(|(_, v)| v.get(..2))
            .map(|v| u16::from_ne_bytes([v[0], v[1]]))
            .ok_or_else(|| io::Error::other("no family id in the reply"))
    }

    /// A `do` request of `cmd` to `family` with u32 attributes.
    pub fn request_u32(family: u16, cmd: u8, values: &[(u16, u32)]) -> io::Result<()> {
        let mut attrs = Vec::new();
        for &(kind, value) in values {
            attr(&mut attrs, kind, &value.to_ne_bytes());
        }
        match transact(family, cmd, &attrs)? {
            (0, _) => Ok(()),
            (errno, _) => Err(io::Error::from_raw_os_error(-errno)),
        }
    }
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
        _ => return Err(std::io::Error::other(format!("unknown mode {mode} (disabled, enabled, busy-poll)"))),
    };
    let family = genl::family("netdev")?;
    genl::request_u32(family, NETDEV_CMD_NAPI_SET, &[(NETDEV_A_NAPI_ID, id), (NETDEV_A_NAPI_THREADED, value)])
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
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
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
            Ok(id) => report(napi_threaded(id, mode).map(|()| String::new()), &format!("napi {id}")),
            Err(_) => usage(),
        },
        ["pin", cpu, pids @ ..] if !pids.is_empty() => {
            let Some(cpu) = cpu.parse::<usize>().ok().filter(|&c| c < libc::CPU_SETSIZE as usize) else { return usage() };
            let mut code = ExitCode::SUCCESS;
            for pid in pids {
                let Ok(pid) = pid.parse::<i32>() else { return usage() };
                if report(pin(cpu, pid).map(|()| String::new()), &format!("pin {pid}")) != ExitCode::SUCCESS {
                    code = ExitCode::FAILURE;
                }
            }
            code
        }
        ["flood", cpus @ ..] if !cpus.is_empty() => {
            let cpus: Option<Vec<usize>> = cpus.iter().map(|c| c.parse().ok().filter(|&c: &usize| c < libc::CPU_SETSIZE as usize)).collect();
            let Some(cpus) = cpus else { return usage() };
            report(flood(&cpus).map(|()| String::new()), "flood")
        }
        _ => usage(),
    }
}
