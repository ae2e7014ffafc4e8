//! Command line: one binary, several subcommands (see SPEC "One binary").
//! Each subcommand's flags live with the module that runs it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "vault-injector",
    version,
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
    /// Run the in-pod agent (init or sidecar mode).
    Agent(crate::agent::AgentArgs),
    /// Exit 0 once the agent has rendered every secret (startup probe).
    Probe(crate::probe::ProbeArgs),
    /// Print manifests as the webhook would rewrite them (no network).
    Mutate(crate::manifests::MutateArgs),
    /// Write a CA and a serving certificate for local use.
    Certs(crate::certs::CertsArgs),
    /// Resolve env-var secrets, then execve the program with them.
    Exec(crate::exec::ExecArgs),
    /// Copy this binary into a directory (init container for `exec`).
    CopySelf(crate::exec::CopySelfArgs),
    /// Check every injector annotation in a tree of manifests (CI).
    Lint(crate::lint::LintArgs),
}

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    // One crypto provider for every rustls user in the process (server,
    // kube client, Vault client), chosen explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Webhook(args) => {
            multi_thread().and_then(|rt| rt.block_on(crate::server::run(*args)))
        }
        Command::Agent(args) => {
            current_thread().and_then(|rt| rt.block_on(crate::agent::run(args)))
        }
        Command::Probe(args) => crate::probe::run(args),
        Command::Mutate(args) => crate::manifests::run_mutate(args),
        Command::Certs(args) => crate::certs::run(args),
        Command::Exec(args) => crate::exec::run(args),
        Command::CopySelf(args) => crate::exec::run_copy_self(args),
        Command::Lint(args) => crate::lint::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vault-injector: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn multi_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The agent and the small commands run on one thread: they wait on Vault,
/// and a single-threaded runtime keeps their memory small.
fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
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
