//! The in-pod agent: log in with the pod's identity, render secrets, keep them
//! fresh.
//!
//! STUB: filled in by the agent work.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// `init`: render everything once and exit; `sidecar`: render, then keep
    /// fresh until SIGTERM.
    #[arg(long, default_value = "sidecar", env = "VAULT_INJECTOR_AGENT_MODE")]
    pub mode: Mode,
    /// Override the secrets directory (outside a pod).
    #[arg(long, env = "VAULT_INJECTOR_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Override the agent state directory (outside a pod).
    #[arg(long, env = "VAULT_INJECTOR_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Override the JWT (service-account token) file.
    #[arg(long, env = "VAULT_INJECTOR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Override the Vault address from the config.
    #[arg(long, env = "VAULT_ADDR")]
    pub vault_addr: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Init,
    Sidecar,
}

pub async fn run(_args: AgentArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("agent: not implemented yet")
}
