//! The in-pod agent: log in with the pod's identity, render secrets, keep them
//! fresh.
//!
//! `init` renders every secret once and exits. `sidecar` does the same, marks
//! itself ready for `vault-injector probe`, then keeps the files fresh:
//! renews the token and leases at two thirds of their TTL, re-reads static
//! secrets every refresh interval (re-rendering only on change), fetches new
//! credentials when a lease cannot be extended, and runs the reload after a
//! change. While Vault is down the last good files stay in place.

mod reload;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::render;
use vault_injector_core::audit::{self, AgentAudit, AgentEvent};
use vault_injector_core::contract::{AgentConfig, Reload, SecretSpec, READY_FILE};
use vault_injector_vault::{self as vault, Lease, Secret, TokenInfo, Vault};

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
    /// Attempts at the first full render before giving up.
    #[arg(long, default_value_t = 5, env = "VAULT_INJECTOR_RETRY_ATTEMPTS")]
    pub retry_attempts: u32,
    /// First retry delay; doubles on each failure (with jitter).
    #[arg(long, default_value = "1s", env = "VAULT_INJECTOR_RETRY_INITIAL")]
    pub retry_initial: humantime::Duration,
    /// Longest retry delay, at start and while Vault is down in sidecar mode.
    #[arg(long, default_value = "30s", env = "VAULT_INJECTOR_RETRY_MAX")]
    pub retry_max: humantime::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Init,
    Sidecar,
}

/// Exit codes, so a pod's status tells what went wrong (docs/agent.md).
pub mod exit {
    /// The agent config (env var or flags) is invalid.
    pub const CONFIG: u8 = 2;
    /// Vault refused the login (wrong role, bad token, auth not configured).
    pub const LOGIN: u8 = 3;
    /// A secret could not be read (missing path, permission denied).
    pub const READ: u8 = 4;
    /// A secret could not be rendered or written (missing key, bad template).
    pub const RENDER: u8 = 5;
    /// Vault could not be reached.
    pub const UNREACHABLE: u8 = 6;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("login failed: {0}")]
    Login(vault::Error),
    #[error("{0}")]
    Token(vault::Error),
    #[error("secret {name} ({path}): {source}")]
    Read {
        name: String,
        path: String,
        source: vault::Error,
    },
    #[error(transparent)]
    Render(#[from] render::Error),
    #[error("writing agent state {path}: {message}")]
    State { path: PathBuf, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Login(e) | Error::Token(e) | Error::Read { source: e, .. }
                if e.is_transient() =>
            {
                exit::UNREACHABLE
            }
            Error::Config(_) => exit::CONFIG,
            Error::Login(_) | Error::Token(_) => exit::LOGIN,
            Error::Read { .. } => exit::READ,
            Error::Render(_) | Error::State { .. } => exit::RENDER,
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, Error::Login(_) | Error::Token(_) | Error::Read { .. })
    }

    fn secret(&self) -> Option<(&str, &str)> {
        match self {
            Error::Read { name, path, .. } => Some((name, path)),
            _ => None,
        }
    }
}

/// Exponential backoff with full jitter between `initial` and `max`.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    fn delay(&self, failures: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32.checked_shl(failures.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        // Half fixed, half random: spreads pods restarted together without
        // ever retrying immediately.
        let half = exp / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

/// The token's renewal state.
#[derive(Debug, Clone, Copy)]
struct TokenState {
    info: TokenInfo,
    /// TTL granted at login; a renewal that returns much less means the
    /// token is near its max TTL and a fresh login is due.
    login_ttl: u64,
    next: Option<Instant>,
    failures: u32,
}

/// Per-secret state between cycles.
#[derive(Debug, Clone)]
struct SecretState {
    hash: Option<[u8; 32]>,
    lease: Option<Lease>,
    /// The lease can no longer be extended: fetch new credentials when due.
    lease_final: bool,
    next: Instant,
    failures: u32,
}

struct Agent {
    cfg: AgentConfig,
    vault: Vault,
    secrets_dir: PathBuf,
    state_dir: PathBuf,
    jwt_file: PathBuf,
    backoff: Backoff,
    /// Attempts at the first full render.
    attempts: u32,
    token: Option<TokenState>,
    states: Vec<SecretState>,
    healthy: bool,
}

/// Two thirds of a TTL, the point where renewal is due.
fn two_thirds(secs: u64) -> Duration {
    Duration::from_millis(secs.saturating_mul(2000) / 3)
}

/// vaultrs and rustify log every non-2xx answer at ERROR level; the agent
/// reports each failure itself, once per state change, so theirs would be
/// one line per retry. `RUST_LOG`, when set, still decides.
const DEFAULT_LOG_FILTER: &str = "info,vaultrs=off,rustify=off";

pub async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    if std::env::var_os("RUST_LOG").is_none() {
        // Still single-threaded here: no other thread reads the environment.
        std::env::set_var("RUST_LOG", DEFAULT_LOG_FILTER);
    }
    let cfg = match AgentConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            crate::logging::init(Default::default());
            tracing::error!(error = %e, "agent config");
            eprintln!("vault-injector agent: {e}");
            return Ok(ExitCode::from(exit::CONFIG));
        }
    };
    crate::logging::init(cfg.log_format);
    if cfg.vault.tls_skip_verify {
        tracing::warn!("TLS verification of Vault is disabled (vault.tlsSkipVerify)");
    }
    let mode = args.mode;
    let mut agent = match Agent::new(cfg, args) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "agent setup");
            eprintln!("vault-injector agent: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
    };
    let code = agent.run(mode).await;
    Ok(ExitCode::from(code))
}

impl Agent {
    fn new(mut cfg: AgentConfig, args: AgentArgs) -> Result<Self> {
        let AgentArgs {
            mode: _,
            secrets_dir,
            state_dir,
            token_file,
            vault_addr,
            retry_attempts,
            retry_initial,
            retry_max,
        } = args;
        if let Some(addr) = vault_addr.filter(|a| !a.is_empty()) {
            cfg.vault.address = addr;
        }
        let secrets_dir = secrets_dir.unwrap_or_else(|| PathBuf::from(&cfg.secrets_dir));
        let state_dir = state_dir.unwrap_or_else(|| PathBuf::from(&cfg.state_dir));
        let jwt_file = token_file.unwrap_or_else(|| PathBuf::from(&cfg.auth.token_path));
        for s in &cfg.secrets {
            render::target_path(&secrets_dir, s).map_err(|e| Error::Config(e.to_string()))?;
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &cfg.secrets {
            if !names.insert(&s.name) {
                return Err(Error::Config(format!("secret {} is listed twice", s.name)));
            }
        }
        // Agent-only: the token lives here.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&state_dir)
            .map_err(|e| Error::State {
                path: state_dir.clone(),
                message: e.to_string(),
            })?;
        // A restarted container keeps its memory volume: readiness must be
        // earned again by this process.
        let _ = std::fs::remove_file(state_dir.join(READY_FILE));
        let vault = Vault::new(&cfg.vault).map_err(|e| Error::Config(e.to_string()))?;
        let now = Instant::now();
        let states = cfg
            .secrets
            .iter()
            .map(|_| SecretState {
                hash: None,
                lease: None,
                lease_final: false,
                next: now,
                failures: 0,
            })
            .collect();
        Ok(Self {
            cfg,
            vault,
            secrets_dir,
            state_dir,
            jwt_file,
            backoff: Backoff {
                initial: retry_initial.into(),
                max: retry_max.into(),
            },
            attempts: retry_attempts.max(1),
            token: None,
            states,
            healthy: true,
        })
    }

    /// Runs the mode to completion; returns the process exit code.
    async fn run(&mut self, mode: Mode) -> u8 {
        if let Err(e) = self.first_render().await {
            tracing::error!(error = %e, "giving up: not every secret could be rendered");
            eprintln!("vault-injector agent: {e}");
            return e.exit_code();
        }
        if let Err(e) = self.mark_ready() {
            tracing::error!(error = %e, "cannot write the readiness marker");
            return e.exit_code();
        }
        tracing::info!(secrets = self.cfg.secrets.len(), "every secret rendered");
        if mode == Mode::Init {
            return 0;
        }
        self.sidecar().await;
        0
    }

    fn audit(
        &self,
        event: AgentEvent,
        spec: Option<&SecretSpec>,
        fill: impl FnOnce(&mut AgentAudit),
    ) {
        let mut rec = AgentAudit {
            namespace: self.cfg.pod.namespace.clone(),
            pod: self.cfg.pod.name.clone(),
            service_account: self.cfg.pod.service_account.clone(),
            secret: spec.map(|s| s.name.clone()),
            path: spec.map(|s| s.path.clone()),
            ok: true,
            ..Default::default()
        };
        fill(&mut rec);
        emit_audit_line(&audit::agent_line(event, &rec));
    }

    fn audit_error(&self, spec: Option<&SecretSpec>, err: &dyn std::fmt::Display) {
        let msg = err.to_string();
        self.audit(AgentEvent::Error, spec, |r| {
            r.ok = false;
            r.error = Some(msg);
        });
    }

    /// Renders every secret, retrying with backoff; gives up after the
    /// configured attempts with the last error.
    async fn first_render(&mut self) -> Result<()> {
        let mut failures = 0;
        loop {
            match self.render_all().await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    failures += 1;
                    let spec = e
                        .secret()
                        .and_then(|(n, _)| self.cfg.secrets.iter().find(|s| s.name == n))
                        .cloned();
                    self.audit_error(spec.as_ref(), &e);
                    if !e.retryable() || failures >= self.attempts {
                        return Err(e);
                    }
                    let delay = self.backoff.delay(failures - 1);
                    tracing::warn!(
                        error = %e,
                        attempt = failures,
                        of = self.attempts,
                        retry_in_ms = delay.as_millis() as u64,
                        "first render failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Renders every secret not rendered yet. Mounts are looked up first
    /// (once per mount), then all reads go out at once: start-up latency is
    /// one round trip, not one per secret.
    async fn render_all(&mut self) -> Result<()> {
        if self.token.is_none() {
            self.login().await?;
        }
        let todo: Vec<usize> = (0..self.cfg.secrets.len())
            .filter(|&i| self.states[i].hash.is_none())
            .collect();
        for &i in &todo {
            let path = &self.cfg.secrets[i].path;
            if let Err(e) = self.vault.resolve(path).await {
                return Err(self.read_error(i, e));
            }
        }
        let vault = &self.vault;
        let reads = futures::future::join_all(
            todo.iter()
                .map(|&i| vault.read_resolved(&self.cfg.secrets[i].path)),
        )
        .await;
        for (i, res) in todo.into_iter().zip(reads) {
            match res {
                Ok(secret) => {
                    self.apply(i, secret, AgentEvent::Read)?;
                }
                // Maybe a dead token: the one-by-one path logs in again.
                Err(e) if e.is_forbidden() => {
                    self.sync(i, AgentEvent::Read).await?;
                }
                Err(e) => return Err(self.read_error(i, e)),
            }
        }
        Ok(())
    }

    fn read_error(&self, i: usize, source: vault::Error) -> Error {
        Error::Read {
            name: self.cfg.secrets[i].name.clone(),
            path: self.cfg.secrets[i].path.clone(),
            source,
        }
    }

    async fn login(&mut self) -> Result<()> {
        let info = match self.vault.login(&self.cfg.auth, &self.jwt_file).await {
            Ok(i) => i,
            Err(e) => {
                self.token = None;
                return Err(Error::Login(e));
            }
        };
        let token_path = self.state_dir.join("token");
        render::write_atomic("token", &token_path, 0o600, self.vault.token().as_bytes()).map_err(
            |e| Error::State {
                path: token_path.clone(),
                message: e.to_string(),
            },
        )?;
        self.token = Some(TokenState {
            info,
            login_ttl: info.ttl_secs,
            next: (info.ttl_secs > 0).then(|| Instant::now() + two_thirds(info.ttl_secs)),
            failures: 0,
        });
        let method = format!("{:?}", self.cfg.auth.method).to_lowercase();
        let mount = vault_injector_core::contract::auth_mount(&self.cfg.auth.mount);
        self.audit(AgentEvent::Login, None, |r| {
            r.path = Some(format!("auth/{mount} ({method})"));
            r.lease_duration_secs = Some(info.ttl_secs);
        });
        tracing::info!(
            ttl_secs = info.ttl_secs,
            renewable = info.renewable,
            "logged in to Vault"
        );
        Ok(())
    }

    /// Reads a secret, logging in again once if the token was refused (it
    /// expired, or Vault restarted and lost it).
    async fn fetch(&mut self, i: usize) -> Result<Secret> {
        let path = self.cfg.secrets[i].path.clone();
        match self.vault.read(&path).await {
            Ok(s) => Ok(s),
            Err(e) if e.is_forbidden() => {
                if self.vault.token_valid().await.unwrap_or(true) {
                    return Err(self.read_error(i, e));
                }
                self.login().await?;
                self.vault
                    .read(&path)
                    .await
                    .map_err(|e| self.read_error(i, e))
            }
            Err(e) => Err(self.read_error(i, e)),
        }
    }

    /// Reads, renders and (if the bytes changed) writes secret `i`. Returns
    /// whether the file changed.
    async fn sync(&mut self, i: usize, event: AgentEvent) -> Result<bool> {
        let secret = self.fetch(i).await?;
        self.apply(i, secret, event)
    }

    /// Audits a read, renders it and writes the file if its bytes changed;
    /// schedules the secret's next refresh or renewal.
    fn apply(&mut self, i: usize, secret: Secret, event: AgentEvent) -> Result<bool> {
        let spec = self.cfg.secrets[i].clone();
        let lease_secs = secret.lease.as_ref().map(|l| l.duration_secs);
        let version = secret.version();
        self.audit(event, Some(&spec), |r| {
            r.lease_duration_secs = lease_secs;
            r.version = version;
        });
        let bytes = render::render(&spec, &secret)?;
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        let target = render::target_path(&self.secrets_dir, &spec)?;
        let changed = match self.states[i].hash {
            Some(prev) => prev != hash,
            // First render of this process: an init container (classic
            // layout) or a restarted sidecar may have written it already.
            None => !same_file(&target, spec.mode, &bytes),
        };
        if changed {
            render::write_atomic(&spec.name, &target, spec.mode, &bytes)?;
        }
        self.audit(AgentEvent::Render, Some(&spec), |r| {
            r.version = version;
            r.changed = Some(changed);
        });
        let now = Instant::now();
        let st = &mut self.states[i];
        st.hash = Some(hash);
        st.failures = 0;
        st.lease_final = false;
        st.next = match &secret.lease {
            Some(l) if l.duration_secs > 0 => now + two_thirds(l.duration_secs),
            _ => now + Duration::from_secs(self.cfg.refresh_interval_secs.max(1)),
        };
        st.lease = secret.lease;
        Ok(changed)
    }

    fn mark_ready(&self) -> Result<()> {
        let p = self.state_dir.join(READY_FILE);
        render::write_atomic(READY_FILE, &p, 0o644, b"ready\n").map_err(|e| Error::State {
            path: p.clone(),
            message: e.to_string(),
        })
    }

    /// The sidecar loop: sleep until the earliest due item, do what is due,
    /// repeat; stop on SIGTERM or SIGINT.
    async fn sidecar(&mut self) {
        use tokio::signal::unix::{signal, SignalKind};
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot install signal handlers");
                return;
            }
        };
        loop {
            let next = self.next_due();
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
            self.tick().await;
        }
        tracing::info!("stopping");
        let _ = std::fs::remove_file(self.state_dir.join(READY_FILE));
        if self.cfg.revoke_on_shutdown && self.token.is_some() {
            match self.vault.revoke_token().await {
                Ok(()) => {
                    self.audit(AgentEvent::Revoke, None, |_| {});
                    let _ = std::fs::remove_file(self.state_dir.join("token"));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "token revocation failed");
                    self.audit_error(None, &e);
                }
            }
        }
    }

    fn next_due(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let token = self.token.and_then(|t| t.next).unwrap_or(far);
        // No token at all (a failed re-login): retry with the secrets.
        self.states.iter().map(|s| s.next).fold(token, Instant::min)
    }

    /// One pass over everything that is due.
    async fn tick(&mut self) {
        let now = Instant::now();
        let mut errors: Vec<(Option<usize>, Error)> = Vec::new();
        if self.token.and_then(|t| t.next).is_some_and(|n| n <= now) {
            if let Err(e) = self.renew_token().await {
                errors.push((None, e));
            }
        }
        let mut changed = Vec::new();
        for i in 0..self.states.len() {
            if self.states[i].next > now {
                continue;
            }
            match self.refresh(i).await {
                Ok(true) => changed.push(i),
                Ok(false) => {}
                Err(e) => {
                    let st = &mut self.states[i];
                    st.next = Instant::now() + self.backoff.delay(st.failures);
                    st.failures = st.failures.saturating_add(1);
                    errors.push((Some(i), e));
                }
            }
        }
        self.health(&errors);
        if !changed.is_empty() {
            self.reload(&changed).await;
        }
    }

    /// Logs and audits health transitions once, not once per retry.
    fn health(&mut self, errors: &[(Option<usize>, Error)]) {
        match (self.healthy, errors.first()) {
            (true, Some((i, e))) => {
                self.healthy = false;
                tracing::warn!(
                    error = %e,
                    "degraded: keeping the last good files and retrying"
                );
                let spec = i.map(|i| self.cfg.secrets[i].clone());
                self.audit_error(spec.as_ref(), e);
            }
            (false, None) => {
                self.healthy = true;
                tracing::info!("recovered: every secret is fresh again");
            }
            (false, Some((_, e))) => tracing::debug!(error = %e, "still degraded"),
            (true, None) => {}
        }
    }

    async fn renew_token(&mut self) -> Result<()> {
        let Some(mut t) = self.token else {
            return self.login().await;
        };
        // Granted less than the login's TTL last time: the token is near its
        // max TTL and cannot be extended; a fresh login replaces it.
        let near_max = t.info.ttl_secs < t.login_ttl;
        if !t.info.renewable || near_max {
            return self.login().await;
        }
        match self.vault.renew_token().await {
            Ok(info) => {
                t.info = info;
                t.failures = 0;
                t.next = Some(Instant::now() + two_thirds(info.ttl_secs));
                self.token = Some(t);
                self.audit(AgentEvent::Renewal, None, |r| {
                    r.path = Some("auth/token/renew-self".into());
                    r.lease_duration_secs = Some(info.ttl_secs);
                });
                Ok(())
            }
            Err(e) if e.is_transient() => {
                t.next = Some(Instant::now() + self.backoff.delay(t.failures));
                t.failures = t.failures.saturating_add(1);
                self.token = Some(t);
                Err(Error::Token(e))
            }
            Err(e) => {
                tracing::info!(error = %e, "token renewal refused; logging in again");
                self.login().await
            }
        }
    }

    /// Does what is due for secret `i`: renew its lease, or fetch it again
    /// (static refresh, or new credentials when the lease cannot be
    /// extended). Returns whether its file changed.
    async fn refresh(&mut self, i: usize) -> Result<bool> {
        if self.token.is_none() {
            self.login().await?;
        }
        let st = self.states[i].clone();
        match st.lease {
            Some(lease) if lease.renewable && !st.lease_final => {
                match self.vault.renew_lease(&lease).await {
                    Ok(granted) => {
                        let spec = self.cfg.secrets[i].clone();
                        self.audit(AgentEvent::Renewal, Some(&spec), |r| {
                            r.lease_duration_secs = Some(granted);
                        });
                        let st = &mut self.states[i];
                        st.failures = 0;
                        // Less than asked for: the max TTL is near, so
                        // fetch new credentials before these expire.
                        st.lease_final = granted < lease.duration_secs;
                        st.next = Instant::now() + two_thirds(granted.max(1));
                        Ok(false)
                    }
                    Err(e) if e.is_transient() => Err(Error::Read {
                        name: self.cfg.secrets[i].name.clone(),
                        path: self.cfg.secrets[i].path.clone(),
                        source: e,
                    }),
                    Err(e) => {
                        tracing::info!(
                            secret = %self.cfg.secrets[i].name,
                            error = %e,
                            "lease cannot be renewed; fetching new credentials"
                        );
                        self.sync(i, AgentEvent::Rotation).await
                    }
                }
            }
            Some(_) => self.sync(i, AgentEvent::Rotation).await,
            None => self.sync(i, AgentEvent::Read).await,
        }
    }

    /// Per-secret commands for the changed files, then the pod-wide reload.
    async fn reload(&mut self, changed: &[usize]) {
        for &i in changed {
            let spec = self.cfg.secrets[i].clone();
            if let Some(cmd) = spec.command.as_deref().filter(|c| !c.trim().is_empty()) {
                let res = reload::run_command(cmd).await;
                self.audit_reload(Some(&spec), "command", res.map(|_| ()));
            }
        }
        let Some(how) = self.cfg.reload.clone() else {
            return;
        };
        let res = match &how {
            Reload::Signal { signal, process } => {
                reload::send_signal(signal, process.as_deref()).map(|_| ())
            }
            Reload::Command { command } => reload::run_command(command).await,
        };
        let kind = match how {
            Reload::Signal { signal, .. } => signal,
            Reload::Command { .. } => "command".into(),
        };
        self.audit_reload(None, &kind, res);
    }

    fn audit_reload(&self, spec: Option<&SecretSpec>, kind: &str, res: reload::Result<()>) {
        match res {
            Ok(()) => {
                tracing::info!(how = kind, "reload sent");
                self.audit(AgentEvent::Reload, spec, |_| {});
            }
            Err(e) => {
                tracing::warn!(how = kind, error = %e, "reload failed");
                let msg = e.to_string();
                self.audit(AgentEvent::Reload, spec, |r| {
                    r.ok = false;
                    r.error = Some(msg);
                });
            }
        }
    }
}

/// Does `path` already hold exactly `bytes` with `mode`?
fn same_file(path: &Path, mode: u32, bytes: &[u8]) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    meta.permissions().mode() & 0o7777 == mode
        && meta.len() == bytes.len() as u64
        && std::fs::read(path).is_ok_and(|old| old == bytes)
}

/// For `probe` and tests: is the agent ready in `state_dir`?
pub fn is_ready(state_dir: &Path) -> bool {
    state_dir.join(READY_FILE).is_file()
}

/// Writes one audit line to stdout. A failed write (closed stdout) is
/// reported on stderr rather than panicking the agent.
fn emit_audit_line(line: &str) {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
        tracing::error!(error = %e, "cannot write audit line to stdout");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for f in 0..30 {
            let d = b.delay(f);
            let exp = Duration::from_millis(100 * (1u64 << f.min(10))).min(Duration::from_secs(1));
            assert!(d >= exp / 2 && d <= exp, "failures={f} delay={d:?}");
        }
    }

    #[test]
    fn renewal_is_due_at_two_thirds() {
        assert_eq!(two_thirds(30), Duration::from_secs(20));
        assert_eq!(two_thirds(0), Duration::ZERO);
    }

    #[test]
    fn exit_codes_tell_failures_apart() {
        let api = |status| vault::Error::Api {
            op: "x".into(),
            status,
            errors: "e".into(),
        };
        assert_eq!(Error::Login(api(400)).exit_code(), exit::LOGIN);
        let read = |source| Error::Read {
            name: "n".into(),
            path: "p".into(),
            source,
        };
        assert_eq!(read(api(403)).exit_code(), exit::READ);
        assert_eq!(read(api(503)).exit_code(), exit::UNREACHABLE);
        assert_eq!(Error::Config("x".into()).exit_code(), exit::CONFIG);
    }
}
