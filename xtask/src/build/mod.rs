//! Layer 1, building what the guest boots, bottom up: [`toolchain`] (Debian packages,
//! bindgen-cli) -> [`kernel`] (linux-source-7.2, the config fragment, bzImage, cached)
//! -> [`module`] (kbp.ko with Kbuild and the kernel's rustc) -> [`initramfs`] (busybox,
//! the static guest programs, `nft`, the module); beside them [`qemu`] (which QEMU boots
//! the guest) and [`apt`] (the private apt state both the kernel source and the
//! backported QEMU come through). Uses only [`crate::base`].

pub mod apt;
pub mod initramfs;
pub mod kernel;
pub mod module;
pub mod qemu;
pub mod toolchain;
