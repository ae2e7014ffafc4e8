//! Production volumes defined in Vault.
//!
//! A volume profile is a KV v2 document under `volumes.kvMount` +
//! `volumes.prefix` holding a Kubernetes volume source, a mount path and an
//! allowlist (see `docs/volumes.md`). Manifests name only the profile. The
//! webhook reads profiles with its own Vault identity ([`WebhookAuth`]),
//! caches them for `volumes.cacheTtl`, and enforces the allowlist.
//!
//! [`ProfileStore::resolve`] is the one entry point for the admission path;
//! [`profile`] holds the pure validation it wraps.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use vault_injector_core::profile::{
    validate_profile_name, volume_name, ResolvedVolume, VolumeError, VolumeProfile,
};

use vault_injector_core::config::{VaultSettings, VolumeSettings, WebhookAuth, WebhookConfig};
use vault_injector_core::contract::AuthMethod;

/// A logged-in client. Deliberately not `Debug`: it holds a token.
struct Session {
    client: VaultClient,
    /// Log in again after this, before the token actually expires.
    refresh_at: Option<Instant>,
}

struct Cached {
    profile: Arc<VolumeProfile>,
    fetched: Instant,
}

/// Reads, caches and checks volume profiles. One per webhook process; share
/// it behind an `Arc`.
pub struct ProfileStore {
    vault: VaultSettings,
    auth: WebhookAuth,
    settings: VolumeSettings,
    ttl: Duration,
    /// The CA PEM from the config, written to a file (on first use, under
    /// $TMPDIR) because vaultrs only takes CA paths. A CA is not a secret.
    ca_file: std::sync::OnceLock<Result<Option<tempfile_path::TempPath>, String>>,
    cache: Mutex<HashMap<String, Cached>>,
    /// Serialises Vault round trips: concurrent admissions of the same
    /// Deployment then cost one read, not one each.
    session: tokio::sync::Mutex<Option<Session>>,
}

impl std::fmt::Debug for ProfileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileStore")
            .field("address", &self.vault.address)
            .field("auth", &self.auth)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

mod tempfile_path {
    //! A file removed on drop, without pulling tempfile into the binary.
    use std::path::{Path, PathBuf};

    pub struct TempPath(PathBuf);

    impl TempPath {
        pub fn write(prefix: &str, contents: &[u8]) -> std::io::Result<Self> {
            let name = format!(
                "{prefix}-{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            );
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, contents)?;
            Ok(Self(path))
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl ProfileStore {
    /// Builds the store from the operator's config. No I/O; the first
    /// `resolve` logs in, so a webhook that never sees a volume annotation
    /// never talks to Vault.
    pub fn new(config: &WebhookConfig) -> Self {
        Self {
            vault: config.vault.clone(),
            auth: config.webhook_auth.clone(),
            settings: config.volumes.clone(),
            ttl: config.volumes.cache_ttl(),
            ca_file: std::sync::OnceLock::new(),
            cache: Mutex::new(HashMap::new()),
            session: tokio::sync::Mutex::new(None),
        }
    }

    fn ca_paths(&self) -> Result<Vec<String>, String> {
        let file = self.ca_file.get_or_init(|| match &self.vault.ca_pem {
            None => Ok(None),
            Some(pem) => tempfile_path::TempPath::write("vault-injector-ca", pem.as_bytes())
                .map(Some)
                .map_err(|e| {
                    format!("writing vault.caPem to a file under {} for the Vault client (the webhook needs a writable $TMPDIR when vault.caPem is set): {e}", std::env::temp_dir().display())
                }),
        });
        match file {
            Ok(f) => Ok(f.iter().map(|f| f.path().display().to_string()).collect()),
            Err(e) => Err(e.clone()),
        }
    }

    /// Resolves `volume-NAME: PROFILE` for a pod: reads the profile (cached),
    /// checks its allowlist against the pod's namespace and service account,
    /// and returns the volume and mount to add.
    pub async fn resolve(
        &self,
        name: &str,
        profile: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<ResolvedVolume, VolumeError> {
        volume_name(name)?;
        let p = self.fetch(profile).await?;
        p.check_allowed(profile, namespace, service_account)?;
        p.to_resolved(name, profile)
    }

    /// The validated profile, from the cache while it is fresh, else from
    /// Vault. Vault down and the cached copy expired: an error, never a
    /// stale profile (its allowlist may have been narrowed meanwhile).
    pub async fn fetch(&self, profile: &str) -> Result<Arc<VolumeProfile>, VolumeError> {
        validate_profile_name(profile)?;
        if let Some(p) = self.cached(profile) {
            return Ok(p);
        }
        let mut session = self.session.lock().await;
        if let Some(p) = self.cached(profile) {
            return Ok(p);
        }
        let data = self.read(&mut session, profile).await?;
        let parsed = Arc::new(VolumeProfile::from_value(
            profile,
            &data,
            self.settings.allow_host_path,
        )?);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let ttl = self.ttl;
        cache.retain(|_, c| c.fetched.elapsed() < ttl);
        cache.insert(
            profile.to_string(),
            Cached {
                profile: parsed.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(parsed)
    }

    fn cached(&self, profile: &str) -> Option<Arc<VolumeProfile>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(profile)
            .filter(|c| c.fetched.elapsed() < self.ttl)
            .map(|c| c.profile.clone())
    }

    fn unavailable(&self, profile: &str, reason: String) -> VolumeError {
        VolumeError::VaultUnavailable {
            profile: profile.to_string(),
            reason,
        }
    }

    async fn read(
        &self,
        session: &mut Option<Session>,
        profile: &str,
    ) -> Result<serde_json::Value, VolumeError> {
        let mount = self.settings.kv_mount.trim_matches('/');
        let path = self.settings.profile_path(profile);
        let shown = format!("{mount}/data/{path}");
        // A token can be revoked or expire early; one fresh login is worth a
        // retry, a second refusal is the webhook's Vault policy speaking.
        for attempt in 0..2 {
            if session
                .as_ref()
                .is_none_or(|s| s.refresh_at.is_some_and(|t| Instant::now() >= t))
            {
                *session = Some(self.login(profile).await?);
            }
            let client = &session.as_ref().expect("session set above").client;
            match vaultrs::kv2::read::<serde_json::Value>(client, mount, &path).await {
                Ok(v) => return Ok(v),
                Err(ClientError::APIError { code: 404, .. }) => {
                    return Err(VolumeError::NotFound {
                        profile: profile.to_string(),
                        path: shown,
                    })
                }
                Err(ClientError::APIError { code: 403, .. }) if attempt == 0 => {
                    *session = None;
                }
                Err(ClientError::APIError { code: 403, .. }) => {
                    return Err(self.unavailable(
                        profile,
                        format!(
                            "the webhook's Vault identity may not read {shown} (check the policy of webhookAuth.role)"
                        ),
                    ))
                }
                Err(e) => {
                    return Err(self.unavailable(
                        profile,
                        format!("reading {shown} from Vault at {}: {}", self.vault.address, describe(&e)),
                    ))
                }
            }
        }
        Err(self.unavailable(profile, "Vault refused the read after a fresh login".into()))
    }

    fn client(&self, token: &str) -> Result<VaultClient, String> {
        let uri: http::Uri = self
            .vault
            .address
            .parse()
            .map_err(|e| format!("vault.address {:?}: {e}", self.vault.address))?;
        if uri.scheme().is_none() || uri.authority().is_none() {
            return Err(format!(
                "vault.address {:?} is not a URL",
                self.vault.address
            ));
        }
        let mut b = VaultClientSettingsBuilder::default();
        // Every setting explicit, so VAULT_* environment variables cannot
        // change where the webhook connects or how it verifies TLS.
        b.address(&self.vault.address)
            .token(token)
            .verify(!self.vault.tls_skip_verify)
            .ca_certs(self.ca_paths()?)
            .identity(None)
            .timeout(Some(self.settings.request_timeout()))
            .namespace(self.vault.namespace.clone());
        let settings = b
            .build()
            .map_err(|e| format!("Vault client settings: {e}"))?;
        VaultClient::new(settings).map_err(|e| format!("Vault client: {}", describe(&e)))
    }

    async fn login(&self, profile: &str) -> Result<Session, VolumeError> {
        let fail = |reason: String| self.unavailable(profile, reason);
        let mount = vault_injector_core::contract::auth_mount(&self.auth.path);
        let base = self.client("").map_err(&fail)?;
        let read = |p: &PathBuf, what: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .map_err(|e| fail(format!("webhookAuth: reading {what} {}: {e}", p.display())))
        };
        let role = || {
            self.auth.role.clone().ok_or_else(|| {
                fail("webhookAuth.role is not set, so the webhook cannot log in to read volume profiles".into())
            })
        };
        let info = match self.auth.method {
            AuthMethod::Kubernetes => {
                let jwt = read(&self.auth.token_path, "tokenPath")?;
                vaultrs::auth::kubernetes::login(&base, &mount, &role()?, &jwt).await
            }
            AuthMethod::Jwt => {
                let jwt = read(&self.auth.token_path, "tokenPath")?;
                vaultrs::auth::oidc::login(&base, &mount, &jwt, Some(role()?)).await
            }
            AuthMethod::Approle => {
                let missing =
                    || fail("webhookAuth approle needs roleIdPath and secretIdPath".into());
                let role_id = read(
                    self.auth.role_id_path.as_ref().ok_or_else(missing)?,
                    "roleIdPath",
                )?;
                let secret_id = read(
                    self.auth.secret_id_path.as_ref().ok_or_else(missing)?,
                    "secretIdPath",
                )?;
                vaultrs::auth::approle::login(&base, &mount, &role_id, &secret_id).await
            }
        }
        .map_err(|e| {
            fail(format!(
                "webhook login at auth/{mount} failed: {}",
                describe(&e)
            ))
        })?;
        let client = self.client(&info.client_token).map_err(&fail)?;
        // Renew by logging in again at 80% of the lease; 0 means no expiry.
        let refresh_at = (info.lease_duration > 0)
            .then(|| Instant::now() + Duration::from_secs(info.lease_duration * 4 / 5));
        tracing::debug!(mount = %mount, "webhook logged in to Vault");
        Ok(Session { client, refresh_at })
    }
}

/// A vaultrs error with its causes, without anything from the request body
/// (which, for logins, holds credentials).
fn describe(e: &ClientError) -> String {
    match e {
        ClientError::APIError { code, errors } if errors.is_empty() => {
            format!("Vault answered HTTP {code}")
        }
        ClientError::APIError { code, errors } => {
            format!("Vault answered HTTP {code}: {}", errors.join("; "))
        }
        other => {
            let mut s = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(c) = src {
                s.push_str(": ");
                s.push_str(&c.to_string());
                src = c.source();
            }
            s
        }
    }
}
