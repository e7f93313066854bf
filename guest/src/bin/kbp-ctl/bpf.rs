//! The smallest XDP program (`r0 = XDP_PASS; exit`) and its load with bpf(2)
//! (`BPF_PROG_LOAD`), for the fault test's XDP attach/detach: what matters there is the
//! driver reconfiguring its queues around a program, not what the program does.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `BPF_PROG_LOAD` (include/uapi/linux/bpf.h, `enum bpf_cmd`).
const BPF_PROG_LOAD: libc::c_long = 5;
/// `BPF_PROG_TYPE_XDP` (`enum bpf_prog_type`).
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `XDP_PASS` (`enum xdp_action`).
const XDP_PASS: i32 = 2;

/// One `struct bpf_insn` as the kernel reads it on a little-endian machine: `code` in
/// the low byte, then `dst_reg` (low nibble) and `src_reg`, then `off`, then `imm`.
const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    code as u64
        | (((src << 4) | (dst & 0xf)) as u64) << 8
        | (off as u16 as u64) << 16
        | (imm as u32 as u64) << 32
}

/// `BPF_ALU64 | BPF_MOV | BPF_K`: `dst = imm`.
const MOV64_IMM: u8 = 0x07 | 0xb0;
/// `BPF_JMP | BPF_EXIT`.
const EXIT: u8 = 0x05 | 0x90;

/// `r0 = XDP_PASS; exit`.
pub const XDP_PASS_PROGRAM: [u64; 2] = [insn(MOV64_IMM, 0, 0, 0, XDP_PASS), insn(EXIT, 0, 0, 0, 0)];

/// The `BPF_PROG_LOAD` member of `union bpf_attr` up to `expected_attach_type`, then
/// zeros (the kernel accepts a shorter attr and requires unknown trailing bytes to be 0).
#[repr(C)]
pub struct ProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; 16],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
    pub rest: [u8; 56],
}

const LICENSE: &[u8] = b"GPL\0";

/// The running kernel has no bpf(2): a limit of the guest, not a failure of the device.
#[derive(Debug)]
pub struct NoBpfSyscall;

impl std::fmt::Display for NoBpfSyscall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bpf(2) not implemented: the kernel has no CONFIG_BPF_SYSCALL")
    }
}

impl std::error::Error for NoBpfSyscall {}

/// Loads [`XDP_PASS_PROGRAM`] as an XDP program; returns its fd. A kernel without
/// `CONFIG_BPF_SYSCALL` answers ENOSYS, said so in the error.
pub fn load_xdp_pass() -> io::Result<OwnedFd> {
    let mut log = vec![0u8; 4096];
    let mut name = [0u8; 16];
    name[..8].copy_from_slice(b"kbp_pass");
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: XDP_PASS_PROGRAM.len() as u32,
        insns: XDP_PASS_PROGRAM.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: 0,
        rest: [0; 56],
    };
    // SAFETY: `attr` is a `BPF_PROG_LOAD` attr of the size passed; the instructions,
    // the license and the log buffer it points at outlive the call (the log is writable).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>() as u32,
        )
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOSYS) {
            return Err(io::Error::new(io::ErrorKind::Unsupported, NoBpfSyscall));
        }
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        return Err(io::Error::new(
            err.kind(),
            format!(
                "BPF_PROG_LOAD: {err}; verifier: {}",
                String::from_utf8_lossy(&log[..end]).trim()
            ),
        ));
    }
    // SAFETY: a successful BPF_PROG_LOAD returns a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        // b7 00 0000 02000000: mov64 r0, 2
        assert_eq!(
            XDP_PASS_PROGRAM[0].to_le_bytes(),
            [0xb7, 0, 0, 0, 2, 0, 0, 0]
        );
        // 95 00 0000 00000000: exit
        assert_eq!(
            XDP_PASS_PROGRAM[1].to_le_bytes(),
            [0x95, 0, 0, 0, 0, 0, 0, 0]
        );
        // Registers and offset land in their fields.
        assert_eq!(
            insn(0xbf, 1, 6, -2, -1).to_le_bytes(),
            [0xbf, 0x61, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn prog_load_attr_matches_the_uapi_layout() {
        use std::mem::offset_of;
        assert_eq!(offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(offset_of!(ProgLoadAttr, license), 16);
        assert_eq!(offset_of!(ProgLoadAttr, log_level), 24);
        assert_eq!(offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(offset_of!(ProgLoadAttr, kern_version), 40);
        assert_eq!(offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(offset_of!(ProgLoadAttr, prog_ifindex), 64);
        assert_eq!(offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 128);
    }
}
