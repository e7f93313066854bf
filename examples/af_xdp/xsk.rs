//! One AF_XDP socket with its own UMEM, in copy mode with `XDP_USE_NEED_WAKEUP`, on the
//! raw `setsockopt`/`mmap` interface of `linux/if_xdp.h` (no libxdp).
//!
//! Only the receive side is used: the fill ring gives frames to the kernel, the RX ring
//! hands back descriptors of received packets; the completion ring exists because the
//! kernel requires it with a UMEM.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_PGOFF_RX_RING: libc::off_t = 0;
const XDP_UMEM_PGOFF_FILL_RING: libc::off_t = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: libc::off_t = 0x1_8000_0000;
const XDP_COPY: u16 = 1 << 1;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
/// `XDP_RING_NEED_WAKEUP`: the kernel wants a syscall before it uses the ring again.
const XDP_RING_NEED_WAKEUP: u32 = 1;

/// Frames in the UMEM (and entries of each ring).
pub const FRAMES: u32 = 4096;
/// Bytes per frame.
pub const FRAME_SIZE: u32 = 2048;

#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct RingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}

#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

/// A received packet's place in the UMEM (`struct xdp_desc`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Desc {
    addr: u64,
    len: u32,
    options: u32,
}

/// An mmapped ring: producer and consumer indices, flags and `entries` slots of `T`.
struct Ring<T> {
    map: *mut libc::c_void,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    slots: *mut T,
}

impl<T: Copy> Ring<T> {
    fn map(fd: RawFd, off: RingOffset, pgoff: libc::off_t) -> io::Result<Self> {
        let map_len = off.desc as usize + FRAMES as usize * std::mem::size_of::<T>();
        // SAFETY: a fresh shared mapping of the socket's ring; the kernel checks the
        // offset and length.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let at = |o: u64| map.cast::<u8>().wrapping_add(o as usize);
        Ok(Ring {
            map,
            map_len,
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            slots: at(off.desc).cast(),
        })
    }

    fn index(&self, which: *const AtomicU32) -> &AtomicU32 {
        // SAFETY: `which` points into the live mapping at an offset the kernel gave,
        // and the kernel accesses it atomically too.
        unsafe { &*which }
    }

    fn slot(&self, i: u32) -> *mut T {
        self.slots.wrapping_add((i & (FRAMES - 1)) as usize)
    }

    fn needs_wakeup(&self) -> bool {
        self.index(self.flags).load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; nothing refers to it after.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

/// One bound AF_XDP socket and its UMEM. Used by one thread at a time.
pub struct Xsk {
    fd: OwnedFd,
    umem: *mut u8,
    umem_len: usize,
    rx: Ring<Desc>,
    fill: Ring<u64>,
    _completion: Ring<u64>,
    /// Frames handed back since the last fill-ring publication.
    refill: Vec<u64>,
}

// SAFETY: the mappings belong to this object only; it moves between threads whole.
unsafe impl Send for Xsk {}

fn setsockopt<T>(fd: RawFd, opt: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a valid `T` for the call's duration, its size passed along.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            SOL_XDP,
            opt,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Xsk {
    /// A socket bound to queue `queue` of interface `ifindex` (in the calling thread's
    /// network namespace), every frame on the fill ring.
    pub fn bind(ifindex: u32, queue: u32) -> io::Result<Self> {
        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem_len = (FRAMES * FRAME_SIZE) as usize;
        // SAFETY: a fresh private anonymous mapping.
        let umem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                umem_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if umem == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let reg = UmemReg {
            addr: umem as u64,
            len: umem_len as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        let s = fd.as_raw_fd();
        let fail = |e: io::Error| {
            // SAFETY: the UMEM mapping made above, not yet owned by an `Xsk`.
            unsafe { libc::munmap(umem, umem_len) };
            e
        };
        setsockopt(s, XDP_UMEM_REG, &reg).map_err(fail)?;
        setsockopt(s, XDP_UMEM_FILL_RING, &FRAMES).map_err(fail)?;
        setsockopt(s, XDP_UMEM_COMPLETION_RING, &FRAMES).map_err(fail)?;
        setsockopt(s, XDP_RX_RING, &FRAMES).map_err(fail)?;
        let mut off = MmapOffsets::default();
        let mut len = std::mem::size_of::<MmapOffsets>() as libc::socklen_t;
        // SAFETY: `off` is writable for `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                s,
                SOL_XDP,
                XDP_MMAP_OFFSETS,
                (&mut off as *mut MmapOffsets).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(fail(io::Error::last_os_error()));
        }
        let mut xsk = Xsk {
            rx: Ring::map(s, off.rx, XDP_PGOFF_RX_RING).map_err(fail)?,
            fill: Ring::map(s, off.fr, XDP_UMEM_PGOFF_FILL_RING).map_err(fail)?,
            _completion: Ring::map(s, off.cr, XDP_UMEM_PGOFF_COMPLETION_RING).map_err(fail)?,
            fd,
            umem: umem.cast(),
            umem_len,
            refill: (0..FRAMES).map(|i| u64::from(i * FRAME_SIZE)).collect(),
        };
        xsk.publish_fill();
        let addr = SockaddrXdp {
            family: libc::AF_XDP as u16,
            flags: XDP_COPY | XDP_USE_NEED_WAKEUP,
            ifindex,
            queue_id: queue,
            shared_umem_fd: 0,
        };
        // SAFETY: `addr` is a valid sockaddr_xdp of the length passed.
        let rc = unsafe {
            libc::bind(
                s,
                (&addr as *const SockaddrXdp).cast(),
                std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(xsk)
    }

    /// The socket's descriptor (for the XSKMAP and for `poll(2)`).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Descriptors waiting on the RX ring.
    pub fn rx_pending(&self) -> u32 {
        let prod = self.rx.index(self.rx.producer).load(Ordering::Acquire);
        let cons = self.rx.index(self.rx.consumer).load(Ordering::Relaxed);
        prod.wrapping_sub(cons)
    }

    /// Takes up to `budget` received packets, calls `f` with each one's bytes, and gives
    /// their frames back to the kernel. Returns how many it took.
    pub fn receive(&mut self, budget: u32, mut f: impl FnMut(&[u8])) -> u32 {
        let n = self.rx_pending().min(budget);
        let cons = self.rx.index(self.rx.consumer).load(Ordering::Relaxed);
        for i in 0..n {
            // SAFETY: slot `cons + i` is below the producer index read above: the
            // kernel wrote it and will not touch it until we move the consumer index.
            let desc = unsafe { self.rx.slot(cons.wrapping_add(i)).read() };
            let start = desc.addr as usize;
            let len = (desc.len as usize).min(self.umem_len.saturating_sub(start));
            // SAFETY: `start..start + len` lies inside the UMEM mapping (clamped), and
            // the frame is ours until it goes back on the fill ring.
            let bytes = unsafe { std::slice::from_raw_parts(self.umem.add(start), len) };
            f(bytes);
            // Copy mode: the address is the frame's start (headroom 0).
            self.refill.push(desc.addr & !u64::from(FRAME_SIZE - 1));
        }
        self.rx
            .index(self.rx.consumer)
            .store(cons.wrapping_add(n), Ordering::Release);
        if n > 0 {
            self.publish_fill();
        }
        n
    }

    /// Puts the frames given back on the fill ring; kicks the kernel if it set
    /// `need_wakeup` on it.
    fn publish_fill(&mut self) {
        let prod = self.fill.index(self.fill.producer).load(Ordering::Relaxed);
        let cons = self.fill.index(self.fill.consumer).load(Ordering::Acquire);
        let room = FRAMES - prod.wrapping_sub(cons);
        let n = (self.refill.len() as u32).min(room);
        for (i, addr) in self.refill.drain(..n as usize).enumerate() {
            // SAFETY: slots from the producer index up to `room` are ours to write.
            unsafe { self.fill.slot(prod.wrapping_add(i as u32)).write(addr) };
        }
        self.fill
            .index(self.fill.producer)
            .store(prod.wrapping_add(n), Ordering::Release);
        if self.fill.needs_wakeup() {
            self.kick();
        }
    }

    /// The syscall `need_wakeup` asks for: a non-blocking `recvfrom`.
    fn kick(&self) {
        // SAFETY: a zero-length non-blocking receive on our socket, no buffer.
        unsafe {
            libc::recvfrom(
                self.fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }
}

impl Drop for Xsk {
    fn drop(&mut self) {
        // SAFETY: the UMEM mapping made in `bind`; the rings (dropped after this) and
        // the socket no longer hand out frames once we are being dropped.
        unsafe { libc::munmap(self.umem.cast(), self.umem_len) };
    }
}
