//! Guest-side control tool for the tests: what busybox lacks.
//!
//! ```text
//! kbp-ctl time LABEL CMD      run `sh -c CMD`; print `KBP-TIME LABEL <ms> <exit code>`
//!                             (CLOCK_MONOTONIC, so fault operations are timed in the guest)
//! kbp-ctl channels DEV [N]    print DEV's combined channel count (ETHTOOL_GCHANNELS) and
//!                             max; with N, set it first (ETHTOOL_SCHANNELS, as `ethtool -L
//!                             DEV combined N`)
//! ```

use std::process::{Command, ExitCode};
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
        _ => {
            eprintln!("usage: kbp-ctl time LABEL CMD | kbp-ctl channels DEV [N]");
            ExitCode::from(2)
        }
    }
}
