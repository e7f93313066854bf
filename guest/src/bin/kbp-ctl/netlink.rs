//! Just enough netlink for the bench: generic netlink (resolve a family, a `do` request
//! with u32 attributes, as `ynl --do napi-set`) and rtnetlink (create a veth pair with
//! its peer in another network namespace, as `ip link add ... type veth peer ...`,
//! which busybox's `ip` cannot do). Requests are acked; an error ack becomes an
//! `io::Error` with its errno.

use std::io;

/// (attribute type, payload) of a reply.
type Attrs = Vec<(u16, Vec<u8>)>;

const NETLINK_ROUTE: i32 = 0;
const NETLINK_GENERIC: i32 = 16;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

const RTM_NEWLINK: u16 = 16;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
/// `struct ifinfomsg`, all zero (AF_UNSPEC, no index, no flags).
const IFINFOMSG: [u8; 16] = [0; 16];

fn attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn nested(buf: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    fill(&mut inner);
    attr(buf, kind | NLA_F_NESTED, &inner);
}

fn c_string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Sends one request (`body` follows the netlink header) and reads until the ack;
/// returns the ack's error (0 or -errno) and the attributes of the first reply, which
/// start `header` bytes into its body.
fn transact(
    protocol: i32,
    kind: u16,
    flags: u16,
    body: &[u8],
    header: usize,
) -> io::Result<(i32, Attrs)> {
    // SAFETY: a plain socket(2) call.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut msg = Vec::new();
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    msg.extend_from_slice(body);
    // SAFETY: `msg` is a valid buffer; a netlink socket's default destination is the kernel.
    let sent = unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) };
    let result = if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        receive(fd, header)
    };
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    result
}

fn receive(fd: i32, header: usize) -> io::Result<(i32, Attrs)> {
    let mut attrs = Vec::new();
    let mut buf = vec![0u8; 65536];
    let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let (n, mut at) = (n as usize, 0);
        while at + 16 <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
            if len < 16 || at + len > n {
                return Err(io::Error::other("short netlink message"));
            }
            if u16_at(&buf, at + 4) == NLMSG_ERROR {
                let errno = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().expect("4 bytes"));
                return Ok((errno, attrs));
            }
            if attrs.is_empty() {
                let mut a = at + 16 + header;
                while a + 4 <= at + len {
                    let alen = u16_at(&buf, a) as usize;
                    if alen < 4 || a + alen > at + len {
                        break;
                    }
                    attrs.push((u16_at(&buf, a + 2) & 0x3fff, buf[a + 4..a + alen].to_vec()));
                    a += alen.next_multiple_of(4);
                }
            }
            at += len.next_multiple_of(4);
        }
    }
}

fn acked(result: (i32, Attrs)) -> io::Result<Attrs> {
    match result {
        (0, attrs) => Ok(attrs),
        (errno, _) => Err(io::Error::from_raw_os_error(-errno)),
    }
}

/// The id of generic netlink family `name`.
pub fn genl_family(name: &str) -> io::Result<u16> {
    let mut body = vec![CTRL_CMD_GETFAMILY, 1, 0, 0];
    attr(&mut body, CTRL_ATTR_FAMILY_NAME, &c_string(name));
    let reply = acked(transact(NETLINK_GENERIC, GENL_ID_CTRL, 0, &body, 4)?)?;
    reply
        .iter()
        .find(|(k, _)| *k == CTRL_ATTR_FAMILY_ID)
        .and_then(|(_, v)| v.get(..2))
        .map(|v| u16::from_ne_bytes([v[0], v[1]]))
        .ok_or_else(|| io::Error::other("no family id in the reply"))
}

/// A generic netlink `do` request of `cmd` to `family` with u32 attributes.
pub fn genl_request_u32(family: u16, cmd: u8, values: &[(u16, u32)]) -> io::Result<()> {
    let mut body = vec![cmd, 1, 0, 0];
    for &(kind, value) in values {
        attr(&mut body, kind, &value.to_ne_bytes());
    }
    acked(transact(NETLINK_GENERIC, family, 0, &body, 4)?).map(drop)
}

/// Creates the veth pair `name` / `peer`, with `peer` in the network namespace of
/// process `peer_ns_pid`.
pub fn veth(name: &str, peer: &str, peer_ns_pid: u32) -> io::Result<()> {
    let mut body = IFINFOMSG.to_vec();
    attr(&mut body, IFLA_IFNAME, &c_string(name));
    nested(&mut body, IFLA_LINKINFO, |info| {
        attr(info, IFLA_INFO_KIND, b"veth");
        nested(info, IFLA_INFO_DATA, |data| {
            let mut peer_msg = IFINFOMSG.to_vec();
            attr(&mut peer_msg, IFLA_IFNAME, &c_string(peer));
            attr(&mut peer_msg, IFLA_NET_NS_PID, &peer_ns_pid.to_ne_bytes());
            attr(data, VETH_INFO_PEER | NLA_F_NESTED, &peer_msg);
        });
    });
    acked(transact(
        NETLINK_ROUTE,
        RTM_NEWLINK,
        NLM_F_CREATE | NLM_F_EXCL,
        &body,
        16,
    )?)
    .map(drop)
}
