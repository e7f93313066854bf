//! `cargo xtask`: everything from a fresh Debian bookworm machine (as root) to a booted
//! Rust-enabled Linux 7.2 guest carrying real traffic.
//!
//! ```text
//! cargo xtask toolchain      install/verify Debian packages and bindgen-cli
//! cargo xtask kernel [--debug]
//!                            fetch linux-source-7.2, configure, build bzImage (cached);
//!                            --debug: the debug kernel (xtask/kernel/kbp-debug.config)
//! cargo xtask module [--debug]
//!                            build kbp-linux/kbp.ko against that kernel (--debug:
//!                            target/kbp/module-debug/kbp.ko against the debug kernel)
//! cargo xtask initramfs      busybox + the project's static guest binaries
//! cargo xtask guest-test     all of the above, boot, run the echo scenarios, write
//!                            target/kbp/guest-test.json; exit 0 only if all pass
//! cargo xtask faults [--soak-minutes M] [--cycles N] [--debug-kernel]
//!                            faults and a soak under traffic -> target/kbp/faults.json
//!                            (`guest-test --faults` is an alias; --debug-kernel: on the
//!                            debug kernel -> target/kbp/faults-debug.json)
//! cargo xtask guest-run [--icount] CMD
//!                            boot the guest and run shell commands in it (--icount:
//!                            virtual time counts instructions, vm::Tcg::Icount)
//! cargo xtask bench [--quick] [--modes LIST] [--host-cpus LIST]
//!                            napi / threaded / busy-poll / kbp-spin / kbp-adaptive side
//!                            by side -> target/kbp/bench/{report.md,results.json,*.svg}
//! cargo xtask clean-cache    remove ~/.cache/kbp (the kernel build tree)
//! ```
//!
//! Layers, each using only the ones below it (the `layering` test fails on any import
//! cycle between modules, see its doc for what a module is there):
//!
//! ```text
//! main.rs    the command line only
//! suites/    echo (guest-test), faults, bench (with its model, setup, trial, report)
//! harness    build-and-boot, guest-run, shared constants and types (module path, bad
//!            parameters, drops, the zero-loss ceiling)
//! guest/     vm (netns, tap, QEMU, agent client), probes, tracing, stats_file
//! build/     toolchain -> kernel -> module -> initramfs
//! base/      workspace root, cache directory, Result, progress (stages, commands)
//! ```

mod base;
mod build;
mod guest;
mod harness;
#[cfg(test)]
mod layering;
mod suites;

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage: cargo xtask <toolchain|kernel [--debug]|module [--debug]|initramfs|guest-test|faults [--soak-minutes M] [--cycles N] [--debug-kernel]|guest-run [--icount] CMD...|bench [--quick] [--modes LIST] [--host-cpus LIST]|clean-cache>"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        return usage();
    };
    let flavor = match args[1..].iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => build::kernel::Flavor::Normal,
        ["--debug"] => build::kernel::Flavor::Debug,
        _ if command == "kernel" || command == "module" => return usage(),
        _ => build::kernel::Flavor::Normal,
    };
    let result = match command.as_str() {
        "toolchain" => build::toolchain::ensure().map(|_| ()),
        "kernel" => build::toolchain::ensure()
            .and_then(|tc| build::kernel::build_flavor(&tc, flavor))
            .map(|_| ()),
        "initramfs" => build::initramfs::build(&[]).map(|_| ()),
        "module" => build::toolchain::ensure()
            .and_then(|tc| {
                build::kernel::build_flavor(&tc, flavor).and_then(|k| build::module::build(&tc, &k))
            })
            .map(|_| ()),
        // `guest-test --faults` is the old spelling of `faults`, kept as an alias.
        "guest-test" if args.iter().any(|a| a == "--faults") => {
            let rest: Vec<String> = args[1..]
                .iter()
                .filter(|a| *a != "--faults")
                .cloned()
                .collect();
            suites::faults::run(&rest)
        }
        "guest-test" => suites::echo::run(&args[1..]),
        "faults" => suites::faults::run(&args[1..]),
        "guest-run" => harness::run_commands(&args[1..]),
        "bench" => suites::bench::run(&args[1..]),
        "clean-cache" => {
            let dir = base::cache_dir();
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
