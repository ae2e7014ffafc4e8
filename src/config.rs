//! Configuration shared by the webhook and the agent.
//!
//! Two documents live here, and they are the contract between the two halves
//! of the product:
//! - [`WebhookConfig`]: the operator's YAML file (`webhook --config FILE`,
//!   shipped by the Helm chart in a ConfigMap). Only operators write it; no pod
//!   annotation can change where the webhook or agent connects.
//! - [`AgentConfig`]: the JSON the webhook puts in the agent container's
//!   [`AGENT_CONFIG_ENV`] env var. It names paths and formats, never values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Env var that carries the agent's JSON config into the injected containers.
pub const AGENT_CONFIG_ENV: &str = "VAULT_INJECTOR_CONFIG";
/// Where the secrets volume is mounted in app and agent containers.
pub const SECRETS_DIR: &str = "/vault/secrets";
/// Agent-only memory volume (Vault token, readiness marker, state).
pub const STATE_DIR: &str = "/vault/agent";
/// Projected service-account token path inside a pod.
pub const SA_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// File the agent writes (in the state dir) once every secret is rendered;
/// `vault-injector probe` checks it.
pub const READY_FILE: &str = "ready";

/// An operator-written YAML document (this config, the cluster policy) that
/// could not be read, parsed or validated; `what` names the kind of file.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("reading {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} is not valid: {source}")]
    Parse {
        what: &'static str,
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{what} {path}: {message}")]
    Invalid {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
}

/// Reads a file for [`parse_yaml`] (or for a caller that hashes it first).
pub fn read_yaml_file(what: &'static str, path: &Path) -> Result<String, YamlError> {
    std::fs::read_to_string(path).map_err(|source| YamlError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Parses an operator YAML document in which every field has a default (an
/// empty document means all defaults), then validates it. `origin` only
/// names the source in errors.
pub fn parse_yaml<T: serde::de::DeserializeOwned + Default>(
    what: &'static str,
    text: &str,
    origin: &Path,
    validate: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, YamlError> {
    let doc: T = if text.trim().is_empty() {
        T::default()
    } else {
        serde_yaml::from_str(text).map_err(|source| YamlError::Parse {
            what,
            path: origin.to_owned(),
            source,
        })?
    };
    validate(&doc).map_err(|message| YamlError::Invalid {
        what,
        path: origin.to_owned(),
        message,
    })?;
    Ok(doc)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Yaml(#[from] YamlError),
    #[error("agent config in ${AGENT_CONFIG_ENV} is not valid JSON for this version: {0}")]
    AgentJson(serde_json::Error),
    #[error("agent config: ${AGENT_CONFIG_ENV} is not set (is this container injected?)")]
    AgentMissing,
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
    pub policy: crate::policy::PolicySettings,
    /// Where volume profiles live in Vault and how long they are cached.
    pub volumes: crate::volumes::VolumeSettings,
    /// The webhook's own Vault identity (for reading volume profiles).
    pub webhook_auth: crate::volumes::WebhookAuth,
    /// Which pod-level agent connection overrides the operator permits.
    pub agent_overrides: crate::policy::overrides::AgentOverrideSettings,
    /// Kubernetes Events for admission decisions.
    pub events: crate::events::EventSettings,
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
}

impl Default for AgentDefaults {
    fn default() -> Self {
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let q = |s: &str| Quantity(s.to_string());
        Self {
            image: "ghcr.io/vault-injector/vault-injector:0.1.0".into(),
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
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Plain,
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

// ---------------------------------------------------------------------------
// Agent configuration (webhook -> agent, JSON in one env var)
// ---------------------------------------------------------------------------

/// Everything the agent needs, written by the webhook. Contains paths,
/// formats and templates, never secret values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentConfig {
    pub vault: VaultConnection,
    pub auth: AgentAuth,
    /// Directory the secrets are rendered into (the shared memory volume).
    #[serde(default = "default_secrets_dir")]
    pub secrets_dir: String,
    /// Agent-only directory (token, readiness marker).
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    /// Files to render.
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
    /// Env vars for `vault-injector exec` (resolved at exec time).
    #[serde(default)]
    pub env: Vec<EnvSpec>,
    /// Seconds between re-reads of static secrets in sidecar mode.
    #[serde(default = "default_refresh")]
    pub refresh_interval_secs: u64,
    /// What to do after a rendered file changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<Reload>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoke_on_shutdown: bool,
    #[serde(default)]
    pub log_format: LogFormat,
    /// Pod identity, for audit lines only.
    #[serde(default)]
    pub pod: PodIdentity,
}

fn default_secrets_dir() -> String {
    SECRETS_DIR.into()
}
fn default_state_dir() -> String {
    STATE_DIR.into()
}
fn default_refresh() -> u64 {
    300
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodIdentity {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub service_account: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultConnection {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_skip_verify: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    #[default]
    Kubernetes,
    Jwt,
    Approle,
}

impl std::str::FromStr for AuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kubernetes" => Ok(Self::Kubernetes),
            "jwt" => Ok(Self::Jwt),
            "approle" => Ok(Self::Approle),
            other => Err(format!(
                "unknown auth type {other:?} (expected kubernetes, jwt or approle)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentAuth {
    pub method: AuthMethod,
    /// Mount path without the `auth/` prefix, e.g. `kubernetes`.
    pub mount: String,
    /// Vault role (kubernetes/jwt). Empty for approle.
    #[serde(default)]
    pub role: String,
    /// JWT source for kubernetes/jwt.
    #[serde(default = "default_token_path")]
    pub token_path: String,
    /// AppRole role id file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_id_path: Option<String>,
    /// AppRole secret id file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id_path: Option<String>,
}

fn default_token_path() -> String {
    SA_TOKEN_PATH.into()
}

/// Normalises an auth path annotation (`auth/kubernetes`, `/auth/k8s/`,
/// `kubernetes`) to the mount name vaultrs expects.
pub fn auth_mount(path: &str) -> String {
    let p = path.trim_matches('/');
    p.strip_prefix("auth/").unwrap_or(p).to_string()
}

/// How a secret's data becomes a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Yaml,
    Env,
    Raw,
    Template,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "yaml" => Ok(Self::Yaml),
            "env" => Ok(Self::Env),
            "raw" => Ok(Self::Raw),
            "template" => Ok(Self::Template),
            other => Err(format!(
                "unknown format {other:?} (expected json, yaml, env, raw or template)"
            )),
        }
    }
}

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    /// The NAME of `secret-NAME`; audit lines use it.
    pub name: String,
    /// Vault path as the user wrote it (KV v1, KV v2 with or without `data/`,
    /// dynamic engines).
    pub path: String,
    /// File path relative to the secrets dir (validated: no `..`, not absolute).
    pub file: String,
    /// Unix file mode.
    #[serde(default = "default_mode")]
    pub mode: u32,
    #[serde(default)]
    pub format: Format,
    /// The key for `raw`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Template source for `template` (minijinja syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Fail the render when the template reads a missing key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub error_on_missing_key: bool,
    /// Command run after this file changes (vault-k8s `agent-inject-command-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The template was translated from a vault-k8s Go template: render it
    /// with Go's value printing (`map[k:v]`, `<no value>`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub go_template: bool,
}

pub fn default_mode() -> u32 {
    0o400
}

/// One env var for `exec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvSpec {
    pub var: String,
    pub path: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Containers this var is for (empty: all targets).
    #[serde(default)]
    pub containers: Vec<String>,
}

/// How the app learns that a secret changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Reload {
    /// Send SIGNAL (e.g. `SIGHUP`) to processes whose command name matches
    /// `process` (needs `shareProcessNamespace: true`), or to every other
    /// process in the namespace when `process` is empty.
    Signal {
        signal: String,
        #[serde(default)]
        process: Option<String>,
    },
    /// Run a command (through `/bin/sh -c`).
    Command { command: String },
}

impl AgentConfig {
    /// Reads the config from [`AGENT_CONFIG_ENV`].
    pub fn from_env() -> Result<Self> {
        let raw = std::env::var(AGENT_CONFIG_ENV).map_err(|_| Error::AgentMissing)?;
        Self::from_json(&raw)
    }

    pub fn from_json(raw: &str) -> Result<Self> {
        serde_json::from_str(raw).map_err(Error::AgentJson)
    }

    pub fn to_json(&self) -> String {
        crate::json_string_sized(self, 1024)
    }
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

    #[test]
    fn auth_mount_normalises() {
        assert_eq!(auth_mount("auth/kubernetes"), "kubernetes");
        assert_eq!(auth_mount("/auth/k8s-prod/"), "k8s-prod");
        assert_eq!(auth_mount("jwt"), "jwt");
    }

    #[test]
    fn agent_config_round_trips_and_rejects_unknown_fields() {
        let cfg = AgentConfig {
            vault: VaultConnection {
                address: "http://127.0.0.1:8200".into(),
                ca_pem: None,
                tls_skip_verify: false,
                namespace: None,
            },
            auth: AgentAuth {
                method: AuthMethod::Jwt,
                mount: "jwt".into(),
                role: "app".into(),
                token_path: SA_TOKEN_PATH.into(),
                role_id_path: None,
                secret_id_path: None,
            },
            secrets_dir: SECRETS_DIR.into(),
            state_dir: STATE_DIR.into(),
            secrets: vec![SecretSpec {
                name: "db".into(),
                path: "secret/data/db".into(),
                file: "db".into(),
                mode: 0o400,
                format: Format::Env,
                key: None,
                template: None,
                error_on_missing_key: false,
                command: None,
                go_template: false,
            }],
            env: vec![],
            refresh_interval_secs: 60,
            reload: Some(Reload::Signal {
                signal: "SIGHUP".into(),
                process: Some("nginx".into()),
            }),
            revoke_on_shutdown: true,
            log_format: LogFormat::Json,
            pod: PodIdentity::default(),
        };
        let back = AgentConfig::from_json(&cfg.to_json()).unwrap();
        assert_eq!(back, cfg);
        let err = AgentConfig::from_json(
            r#"{"vault":{"address":"x"},"auth":{"method":"jwt","mount":"j"},"bogus":1}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bogus"), "{err}");
    }
}
