//! `vault-injector certs`: a CA and a serving certificate for local use.
//!
//! STUB: filled in by the server work.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Output directory (created if missing).
    #[arg(long, env = "VAULT_INJECTOR_CERTS_OUT")]
    pub out: PathBuf,
    /// DNS name or IP the serving certificate is for (repeatable).
    #[arg(
        long = "host",
        required = true,
        env = "VAULT_INJECTOR_CERTS_HOST",
        value_delimiter = ','
    )]
    pub hosts: Vec<String>,
}

pub fn run(_args: CertsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("certs: not implemented yet")
}
