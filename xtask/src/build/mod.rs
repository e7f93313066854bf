//! Layer 1, building what the guest boots, bottom up: [`toolchain`] (Debian packages,
//! bindgen-cli) -> [`kernel`] (linux-source-7.2, the config fragment, bzImage, cached)
//! -> [`module`] (kbp.ko with Kbuild and the kernel's rustc) -> [`initramfs`] (busybox,
//! the static guest programs, `nft`, the module). Uses only [`crate::base`].

pub mod initramfs;
pub mod kernel;
pub mod module;
pub mod toolchain;
