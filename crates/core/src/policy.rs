//! Cluster policy: which namespaces and service accounts may request which
//! Vault roles, auth mounts, secret paths and volume profiles, and the
//! defaults they get.
//!
//! The policy is a YAML file the operator mounts from a ConfigMap. It is
//! reloaded when its content changes (polling a content hash, which also sees
//! Kubernetes' `..data` symlink swap, where inotify on the file would not).
//! [`Policy::check`] is pure: the admission path calls it with what the pod
//! asked for and gets either the defaults to apply or a [`Denial`] whose
//! message names the rule. No policy file configured: everything is allowed,
//! as before the policy existed.
//!
//! Rules are evaluated in order and the first whose `namespaces` and
//! `serviceAccounts` admit the pod decides, like a firewall: a pod matched by
//! no rule is denied.

pub mod glob;
pub mod overrides;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::ResourceRequirements;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::PolicySettings;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Yaml(#[from] crate::yaml::YamlError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The policy file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One rule. List fields that are omitted grant nothing (`["*"]` grants
/// everything), so forgetting a field fails closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Named in every denial this rule causes.
    pub name: String,
    /// Namespace globs this rule applies to.
    pub namespaces: Vec<String>,
    /// Service accounts (`sa` or `namespace/sa`, globs) this rule applies to.
    #[serde(default = "star")]
    pub service_accounts: Vec<String>,
    /// Vault roles (globs) the pod may log in as.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Auth mounts (globs, `auth/` prefix optional) a pod may name with an
    /// auth-path annotation. Pods using the operator's default need nothing.
    #[serde(default)]
    pub auth_paths: Vec<String>,
    /// Vault path prefixes (whole segments, each a glob) for secrets and env
    /// vars. KV v2 `data/` is ignored when comparing.
    #[serde(default)]
    pub secret_paths: Vec<String>,
    /// Volume profiles (globs) the pod may mount.
    #[serde(default)]
    pub volume_profiles: Vec<String>,
    /// Whether pods may set the agent's resources with annotations
    /// (bounded anyway by the namespace's LimitRange and quota).
    #[serde(default = "yes")]
    pub allow_agent_resources: bool,
    #[serde(default)]
    pub defaults: RuleDefaults,
}

fn star() -> Vec<String> {
    vec!["*".into()]
}
fn yes() -> bool {
    true
}

/// What a rule fills in when the pod does not say.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleDefaults {
    pub role: Option<String>,
    pub agent_resources: Option<ResourceRequirements>,
    pub agent_image: Option<String>,
}

/// What a pod asks for, as the admission path parsed it from annotations.
/// Names go with paths and profiles so a denial can say which annotation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicyRequest {
    pub namespace: String,
    pub service_account: String,
    /// The role the pod named, None when it relies on the default.
    pub role: Option<String>,
    /// The auth path the pod named, None when it relies on the default.
    pub auth_path: Option<String>,
    /// `(NAME, PATH)` for every `secret-NAME`.
    pub secret_paths: Vec<(String, String)>,
    /// `(VAR, PATH)` for every env var (`env-VAR` or `vault:PATH#KEY`).
    pub env_paths: Vec<(String, String)>,
    /// `(NAME, PROFILE)` for every `volume-NAME`.
    pub volume_profiles: Vec<(String, String)>,
    /// The pod sets agent requests/limits with annotations.
    pub agent_resources: bool,
}

/// What the matching rule contributes. All None without a policy.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Defaults {
    /// The rule that admitted the pod (for the audit reason).
    pub rule: Option<String>,
    /// Role to use when the pod named none.
    pub role: Option<String>,
    pub agent_resources: Option<ResourceRequirements>,
    pub agent_image: Option<String>,
}

/// Which part of a request the policy refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialKind {
    NoRule,
    Role,
    AuthPath,
    SecretPath,
    EnvPath,
    VolumeProfile,
    AgentResources,
}

/// A refused request. The message names the pod's namespace and service
/// account, what it asked for, and the rule that refused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Denial {
    pub kind: DenialKind,
    pub rule: Option<String>,
    pub message: String,
}

const POLICY_FILE: &str = "policy file";

impl Policy {
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::yaml::read_yaml_file(POLICY_FILE, path)?;
        Self::from_yaml(&text, path)
    }

    /// Parses and validates; `origin` only names the source in errors.
    pub fn from_yaml(text: &str, origin: &Path) -> Result<Self> {
        Ok(crate::yaml::parse_yaml(
            POLICY_FILE,
            text,
            origin,
            Self::validate,
        )?)
    }

    fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.name.trim().is_empty() {
                return Err(format!("rules[{i}].name must not be empty"));
            }
            if !seen.insert(rule.name.as_str()) {
                return Err(format!("rules[{i}].name {:?} is used twice", rule.name));
            }
            if rule.namespaces.is_empty() {
                return Err(format!(
                    "rule {:?}: namespaces must list at least one namespace (\"*\" for all)",
                    rule.name
                ));
            }
            for p in rule.secret_paths.iter() {
                if glob::path_is_suspicious(p) || glob::canonical_segments(p).is_empty() {
                    return Err(format!(
                        "rule {:?}: secretPaths entry {p:?} is not a usable path prefix",
                        rule.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The first rule that admits the pod's namespace and service account.
    pub fn rule_for(&self, namespace: &str, service_account: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            glob::any_matches(&r.namespaces, namespace)
                && r.service_accounts
                    .iter()
                    .any(|p| glob::service_account_matches(p, namespace, service_account))
        })
    }

    /// Decides a request. Pure: same policy and request, same answer.
    pub fn check(&self, req: &PolicyRequest) -> Result<Defaults, Denial> {
        // Built only for a denial: the allowed path should not allocate text.
        let who = || {
            format!(
                "policy: namespace {:?} service account {:?}",
                req.namespace, req.service_account
            )
        };
        let Some(rule) = self.rule_for(&req.namespace, &req.service_account) else {
            return Err(Denial {
                kind: DenialKind::NoRule,
                rule: None,
                message: format!("{} is not admitted by any policy rule", who()),
            });
        };
        let deny = |kind, what: String, allows: &str, list: &[String]| Denial {
            kind,
            rule: Some(rule.name.clone()),
            message: format!(
                "{} may not use {what} (rule {:?} {allows}: {})",
                who(),
                rule.name,
                if list.is_empty() {
                    "none".to_string()
                } else {
                    list.join(", ")
                }
            ),
        };

        if let Some(role) = &req.role {
            if !glob::any_matches(&rule.roles, role) {
                return Err(deny(
                    DenialKind::Role,
                    format!("role {role:?}"),
                    "allows",
                    &rule.roles,
                ));
            }
        }
        if let Some(path) = &req.auth_path {
            let mount = crate::contract::auth_mount(path);
            let ok = rule
                .auth_paths
                .iter()
                .any(|p| glob::matches(&crate::contract::auth_mount(p), &mount));
            if !ok {
                return Err(deny(
                    DenialKind::AuthPath,
                    format!("auth path {path:?}"),
                    "allows",
                    &rule.auth_paths,
                ));
            }
        }
        let paths = req
            .secret_paths
            .iter()
            .map(|(n, p)| (DenialKind::SecretPath, "secret", n, p))
            .chain(
                req.env_paths
                    .iter()
                    .map(|(n, p)| (DenialKind::EnvPath, "env var", n, p)),
            );
        for (kind, noun, name, path) in paths {
            let what = || format!("{noun} {name:?}");
            if glob::path_is_suspicious(path) {
                return Err(Denial {
                    kind,
                    rule: Some(rule.name.clone()),
                    message: format!(
                        "{} may not use path {path:?} for {}: \".\" and \"..\" segments are not allowed",
                        who(),
                        what()
                    ),
                });
            }
            let segments = glob::canonical_segments(path);
            if !rule
                .secret_paths
                .iter()
                .any(|pre| glob::segments_within(pre, &segments))
            {
                return Err(deny(
                    kind,
                    format!("path {path:?} for {}", what()),
                    "allows paths under",
                    &rule.secret_paths,
                ));
            }
        }
        for (name, profile) in &req.volume_profiles {
            if !glob::any_matches(&rule.volume_profiles, profile) {
                return Err(deny(
                    DenialKind::VolumeProfile,
                    format!("volume profile {profile:?} for volume {name:?}"),
                    "allows",
                    &rule.volume_profiles,
                ));
            }
        }
        if req.agent_resources && !rule.allow_agent_resources {
            return Err(Denial {
                kind: DenialKind::AgentResources,
                rule: Some(rule.name.clone()),
                message: format!(
                    "{} may not set agent resources with annotations (rule {:?} sets allowAgentResources: false)",
                    who(),
                    rule.name
                ),
            });
        }
        Ok(Defaults {
            rule: Some(rule.name.clone()),
            role: rule.defaults.role.clone(),
            agent_resources: rule.defaults.agent_resources.clone(),
            agent_image: rule.defaults.agent_image.clone(),
        })
    }
}

/// The live policy, shared by every admission and swapped on reload.
///
/// A reload that fails (unreadable or invalid file) keeps the last good
/// policy and logs the error: a half-edited ConfigMap must not open the
/// cluster up, nor deny every pod.
#[derive(Debug)]
pub struct PolicyHandle {
    file: Option<PathBuf>,
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    policy: Option<Arc<Policy>>,
    digest: Option<[u8; 32]>,
}

impl PolicyHandle {
    /// No policy: every request is allowed.
    pub fn disabled() -> Self {
        Self {
            file: None,
            state: RwLock::new(State::default()),
        }
    }

    /// Loads the configured file. A configured but missing or invalid file is
    /// an error at startup: the operator asked for a policy, and running
    /// without one would silently allow everything.
    pub fn from_settings(settings: &PolicySettings) -> Result<Self> {
        let Some(file) = &settings.file else {
            return Ok(Self::disabled());
        };
        let handle = Self {
            file: Some(file.clone()),
            state: RwLock::new(State::default()),
        };
        handle.reload()?;
        Ok(handle)
    }

    /// The policy file followed, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    pub fn current(&self) -> Option<Arc<Policy>> {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .policy
            .clone()
    }

    /// Decides a request against the current policy (allowed when none).
    pub fn check(&self, req: &PolicyRequest) -> Result<Defaults, Denial> {
        match self.current() {
            Some(p) => p.check(req),
            None => Ok(Defaults::default()),
        }
    }

    /// Re-reads the file; returns whether the policy changed. The path is
    /// opened afresh each time, so a `..data` symlink swap is followed.
    pub fn reload(&self) -> Result<bool> {
        let Some(file) = &self.file else {
            return Ok(false);
        };
        let text = crate::yaml::read_yaml_file(POLICY_FILE, file)?;
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        if self.state.read().unwrap_or_else(|e| e.into_inner()).digest == Some(digest) {
            return Ok(false);
        }
        let policy = Policy::from_yaml(&text, file)?;
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.policy = Some(Arc::new(policy));
        state.digest = Some(digest);
        Ok(true)
    }
}
