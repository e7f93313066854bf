//! Just enough netlink for the bench and the fault tests: generic netlink (resolve a
//! family, a `do` request with u32 attributes, as `ynl --do napi-set`, and a `dump`, as
//! `ynl --dump napi-get`) and rtnetlink (create a veth pair with its peer in another
//! network namespace, as `ip link add ... type veth peer ...`, and attach or detach a
//! device's XDP program, as `ip link set DEV xdpdrv fd N`, neither of which busybox's
//! `ip` can do). Requests are acked; an error ack becomes an `io::Error` with its errno
//! and the kernel's extended-ack message, if it gave one.

use std::io;

/// (attribute type, payload) of a reply.
type Attrs = Vec<(u16, Vec<u8>)>;

const NETLINK_ROUTE: i32 = 0;
const NETLINK_GENERIC: i32 = 16;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOL_NETLINK: i32 = 270;
const NETLINK_CAP_ACK: i32 = 10;
const NETLINK_EXT_ACK: i32 = 11;
/// `NLMSGERR_ATTR_MSG`: the extended ack's error string.
const NLMSGERR_ATTR_MSG: u16 = 1;

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

const RTM_NEWLINK: u16 = 16;
const RTM_SETLINK: u16 = 19;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
/// `struct ifinfomsg`, all zero (AF_UNSPEC, no index, no flags).
const IFINFOMSG: [u8; 16] = [0; 16];

/// `struct ifinfomsg` naming the device with index `ifindex` (`ifi_index` is at byte 4).
fn ifinfomsg(ifindex: u32) -> [u8; 16] {
    let mut msg = IFINFOMSG;
    msg[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    msg
}

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

/// What the kernel answered to one request.
struct Reply {
    /// The ack's error: 0 or -errno (0 for a dump that ended with NLMSG_DONE).
    errno: i32,
    /// The attributes of every reply message, which start `header` bytes into its body.
    messages: Vec<Attrs>,
    /// The extended ack's message, if any.
    message: Option<String>,
}

/// Walks the attributes in `buf`.
fn parse_attrs(buf: &[u8]) -> Attrs {
    let u16_at = |i: usize| u16::from_ne_bytes([buf[i], buf[i + 1]]);
    let (mut attrs, mut a) = (Vec::new(), 0);
    while a + 4 <= buf.len() {
        let alen = u16_at(a) as usize;
        if alen < 4 || a + alen > buf.len() {
            break;
        }
        attrs.push((u16_at(a + 2) & 0x3fff, buf[a + 4..a + alen].to_vec()));
        a += alen.next_multiple_of(4);
    }
    attrs
}

/// The netlink message for one request: header (length, `kind`, `flags` with REQUEST,
/// sequence 1, port 0) and `body`.
fn request(kind: u16, flags: u16, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    msg.extend_from_slice(body);
    msg
}

/// Sends one request (`body` follows the netlink header) and reads until the ack (or,
/// for a dump, NLMSG_DONE).
fn transact(protocol: i32, kind: u16, flags: u16, body: &[u8], header: usize) -> io::Result<Reply> {
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
    for option in [NETLINK_CAP_ACK, NETLINK_EXT_ACK] {
        let on: libc::c_int = 1;
        // SAFETY: `fd` is ours; `on` is a live int of the size passed. Failure only
        // costs the extended message, so the result is ignored.
        unsafe {
            libc::setsockopt(
                fd,
                SOL_NETLINK,
                option,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    // A dump ends with NLMSG_DONE; everything else is acked.
    let ack = if flags & NLM_F_DUMP == NLM_F_DUMP {
        0
    } else {
        NLM_F_ACK
    };
    let msg = request(kind, flags | ack, body);
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

fn receive(fd: i32, header: usize) -> io::Result<Reply> {
    let mut messages = Vec::new();
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
            let kind = u16_at(&buf, at + 4);
            if kind == NLMSG_ERROR || kind == NLMSG_DONE {
                let errno = buf
                    .get(at + 16..at + 20)
                    .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                // With NETLINK_CAP_ACK the error ack carries only the request's header
                // (16 bytes) after the errno; extended-ack attributes follow it.
                let message = (kind == NLMSG_ERROR && len > 36)
                    .then(|| parse_attrs(&buf[at + 36..at + len]))
                    .and_then(|attrs| attrs.into_iter().find(|(k, _)| *k == NLMSGERR_ATTR_MSG))
                    .map(|(_, v)| {
                        String::from_utf8_lossy(&v)
                            .trim_end_matches('\0')
                            .to_string()
                    });
                return Ok(Reply {
                    errno,
                    messages,
                    message,
                });
            }
            if at + 16 + header <= at + len {
                messages.push(parse_attrs(&buf[at + 16 + header..at + len]));
            }
            at += len.next_multiple_of(4);
        }
    }
}

/// The reply's messages if the ack says success, else its errno (and message).
fn acked(reply: Reply) -> io::Result<Vec<Attrs>> {
    match reply {
        Reply {
            errno: 0, messages, ..
        } => Ok(messages),
        Reply {
            errno,
            message: None,
            ..
        } => Err(io::Error::from_raw_os_error(-errno)),
        Reply {
            errno,
            message: Some(m),
            ..
        } => {
            let err = io::Error::from_raw_os_error(-errno);
            Err(io::Error::new(err.kind(), format!("{err}: {m}")))
        }
    }
}

/// The id of generic netlink family `name`.
pub fn genl_family(name: &str) -> io::Result<u16> {
    let mut body = vec![CTRL_CMD_GETFAMILY, 1, 0, 0];
    attr(&mut body, CTRL_ATTR_FAMILY_NAME, &c_string(name));
    let reply = acked(transact(NETLINK_GENERIC, GENL_ID_CTRL, 0, &body, 4)?)?;
    reply
        .first()
        .into_iter()
        .flatten()
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

/// A generic netlink `dump` request of `cmd` to `family` filtered by u32 attributes;
/// returns the attributes of every object listed.
pub fn genl_dump_u32(family: u16, cmd: u8, values: &[(u16, u32)]) -> io::Result<Vec<Attrs>> {
    let mut body = vec![cmd, 1, 0, 0];
    for &(kind, value) in values {
        attr(&mut body, kind, &value.to_ne_bytes());
    }
    acked(transact(NETLINK_GENERIC, family, NLM_F_DUMP, &body, 4)?)
}

/// The `RTM_SETLINK` body that sets device `ifindex`'s XDP program to `prog_fd` (-1:
/// remove it) with `flags` (`XDP_FLAGS_*`).
fn xdp_setlink_body(ifindex: u32, prog_fd: i32, flags: u32) -> Vec<u8> {
    let mut body = ifinfomsg(ifindex).to_vec();
    nested(&mut body, IFLA_XDP, |xdp| {
        attr(xdp, IFLA_XDP_FD, &prog_fd.to_ne_bytes());
        attr(xdp, IFLA_XDP_FLAGS, &flags.to_ne_bytes());
    });
    body
}

/// Attaches XDP program `prog_fd` to device `ifindex` (-1 detaches) with `flags`.
pub fn xdp_set(ifindex: u32, prog_fd: i32, flags: u32) -> io::Result<()> {
    let body = xdp_setlink_body(ifindex, prog_fd, flags);
    acked(transact(NETLINK_ROUTE, RTM_SETLINK, 0, &body, 16)?).map(drop)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_parse_back() {
        let mut buf = Vec::new();
        attr(&mut buf, 2, &7u32.to_ne_bytes());
        attr(&mut buf, 3, b"eth0\0");
        assert_eq!(buf.len(), 8 + 12);
        assert_eq!(&buf[..4], &[8u8, 0, 2, 0]); // little-endian length 8, type 2
        let parsed = parse_attrs(&buf);
        assert_eq!(
            parsed,
            vec![(2, 7u32.to_ne_bytes().to_vec()), (3, b"eth0\0".to_vec())]
        );
    }

    #[test]
    fn xdp_setlink_encodes_ifla_xdp_nested() {
        let body = xdp_setlink_body(2, 5, 1 << 2);
        // ifinfomsg: family 0, index 2.
        assert_eq!(&body[4..8], &2i32.to_ne_bytes());
        let outer = parse_attrs(&body[16..]);
        assert_eq!(outer.len(), 1);
        assert_eq!(outer[0].0, IFLA_XDP);
        // The nested flag is set on the wire and masked off when parsed.
        assert_eq!(
            u16::from_ne_bytes([body[18], body[19]]),
            IFLA_XDP | NLA_F_NESTED
        );
        let inner = parse_attrs(&outer[0].1);
        assert_eq!(
            inner,
            vec![
                (IFLA_XDP_FD, 5i32.to_ne_bytes().to_vec()),
                (IFLA_XDP_FLAGS, 4u32.to_ne_bytes().to_vec())
            ]
        );
        let off = xdp_setlink_body(2, -1, 0);
        assert_eq!(
            parse_attrs(&parse_attrs(&off[16..])[0].1)[0].1,
            (-1i32).to_ne_bytes().to_vec()
        );
    }

    #[test]
    fn request_header() {
        let msg = request(RTM_SETLINK, NLM_F_ACK, &[1, 2, 3, 4]);
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes([msg[4], msg[5]]), RTM_SETLINK);
        assert_eq!(
            u16::from_ne_bytes([msg[6], msg[7]]),
            NLM_F_ACK | NLM_F_REQUEST
        );
        assert_eq!(&msg[16..], &[1, 2, 3, 4]);
    }
}
