//! The guest kernel: Debian's `linux-source-7.2`, the checked-in config fragment, a
//! bzImage built with every core, cached outside the repository.
//!
//! Cache layout (`~/.cache/kbp`, or `$KBP_CACHE`):
//!
//! ```text
//! apt/            private apt state for trixie-backports (the system's apt is untouched)
//! apt/deb/        the downloaded linux-source-7.2 .deb
//! src/            the extracted source tree (read-only for the build)
//! kernel/build/   the O= build tree; .kbp-key records what it was built from
//! kernel-debug/build/
//!                 the same for the debug kernel (`--debug-kernel`)
//! ```
//!
//! The key hashes the .deb name, the config fragments and the toolchain versions: the
//! same key skips `make`; a different one re-runs it, which Kbuild makes incremental.
//!
//! Two flavors ([`Flavor`]): the normal guest kernel (`xtask/kernel/kbp-guest.config`)
//! and the debug kernel, the same fragment followed by `xtask/kernel/kbp-debug.config`
//! (lockdep, atomic-sleep checks, hung-task and stall detectors, KFENCE), in its own
//! build tree so neither rebuilds the other.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::base::progress::{Stage, fnv1a, output, run, run_long};
use crate::base::{Result, cache_dir, workspace_root};
use crate::build::apt::PrivateApt;
use crate::build::toolchain::Toolchain;

/// The Debian suite that carries linux-source-7.2.
const SUITE: &str = "trixie-backports";
const PACKAGE: &str = "linux-source-7.2";

/// Which guest kernel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flavor {
    /// `kbp-guest.config`: what every suite runs on.
    Normal,
    /// `kbp-guest.config` + `kbp-debug.config`: the kernel's own checkers on.
    Debug,
}

impl Flavor {
    /// The build tree's parent directory in the cache.
    fn cache_subdir(self) -> &'static str {
        match self {
            Flavor::Normal => "kernel",
            Flavor::Debug => "kernel-debug",
        }
    }

    /// The config fragments merged on top of `x86_64_defconfig` + `kvm_guest.config`,
    /// in order.
    pub fn fragments(self) -> Vec<PathBuf> {
        let dir = workspace_root().join("xtask/kernel");
        match self {
            Flavor::Normal => vec![dir.join("kbp-guest.config")],
            Flavor::Debug => vec![dir.join("kbp-guest.config"), dir.join("kbp-debug.config")],
        }
    }

    /// Options that must survive `olddefconfig`.
    fn required(self) -> Vec<&'static str> {
        let mut required = vec![
            "CONFIG_RUST=y",
            "CONFIG_MODULES=y",
            "CONFIG_VIRTIO_NET=y",
            "CONFIG_NET_RX_BUSY_POLL=y",
            "CONFIG_DEBUG_FS=y",
            "CONFIG_BLK_DEV_INITRD=y",
            "CONFIG_NF_TABLES_IPV4=y",
            "CONFIG_NFT_NAT=y",
            "CONFIG_NFT_MASQ=y",
            "CONFIG_DYNAMIC_FTRACE_WITH_ARGS=y",
            "CONFIG_BPF_SYSCALL=y",
        ];
        if self == Flavor::Debug {
            required.extend([
                "CONFIG_PROVE_LOCKING=y",
                "CONFIG_DEBUG_ATOMIC_SLEEP=y",
                "CONFIG_DETECT_HUNG_TASK=y",
                "CONFIG_SOFTLOCKUP_DETECTOR=y",
                "CONFIG_HARDLOCKUP_DETECTOR=y",
                "CONFIG_KFENCE=y",
                "CONFIG_PROVE_RCU=y",
            ]);
        }
        required
    }
}

/// A built kernel.
pub struct Kernel {
    /// The source tree (`make -C`).
    pub src: PathBuf,
    /// The build tree (`O=`), also the `KDIR` for out-of-tree modules.
    pub build: PathBuf,
    /// `arch/x86/boot/bzImage`.
    pub bzimage: PathBuf,
    /// Kernel release, e.g. `7.2.12`.
    pub release: String,
    /// Which one.
    pub flavor: Flavor,
}

/// Downloads (once) and extracts (once) the kernel source; returns the tree.
fn source() -> Result<PathBuf> {
    let cache = cache_dir();
    let apt = PrivateApt::new(cache.join("apt"), SUITE)?;
    let debs = cache.join("apt/deb");
    let find_deb = || -> Option<PathBuf> {
        std::fs::read_dir(&debs)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .max()
    };
    if find_deb().is_none() {
        let stage = Stage::start(format!("download {PACKAGE} from Debian trixie-backports"));
        apt.update()?;
        apt.download(&debs, &[PACKAGE])?;
        stage.done();
    }
    let deb = find_deb().ok_or("the linux-source .deb did not download")?;
    let src_root = cache.join("src");
    let tree = src_root.join(PACKAGE);
    let stamp = src_root.join(format!(
        ".extracted-{}",
        deb.file_name().unwrap_or_default().to_string_lossy()
    ));
    if !stamp.exists() {
        let stage = Stage::start(format!("extract {}", deb.display()));
        let _ = std::fs::remove_dir_all(&src_root);
        std::fs::create_dir_all(&src_root).map_err(|e| e.to_string())?;
        let script = format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' ./usr/src/{PACKAGE}.tar.xz && tar -xJf '{}/usr/src/{PACKAGE}.tar.xz' -C '{}' && rm -rf '{}/usr'",
            deb.display(),
            src_root.display(),
            src_root.display(),
            src_root.display(),
            src_root.display()
        );
        run(Command::new("sh").args(["-c", &script]))?;
        std::fs::write(&stamp, b"").map_err(|e| e.to_string())?;
        stage.done();
    }
    if !tree.join("Makefile").exists() {
        return Err(format!("{} has no Makefile", tree.display()));
    }
    Ok(tree)
}

/// `make -C src O=build RUSTC=... BINDGEN=...` with the toolchain's environment.
pub fn make(tc: &Toolchain, src: &Path, build: &Path) -> Command {
    let mut cmd = Command::new("make");
    cmd.arg("-C").arg(src).arg(format!("O={}", build.display()));
    cmd.arg(format!("RUSTC={}", tc.rustc.display()));
    cmd.arg(format!("HOSTRUSTC={}", tc.rustc.display()));
    cmd.arg(format!("BINDGEN={}", tc.bindgen.display()));
    cmd.env("LIBCLANG_PATH", &tc.libclang);
    cmd
}

/// `x86_64_defconfig`, then `kvm_guest.config` and `flavor`'s fragments merged, then
/// `olddefconfig`, in `build`; fails if a required option did not survive.
pub fn configure(tc: &Toolchain, src: &Path, build: &Path, flavor: Flavor) -> Result {
    let avail = output(make(tc, src, build).arg("rustavailable"))?;
    if !avail.contains("Rust is available") {
        return Err(format!("`make rustavailable` says: {avail}"));
    }
    run(make(tc, src, build).args(["-s", "x86_64_defconfig"]))?;
    run(Command::new(src.join("scripts/kconfig/merge_config.sh"))
        .current_dir(build)
        .args(["-m", "-O"])
        .arg(build)
        .arg(build.join(".config"))
        .arg(src.join("kernel/configs/kvm_guest.config"))
        .args(flavor.fragments())
        .stdout(std::process::Stdio::null()))?;
    run(make(tc, src, build).args(["-s", "olddefconfig"]))?;
    let config = std::fs::read_to_string(build.join(".config")).map_err(|e| e.to_string())?;
    for required in flavor.required() {
        if !config.lines().any(|l| l == required) {
            return Err(format!(
                "{required} did not survive olddefconfig (a dependency is off; see {})",
                build.join(".config").display()
            ));
        }
    }
    Ok(())
}

/// Fetches, configures and builds the normal guest kernel (skipped when the cache
/// matches).
pub fn build(tc: &Toolchain) -> Result<Kernel> {
    build_flavor(tc, Flavor::Normal)
}

/// Fetches, configures and builds the guest kernel of `flavor` in its own build tree
/// (skipped when the cache matches).
pub fn build_flavor(tc: &Toolchain, flavor: Flavor) -> Result<Kernel> {
    let src = source()?;
    let build = cache_dir().join(flavor.cache_subdir()).join("build");
    std::fs::create_dir_all(&build).map_err(|e| e.to_string())?;
    let mut fragments = Vec::new();
    for path in flavor.fragments() {
        fragments.push(std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    let mut key_parts: Vec<&[u8]> = Vec::new();
    let (src_name, makefile) = (
        src.to_string_lossy().into_owned(),
        std::fs::read(src.join("Makefile")).unwrap_or_default(),
    );
    key_parts.push(src_name.as_bytes());
    key_parts.push(&makefile);
    // The normal kernel's key is what it was before flavors: its one fragment.
    key_parts.extend(fragments.iter().map(Vec::as_slice));
    key_parts.push(tc.versions.as_bytes());
    let key = fnv1a(&key_parts);
    let key_file = build.join(".kbp-key");
    let bzimage = build.join("arch/x86/boot/bzImage");
    let release = || {
        output(make(tc, &src, &build).args(["-s", "kernelrelease"])).map(|s| s.trim().to_string())
    };

    if bzimage.exists() && std::fs::read_to_string(&key_file).is_ok_and(|k| k == key) {
        let release = release()?;
        println!(
            "[xtask] kernel {release} ({flavor:?}): cached build in {} (key {key})",
            build.display()
        );
        return Ok(Kernel {
            src,
            build,
            bzimage,
            release,
            flavor,
        });
    }

    let stage = Stage::start(format!("configure kernel ({flavor:?})"));
    configure(tc, &src, &build, flavor)?;
    stage.done();

    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let stage = Stage::start(format!(
        "build bzImage and modules with -j{jobs} (about 17 min from nothing on 2 cores)"
    ));
    run_long(
        make(tc, &src, &build)
            .arg(format!("-j{jobs}"))
            .args(["bzImage", "modules"]),
        &stage,
        400,
    )?;
    stage.done();
    std::fs::write(&key_file, &key).map_err(|e| e.to_string())?;
    let release = release()?;
    Ok(Kernel {
        src,
        build,
        bzimage,
        release,
        flavor,
    })
}
