//! Helpers for FoldDB's black-box tests: build and locate the real `folddb` binary, run it,
//! and find the repository's fixtures. Tests in `tests/tests/` speak to the binary only as a
//! user or client would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `folddb` binary of this workspace, built (once per test process) if needed.
///
/// Cargo does not build another package's binary for a test, so this runs `cargo build` for
/// it; when the binary is up to date that is a no-op taking well under a second.
pub fn folddb_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("FOLDDB_BIN") {
            return PathBuf::from(bin);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "folddb", "--bin", "folddb"])
            .current_dir(workspace_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building folddb failed");
        target_dir().join("debug").join("folddb")
    })
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// The cargo target directory this test binary was built into.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
    }
    // The test executable lives in <target>/debug/deps/.
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs `folddb` with `args` and waits for it.
pub fn run_folddb<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(folddb_bin())
        .args(args)
        .output()
        .expect("folddb starts")
}

/// A copy of the log fixture `name` (format v1) in a fresh temporary directory.
pub fn log_fixture(name: &str) -> tempfile::TempDir {
    let src = workspace_root().join("log/fixtures/v1").join(name);
    let tmp = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&src).expect("fixture exists") {
        let entry = entry.expect("fixture entry");
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).expect("copy");
    }
    tmp
}

/// Standard output and error of a finished command, as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
