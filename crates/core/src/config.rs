//! The operator's configuration file ([`WebhookConfig`]): `webhook --config
//! FILE`, shipped by the Helm chart in a ConfigMap. Only operators write it;
//! no pod annotation can change where the webhook or agent connects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::contract::{AuthMethod, LogFormat, VaultConnection, SA_TOKEN_PATH};
use crate::yaml::{parse_yaml, read_yaml_file, YamlError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Yaml(#[from] YamlError),
    #[error("policy.reloadInterval {0:?} is not a duration")]
    Interval(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------
// Webhook (operator) configuration
// ---------------------------------------------------------------------------

/// The operator's configuration file. Every field has a default so an empty
/// file is valid; unknown keys are rejected so a typo is not silently ignored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WebhookConfig {
    pub vault: VaultSettings,
    pub auth: AuthDefaults,
    pub agent: AgentDefaults,
    pub injector: InjectorSettings,
    /// Cluster policy file (roles, paths, volume profiles per namespace).
    pub policy: PolicySettings,
    /// Where volume profiles live in Vault and how long they are cached.
    pub volumes: VolumeSettings,
    /// The webhook's own Vault identity (for reading volume profiles).
    pub webhook_auth: WebhookAuth,
    /// Which pod-level agent connection overrides the operator permits.
    pub agent_overrides: AgentOverrideSettings,
    /// Kubernetes Events for admission decisions.
    pub events: EventSettings,
}

/// Where Vault is and how to verify it. Operator-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct VaultSettings {
    /// Vault/OpenBao address as seen from application pods.
    pub address: String,
    /// PEM CA bundle the agent uses to verify Vault (inlined into the agent
    /// config; a CA is not a secret).
    pub ca_pem: Option<String>,
    /// Disable TLS verification for the agent. For labs only.
    pub tls_skip_verify: bool,
    /// Vault Enterprise / OpenBao namespace, if any.
    pub namespace: Option<String>,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            address: "https://vault.vault.svc:8200".into(),
            ca_pem: None,
            tls_skip_verify: false,
            namespace: None,
        }
    }
}

/// Defaults for how injected agents log in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuthDefaults {
    pub method: AuthMethod,
    /// Auth mount path, e.g. `auth/kubernetes` (the `auth/` prefix is optional).
    pub path: String,
    /// Default role when the pod does not name one.
    pub role: Option<String>,
}

impl Default for AuthDefaults {
    fn default() -> Self {
        Self {
            method: AuthMethod::Kubernetes,
            path: "auth/kubernetes".into(),
            role: None,
        }
    }
}

/// How the injected agent container looks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AgentDefaults {
    pub image: String,
    pub image_pull_policy: String,
    /// Kubernetes resource requirements, as in a container spec.
    pub resources: k8s_openapi::api::core::v1::ResourceRequirements,
    pub run_as_user: i64,
    pub run_as_group: i64,
    /// `true` (Kubernetes >= 1.29): one native sidecar. `false`: an init
    /// container plus a classic sidecar, for older clusters.
    pub native_sidecar: bool,
    /// Size limit of the in-memory secrets volume.
    pub secrets_volume_size: String,
    /// Size limit of the agent-only memory volume.
    pub state_volume_size: String,
    /// How often static (KV) secrets are re-read by the sidecar, e.g. `5m`.
    pub refresh_interval: String,
    /// Revoke the agent's token when the sidecar stops.
    pub revoke_on_shutdown: bool,
    /// Agent log format (`json` or `plain`).
    pub log_format: LogFormat,
    /// Audience of the agent's projected service-account token. Empty: the
    /// API server's own audience (what Vault's Kubernetes auth checks by
    /// default). Set it (e.g. `vault`) and set the Vault role's `audience`
    /// (`bound_audiences` for JWT auth) to match: the token then cannot be
    /// used against the Kubernetes API (docs/install.md).
    pub token_audience: String,
}

impl Default for AgentDefaults {
    fn default() -> Self {
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let q = |s: &str| Quantity(s.to_string());
        Self {
            // The image `make image` builds for this very version.
            image: concat!(
                "ghcr.io/vault-injector/vault-injector:",
                env!("CARGO_PKG_VERSION")
            )
            .into(),
            image_pull_policy: "IfNotPresent".into(),
            resources: k8s_openapi::api::core::v1::ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), q("10m")),
                    ("memory".to_string(), q("16Mi")),
                ])),
                limits: Some(BTreeMap::from([("memory".to_string(), q("64Mi"))])),
                ..Default::default()
            },
            run_as_user: 65532,
            run_as_group: 65532,
            native_sidecar: true,
            secrets_volume_size: "16Mi".into(),
            state_volume_size: "1Mi".into(),
            refresh_interval: "5m".into(),
            revoke_on_shutdown: false,
            log_format: LogFormat::Json,
            token_audience: String::new(),
        }
    }
}

/// Webhook behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InjectorSettings {
    /// Largest AdmissionReview body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Pods carrying all of these labels are the injector's own and are never
    /// mutated.
    pub self_labels: BTreeMap<String, String>,
    /// Log format of the webhook itself.
    pub log_format: LogFormat,
    /// Inject pods that carry Bank-Vaults `vault:PATH#KEY` env values but no
    /// opt-in annotation, as Bank-Vaults' webhook does; their role, auth
    /// path and address come from Bank-Vaults' annotations
    /// (`vault.security.banzaicloud.io/vault-role`, ...). Off: such pods
    /// need `vault-injector.io/inject: "true"`.
    pub bank_vaults_without_opt_in: bool,
}

impl Default for InjectorSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 3 * 1024 * 1024,
            self_labels: BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "vault-injector".to_string(),
            )]),
            log_format: LogFormat::Json,
            bank_vaults_without_opt_in: false,
        }
    }
}

const CONFIG_FILE: &str = "config file";

impl WebhookConfig {
    /// Loads and validates the operator's YAML file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = read_yaml_file(CONFIG_FILE, path)?;
        Self::from_yaml(&text, path)
    }

    /// Parses YAML text; `origin` only names the source in errors.
    pub fn from_yaml(text: &str, origin: &Path) -> Result<Self> {
        Ok(parse_yaml(CONFIG_FILE, text, origin, Self::validate)?)
    }

    fn validate(&self) -> Result<(), String> {
        if self.vault.address.is_empty() {
            return Err("vault.address must not be empty".into());
        }
        if !(self.vault.address.starts_with("http://")
            || self.vault.address.starts_with("https://"))
        {
            return Err(format!(
                "vault.address {:?} must start with http:// or https://",
                self.vault.address
            ));
        }
        if self.agent.image.is_empty() {
            return Err("agent.image must not be empty".into());
        }
        humantime::parse_duration(&self.agent.refresh_interval).map_err(|e| {
            format!(
                "agent.refreshInterval {:?} is not a duration: {e}",
                self.agent.refresh_interval
            )
        })?;
        if self.injector.max_body_bytes < 1024 {
            return Err("injector.maxBodyBytes must be at least 1024".into());
        }
        self.policy.validate()?;
        self.volumes.validate()?;
        self.webhook_auth.validate()?;
        Ok(())
    }

    /// The refresh interval, validated at load time.
    pub fn refresh_interval_secs(&self) -> u64 {
        humantime::parse_duration(&self.agent.refresh_interval)
            .map(|d| d.as_secs().max(1))
            .unwrap_or(300)
    }
}

impl From<&VaultSettings> for VaultConnection {
    fn from(v: &VaultSettings) -> Self {
        Self {
            address: v.address.clone(),
            ca_pem: v.ca_pem.clone(),
            tls_skip_verify: v.tls_skip_verify,
            namespace: v.namespace.clone(),
        }
    }
}

/// `policy:` in the webhook config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PolicySettings {
    /// Policy YAML file (usually a mounted ConfigMap). None: no policy.
    pub file: Option<PathBuf>,
    /// How often the file is checked for changes, e.g. `5s`.
    pub reload_interval: String,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            file: None,
            reload_interval: "5s".into(),
        }
    }
}

impl PolicySettings {
    pub fn reload_interval(&self) -> Result<Duration> {
        humantime::parse_duration(&self.reload_interval)
            .map(|d| d.max(Duration::from_millis(100)))
            .map_err(|_| Error::Interval(self.reload_interval.clone()))
    }

    /// Checks what can be checked without reading the file.
    pub fn validate(&self) -> Result<(), String> {
        self.reload_interval()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// `agentOverrides:` in the webhook config. Everything off by default.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AgentOverrideSettings {
    /// Vault addresses pods may point their agent at, as exact
    /// `scheme://host[:port]` URLs (no globs: a glob on a URL is too easy to
    /// get wrong).
    pub allow_address: Vec<String>,
    /// Pods may turn TLS verification off for their agent.
    pub allow_tls_skip_verify: bool,
    /// Pods may give their agent a CA (PEM) with `vault-injector.io/ca-cert`.
    pub allow_ca_cert: bool,
}

/// `volumes:` in the webhook config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct VolumeSettings {
    /// KV v2 mount holding the profiles.
    pub kv_mount: String,
    /// Path under the mount; profile P is read from `PREFIX/P`.
    pub prefix: String,
    /// How long a profile read from Vault is used without asking again.
    /// Also how long profiles stay usable while Vault is down.
    pub cache_ttl: String,
    /// Timeout of each request to Vault.
    pub request_timeout: String,
    /// Permit `hostPath` sources in profiles (off: a profile writer who can
    /// write KV should not get node filesystem access by default).
    pub allow_host_path: bool,
}

impl Default for VolumeSettings {
    fn default() -> Self {
        Self {
            kv_mount: "secret".into(),
            prefix: "vault-injector/volumes".into(),
            cache_ttl: "60s".into(),
            request_timeout: "5s".into(),
            allow_host_path: false,
        }
    }
}

impl VolumeSettings {
    fn duration(field: &str, v: &str) -> Result<Duration, String> {
        humantime::parse_duration(v)
            .map_err(|e| format!("volumes.{field} {v:?} is not a duration: {e}"))
    }
    pub fn cache_ttl(&self) -> Duration {
        Self::duration("cacheTtl", &self.cache_ttl).unwrap_or(Duration::from_secs(60))
    }
    pub fn request_timeout(&self) -> Duration {
        Self::duration("requestTimeout", &self.request_timeout).unwrap_or(Duration::from_secs(5))
    }
    pub fn validate(&self) -> Result<(), String> {
        Self::duration("cacheTtl", &self.cache_ttl)?;
        Self::duration("requestTimeout", &self.request_timeout)?;
        if self.kv_mount.trim_matches('/').is_empty() {
            return Err("volumes.kvMount must not be empty".into());
        }
        if crate::contract::path_is_suspicious(&self.prefix) {
            return Err(format!(
                "volumes.prefix {:?} is not a clean path",
                self.prefix
            ));
        }
        Ok(())
    }

    /// KV path (under the mount) of a profile.
    pub fn profile_path(&self, profile: &str) -> String {
        let prefix = self.prefix.trim_matches('/');
        if prefix.is_empty() {
            profile.to_string()
        } else {
            format!("{prefix}/{profile}")
        }
    }
}

/// `webhookAuth:` in the webhook config: the webhook's OWN Vault identity,
/// used only to read volume profiles. It never comes from a request, and the
/// webhook never logs in as, or mints tokens for, any other account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WebhookAuth {
    pub method: AuthMethod,
    /// Auth mount, e.g. `auth/kubernetes` (the `auth/` prefix is optional).
    pub path: String,
    /// Role for kubernetes and jwt logins.
    pub role: Option<String>,
    /// JWT for kubernetes and jwt logins (the webhook's service account token).
    pub token_path: PathBuf,
    /// AppRole role id file.
    pub role_id_path: Option<PathBuf>,
    /// AppRole secret id file.
    pub secret_id_path: Option<PathBuf>,
}

impl Default for WebhookAuth {
    fn default() -> Self {
        Self {
            method: AuthMethod::Kubernetes,
            path: "auth/kubernetes".into(),
            role: None,
            token_path: SA_TOKEN_PATH.into(),
            role_id_path: None,
            secret_id_path: None,
        }
    }
}

impl WebhookAuth {
    pub fn validate(&self) -> Result<(), String> {
        if crate::contract::auth_mount(&self.path).is_empty() {
            return Err("webhookAuth.path must not be empty".into());
        }
        if self.method == AuthMethod::Approle
            && (self.role_id_path.is_none() || self.secret_id_path.is_none())
        {
            return Err("webhookAuth.method approle needs roleIdPath and secretIdPath".into());
        }
        Ok(())
    }
}

/// `events:` in the webhook config.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EventSettings {
    /// Emit Events for injections and denials (needs RBAC: create and patch
    /// `events.k8s.io/events`).
    pub enabled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = WebhookConfig::from_yaml("", Path::new("x.yaml")).unwrap();
        assert_eq!(cfg, WebhookConfig::default());
        assert!(cfg.agent.native_sidecar);
        assert_eq!(cfg.refresh_interval_secs(), 300);
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_file_named() {
        let err = WebhookConfig::from_yaml("vault:\n  adress: x\n", Path::new("cfg.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cfg.yaml"), "{err}");
        assert!(err.contains("adress"), "{err}");
    }

    #[test]
    fn bad_address_and_interval_are_named() {
        let err = WebhookConfig::from_yaml("vault:\n  address: vault:8200\n", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("vault.address"), "{err}");
        let err = WebhookConfig::from_yaml("agent:\n  refreshInterval: soon\n", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent.refreshInterval"), "{err}");
    }
}
