//! The webhook-to-agent contract: the JSON document ([`AgentConfig`]) the
//! webhook puts in the agent container's [`AGENT_CONFIG_ENV`] env var, and
//! the paths both sides agree on. It names paths and formats, never values.

use serde::{Deserialize, Serialize};

/// Env var that carries the agent's JSON config into the injected containers.
pub const AGENT_CONFIG_ENV: &str = "VAULT_INJECTOR_CONFIG";
/// Where the secrets volume is mounted in app and agent containers.
pub const SECRETS_DIR: &str = "/vault/secrets";
/// Agent-only memory volume (encrypted state with the Vault token, readiness marker).
pub const STATE_DIR: &str = "/vault/agent";
/// Projected service-account token path inside a pod.
pub const SA_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The agent's executable: the command of the injected agent containers,
/// and the name `copy-self` gives the copy that `exec` runs from.
pub const AGENT_BIN: &str = "vault-injector-agent";
/// File the agent writes (in the state dir) once every secret is rendered;
/// `vault-injector-agent probe` checks it.
pub const READY_FILE: &str = "ready";
/// Env var of the agent containers holding the pod's UID (downward API):
/// the agent binds its encrypted state to it.
pub const POD_UID_ENV: &str = "VAULT_INJECTOR_POD_UID";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("agent config in ${AGENT_CONFIG_ENV} is not valid JSON for this version: {0}")]
    AgentJson(serde_json::Error),
    #[error("agent config: ${AGENT_CONFIG_ENV} is not set (is this container injected?)")]
    AgentMissing,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Plain,
}

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
    /// Agent-only directory (encrypted state, readiness marker).
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    /// Files to render.
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
    /// Env vars for `vault-injector-agent exec` (resolved at exec time).
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
    /// `exec` keeps the app as its child and restarts it when an env
    /// secret changes (`vault-injector.io/env-restart`); `None`: `execve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_restart: Option<EnvRestart>,
}

/// How `exec` restarts the app when an env secret changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvRestart {
    /// Signal that asks the app to stop, e.g. `SIGTERM`.
    #[serde(default = "default_stop_signal")]
    pub signal: String,
    /// Seconds between that signal and SIGKILL.
    #[serde(default = "default_grace")]
    pub grace_secs: u64,
}

impl Default for EnvRestart {
    fn default() -> Self {
        Self {
            signal: default_stop_signal(),
            grace_secs: default_grace(),
        }
    }
}

fn default_stop_signal() -> String {
    "SIGTERM".into()
}
fn default_grace() -> u64 {
    10
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

/// A Vault path nobody may name at all: `..` or `.` segments could walk out
/// of any prefix once Vault or a proxy normalises them. Here, at the bottom
/// of the crate, because the operator's config and the policy both ask.
pub fn path_is_suspicious(path: &str) -> bool {
    path.split('/').any(|s| s == ".." || s == ".")
        || path.contains('\\')
        || path.chars().any(|c| c.is_control())
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
    /// Every Vault call a translated Go template makes (`with secret "P"
    /// "k=v"`), found at admission; the template reads the results as
    /// `reads[i]`. When set, these are what the agent fetches for this file,
    /// not [`SecretSpec::path`]. Identical reads across files are fetched
    /// once, as consul-template does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<ReadSpec>,
}

/// One Vault call of a template: a read, or (with parameters) a write whose
/// response is the secret, e.g. `pki/issue/ROLE` with `common_name=...`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadSpec {
    /// Vault path as written, without a `?version=` query.
    pub path: String,
    /// KV v2 version from a `?version=N` query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// `k=v` parameters: the call is a write with these as its body.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: std::collections::BTreeMap<String, String>,
}

impl SecretSpec {
    /// What the agent fetches for this file: the template's reads, or the
    /// secret's own path; nothing for a template-only secret whose template
    /// reads no path (vault-k8s renders it as literal text).
    pub fn fetches(&self) -> Vec<ReadSpec> {
        if self.reads.is_empty() && self.path.is_empty() {
            Vec::new()
        } else if self.reads.is_empty() {
            vec![ReadSpec {
                path: self.path.clone(),
                version: None,
                params: Default::default(),
            }]
        } else {
            self.reads.clone()
        }
    }
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
    /// Run a command: split into words and executed directly, or through
    /// `/bin/sh -c` when it uses shell syntax and the agent has a shell.
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
                reads: vec![],
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
            env_restart: Some(EnvRestart::default()),
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
