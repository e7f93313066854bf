//! `cargo xtask`: everything from a fresh Debian bookworm machine (as root) to a booted
//! Rust-enabled Linux 7.2 guest carrying real traffic.
//!
//! ```text
//! cargo xtask toolchain      install/verify Debian packages and bindgen-cli
//! cargo xtask kernel         fetch linux-source-7.2, configure, build bzImage (cached)
//! cargo xtask module         build kbp-linux/kbp.ko against that kernel
//! cargo xtask initramfs      busybox + the project's static guest binaries
//! cargo xtask guest-test     all of the above, boot, run the echo scenarios, write
//!                            target/kbp/guest-test.json; exit 0 only if all pass
//! cargo xtask guest-test --faults [--soak-minutes M --cycles N]
//!                            faults and a soak under traffic -> target/kbp/faults.json
//! cargo xtask guest-run CMD  boot the guest and run shell commands in it
//! cargo xtask bench [--quick] [--modes LIST]
//!                            napi / threaded / busy-poll / kbp-spin / kbp-adaptive side
//!                            by side -> target/kbp/bench/{report.md,results.json,*.svg}
//! cargo xtask clean-cache    remove ~/.cache/kbp (the kernel build tree)
//! ```
//!
//! Layers: `toolchain` -> `kernel` -> `initramfs` -> `guest` (netns, tap, QEMU, agent)
//! -> `guest_test` (scenarios, JSON), `faults` (fault injection, soak) and `bench`
//! (mode comparison; `bench_report` writes its tables and plots).

mod bench;
mod bench_report;
mod faults;
mod guest;
mod guest_test;
mod initramfs;
mod kernel;
mod module;
mod progress;
mod stats_file;
mod toolchain;

use std::path::PathBuf;
use std::process::ExitCode;

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The cache outside the repository: `$KBP_CACHE` or `~/.cache/kbp`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KBP_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/kbp")
}

/// Result of an xtask stage: a message for the user on failure.
pub type Result<T = ()> = std::result::Result<T, String>;

fn usage() -> ExitCode {
    eprintln!(
        "usage: cargo xtask <toolchain|kernel|module|initramfs|guest-test [--faults]|guest-run CMD...|bench [--quick]|clean-cache>"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        return usage();
    };
    let result = match command.as_str() {
        "toolchain" => toolchain::ensure().map(|_| ()),
        "kernel" => toolchain::ensure()
            .and_then(|tc| kernel::build(&tc))
            .map(|_| ()),
        "initramfs" => initramfs::build(&[]).map(|_| ()),
        "module" => toolchain::ensure()
            .and_then(|tc| kernel::build(&tc).and_then(|k| module::build(&tc, &k)))
            .map(|_| ()),
        "guest-test" => guest_test::run(&args[1..]),
        "guest-run" => guest_test::run_commands(&args[1..]),
        "bench" => bench::run(&args[1..]),
        "clean-cache" => {
            let dir = cache_dir();
            println!("removing {}", dir.display());
            std::fs::remove_dir_all(&dir)
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| e.to_string())
        }
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask {command}: {message}");
            ExitCode::FAILURE
        }
    }
}
