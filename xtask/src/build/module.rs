//! Builds `kbp-linux/kbp.ko` with Kbuild against the guest kernel, with exactly the
//! kernel's rustc. kbp-core and its crates.io dependencies are compiled from their
//! sources in place (the workspace and the cargo registry, found with `cargo
//! metadata`); nothing is copied into the module directory. The module for the debug
//! kernel is built from the same sources into `target/kbp/module-debug/` (Kbuild's
//! `MO=`, the output directory of an external module), so it never overwrites
//! `kbp-linux/kbp.ko` or its objects.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::base::progress::{Stage, output, run_long};
use crate::base::{Result, workspace_root};
use crate::build::kernel::{Flavor, Kernel, make};
use crate::build::toolchain::Toolchain;

/// `src/lib.rs` of the version of `name` that kbp-core resolves to.
fn dependency_source(meta: &Value, name: &str) -> Result<PathBuf> {
    let packages = meta["packages"]
        .as_array()
        .ok_or("cargo metadata: no packages")?;
    let core_id = packages
        .iter()
        .find(|p| p["name"] == "kbp-core")
        .and_then(|p| p["id"].as_str())
        .ok_or("cargo metadata: no kbp-core")?;
    let nodes = meta["resolve"]["nodes"]
        .as_array()
        .ok_or("cargo metadata: no resolve")?;
    let core_node = nodes
        .iter()
        .find(|n| n["id"] == core_id)
        .ok_or("cargo metadata: kbp-core not resolved")?;
    for dep in core_node["deps"].as_array().into_iter().flatten() {
        let Some(pkg) = packages.iter().find(|p| p["id"] == dep["pkg"]) else {
            continue;
        };
        if pkg["name"] == name {
            let manifest = PathBuf::from(pkg["manifest_path"].as_str().unwrap_or_default());
            return Ok(manifest
                .parent()
                .map(|d| d.join("src/lib.rs"))
                .unwrap_or_default());
        }
    }
    Err(format!("kbp-core does not depend on {name}"))
}

/// Builds the module; returns the path of `kbp.ko`.
pub fn build(tc: &Toolchain, kernel: &Kernel) -> Result<PathBuf> {
    let root = workspace_root();
    let stage = Stage::start(format!(
        "build kbp.ko for the {:?} kernel (Kbuild, kernel rustc)",
        kernel.flavor
    ));
    let meta: Value =
        serde_json::from_str(&output(Command::new("cargo").current_dir(&root).args([
            "metadata",
            "--format-version",
            "1",
        ]))?)
        .map_err(|e| e.to_string())?;
    let bitflags = dependency_source(&meta, "bitflags")?;
    let static_assertions = dependency_source(&meta, "static_assertions")?;
    let dir = root.join("kbp-linux");
    let out = match kernel.flavor {
        Flavor::Normal => dir.clone(),
        Flavor::Debug => root.join("target/kbp/module-debug"),
    };
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    if out != dir && dir.join("kbp.o").exists() {
        // Kbuild refuses `MO=` while the source directory holds an in-tree build ("The
        // external module source tree is not clean"): the normal kernel's module is
        // built there, so clear it (the next normal build redoes it).
        let status = make(tc, &kernel.src, &kernel.build)
            .arg(format!("M={}", dir.display()))
            .arg("clean")
            .status()
            .map_err(|e| format!("make clean: {e}"))?;
        if !status.success() {
            return Err(format!("make M={} clean failed: {status}", dir.display()));
        }
    }
    let mut cmd = make(tc, &kernel.src, &kernel.build);
    cmd.arg(format!("M={}", dir.display()));
    if out != dir {
        cmd.arg(format!("MO={}", out.display()));
    }
    cmd.arg(format!(
        "KBP_CORE_SRC={}",
        root.join("kbp-core/src/lib.rs").display()
    ))
    .arg(format!("KBP_BITFLAGS_SRC={}", bitflags.display()))
    .arg(format!(
        "KBP_STATIC_ASSERT_SRC={}",
        static_assertions.display()
    ))
    .arg("modules");
    run_long(&mut cmd, &stage, 1)?;
    stage.done();
    let ko = out.join("kbp.ko");
    if ko.exists() {
        Ok(ko)
    } else {
        Err(format!("{} was not produced", ko.display()))
    }
}
