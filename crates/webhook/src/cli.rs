//! Command line of `vault-injector`: the webhook and the offline tools,
//! plus the agent's commands as aliases (see SPEC "Binaries and image").
//! Each subcommand's flags live with the module that runs it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "vault-injector",
    version = vault_injector_agent::cli::VERSION,
    about = "Inject secrets from Vault/OpenBao into Kubernetes pods"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS mutating admission webhook.
    Webhook(Box<crate::server::WebhookArgs>),
    /// Print manifests as the webhook would rewrite them (no network).
    Mutate(crate::manifests::MutateArgs),
    /// Write a CA and a serving certificate for local use.
    Certs(crate::certs::CertsArgs),
    /// Check every injector annotation in a tree of manifests (CI).
    Lint(crate::lint::LintArgs),
    /// Check a running webhook with a dry-run AdmissionReview (`helm test`).
    CheckWebhook(crate::check::CheckArgs),
    /// The agent's commands (`agent`, `probe`, `exec`, `copy-self`), kept
    /// for pods injected by versions that ran them from this binary.
    #[command(flatten)]
    AgentSide(vault_injector_agent::cli::Command),
}

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    // One crypto provider for every rustls user in the process (server,
    // kube client, Vault client), chosen explicitly.
    vault_injector_agent::cli::install_crypto_provider();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Webhook(args) => {
            multi_thread().and_then(|rt| rt.block_on(crate::server::run(*args)))
        }
        Command::Mutate(args) => crate::manifests::run_mutate(args),
        Command::Certs(args) => crate::certs::run(args),
        Command::Lint(args) => crate::lint::run(args),
        Command::CheckWebhook(args) => crate::check::run(args),
        Command::AgentSide(command) => vault_injector_agent::cli::run(command),
    };
    vault_injector_agent::cli::report(result)
}

fn multi_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
