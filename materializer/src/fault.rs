//! Fault injection for crash tests: `FOLDDB_FAULT=<point>` makes the process abort (as a
//! power cut or SIGKILL would stop it: no destructors, no flushing) the first time it reaches
//! that point. Unset, a point costs one relaxed load.

use std::sync::OnceLock;

/// The environment variable naming the point to crash at.
pub const FAULT_ENV: &str = "FOLDDB_FAULT";

/// Aborts the process if `FOLDDB_FAULT` names `name`.
pub fn point(name: &str) {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    if POINT
        .get_or_init(|| std::env::var(FAULT_ENV).ok())
        .as_deref()
        == Some(name)
    {
        eprintln!("fault injection: aborting at {name}");
        std::process::abort();
    }
}
