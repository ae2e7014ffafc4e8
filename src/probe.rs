//! `vault-injector probe`: exit 0 once the agent has rendered every secret.
//!
//! STUB: filled in by the agent work.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Agent state directory holding the readiness marker.
    #[arg(long, default_value = crate::config::STATE_DIR, env = "VAULT_INJECTOR_STATE_DIR")]
    pub state_dir: PathBuf,
}

pub fn run(_args: ProbeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("probe: not implemented yet")
}
