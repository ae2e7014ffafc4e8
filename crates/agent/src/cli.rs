//! Command line of `vault-injector-agent`: the commands that run inside an
//! injected pod. Each subcommand's flags live with the module that runs it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `--version` of both binaries: the release and the git revision it was
/// built from (`build.rs`), e.g. `0.1.0 (3f2a9c1d0e4b)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("VAULT_INJECTOR_REVISION"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "vault-injector-agent",
    version = VERSION,
    about = "The in-pod agent of vault-injector"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the in-pod agent (init or sidecar mode).
    Agent(crate::agent::AgentArgs),
    /// Exit 0 once the agent has rendered every secret (startup probe).
    Probe(crate::probe::ProbeArgs),
    /// Resolve env-var secrets, then execve the program with them.
    Exec(crate::exec::ExecArgs),
    /// Copy this binary into a directory (init container for `exec`).
    CopySelf(crate::exec::CopySelfArgs),
}

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    install_crypto_provider();
    report(run(Cli::parse().command))
}

/// Runs one agent-side command (also reached through the webhook binary's
/// aliases, for pods injected by older versions).
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Agent(args) => {
            current_thread().and_then(|rt| rt.block_on(crate::agent::run(args)))
        }
        Command::Probe(args) => crate::probe::run(args),
        Command::Exec(args) => crate::exec::run(args),
        Command::CopySelf(args) => crate::exec::run_copy_self(args),
    }
}

/// One crypto provider for every rustls user in the process, chosen
/// explicitly.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The exit code of a command, its error printed first.
pub fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vault-injector: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The agent and the small commands run on one thread: they wait on Vault,
/// and a single-threaded runtime keeps their memory small.
pub fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
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
