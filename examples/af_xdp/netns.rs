//! The test network: a veth pair whose receiving end lives in a network namespace this
//! program creates (and deletes on drop), with a static neighbour entry so that no ARP
//! has to reach the receiver (every packet on the wire is the measurement's).
//!
//! ```text
//!  host namespace                     namespace kbp-xdp
//!  sender (UDP) -> kbpx0 10.77.0.1 == kbpx1 10.77.0.2 -> consumer (AF_XDP or socket)
//! ```

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

/// The namespace's name.
pub const NETNS: &str = "kbp-xdp";
/// The host end.
pub const HOST_IF: &str = "kbpx0";
/// The receiving end, in [`NETNS`].
pub const RX_IF: &str = "kbpx1";
/// The host end's address.
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The receiving end's address.
pub const RX_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The UDP port the consumers receive on.
pub const PORT: u16 = 9_477;
/// Queues of each veth end (one AF_XDP socket per receive queue).
pub const QUEUES: u32 = 2;

fn run(args: &[&str]) -> io::Result<String> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn in_ns(args: &[&str]) -> io::Result<String> {
    let mut all = vec!["ip", "netns", "exec", NETNS];
    all.extend_from_slice(args);
    run(&all)
}

/// The namespace and the veth pair, removed on drop.
pub struct TestNet {
    ns: File,
}

impl TestNet {
    /// Creates them (removing leftovers of an earlier run first).
    pub fn create() -> io::Result<Self> {
        let _ = run(&["ip", "netns", "del", NETNS]);
        let _ = run(&["ip", "link", "del", HOST_IF]);
        run(&["ip", "netns", "add", NETNS])?;
        let queues = QUEUES.to_string();
        let q = queues.as_str();
        run(&[
            "ip",
            "link",
            "add",
            HOST_IF,
            "numtxqueues",
            q,
            "numrxqueues",
            q,
            "type",
            "veth",
            "peer",
            "name",
            RX_IF,
            "netns",
            NETNS,
            "numtxqueues",
            q,
            "numrxqueues",
            q,
        ])?;
        run(&["ip", "addr", "add", "10.77.0.1/24", "dev", HOST_IF])?;
        run(&["ip", "link", "set", HOST_IF, "up"])?;
        in_ns(&["ip", "addr", "add", "10.77.0.2/24", "dev", RX_IF])?;
        in_ns(&["ip", "link", "set", RX_IF, "up"])?;
        in_ns(&["ip", "link", "set", "lo", "up"])?;
        let mac = in_ns(&["cat", &format!("/sys/class/net/{RX_IF}/address")])?;
        run(&[
            "ip",
            "neigh",
            "replace",
            "10.77.0.2",
            "lladdr",
            mac.trim(),
            "dev",
            HOST_IF,
            "nud",
            "permanent",
        ])?;
        let ns = File::open(format!("/var/run/netns/{NETNS}"))?;
        Ok(TestNet { ns })
    }

    /// Moves the calling thread into the namespace (for the consumer threads).
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: setns(2) on a namespace descriptor we hold; affects this thread only.
        if unsafe { libc::setns(self.ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The receiving end's interface index (call inside the namespace).
    pub fn rx_ifindex() -> io::Result<u32> {
        let name = std::ffi::CString::new(RX_IF).expect("no NUL");
        // SAFETY: a NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(index)
    }

    /// Turns GRO on the receiving end on or off (call inside the namespace): with it
    /// veth receives through its own NAPI instance, which socket busy poll and threaded
    /// NAPI need; XDP brings that instance too. The `ETHTOOL_SGRO` ioctl, as
    /// `ethtool -K kbpx1 gro on` does it.
    pub fn set_gro(on: bool) -> io::Result<()> {
        const SIOCETHTOOL: libc::c_ulong = 0x8946;
        const ETHTOOL_SGRO: u32 = 0x2c;
        #[repr(C)]
        struct EthtoolValue {
            cmd: u32,
            data: u32,
        }
        let mut value = EthtoolValue {
            cmd: ETHTOOL_SGRO,
            data: u32::from(on),
        };
        // SAFETY: an all-zero ifreq is valid.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(RX_IF.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
        let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
        // SAFETY: SIOCETHTOOL with an ifreq naming the device and pointing at a live
        // ethtool_value for the call's duration.
        let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut ifr) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Switches the receiving end's NAPI to the kernel's threaded mode (sysfs
    /// `threaded`); `Err` says why not.
    pub fn set_threaded(on: bool) -> io::Result<()> {
        let value = if on { "1" } else { "0" };
        in_ns(&[
            "sh",
            "-c",
            &format!("echo {value} > /sys/class/net/{RX_IF}/threaded"),
        ])
        .map(drop)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", HOST_IF]);
        let _ = run(&["ip", "netns", "del", NETNS]);
    }
}
