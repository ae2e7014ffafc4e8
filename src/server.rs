//! The HTTPS admission server and its lifecycle (bind, serve, drain).
//!
//! STUB: filled in by the server work.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::LogFormat;

#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    /// HTTPS listen address for `/mutate`.
    #[arg(long, default_value = "0.0.0.0:8443", env = "VAULT_INJECTOR_LISTEN")]
    pub listen: SocketAddr,
    /// PEM certificate chain (re-read when it changes).
    #[arg(long, env = "VAULT_INJECTOR_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// PEM private key (re-read when it changes).
    #[arg(long, env = "VAULT_INJECTOR_TLS_KEY")]
    pub tls_key: PathBuf,
    /// Plain-HTTP admin address (`/healthz`, `/readyz`, `/metrics`).
    #[arg(
        long,
        default_value = "0.0.0.0:9090",
        env = "VAULT_INJECTOR_ADMIN_LISTEN"
    )]
    pub admin_listen: SocketAddr,
    /// Operator config file (YAML). Defaults apply when omitted.
    #[arg(long, env = "VAULT_INJECTOR_CONFIG_FILE")]
    pub config: Option<PathBuf>,
    /// Log format; overrides the config file.
    #[arg(long, env = "VAULT_INJECTOR_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

pub async fn run(_args: WebhookArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("webhook: not implemented yet")
}
