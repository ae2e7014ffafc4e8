//! The shared test kit, plus what only the webhook's tests need: the
//! webhook binary, its fixtures and a running webhook.

use std::path::PathBuf;

pub use vault_injector_testkit::*;

pub mod webhook;

/// Path of a fixture under this crate's `tests/data/`.
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The built `vault-injector` binary (integration tests run the real one).
/// It also runs the agent's commands, as aliases.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vault-injector"))
}
