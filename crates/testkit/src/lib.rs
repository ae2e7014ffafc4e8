//! What the integration tests of every crate share: finding the real tools
//! the project's scripts install (`require_tool`: under `CI=true` a missing
//! tool fails the test), free loopback ports, the repository root, the
//! OpenBao harnesses, PostgreSQL, and driving the agent binary.

use std::path::PathBuf;

/// Finds an external tool (`bao`, `helm`, `kubernetes-validate`, `initdb`...)
/// in `.tools/bin` (installed by `scripts/install-tools.sh`) or on PATH.
///
/// Missing tool: under `CI=true` the test fails; elsewhere it is skipped with
/// a loud message. Integration tests never skip silently in CI.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    if let Some(p) = find_tool(name) {
        return Some(p);
    }
    let msg = format!(
        "required tool `{name}` not found in .tools/bin or PATH; run scripts/install-tools.sh"
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPING (not in CI): {msg}");
    None
}

pub fn find_tool(name: &str) -> Option<PathBuf> {
    let local = root().join(".tools/bin").join(name);
    if local.exists() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// The repository root (the workspace), where `.tools/`, `charts/`,
/// `tests/chart/` and `examples/` are.
pub fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

pub mod agent;
pub mod bao_dev;
pub mod openbao;
pub mod postgres;
