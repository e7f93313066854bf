//! The host toolchain for the kernel and the guest: Debian packages and bindgen-cli,
//! installed when missing (idempotent), then verified.

use std::path::PathBuf;
use std::process::Command;

use crate::base::Result;
use crate::base::progress::{Stage, output, run};

/// Debian (bookworm) packages the kernel build, the initramfs and the guest need.
pub const PACKAGES: &[&str] = &[
    "rustc-web",       // the kernel's rustc (1.96 in bookworm-updates/security)
    "rust-web-src",    // its `core` source, which the kernel compiles
    "libclang-19-dev", // bindgen needs libclang >= 17
    "bc",
    "bison",
    "flex",
    "libelf-dev",
    "libssl-dev",
    "cpio",
    "gzip",
    "xz-utils",
    "busybox-static",
    "qemu-system-x86",
    "iproute2",
    "nftables", // `nft`, copied into the guest with its libraries (container NAT)
];

/// The bindgen-cli version installed with cargo (the kernel needs >= 0.71.1).
pub const BINDGEN_VERSION: &str = "0.72.1";

/// Paths and versions of the tools the kernel build uses.
pub struct Toolchain {
    /// The kernel's rustc (Debian's, not rustup's).
    pub rustc: PathBuf,
    /// bindgen.
    pub bindgen: PathBuf,
    /// libclang's directory.
    pub libclang: PathBuf,
    /// `rustc --version` and `bindgen --version`, for the cache key.
    pub versions: String,
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Installs what is missing and verifies the result.
pub fn ensure() -> Result<Toolchain> {
    let stage = Stage::start("toolchain");
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if !missing.is_empty() {
        println!(
            "[xtask]   installing Debian packages: {}",
            missing.join(" ")
        );
        run(Command::new("apt-get").args(["update", "-q"]))?;
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing))
        .map_err(|e| {
            format!("{e}\n(is this Debian bookworm, run as root, with deb.debian.org reachable?)")
        })?;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    let bindgen = home.join(".cargo/bin/bindgen");
    let bindgen_ok =
        output(Command::new(&bindgen).arg("--version")).is_ok_and(|v| v.contains(BINDGEN_VERSION));
    if !bindgen_ok {
        println!("[xtask]   installing bindgen-cli {BINDGEN_VERSION} (about 2 minutes)");
        run(Command::new("cargo").args([
            "install",
            "bindgen-cli",
            "--locked",
            "--version",
            BINDGEN_VERSION,
        ]))?;
    }
    let rustc = PathBuf::from("/usr/bin/rustc");
    let rustc_version = output(Command::new(&rustc).arg("--version"))
        .map_err(|e| format!("Debian's rustc (package rustc-web) is not usable: {e}"))?;
    let bindgen_version = output(Command::new(&bindgen).arg("--version"))?;
    let libclang = PathBuf::from("/usr/lib/llvm-19/lib");
    if !libclang.join("libclang.so").exists()
        && !libclang.join("libclang-19.so").exists()
        && std::fs::read_dir(&libclang).map_or(true, |d| {
            !d.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("libclang"))
        })
    {
        return Err(format!(
            "libclang not found in {} (package libclang-19-dev)",
            libclang.display()
        ));
    }
    let core_src = PathBuf::from("/usr/lib/rustlib/src/rust/library/core/src/lib.rs");
    if !core_src.exists() {
        return Err(format!(
            "{} missing (package rust-web-src)",
            core_src.display()
        ));
    }
    for tool in ["qemu-system-x86_64", "busybox", "cpio", "ip"] {
        if output(Command::new("sh").args(["-c", &format!("command -v {tool}")])).is_err() {
            return Err(format!("{tool} not found after installing packages"));
        }
    }
    println!(
        "[xtask]   {} / {}",
        rustc_version.trim(),
        bindgen_version.trim()
    );
    stage.done();
    Ok(Toolchain {
        rustc,
        bindgen,
        libclang,
        versions: format!("{}|{}", rustc_version.trim(), bindgen_version.trim()),
    })
}
