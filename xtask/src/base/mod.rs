//! The bottom layer, which every other layer may use and which uses none of them: the
//! workspace root, the cache directory, the `Result` every stage returns, and
//! [`progress`] (stage banners, running commands).

pub mod progress;

use std::path::PathBuf;

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
