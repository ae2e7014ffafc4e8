//! The in-pod agent: log in with the pod's identity, render secrets, keep them
//! fresh.
//!
//! `init` renders every secret once and exits. `sidecar` does the same, marks
//! itself ready for `vault-injector probe`, then keeps the files fresh:
//! renews the token and leases at two thirds of their TTL, re-reads static
//! secrets every refresh interval (re-rendering only on change), fetches new
//! credentials when a lease cannot be extended, and runs the reload after a
//! change. While Vault is down the last good files stay in place.
//!
//! What is fetched is a list of *sources*: the Vault calls of every file
//! (its path, or every `secret` call of its Go template), identical calls
//! merged as consul-template merges them, so three files reading one
//! `pki/issue/ROLE` call share one certificate. A file is rendered again
//! when any of its sources brings new data. A file's command
//! (`agent-inject-command-NAME`) runs after every render that changed the
//! file, the first one included, as vault-k8s's init container runs it.
//!
//! Both save the token and leases in an encrypted state (`state`, `resume`)
//! and start by resuming from it, so a restarted agent, or the classic
//! sidecar after its init container, keeps the same token and credentials.

mod reload;
mod resume;
mod state;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::render;
use vault_injector_core::audit::{self, AgentAudit, AgentEvent};
use vault_injector_core::contract::{AgentConfig, ReadSpec, Reload, SecretSpec, READY_FILE};
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
    /// This pod's UID (the webhook sets it from the downward API). It binds
    /// the encrypted state to the pod; without it no state is kept.
    #[arg(long, env = "VAULT_INJECTOR_POD_UID")]
    pub pod_uid: Option<String>,
    /// TTL of the wrapping token that guards the state's key: how long a
    /// stopped agent can still resume. Rewrapped at two thirds while running.
    #[arg(long, default_value = "1h", env = "VAULT_INJECTOR_STATE_WRAP_TTL")]
    pub state_wrap_ttl: humantime::Duration,
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

/// One Vault call and its state between cycles.
#[derive(Debug, Clone)]
struct Source {
    read: ReadSpec,
    /// The files (indices into the config's secrets) rendered from it.
    users: Vec<usize>,
    /// The last data fetched; `None` until fetched, and after a resume,
    /// which restores the lease but never the data (it is not saved).
    secret: Option<Secret>,
    /// sha256 of the last data (fetched or resumed): tells a re-read that
    /// brought nothing new. `None`: unknown, treat the next data as new.
    digest: Option<[u8; 32]>,
    /// KV v2 version of the last data (audit lines, saved in the state).
    version: Option<u64>,
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
    sources: Vec<Source>,
    /// Per file: its sources, in the order its template reads them.
    deps: Vec<Vec<usize>>,
    /// Per file: the hash of the bytes last written (`None`: not rendered
    /// by this process yet).
    hashes: Vec<Option<[u8; 32]>>,
    healthy: bool,
    /// Encrypted state (agent/state.rs); `None` without a pod UID.
    store: Option<resume::Store>,
    /// The saved state was looked at (once per process).
    resume_done: bool,
    /// The token or a lease changed since the state was last written.
    dirty: bool,
    /// Accessor of a stolen state's token, revoked after the next login.
    revoke_stale: Option<String>,
    /// A state unwrapped but not yet applied (Vault failed in between).
    pending: Option<state::Saved>,
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
            pod_uid,
            state_wrap_ttl,
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
        let mut sources: Vec<Source> = Vec::new();
        let mut deps = Vec::with_capacity(cfg.secrets.len());
        for (j, spec) in cfg.secrets.iter().enumerate() {
            let mut mine = Vec::new();
            for read in spec.fetches() {
                let i = match sources.iter().position(|s| s.read == read) {
                    Some(i) => i,
                    None => {
                        sources.push(Source {
                            read,
                            users: Vec::new(),
                            secret: None,
                            digest: None,
                            version: None,
                            lease: None,
                            lease_final: false,
                            next: now,
                            failures: 0,
                        });
                        sources.len() - 1
                    }
                };
                if !sources[i].users.contains(&j) {
                    sources[i].users.push(j);
                }
                mine.push(i);
            }
            deps.push(mine);
        }
        let hashes = vec![None; cfg.secrets.len()];
        let store = pod_uid
            .filter(|u| !u.trim().is_empty())
            .map(|pod_uid| resume::Store {
                path: state_dir.join(state::STATE_FILE),
                pod_uid,
                wrap_ttl_secs: Duration::from(state_wrap_ttl).as_secs().max(10),
                wrap_token: None,
                rewrap_at: None,
                failures: 0,
            });
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
            sources,
            deps,
            hashes,
            healthy: true,
            store,
            resume_done: false,
            dirty: false,
            revoke_stale: None,
            pending: None,
        })
    }

    /// Runs the mode to completion; returns the process exit code.
    async fn run(&mut self, mode: Mode) -> u8 {
        let changed = match self.first_render().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "giving up: not every secret could be rendered");
                eprintln!("vault-injector agent: {e}");
                return e.exit_code();
            }
        };
        // Before readiness: an agent killed once the app runs can resume.
        self.save_state().await;
        // vault-k8s runs a file's command after its first render too (its
        // init container does), before the app starts: so before readiness.
        self.run_commands(&changed).await;
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
    /// configured attempts with the last error. Returns the files whose
    /// bytes this render changed.
    async fn first_render(&mut self) -> Result<Vec<usize>> {
        let mut failures = 0;
        let mut changed = Vec::new();
        loop {
            match self.render_all(&mut changed).await {
                Ok(()) => return Ok(changed),
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

    /// Fetches every source not fetched yet, then renders every file not
    /// rendered yet. Mounts are looked up first (once per mount), then all
    /// calls go out at once: start-up latency is one round trip, not one per
    /// secret.
    async fn render_all(&mut self, changed: &mut Vec<usize>) -> Result<()> {
        if self.token.is_none() && !self.resume_done {
            self.resume().await?;
        }
        if self.token.is_none() {
            self.login().await?;
        }
        let pending = (0..self.cfg.secrets.len())
            .filter(|&j| self.hashes[j].is_none())
            .collect();
        let (files, todo) = self.needs(pending);
        for &i in &todo {
            if self.sources[i].read.params.is_empty() {
                let path = &self.sources[i].read.path;
                if let Err(e) = self.vault.resolve(path).await {
                    return Err(self.read_error(i, e));
                }
            }
        }
        let vault = &self.vault;
        let results = futures::future::join_all(
            todo.iter()
                .map(|&i| call_resolved(vault, &self.sources[i].read)),
        )
        .await;
        for (i, res) in todo.into_iter().zip(results) {
            match res {
                Ok(secret) => self.store(i, secret, AgentEvent::Read),
                // Maybe a dead token: the one-by-one path logs in again.
                Err(e) if e.is_forbidden() => {
                    let secret = self.fetch(i).await?;
                    self.store(i, secret, AgentEvent::Read);
                }
                Err(e) => return Err(self.read_error(i, e)),
            }
        }
        for j in files {
            if self.render_file(j)? && !changed.contains(&j) {
                changed.push(j);
            }
        }
        Ok(())
    }

    /// The files to render, starting from `files`, and the sources to fetch
    /// for them. A file renders from all of its sources' data, so a source
    /// resumed without its data is fetched when one of its files must be
    /// rendered, and then every file using it renders the new data.
    fn needs(&self, mut files: Vec<usize>) -> (Vec<usize>, Vec<usize>) {
        let mut todo = Vec::new();
        let mut k = 0;
        while k < files.len() {
            let j = files[k];
            k += 1;
            for &i in &self.deps[j] {
                if self.sources[i].secret.is_some() || todo.contains(&i) {
                    continue;
                }
                todo.push(i);
                for &u in &self.sources[i].users {
                    if !files.contains(&u) {
                        files.push(u);
                    }
                }
            }
        }
        (files, todo)
    }

    /// The file a source is audited and reported under (its first user),
    /// with the source's own path.
    fn source_spec(&self, i: usize) -> SecretSpec {
        let src = &self.sources[i];
        let mut spec = self.cfg.secrets[src.users[0]].clone();
        spec.path = src.read.path.clone();
        spec
    }

    fn read_error(&self, i: usize, source: vault::Error) -> Error {
        Error::Read {
            name: self.cfg.secrets[self.sources[i].users[0]].name.clone(),
            path: self.sources[i].read.path.clone(),
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
        self.after_login().await;
        Ok(())
    }

    /// Makes source `i`'s call, logging in again once if the token was
    /// refused (it expired, or Vault restarted and lost it).
    async fn fetch(&mut self, i: usize) -> Result<Secret> {
        let read = self.sources[i].read.clone();
        match call(&mut self.vault, &read).await {
            Ok(s) => Ok(s),
            Err(e) if e.is_forbidden() => {
                if self.vault.token_valid().await.unwrap_or(true) {
                    return Err(self.read_error(i, e));
                }
                self.login().await?;
                call(&mut self.vault, &read)
                    .await
                    .map_err(|e| self.read_error(i, e))
            }
            Err(e) => Err(self.read_error(i, e)),
        }
    }

    /// Fetches source `i` again and renders the files that use it. Returns
    /// the files whose bytes changed.
    async fn sync(&mut self, i: usize, event: AgentEvent) -> Result<Vec<usize>> {
        let secret = self.fetch(i).await?;
        let before = self.sources[i].digest;
        self.store(i, secret, event);
        let users = self.sources[i].users.clone();
        let (files, todo) = if before.is_some() && before == self.sources[i].digest {
            // Nothing new: files whose other sources were resumed without
            // data are as they were; no need for new credentials.
            let ready = users
                .into_iter()
                .filter(|&j| {
                    self.deps[j]
                        .iter()
                        .all(|&k| self.sources[k].secret.is_some())
                })
                .collect();
            (ready, Vec::new())
        } else {
            self.needs(users)
        };
        for k in todo {
            match self.fetch(k).await {
                Ok(secret) => self.store(k, secret, AgentEvent::Rotation),
                Err(e) => {
                    // The files wait for the retry: it must not mistake
                    // this data for data already rendered.
                    self.sources[i].digest = None;
                    return Err(e);
                }
            }
        }
        let mut changed = Vec::new();
        for j in files {
            if self.render_file(j)? {
                changed.push(j);
            }
        }
        Ok(changed)
    }

    /// Audits a fetch, keeps its data and schedules the source's next
    /// refresh or renewal.
    fn store(&mut self, i: usize, secret: Secret, event: AgentEvent) {
        let spec = self.source_spec(i);
        let lease_secs = secret.lease.as_ref().map(|l| l.duration_secs);
        let version = secret.version();
        self.audit(event, Some(&spec), |r| {
            r.lease_duration_secs = lease_secs;
            r.version = version;
        });
        let now = Instant::now();
        let next = match &secret.lease {
            Some(l) if l.duration_secs > 0 => now + two_thirds(l.duration_secs),
            // A certificate issued without a lease: re-issue before it
            // expires, as consul-template does from its `expiration`.
            _ => match expires_in(&secret) {
                Some(secs) => now + two_thirds(secs.max(1)),
                None => now + Duration::from_secs(self.cfg.refresh_interval_secs.max(1)),
            },
        };
        let digest = Some(data_digest(&secret));
        let src = &mut self.sources[i];
        if src.digest != digest || secret.lease.is_some() {
            self.dirty = true;
        }
        src.digest = digest;
        src.version = version;
        src.failures = 0;
        src.lease_final = false;
        src.next = next;
        src.lease = secret.lease.clone();
        src.secret = Some(secret);
    }

    /// Renders file `j` from its sources' data and writes it if its bytes
    /// changed; `Ok(false)` while a source has no data yet.
    fn render_file(&mut self, j: usize) -> Result<bool> {
        let spec = self.cfg.secrets[j].clone();
        let Some(secrets) = self.deps[j]
            .iter()
            .map(|&i| self.sources[i].secret.as_ref())
            .collect::<Option<Vec<&Secret>>>()
        else {
            return Ok(false);
        };
        let version = secrets.first().and_then(|s| s.version());
        let bytes = render::render_reads(&spec, &secrets)?;
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        let target = render::target_path(&self.secrets_dir, &spec)?;
        if self.hashes[j] != Some(hash) {
            self.dirty = true;
        }
        let changed = match self.hashes[j] {
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
        self.hashes[j] = Some(hash);
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
                    self.forget_state();
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
        let token = self.rewrap_due().map_or(token, |r| r.min(token));
        // No token at all (a failed re-login): retry with the secrets.
        self.sources
            .iter()
            .map(|s| s.next)
            .fold(token, Instant::min)
    }

    /// One pass over everything that is due.
    async fn tick(&mut self) {
        let now = Instant::now();
        let mut errors: Vec<(Option<usize>, Error)> = Vec::new();
        // A tick for the state alone (rewrap) says nothing about health.
        let mut worked = false;
        if self.token.and_then(|t| t.next).is_some_and(|n| n <= now) {
            worked = true;
            if let Err(e) = self.renew_token().await {
                errors.push((None, e));
            }
        }
        let mut changed: Vec<usize> = Vec::new();
        for i in 0..self.sources.len() {
            if self.sources[i].next > now {
                continue;
            }
            worked = true;
            match self.refresh(i).await {
                Ok(files) => {
                    for j in files {
                        if !changed.contains(&j) {
                            changed.push(j);
                        }
                    }
                }
                Err(e) => {
                    let src = &mut self.sources[i];
                    src.next = Instant::now() + self.backoff.delay(src.failures);
                    src.failures = src.failures.saturating_add(1);
                    errors.push((Some(i), e));
                }
            }
        }
        if worked {
            self.health(&errors);
        }
        if !changed.is_empty() {
            self.reload(&changed).await;
        }
        self.save_state().await;
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
                let spec = i.map(|i| self.source_spec(i));
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
                self.dirty = true;
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

    /// Does what is due for source `i`: renew its lease, or fetch it again
    /// (static refresh, or new credentials when the lease cannot be
    /// extended). Returns the files whose bytes changed.
    async fn refresh(&mut self, i: usize) -> Result<Vec<usize>> {
        if self.token.is_none() {
            self.login().await?;
        }
        let src = self.sources[i].clone();
        match src.lease {
            Some(lease) if lease.renewable && !src.lease_final => {
                match self.vault.renew_lease(&lease).await {
                    Ok(granted) => {
                        let spec = self.source_spec(i);
                        self.audit(AgentEvent::Renewal, Some(&spec), |r| {
                            r.lease_duration_secs = Some(granted);
                        });
                        self.dirty = true;
                        let src = &mut self.sources[i];
                        src.failures = 0;
                        // Less than asked for: the max TTL is near, so
                        // fetch new credentials before these expire.
                        src.lease_final = granted < lease.duration_secs;
                        src.next = Instant::now() + two_thirds(granted.max(1));
                        Ok(Vec::new())
                    }
                    Err(e) if e.is_transient() => Err(self.read_error(i, e)),
                    Err(e) => {
                        tracing::info!(
                            path = %src.read.path,
                            error = %e,
                            "lease cannot be renewed; fetching new credentials"
                        );
                        self.sync(i, AgentEvent::Rotation).await
                    }
                }
            }
            Some(_) => self.sync(i, AgentEvent::Rotation).await,
            // A write (e.g. a certificate) gives new data every time.
            None if !src.read.params.is_empty() => self.sync(i, AgentEvent::Rotation).await,
            None => self.sync(i, AgentEvent::Read).await,
        }
    }

    /// Per-file commands for the changed files.
    async fn run_commands(&mut self, changed: &[usize]) {
        for &j in changed {
            let spec = self.cfg.secrets[j].clone();
            if let Some(cmd) = spec.command.as_deref().filter(|c| !c.trim().is_empty()) {
                let res = reload::run_command(cmd).await;
                self.audit_reload(Some(&spec), "command", res.map(|_| ()));
            }
        }
    }

    /// Per-file commands for the changed files, then the pod-wide reload.
    async fn reload(&mut self, changed: &[usize]) {
        self.run_commands(changed).await;
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

/// A source's call once its mount is known ([`Vault::resolve`]): a read,
/// or a write when the template gave parameters.
async fn call_resolved(vault: &Vault, read: &ReadSpec) -> vault::Result<Secret> {
    if read.params.is_empty() {
        vault.read_resolved_version(&read.path, read.version).await
    } else {
        vault.write(&read.path, &read.params).await
    }
}

/// A source's call, looking its mount up first.
async fn call(vault: &mut Vault, read: &ReadSpec) -> vault::Result<Secret> {
    if read.params.is_empty() {
        vault.read_version(&read.path, read.version).await
    } else {
        vault.write(&read.path, &read.params).await
    }
}

/// Seconds until a certificate's `expiration` (Unix time), for data that
/// carries one but no lease (PKI issue without `generate_lease`).
fn expires_in(secret: &Secret) -> Option<u64> {
    let vault::Exact::Number(n) = secret.data.get("expiration")? else {
        return None;
    };
    let at: u64 = n.parse().ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(at.saturating_sub(now))
}

/// sha256 of what a render can see of a fetch: its data, metadata and lease.
fn data_digest(secret: &Secret) -> [u8; 32] {
    let lease = secret.lease.as_ref().map(|l| (&l.id, l.duration_secs));
    let bytes = serde_json::to_vec(&(&secret.data, &secret.metadata, lease)).unwrap_or_default();
    Sha256::digest(bytes).into()
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
