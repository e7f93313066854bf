//! A private apt state in the cache: its own `sources.list`, package lists and
//! download cache, so that packages of another suite (trixie-backports' kernel source,
//! bookworm-backports' QEMU) can be downloaded without touching the system's apt
//! configuration or installing anything. Used by [`crate::build::kernel`] and
//! [`crate::build::qemu`].

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::base::Result;
use crate::base::progress::run;

/// Debian's archive key, which signs every suite used here.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// An apt state rooted at a cache directory, for one suite.
pub struct PrivateApt {
    dir: PathBuf,
    suite: &'static str,
}

impl PrivateApt {
    /// The state in `dir` for `suite` (e.g. `trixie-backports`), directories created.
    pub fn new(dir: PathBuf, suite: &'static str) -> Result<PrivateApt> {
        for sub in ["lists/partial", "cache/archives/partial"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        Ok(PrivateApt { dir, suite })
    }

    /// apt's options pointing every state directory here.
    fn options(&self) -> Vec<String> {
        vec![
            format!(
                "-o=Dir::Etc::SourceList={}",
                self.dir.join("sources.list").display()
            ),
            "-o=Dir::Etc::SourceParts=/dev/null".into(),
            format!("-o=Dir::State::Lists={}", self.dir.join("lists").display()),
            format!("-o=Dir::Cache={}", self.dir.join("cache").display()),
            "-o=APT::Sandbox::User=root".into(),
            "-q".into(),
        ]
    }

    /// Writes the suite's `sources.list` and runs `apt-get update` on it.
    pub fn update(&self) -> Result {
        let line = format!(
            "deb [signed-by={KEYRING}] http://deb.debian.org/debian {} main\n",
            self.suite
        );
        std::fs::write(self.dir.join("sources.list"), line).map_err(|e| e.to_string())?;
        run(Command::new("apt-get").args(self.options()).arg("update"))
    }

    /// `apt-get download` of `packages` from this suite into `into`.
    pub fn download(&self, into: &Path, packages: &[&str]) -> Result {
        std::fs::create_dir_all(into).map_err(|e| format!("{}: {e}", into.display()))?;
        run(Command::new("apt-get")
            .current_dir(into)
            .args(self.options())
            .arg("download")
            .args(packages.iter().map(|p| format!("{p}/{}", self.suite))))
    }
}
