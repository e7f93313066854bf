//! Which QEMU boots the guest. Bookworm's own (7.2, installed by
//! [`crate::build::toolchain`]) models virtio-net, e1000e and vmxnet3; the Intel 82576
//! (`igb`: multi-queue, MSI-X, RSS) arrived in QEMU 8.0, so for it [`backports`]
//! fetches bookworm-backports' QEMU (10.0) into the cache and runs it from there:
//!
//! ```text
//! qemu-backports/apt/    private apt state for bookworm-backports (crate::build::apt)
//! qemu-backports/deb/    qemu-system-x86, -common and -data, the same version
//! qemu-backports/root/   the three extracted with dpkg-deb -x; nothing is installed
//! ```
//!
//! The backport is built for bookworm, so its binary runs on bookworm's shared
//! libraries; its firmware comes from `root/usr/share/qemu` through `-L`. It cannot load
//! the system QEMU's modules (`/usr/lib/x86_64-linux-gnu/qemu`, display and USB only),
//! and the guest needs none.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use crate::base::progress::{Stage, output, run};
use crate::base::{Result, cache_dir};
use crate::build::apt::PrivateApt;

/// The packages of one QEMU, in one version.
const PACKAGES: [&str; 3] = ["qemu-system-x86", "qemu-system-common", "qemu-system-data"];

/// A QEMU to run: the binary and the arguments that locate its firmware.
#[derive(Clone, Debug)]
pub struct Qemu {
    /// `qemu-system-x86_64`.
    pub binary: PathBuf,
    /// `-L DIR` for a QEMU outside the system's paths; empty for the system's.
    pub firmware_args: Vec<OsString>,
    /// `qemu-system-x86_64 --version`'s first line.
    pub version: String,
}

fn version(binary: &PathBuf) -> Result<String> {
    let text = output(Command::new(binary).arg("--version"))?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// The system's QEMU (bookworm: 7.2).
pub fn system() -> Result<Qemu> {
    let binary = PathBuf::from("qemu-system-x86_64");
    Ok(Qemu {
        version: version(&binary)?,
        binary,
        firmware_args: Vec::new(),
    })
}

/// bookworm-backports' QEMU, downloaded and extracted into the cache once.
pub fn backports() -> Result<Qemu> {
    let dir = cache_dir().join("qemu-backports");
    let (debs, root) = (dir.join("deb"), dir.join("root"));
    let binary = root.join("usr/bin/qemu-system-x86_64");
    let stamp = root.join(".kbp-extracted");
    if !stamp.exists() {
        let stage = Stage::start("download QEMU from Debian bookworm-backports (for --nic igb)");
        let apt = PrivateApt::new(dir.join("apt"), "bookworm-backports")?;
        apt.update()?;
        let _ = std::fs::remove_dir_all(&debs);
        apt.download(&debs, &PACKAGES)?;
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        let entries = std::fs::read_dir(&debs).map_err(|e| e.to_string())?;
        for deb in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
            run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        }
        if !binary.exists() {
            return Err(format!("{} is not in the backport", binary.display()));
        }
        std::fs::write(&stamp, b"").map_err(|e| e.to_string())?;
        stage.done();
    }
    Ok(Qemu {
        version: version(&binary)?,
        firmware_args: vec!["-L".into(), root.join("usr/share/qemu").into()],
        binary,
    })
}
