//! The shared test kit, and the agent binary the tests run.

use std::path::PathBuf;

pub use vault_injector_testkit::*;

/// The built `vault-injector-agent` binary (the tests run the real one).
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vault-injector-agent"))
}
