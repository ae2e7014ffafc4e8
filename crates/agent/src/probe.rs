//! `vault-injector probe`: exit 0 once the agent has rendered every secret.
//! The agent writes the marker after its first full render and removes it
//! when it starts or stops, so a restarted agent is not ready by accident.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Agent state directory holding the readiness marker.
    #[arg(long, default_value = vault_injector_core::contract::STATE_DIR, env = "VAULT_INJECTOR_STATE_DIR")]
    pub state_dir: PathBuf,
}

pub fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let ProbeArgs { state_dir } = args;
    if crate::agent::is_ready(&state_dir) {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "vault-injector probe: not ready: {} does not exist yet (secrets not rendered)",
            state_dir
                .join(vault_injector_core::contract::READY_FILE)
                .display()
        );
        Ok(ExitCode::FAILURE)
    }
}
