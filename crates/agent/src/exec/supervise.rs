//! `exec` as a supervisor (`vault-injector.io/env-restart: on-change`): the
//! app runs as our child, so its environment can be renewed.
//!
//! - Env secrets are kept fresh like the agent keeps files: leases renewed
//!   at two thirds of their TTL and read again when they cannot be
//!   extended, KV secrets read again every refresh interval, the token
//!   renewed (its leases die with it).
//! - When a value changes, the child gets the stop signal, then SIGKILL
//!   after the grace period, and starts again with the new environment.
//! - Every catchable signal we get goes to the child; when the child exits
//!   on its own, we exit with its status (128 + N for signal N, as a shell
//!   reports it).
//! - We may be PID 1 of the container: every exited process that lands on
//!   us is reaped (we are a child subreaper when we are not PID 1, so the
//!   same holds outside a container).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use super::{refs, value_of, Error, Secrets, Wanted, EXIT_EXEC, EXIT_RESOLVE};
use vault_injector_core::audit::{self, AgentAudit, AgentEvent};
use vault_injector_core::contract::{AgentConfig, EnvRestart, AGENT_CONFIG_ENV};
use vault_injector_vault::{Secret, TokenInfo, Vault};

/// What to run and with which secrets.
pub(super) struct Job {
    pub cfg: AgentConfig,
    pub wanted: Vec<Wanted>,
    pub token_file: PathBuf,
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// Signals forwarded to the child. SIGCHLD is ours; SIGKILL and SIGSTOP
/// cannot be caught.
const FORWARDED: [Signal; 9] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGALRM,
    Signal::SIGCONT,
];

pub(super) fn run(job: Job, restart: EnvRestart) -> anyhow::Result<ExitCode> {
    let stop: Signal = match restart.signal.parse() {
        Ok(s) => s,
        Err(_) => {
            eprintln!(
                "vault-injector exec: envRestart.signal {:?} is not a signal",
                restart.signal
            );
            return Ok(ExitCode::from(EXIT_RESOLVE));
        }
    };
    if std::process::id() != 1 {
        // Orphans of the app come to us, as they would to PID 1.
        let _ = nix::sys::prctl::set_child_subreaper(true);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let code = rt.block_on(supervise(
        job,
        stop,
        Duration::from_secs(restart.grace_secs),
    ));
    Ok(ExitCode::from(code))
}

/// One Vault path (and pinned version) behind one or more env vars.
struct Source {
    secret: Secret,
    next: Instant,
    /// The lease cannot be extended any more: read again when due.
    lease_final: bool,
}

/// Keeps the env secrets fresh.
struct Resolver {
    cfg: AgentConfig,
    wanted: Vec<Wanted>,
    vault: Vault,
    token_file: PathBuf,
    token: Option<(TokenInfo, u64, Instant)>,
    sources: BTreeMap<(String, Option<u64>), Source>,
    refresh: Duration,
    failing: bool,
}

impl Resolver {
    fn audit(&self, var: Option<&str>, path: Option<&str>) -> AgentAudit {
        AgentAudit {
            namespace: self.cfg.pod.namespace.clone(),
            pod: self.cfg.pod.name.clone(),
            service_account: self.cfg.pod.service_account.clone(),
            secret: var.map(str::to_string),
            path: path.map(str::to_string),
            ok: true,
            ..Default::default()
        }
    }

    fn emit(&self, event: AgentEvent, rec: &AgentAudit) {
        // stdout is the app's: audit lines go to stderr, as in plain exec.
        eprintln!("{}", audit::agent_line(event, rec));
    }

    async fn login(&mut self) -> Result<(), Error> {
        let info = self
            .vault
            .login(&self.cfg.auth, &self.token_file)
            .await
            .map_err(Error::Login)?;
        self.token = Some((
            info,
            info.ttl_secs,
            Instant::now() + two_thirds(info.ttl_secs),
        ));
        let mut rec = self.audit(None, None);
        rec.lease_duration_secs = Some(info.ttl_secs);
        self.emit(AgentEvent::Login, &rec);
        // The old token's leases die with it: read every lease again.
        for s in self.sources.values_mut() {
            if s.secret.lease.is_some() {
                s.next = Instant::now();
                s.lease_final = true;
            }
        }
        Ok(())
    }

    /// Reads one source, logging in again once if the token was refused.
    async fn read(&mut self, path: &str, version: Option<u64>, var: &str) -> Result<Secret, Error> {
        let verr = |source| Error::Vault {
            var: var.to_string(),
            source,
        };
        match self.vault.read_version(path, version).await {
            Ok(s) => Ok(s),
            Err(e) if e.is_forbidden() && !self.vault.token_valid().await.unwrap_or(true) => {
                self.login().await?;
                self.vault.read_version(path, version).await.map_err(verr)
            }
            Err(e) => Err(verr(e)),
        }
    }

    fn schedule(&self, secret: &Secret) -> Instant {
        match &secret.lease {
            Some(l) if l.duration_secs > 0 => Instant::now() + two_thirds(l.duration_secs),
            _ => Instant::now() + self.refresh,
        }
    }

    fn record_read(&self, event: AgentEvent, var: &str, path: &str, secret: &Secret) {
        let mut rec = self.audit(Some(var), Some(path));
        rec.version = secret.version();
        rec.lease_duration_secs = secret.lease.as_ref().map(|l| l.duration_secs);
        self.emit(event, &rec);
    }

    /// Logs in and reads every source once.
    async fn first(&mut self) -> Result<Vec<(String, String)>, Error> {
        self.login().await?;
        let wanted = self.wanted.clone();
        for w in &wanted {
            for r in refs(w) {
                let key = (r.path.clone(), r.version);
                if self.sources.contains_key(&key) {
                    continue;
                }
                let secret = self.read(&r.path, r.version, &w.var).await?;
                self.record_read(AgentEvent::Read, &w.var, &r.path, &secret);
                let next = self.schedule(&secret);
                self.sources.insert(
                    key,
                    Source {
                        secret,
                        next,
                        lease_final: false,
                    },
                );
            }
        }
        self.values()
    }

    fn values(&self) -> Result<Vec<(String, String)>, Error> {
        let secrets: Secrets = self
            .sources
            .iter()
            .map(|(k, s)| (k.clone(), s.secret.clone()))
            .collect();
        self.wanted
            .iter()
            .map(|w| Ok((w.var.clone(), value_of(w, &secrets)?)))
            .collect()
    }

    fn next_due(&self) -> Instant {
        let token = self
            .token
            .map(|t| t.2)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        self.sources
            .values()
            .map(|s| s.next)
            .fold(token, Instant::min)
    }

    /// Does what is due; returns whether a source's data changed.
    async fn tick(&mut self) -> Result<bool, Error> {
        let now = Instant::now();
        match self.token {
            None => self.login().await?,
            Some((info, login_ttl, due)) if due <= now => {
                if info.renewable && info.ttl_secs >= login_ttl {
                    match self.vault.renew_token().await {
                        Ok(new) => {
                            self.token = Some((new, login_ttl, now + two_thirds(new.ttl_secs)));
                            let mut rec = self.audit(None, None);
                            rec.path = Some("auth/token/renew-self".into());
                            rec.lease_duration_secs = Some(new.ttl_secs);
                            self.emit(AgentEvent::Renewal, &rec);
                        }
                        Err(e) if e.is_transient() => {
                            self.token = Some((info, login_ttl, now + Duration::from_secs(1)));
                            return Err(Error::Login(e));
                        }
                        Err(_) => self.login().await?,
                    }
                } else {
                    self.login().await?;
                }
            }
            Some(_) => {}
        }
        let mut changed = false;
        let due: Vec<(String, Option<u64>)> = self
            .sources
            .iter()
            .filter(|(_, s)| s.next <= Instant::now())
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let var = self
                .wanted
                .iter()
                .find(|w| refs(w).any(|r| r.path == key.0 && r.version == key.1))
                .map(|w| w.var.clone())
                .unwrap_or_default();
            let src = &self.sources[&key];
            if let (Some(lease), false) = (src.secret.lease.clone(), src.lease_final) {
                if lease.renewable {
                    match self.vault.renew_lease(&lease).await {
                        Ok(granted) => {
                            let mut rec = self.audit(Some(&var), Some(&key.0));
                            rec.lease_duration_secs = Some(granted);
                            self.emit(AgentEvent::Renewal, &rec);
                            let s = self.sources.get_mut(&key).expect("listed");
                            s.lease_final = granted < lease.duration_secs;
                            s.next = Instant::now() + two_thirds(granted.max(1));
                            continue;
                        }
                        Err(e) if e.is_transient() => {
                            return Err(Error::Vault { var, source: e });
                        }
                        Err(_) => {}
                    }
                }
            }
            let event = if src.secret.lease.is_some() {
                AgentEvent::Rotation
            } else {
                AgentEvent::Read
            };
            let secret = self.read(&key.0, key.1, &var).await?;
            self.record_read(event, &var, &key.0, &secret);
            let next = self.schedule(&secret);
            let s = self.sources.get_mut(&key).expect("listed");
            // Same data and version: no restart for a KV re-read.
            if s.secret.data != secret.data || s.secret.version() != secret.version() {
                changed = true;
            }
            s.secret = secret;
            s.next = next;
            s.lease_final = false;
        }
        Ok(changed)
    }
}

fn two_thirds(secs: u64) -> Duration {
    Duration::from_millis(secs.saturating_mul(2000) / 3)
}

/// How a process ended, as a shell's `$?`.
fn exit_code(status: WaitStatus) -> Option<u8> {
    match status {
        WaitStatus::Exited(_, code) => Some(code as u8),
        WaitStatus::Signaled(_, sig, _) => Some(128u8.saturating_add(sig as i32 as u8)),
        _ => None,
    }
}

/// Reaps every exited process; returns the child's code if it was one.
fn reap(child: Pid) -> Option<u8> {
    let mut child_code = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return child_code,
            Ok(st) => {
                if st.pid() == Some(child) {
                    if let Some(code) = exit_code(st) {
                        child_code = Some(code);
                    }
                }
            }
        }
    }
}

fn spawn(job: &Job, values: &[(String, String)]) -> std::io::Result<Pid> {
    let mut cmd = std::process::Command::new(&job.program);
    cmd.args(&job.args).env_remove(AGENT_CONFIG_ENV);
    for (k, v) in values {
        cmd.env(k, v);
    }
    // Never waited on through `Child`: `reap` collects it with every other
    // process that ends up ours.
    let child = cmd.spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

async fn supervise(job: Job, stop: Signal, grace: Duration) -> u8 {
    let mut r = Resolver {
        vault: match Vault::new(&job.cfg.vault) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("vault-injector exec: vault client: {e}");
                return EXIT_RESOLVE;
            }
        },
        refresh: Duration::from_secs(job.cfg.refresh_interval_secs.max(1)),
        cfg: job.cfg.clone(),
        wanted: job.wanted.clone(),
        token_file: job.token_file.clone(),
        token: None,
        sources: BTreeMap::new(),
        failing: false,
    };
    let mut values = match r.first().await {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "vault-injector exec: {e}; {:?} was not started",
                job.program
            );
            return EXIT_RESOLVE;
        }
    };

    // Installed before the first spawn so no exit or signal is missed.
    let Ok(mut chld) = signal(SignalKind::child()) else {
        eprintln!("vault-injector exec: cannot watch child processes");
        return EXIT_EXEC;
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Signal>();
    for sig in FORWARDED {
        if let Ok(mut s) = signal(SignalKind::from_raw(sig as i32)) {
            let tx = tx.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    if tx.send(sig).is_err() {
                        break;
                    }
                }
            });
        }
    }

    let mut child = match spawn(&job, &values) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("vault-injector exec: cannot execute {:?}: {e}", job.program);
            return EXIT_EXEC;
        }
    };
    // A terminating signal was forwarded: when the child exits, so do we.
    let mut stopping = false;
    loop {
        if let Some(code) = reap(child) {
            return code;
        }
        tokio::select! {
            _ = chld.recv() => {}
            Some(sig) = rx.recv() => {
                stopping |= matches!(sig, Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT);
                let _ = kill(child, sig);
            }
            _ = tokio::time::sleep_until(r.next_due()), if !stopping => {
                let changed = match r.tick().await {
                    Ok(c) => {
                        if r.failing {
                            r.failing = false;
                            eprintln!("vault-injector exec: env secrets fresh again");
                        }
                        c
                    }
                    Err(e) => {
                        if !r.failing {
                            r.failing = true;
                            eprintln!("vault-injector exec: {e}; the app keeps its environment, retrying");
                        }
                        false
                    }
                };
                if !changed {
                    continue;
                }
                let new = match r.values() {
                    Ok(v) => v,
                    Err(e) => {
                        eprintln!("vault-injector exec: {e}; the app keeps its environment");
                        continue;
                    }
                };
                if new == values {
                    continue;
                }
                match restart(child, stop, grace, &mut chld, &mut rx).await {
                    Restarted::Stopped => {}
                    Restarted::Exit(code) => return code,
                }
                values = new;
                child = match spawn(&job, &values) {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("vault-injector exec: cannot execute {:?}: {e}", job.program);
                        return EXIT_EXEC;
                    }
                };
                let names: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).collect();
                let mut rec = r.audit(None, None);
                rec.secret = Some(names.join(","));
                r.emit(AgentEvent::Restart, &rec);
            }
        }
    }
}

enum Restarted {
    /// The old child is gone: start the new one.
    Stopped,
    /// A terminating signal arrived meanwhile: exit with this code.
    Exit(u8),
}

/// Stops the child (stop signal, SIGKILL after `grace`) and waits for it.
async fn restart(
    child: Pid,
    stop: Signal,
    grace: Duration,
    chld: &mut tokio::signal::unix::Signal,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Signal>,
) -> Restarted {
    let _ = kill(child, stop);
    let deadline = Instant::now() + grace;
    let mut killed = false;
    let mut terminating = false;
    loop {
        if let Some(code) = reap(child) {
            return if terminating {
                Restarted::Exit(code)
            } else {
                Restarted::Stopped
            };
        }
        tokio::select! {
            _ = chld.recv() => {}
            Some(sig) = rx.recv() => {
                terminating |= matches!(sig, Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT);
                let _ = kill(child, sig);
            }
            _ = tokio::time::sleep_until(deadline), if !killed => {
                killed = true;
                let _ = kill(child, Signal::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_read_like_a_shell() {
        let pid = Pid::from_raw(5);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 7)), Some(7));
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGTERM, false)),
            Some(143)
        );
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }
}
