//! Resuming from the encrypted state, and saving it (`state` has the file
//! format). Called from three hooks in the agent loop: before the first
//! login ([`Agent::resume`]), after a fresh login ([`Agent::after_login`])
//! and whenever the token or a lease changed ([`Agent::save_state`]).
//!
//! Every write response-wraps a fresh random key with Vault and then
//! unwraps (consumes) the previous wrapping token, so only the newest state
//! file can be opened, and only once: a copy taken before a resume, or an
//! older file put back (replay), meets a wrapping token Vault has already
//! forgotten.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use super::state::{self, Discard, Saved, SavedFile, SavedLease, SavedSource};
use super::{render, two_thirds, Agent, Error, Result, TokenState};
use vault_injector_core::audit::AgentEvent;
use vault_injector_vault::{Lease, TokenInfo};

/// Where and how the state is kept; absent when the pod UID is unknown.
pub(super) struct Store {
    pub path: PathBuf,
    pub pod_uid: String,
    /// TTL asked for each wrapping token.
    pub wrap_ttl_secs: u64,
    /// The wrapping token of the file on disk, consumed when replaced.
    pub wrap_token: Option<String>,
    /// When to write again even if nothing changed, so the wrapping token
    /// never expires while the agent runs.
    pub rewrap_at: Option<Instant>,
    /// Failed writes in a row: reported once, retried with backoff.
    pub failures: u32,
}

/// A source restored from the state, before it is installed.
struct Resumed {
    /// The lease and whether it is past its last renewal.
    lease: Option<(Lease, bool)>,
    next: Instant,
    /// Seconds the lease has left (audit lines).
    remaining: Option<u64>,
    digest: Option<[u8; 32]>,
    version: Option<u64>,
}

/// Outcome of reading the state before any Vault call that consumes it.
enum Loaded {
    Nothing,
    Discarded,
    Saved(Saved),
}

impl Agent {
    /// Resumes from the saved state if there is a valid one. Errors are
    /// transient Vault failures (retried by the first render); anything
    /// wrong with the state itself discards it, with one audit line.
    pub(super) async fn resume(&mut self) -> Result<()> {
        if self.store.is_none() {
            self.resume_done = true;
            return Ok(());
        }
        let saved = match self.pending.take() {
            Some(s) => s,
            None => match self.load().await? {
                Loaded::Nothing | Loaded::Discarded => {
                    self.resume_done = true;
                    return Ok(());
                }
                Loaded::Saved(s) => s,
            },
        };
        match self.apply_saved(&saved).await {
            Ok(true) => {}
            Ok(false) => {
                self.resume_done = true;
                return Ok(());
            }
            Err(e) => {
                // The wrapping token is spent: keep what it opened.
                self.vault.set_token("", "");
                self.token = None;
                self.pending = Some(saved);
                return Err(e);
            }
        }
        self.resume_done = true;
        // The file on disk names a spent wrapping token: replace it now, so
        // a crash from here on still finds a state to resume.
        self.dirty = true;
        self.save_state().await;
        Ok(())
    }

    /// Reads, checks and decrypts the state file (unwrapping its key).
    async fn load(&mut self) -> Result<Loaded> {
        let store = self.store.as_ref().expect("checked by resume");
        let path = store.path.clone();
        let uid = store.pod_uid.clone();
        let bytes = match read_bounded(&path) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(Loaded::Nothing),
            Err(()) => return Ok(self.discard(Discard::Malformed)),
        };
        let header = match state::parse(&bytes) {
            Ok((h, _, _)) => h,
            Err(d) => return Ok(self.discard(d)),
        };
        // Checked before unwrapping: never spend another pod's token.
        if header.pod_uid != uid {
            return Ok(self.discard(Discard::Foreign));
        }
        if header.wrap_expires <= state::unix_now() {
            return Ok(self.discard(Discard::Expired));
        }
        let payload = match self.vault.unwrap(&header.wrap_token).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                // Someone unwrapped it before us. Whoever did can open the
                // state and use its token: revoke it once logged in again.
                if !header.accessor.is_empty() {
                    self.revoke_stale = Some(header.accessor);
                }
                return Ok(self.discard(Discard::WrapUsed));
            }
            Err(e) if e.is_transient() => return Err(Error::Token(e)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot unwrap the state key");
                return Ok(self.discard(Discard::WrapUsed));
            }
        };
        let Some(key) = state::key_from_payload(&payload) else {
            return Ok(self.discard(Discard::Tampered));
        };
        match state::open(&key, &uid, &bytes) {
            Ok(s) => Ok(Loaded::Saved(s)),
            Err(d) => Ok(self.discard(d)),
        }
    }

    /// Installs the saved token and the leases still valid. `Ok(false)`:
    /// the token is dead (its leases died with it), the state is discarded.
    async fn apply_saved(&mut self, saved: &Saved) -> Result<bool> {
        self.vault.set_token(&saved.token, &saved.accessor);
        let lookup = match self.vault.lookup_self().await {
            Ok(Some(l)) => l,
            Ok(None) => {
                self.vault.set_token("", "");
                self.discard(Discard::TokenInvalid);
                return Ok(false);
            }
            Err(e) => return Err(Error::Token(e)),
        };
        let now = Instant::now();
        let mut token = TokenState {
            info: TokenInfo {
                ttl_secs: lookup.ttl_secs,
                renewable: lookup.renewable,
            },
            login_ttl: saved.login_ttl,
            next: (lookup.ttl_secs > 0).then(|| now + two_thirds(lookup.ttl_secs)),
            failures: 0,
        };
        if lookup.renewable {
            match self.vault.renew_token().await {
                Ok(info) => {
                    token.info = info;
                    token.next = (info.ttl_secs > 0).then(|| now + two_thirds(info.ttl_secs));
                }
                // Renewal is retried by the loop; until then the remaining
                // TTL must not read as "capped by the max TTL".
                Err(e) if e.is_transient() => {
                    token.info.ttl_secs = saved.login_ttl;
                    token.next = Some(now + self.backoff.delay(0));
                }
                Err(e) => {
                    tracing::info!(error = %e, "saved token cannot be renewed");
                }
            }
        }

        // Sources first: a lease still alive in Vault is kept (its data is
        // not: it was never saved), a KV read is due again at once, a write
        // without a lease (a certificate) when it was due.
        let unix_now = state::unix_now();
        let mut sources: Vec<(usize, Resumed)> = Vec::new();
        for (i, src) in self.sources.iter().enumerate() {
            let Some(s) = saved.sources.iter().find(|s| s.read == src.read) else {
                continue;
            };
            let digest = s.digest.as_deref().and_then(decode_hash);
            let (lease, next, remaining) = match &s.lease {
                Some(l) => match self.vault.lookup_lease(&l.id).await {
                    Ok(Some(ttl)) if ttl > 0 => {
                        // Due when two thirds of a period have passed since
                        // the last renewal, as if the agent never stopped.
                        let due = ttl.saturating_sub(l.duration_secs / 3);
                        let lease = Lease {
                            id: l.id.clone(),
                            duration_secs: l.duration_secs,
                            renewable: l.renewable,
                        };
                        (
                            Some((lease, l.last)),
                            now + Duration::from_secs(due),
                            Some(ttl),
                        )
                    }
                    Ok(_) => continue,
                    Err(e) if e.is_transient() => return Err(Error::Token(e)),
                    Err(_) => continue,
                },
                None if !src.read.params.is_empty() => (
                    None,
                    now + Duration::from_secs(s.due.saturating_sub(unix_now)),
                    None,
                ),
                // Static: read again at once, rewritten only if it changed.
                None => (None, now, None),
            };
            sources.push((
                i,
                Resumed {
                    lease,
                    next,
                    remaining,
                    digest,
                    version: s.version,
                },
            ));
        }
        // Then files, only if every source they render from resumed and
        // the file on disk is still the one written: resuming means not
        // rewriting it.
        let mut files: Vec<(usize, [u8; 32])> = Vec::new();
        for (j, spec) in self.cfg.secrets.iter().enumerate() {
            let digest = state::digest(spec);
            let Some(f) = saved
                .files
                .iter()
                .find(|f| f.name == spec.name && f.spec == digest && f.mode == spec.mode)
            else {
                continue;
            };
            let Some(hash) = decode_hash(&f.hash) else {
                continue;
            };
            if !self.deps[j]
                .iter()
                .all(|i| sources.iter().any(|(k, _)| k == i))
            {
                continue;
            }
            let Ok(target) = render::target_path(&self.secrets_dir, spec) else {
                continue;
            };
            if file_matches(&target, spec.mode, &hash) {
                files.push((j, hash));
            }
        }

        self.token = Some(token);
        let ttl = token.info.ttl_secs;
        self.audit(AgentEvent::Resume, None, |r| {
            r.path = Some("auth/token".into());
            r.lease_duration_secs = Some(ttl);
        });
        tracing::info!(
            sources = sources.len(),
            of = self.sources.len(),
            files = files.len(),
            "resumed from saved state"
        );
        let mut remaining: Vec<Option<u64>> = vec![None; self.sources.len()];
        for (i, r) in sources {
            let src = &mut self.sources[i];
            src.digest = r.digest;
            src.version = r.version;
            src.lease_final = r.lease.as_ref().is_some_and(|(_, last)| *last);
            src.lease = r.lease.map(|(l, _)| l);
            src.next = r.next;
            src.failures = 0;
            remaining[i] = r.remaining;
        }
        for (j, hash) in files {
            self.hashes[j] = Some(hash);
            let spec = self.cfg.secrets[j].clone();
            // The file's shortest lease, and its first source's version (as
            // its render lines report).
            let ttl = self.deps[j].iter().filter_map(|&i| remaining[i]).min();
            let version = self.deps[j].first().and_then(|&i| self.sources[i].version);
            self.audit(AgentEvent::Resume, Some(&spec), |r| {
                r.lease_duration_secs = ttl;
                r.version = version;
                r.changed = Some(false);
            });
        }
        Ok(true)
    }

    /// Deletes the state file and writes its one audit line.
    fn discard(&mut self, why: Discard) -> Loaded {
        if let Some(store) = &self.store {
            let _ = std::fs::remove_file(&store.path);
        }
        let theft = matches!(why, Discard::WrapUsed);
        if theft {
            tracing::error!(reason = %why, "saved state refused: possible theft");
        } else {
            tracing::warn!(reason = %why, "saved state discarded");
        }
        let msg = why.to_string();
        self.audit(AgentEvent::StateDiscarded, None, |r| {
            r.ok = false;
            r.error = Some(msg);
        });
        Loaded::Discarded
    }

    /// After a fresh login that replaced a stolen state's token: revoke
    /// that token where the policy allows it.
    pub(super) async fn after_login(&mut self) {
        self.dirty = true;
        let Some(accessor) = self.revoke_stale.take() else {
            return;
        };
        if accessor == self.vault.accessor() {
            return;
        }
        match self.vault.revoke_accessor(&accessor).await {
            Ok(()) => {
                tracing::warn!("revoked the token of the stolen state");
                self.audit(AgentEvent::Revoke, None, |r| {
                    r.path = Some("auth/token/revoke-accessor".into());
                });
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "cannot revoke the token of the stolen state; an operator must revoke \
                     this pod's older tokens"
                );
                let msg = format!("revoking the token of the stolen state: {e}");
                self.audit(AgentEvent::Revoke, None, |r| {
                    r.path = Some("auth/token/revoke-accessor".into());
                    r.ok = false;
                    r.error = Some(msg);
                });
            }
        }
    }

    /// Is a write due although nothing changed (the wrapping token ages)?
    pub(super) fn rewrap_due(&self) -> Option<Instant> {
        self.store.as_ref().and_then(|s| s.rewrap_at)
    }

    /// Writes the state if something changed or the wrapping token is
    /// two thirds through its TTL. Failures leave the previous file in
    /// place (still valid) and are retried at the next tick.
    pub(super) async fn save_state(&mut self) {
        let Some(store) = self.store.as_ref() else {
            return;
        };
        let due = store.rewrap_at.is_some_and(|t| t <= Instant::now());
        let backing_off = store.failures > 0 && !due;
        if !(self.dirty || due) || backing_off || self.token.is_none() {
            return;
        }
        let (path, uid, ttl) = (
            store.path.clone(),
            store.pod_uid.clone(),
            store.wrap_ttl_secs,
        );
        let key = state::new_key();
        let wrapped = match self.vault.wrap(&state::key_payload(&key), ttl).await {
            Ok(w) => w,
            Err(e) => return self.save_failed(&e),
        };
        let login_ttl = self.token.map(|t| t.login_ttl).unwrap_or(0);
        let (now, unix_now) = (Instant::now(), state::unix_now());
        let saved = Saved {
            token: self.vault.token().to_string(),
            accessor: self.vault.accessor().to_string(),
            login_ttl,
            sources: self
                .sources
                .iter()
                .filter(|src| src.secret.is_some() || src.digest.is_some() || src.lease.is_some())
                .map(|src| SavedSource {
                    read: src.read.clone(),
                    version: src.version,
                    digest: src.digest.map(hex::encode),
                    lease: src.lease.as_ref().map(|l| SavedLease {
                        id: l.id.clone(),
                        duration_secs: l.duration_secs,
                        renewable: l.renewable,
                        last: src.lease_final,
                    }),
                    due: unix_now + src.next.saturating_duration_since(now).as_secs(),
                })
                .collect(),
            files: self
                .cfg
                .secrets
                .iter()
                .zip(&self.hashes)
                .filter_map(|(spec, hash)| {
                    Some(SavedFile {
                        name: spec.name.clone(),
                        spec: state::digest(spec),
                        hash: hex::encode((*hash)?),
                        mode: spec.mode,
                    })
                })
                .collect(),
        };
        let header = state::Header {
            pod_uid: uid,
            wrap_token: wrapped.token.clone(),
            wrap_expires: state::unix_now() + wrapped.ttl_secs,
            accessor: saved.accessor.clone(),
        };
        let bytes = state::seal(&key, &header, &saved);
        if let Err(e) = render::write_atomic(state::STATE_FILE, &path, 0o600, &bytes) {
            // The new wrapping token protects nothing: spend it.
            let _ = self.vault.unwrap(&wrapped.token).await;
            return self.save_failed(&e);
        }
        let store = self.store.as_mut().expect("checked above");
        let old = store.wrap_token.replace(wrapped.token);
        store.rewrap_at = Some(Instant::now() + two_thirds(wrapped.ttl_secs.max(3)));
        if store.failures > 0 {
            store.failures = 0;
            tracing::info!("agent state saved again");
        }
        self.dirty = false;
        if let Some(old) = old {
            // Spends the previous wrapping token: older copies of the state
            // can no longer be opened.
            if let Err(e) = self.vault.unwrap(&old).await {
                tracing::debug!(error = %e, "previous wrapping token not consumed");
            }
        }
    }

    fn save_failed(&mut self, e: &dyn std::fmt::Display) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        // Retried with backoff (up to --retry-max), not at every tick.
        let delay = self
            .backoff
            .delay(store.failures)
            .max(Duration::from_secs(1));
        store.rewrap_at = Some(Instant::now() + delay);
        if store.failures == 0 {
            tracing::warn!(error = %e, "cannot save the agent state; a restart would log in again");
        }
        store.failures = store.failures.saturating_add(1);
    }

    /// Deletes the state (its token was revoked).
    pub(super) fn forget_state(&mut self) {
        if let Some(store) = &self.store {
            let _ = std::fs::remove_file(&store.path);
        }
    }
}

/// The file's bytes, `None` if there is none, `Err` if it cannot be ours.
fn read_bounded(path: &std::path::Path) -> std::result::Result<Option<Vec<u8>>, ()> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => return Err(()),
    };
    let mut buf = Vec::new();
    f.take(state::MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|_| ())?;
    if buf.len() as u64 > state::MAX_FILE_BYTES {
        return Err(());
    }
    Ok(Some(buf))
}

fn decode_hash(h: &str) -> Option<[u8; 32]> {
    hex::decode(h)
        .ok()
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
}

/// Does `path` hold bytes hashing to `hash`, with `mode`?
fn file_matches(path: &std::path::Path, mode: u32, hash: &[u8; 32]) -> bool {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    meta.permissions().mode() & 0o7777 == mode
        && std::fs::read(path).is_ok_and(|b| <[u8; 32]>::from(Sha256::digest(&b)) == *hash)
}
