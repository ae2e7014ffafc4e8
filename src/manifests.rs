//! `vault-injector mutate`: read manifests and print them as the webhook would
//! rewrite them, through the same code path, with no network.
//!
//! STUB: filled in by the webhook core work.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct MutateArgs {
    /// Manifest file (YAML or JSON, multi-document), or `-` for stdin.
    #[arg(short = 'f', long = "filename", env = "VAULT_INJECTOR_MUTATE_FILE")]
    pub file: PathBuf,
    /// Output format.
    #[arg(
        short = 'o',
        long,
        default_value = "yaml",
        env = "VAULT_INJECTOR_OUTPUT"
    )]
    pub output: OutputFormat,
    /// Webhook config file (same as `webhook --config`).
    #[arg(long, env = "VAULT_INJECTOR_CONFIG_FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

pub fn run_mutate(_args: MutateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("mutate: not implemented yet")
}
