//! The XDP side, with bpf(2) directly: an XSKMAP, a five-instruction program that
//! redirects every packet of a queue to that queue's socket (`bpf_redirect_map`, with
//! XDP_PASS when the queue has none), attached with a BPF link (closing the link's
//! descriptor detaches it).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;

/// One eBPF instruction: opcode, registers, offset, immediate.
const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    code as u64
        | (((src << 4) | (dst & 0xf)) as u64) << 8
        | (off as u16 as u64) << 16
        | (imm as u32 as u64) << 32
}

/// `r2 = ctx->rx_queue_index; r1 = map; r3 = XDP_PASS; return bpf_redirect_map(r1, r2, r3)`.
fn program(map_fd: RawFd) -> [u64; 6] {
    [
        // ldxw r2, [r1 + 16]: struct xdp_md's rx_queue_index.
        insn(0x61, 2, 1, 16, 0),
        // lddw r1, map (two slots; src = BPF_PSEUDO_MAP_FD).
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        // mov r3, XDP_PASS: the action when the queue has no socket.
        insn(0xb7, 3, 0, 0, XDP_PASS),
        // call bpf_redirect_map; exit.
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        insn(0x95, 0, 0, 0, 0),
    ]
}

fn sys_bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid attribute block of the size passed, for this command.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// A command that returns a new descriptor.
fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<OwnedFd> {
    let fd = sys_bpf(cmd, attr)?;
    // SAFETY: map create, program load and link create return a new descriptor that
    // nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[repr(C)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    rest: [u8; 64],
}

#[repr(C)]
struct MapUpdate {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    rest: [u8; 56],
}

#[repr(C)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    rest: [u8; 48],
}

/// The program, its map and its link on one interface: dropping it detaches.
pub struct XdpRedirect {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl XdpRedirect {
    /// Loads the program for `queues` queues and attaches it to `ifindex` (in the
    /// calling thread's network namespace).
    pub fn attach(ifindex: u32, queues: u32) -> io::Result<Self> {
        let map = bpf(
            BPF_MAP_CREATE,
            &MapCreate {
                map_type: BPF_MAP_TYPE_XSKMAP,
                key_size: 4,
                value_size: 4,
                max_entries: queues,
                rest: [0; 64],
            },
        )
        .map_err(|e| io::Error::new(e.kind(), format!("XSKMAP: {e}")))?;
        let insns = program(map.as_raw_fd());
        let mut log = vec![0u8; 4096];
        let mut name = [0u8; 16];
        name[..7].copy_from_slice(b"kbp_xsk");
        let prog = bpf(
            BPF_PROG_LOAD,
            &ProgLoad {
                prog_type: BPF_PROG_TYPE_XDP,
                insn_cnt: insns.len() as u32,
                insns: insns.as_ptr() as u64,
                license: c"GPL".as_ptr() as u64,
                log_level: 1,
                log_size: log.len() as u32,
                log_buf: log.as_mut_ptr() as u64,
                kern_version: 0,
                prog_flags: 0,
                prog_name: name,
                prog_ifindex: 0,
                expected_attach_type: BPF_XDP,
                rest: [0; 56],
            },
        )
        .map_err(|e| {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let verifier = String::from_utf8_lossy(&log[..end]);
            io::Error::new(e.kind(), format!("BPF_PROG_LOAD: {e}; {}", verifier.trim()))
        })?;
        let link = bpf(
            BPF_LINK_CREATE,
            &LinkCreate {
                prog_fd: prog.as_raw_fd() as u32,
                target_ifindex: ifindex,
                attach_type: BPF_XDP,
                flags: 0,
                rest: [0; 48],
            },
        )
        .map_err(|e| io::Error::new(e.kind(), format!("BPF_LINK_CREATE (XDP): {e}")))?;
        Ok(XdpRedirect {
            map,
            _prog: prog,
            _link: link,
        })
    }

    /// Sends queue `queue`'s packets to socket `xsk_fd`.
    pub fn set_socket(&self, queue: u32, xsk_fd: RawFd) -> io::Result<()> {
        let value = xsk_fd as u32;
        sys_bpf(
            BPF_MAP_UPDATE_ELEM,
            &MapUpdate {
                map_fd: self.map.as_raw_fd() as u32,
                pad: 0,
                key: &queue as *const u32 as u64,
                value: &value as *const u32 as u64,
                flags: 0,
            },
        )
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("XSKMAP update: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_encodes_as_the_kernel_reads_it() {
        let p = program(7);
        assert_eq!(p[0].to_le_bytes(), [0x61, 0x12, 16, 0, 0, 0, 0, 0]);
        assert_eq!(p[1].to_le_bytes(), [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(p[4].to_le_bytes(), [0x85, 0, 0, 0, 51, 0, 0, 0]);
        assert_eq!(std::mem::offset_of!(ProgLoad, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(MapUpdate, key), 8);
    }
}
