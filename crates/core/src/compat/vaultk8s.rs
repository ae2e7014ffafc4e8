//! hashicorp/vault-k8s annotations (`vault.hashicorp.com/*`) -> the same
//! [`InjectionRequest`] our own annotations produce, plus the few settings
//! only that dialect has ([`VaultK8sExtras`]).
//!
//! Meaning, defaults and validation follow vault-k8s: booleans are Go's
//! `strconv.ParseBool`, integers `strconv.ParseInt`, quantities Kubernetes'
//! `resource.ParseQuantity`; the secret NAME becomes the file name, lowercased
//! unless `preserve-secret-case` says otherwise; templates are Go templates,
//! translated by [`super::gotmpl`]. Annotations that would change where the
//! agent connects or what image runs are refused here: a pod author must not
//! be able to redirect the agent (see docs/security.md).

use std::collections::BTreeMap;

use crate::annotations::{
    check_file, parse_mode, InjectionRequest, Lifecycle, Problem, Result, SecretRequest,
};
use crate::contract::{AuthMethod, Format};

use crate::go::goparse;
use crate::go::gotmpl;

pub const PREFIX: &str = "vault.hashicorp.com/";
pub const INJECT: &str = "vault.hashicorp.com/agent-inject";
pub const STATUS: &str = "vault.hashicorp.com/agent-inject-status";

/// vault-k8s' default templates (`agent-inject-default-template`).
const DEFAULT_MAP_TEMPLATE: &str =
    "{{ with secret \"%s\" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n{{ end }}{{ end }}";
const DEFAULT_JSON_TEMPLATE: &str = "{{ with secret \"%s\" }}{{ .Data | toJSON }}\n{{ end }}";

/// Settings only the vault-k8s dialect carries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VaultK8sExtras {
    /// Vault Enterprise / OpenBao namespace (`namespace`).
    pub vault_namespace: Option<String>,
    /// Mount path of the secrets volume in app containers
    /// (`secret-volume-path`, default `/vault/secrets`).
    pub secret_volume_path: Option<String>,
    /// `agent-limits-*` / `agent-requests-*`: resource name -> quantity.
    pub limits: BTreeMap<String, String>,
    pub requests: BTreeMap<String, String>,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    /// `tls-skip-verify: true` asked for; honoured only if the operator
    /// allows it.
    pub tls_skip_verify: bool,
    pub revoke_on_shutdown: Option<bool>,
    /// `auth-config-*` (dashes turned into underscores, as vault-k8s does).
    pub auth_config: BTreeMap<String, String>,
    /// Per secret NAME: command to run after render, missing-key strictness.
    pub commands: BTreeMap<String, String>,
    pub error_on_missing_key: BTreeMap<String, bool>,
}

/// Annotations that vault-k8s has and we accept but do not need (they tune
/// Vault Agent internals that our agent does not have).
const IGNORED: &[&str] = &[
    "agent-cache-enable",
    "agent-cache-use-auto-auth-token",
    "agent-cache-listener-port",
    "agent-cache-exit-on-err",
    "agent-revoke-grace",
    "log-level",
    "log-format",
    "client-max-retries",
    "client-timeout",
    "agent-set-security-context",
    "agent-run-as-same-user",
    "agent-enable-quit",
    "agent-auto-auth-exit-on-err",
    "agent-disable-idle-connections",
    "agent-disable-keep-alives",
    "template-static-secret-render-interval",
    "template-config-exit-on-retry-failure",
    "template-config-static-secret-render-interval",
    "template-config-max-connections-per-host",
    "template-config-lease-renewal-threshold",
    "agent-request-namespace",
    "go-max-procs",
    "agent-telemetry",
    "agent-shm-volume",
];

/// Annotations that would let a pod author change where the agent connects,
/// how it verifies TLS or what runs in the pod: denied (operators set these).
const OPERATOR_ONLY: &[&str] = &[
    "ca-cert",
    "ca-key",
    "client-cert",
    "client-key",
    "tls-secret",
    "tls-server-name",
    "proxy-address",
    "agent-image",
    "agent-configmap",
    "agent-extra-secret",
    "agent-copy-volume-mounts",
];

/// Parses the vault-k8s annotations of a pod. `Ok(None)` when the pod has no
/// `vault.hashicorp.com/agent-inject` annotation (vault-k8s injects nothing
/// without it).
pub fn from_annotations(
    ann: &BTreeMap<String, String>,
) -> Result<Option<(InjectionRequest, VaultK8sExtras)>> {
    let Some(inject_raw) = ann.get(INJECT) else {
        return Ok(None);
    };
    crate::annotations::check_sizes(ann, PREFIX, |s| s.starts_with("agent-inject-template-"))?;
    let mut problems: Vec<Problem> = Vec::new();
    let mut req = InjectionRequest::default();
    let mut extras = VaultK8sExtras::default();

    let boolean = |key: &str, default: bool, problems: &mut Vec<Problem>| -> bool {
        let full = format!("{PREFIX}{key}");
        match ann.get(&full) {
            None => default,
            Some(v) => goparse::parse_bool(v).unwrap_or_else(|m| {
                problems.push(Problem::new(full, m));
                default
            }),
        }
    };

    req.inject = match goparse::parse_bool(inject_raw) {
        Ok(b) => Some(b),
        Err(m) => {
            problems.push(Problem::new(INJECT, m));
            Some(false)
        }
    };
    req.status = ann.get(STATUS).cloned();

    let preserve_all = boolean("preserve-secret-case", false, &mut problems);
    let pre_populate = boolean("agent-pre-populate", true, &mut problems);
    let pre_populate_only = boolean("agent-pre-populate-only", false, &mut problems);
    // Validated only: our agent always runs first, which is what
    // `agent-init-first: true` asks of vault-k8s (docs/compat.md).
    boolean("agent-init-first", false, &mut problems);
    extras.tls_skip_verify = boolean("tls-skip-verify", false, &mut problems);
    if ann.contains_key(&format!("{PREFIX}agent-revoke-on-shutdown")) {
        extras.revoke_on_shutdown = Some(boolean("agent-revoke-on-shutdown", false, &mut problems));
    }
    req.agent = match (pre_populate, pre_populate_only) {
        (_, true) => Lifecycle::InitOnly,
        (false, false) => Lifecycle::SidecarOnly,
        (true, false) => Lifecycle::Both,
    };

    let default_template = match ann
        .get(&format!("{PREFIX}agent-inject-default-template"))
        .map(String::as_str)
    {
        None | Some("map") => DEFAULT_MAP_TEMPLATE,
        Some("json") => DEFAULT_JSON_TEMPLATE,
        Some(other) => {
            problems.push(Problem::new(
                format!("{PREFIX}agent-inject-default-template"),
                format!("{other:?} is not a default template (expected map or json)"),
            ));
            DEFAULT_MAP_TEMPLATE
        }
    };

    // Secrets: collect raw names first, then their companions.
    let mut secret_names: Vec<&str> = Vec::new();
    for (key, value) in ann.range(PREFIX.to_string()..) {
        let Some(suffix) = key.strip_prefix(PREFIX) else {
            break;
        };
        let full = key.as_str();
        if let Some(raw) = suffix.strip_prefix("agent-inject-secret-") {
            if raw.is_empty() {
                problems.push(Problem::new(
                    full,
                    "the secret needs a name after agent-inject-secret-",
                ));
            } else if value.trim().is_empty() {
                problems.push(Problem::new(full, "the Vault path must not be empty"));
            } else {
                secret_names.push(raw);
            }
            continue;
        }
        let companion = [
            "agent-inject-template-",
            "agent-inject-file-",
            "agent-inject-perms-",
            "agent-inject-command-",
            "error-on-missing-key-",
            "preserve-secret-case-",
        ]
        .iter()
        .find_map(|p| suffix.strip_prefix(p).map(|raw| (*p, raw)));
        if let Some((p, raw)) = companion {
            if !ann.contains_key(&format!("{PREFIX}agent-inject-secret-{raw}")) {
                problems.push(Problem::new(
                    full,
                    format!(
                        "there is no {PREFIX}agent-inject-secret-{raw} for this {p}* annotation"
                    ),
                ));
            }
            continue;
        }
        if let Some(param) = suffix.strip_prefix("auth-config-") {
            extras
                .auth_config
                .insert(param.replace('-', "_"), value.clone());
            continue;
        }
        if let Some(res) = suffix.strip_prefix("agent-limits-") {
            match resource_name(res).and_then(|r| goparse::parse_quantity(value).map(|q| (r, q))) {
                Ok((r, q)) => {
                    extras.limits.insert(r.into(), q);
                }
                Err(m) => problems.push(Problem::new(full, m)),
            }
            continue;
        }
        if let Some(res) = suffix.strip_prefix("agent-requests-") {
            match resource_name(res).and_then(|r| goparse::parse_quantity(value).map(|q| (r, q))) {
                Ok((r, q)) => {
                    extras.requests.insert(r.into(), q);
                }
                Err(m) => problems.push(Problem::new(full, m)),
            }
            continue;
        }
        match suffix {
            // The agent's address: allowed only through the operator's
            // allowlist, which `policy::overrides` checks.
            "service" => {}
            "agent-inject" | "agent-inject-status" | "preserve-secret-case"
            | "agent-pre-populate" | "agent-pre-populate-only" | "agent-init-first"
            | "tls-skip-verify" | "agent-revoke-on-shutdown" | "agent-inject-default-template" => {}
            "role" => {
                if value.trim().is_empty() {
                    problems.push(Problem::new(full, "the role must not be empty"));
                } else {
                    req.role = Some(value.trim().to_string());
                }
            }
            "auth-path" => {
                if value.trim_matches('/').is_empty() {
                    problems.push(Problem::new(full, "the auth path must not be empty"));
                } else {
                    req.auth_path = Some(value.clone());
                }
            }
            "auth-type" => match value.parse::<AuthMethod>() {
                Ok(m) => req.auth_type = Some(m),
                Err(_) => problems.push(Problem::new(
                    full,
                    format!("auth type {value:?} is not supported (supported: kubernetes, jwt, approle)"),
                )),
            },
            "namespace" => extras.vault_namespace = Some(value.clone()),
            "secret-volume-path" => {
                if !value.starts_with('/') || value.split('/').any(|s| s == "..") {
                    problems.push(Problem::new(
                        full,
                        format!("{value:?} must be an absolute path without '..'"),
                    ));
                } else {
                    extras.secret_volume_path = Some(value.trim_end_matches('/').to_string());
                }
            }
            "agent-inject-containers" => {
                let list: Vec<String> = value
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if list.is_empty() {
                    problems.push(Problem::new(full, "must name at least one container"));
                } else {
                    req.containers = Some(list);
                }
            }
            "agent-run-as-user" | "agent-run-as-group" => match goparse::parse_int(value) {
                Ok(0) => problems.push(Problem::new(
                    full,
                    "the agent never runs as root (0); pick a non-zero id",
                )),
                Ok(n) if n < 0 => problems.push(Problem::new(full, format!("{n} is not a valid id"))),
                Ok(n) => {
                    if suffix == "agent-run-as-user" {
                        extras.run_as_user = Some(n);
                    } else {
                        extras.run_as_group = Some(n);
                    }
                }
                Err(m) => problems.push(Problem::new(full, m)),
            },
            s if OPERATOR_ONLY.contains(&s) => problems.push(Problem::new(
                full,
                "is set by the operator in the injector's config, not by pods \
                 (a pod must not change where the agent connects or what it runs)",
            )),
            "agent-inject-token" => problems.push(Problem::new(
                full,
                "is not supported: the Vault token stays in the agent's private volume",
            )),
            s if s.starts_with("secret-volume-path-") => problems.push(Problem::new(
                full,
                "per-secret mount paths are not supported; use agent-inject-file-NAME",
            )),
            s if IGNORED.contains(&s) || s.starts_with("agent-telemetry-") => {}
            _ => problems.push(Problem::new(full, "unknown vault.hashicorp.com annotation")),
        }
    }

    for raw in secret_names {
        let full = |p: &str| format!("{PREFIX}{p}{raw}");
        let path = ann[&full("agent-inject-secret-")].trim().to_string();
        let preserve = match ann.get(&full("preserve-secret-case-")) {
            Some(v) => goparse::parse_bool(v).unwrap_or_else(|m| {
                problems.push(Problem::new(full("preserve-secret-case-"), m));
                preserve_all
            }),
            None => preserve_all,
        };
        let name = if preserve {
            raw.to_string()
        } else {
            raw.to_lowercase()
        };
        let file = match ann.get(&full("agent-inject-file-")) {
            // vault-k8s joins the file to the mount path, so a leading '/'
            // stays inside the mount.
            Some(f) => check_file(f.trim_start_matches('/')).unwrap_or_else(|m| {
                problems.push(Problem::new(full("agent-inject-file-"), m));
                name.clone()
            }),
            None => match check_file(&name) {
                Ok(f) => f,
                Err(m) => {
                    problems.push(Problem::new(full("agent-inject-secret-"), m));
                    name.clone()
                }
            },
        };
        let mode = match ann.get(&full("agent-inject-perms-")) {
            Some(m) => parse_mode(m).unwrap_or_else(|msg| {
                problems.push(Problem::new(full("agent-inject-perms-"), msg));
                crate::contract::default_mode()
            }),
            // Vault Agent writes templates 0644 unless told otherwise.
            None => 0o644,
        };
        let (template_src, template_key) = match ann.get(&full("agent-inject-template-")) {
            Some(t) => (t.clone(), full("agent-inject-template-")),
            None => (
                default_template.replacen("%s", &path, 1),
                format!("{PREFIX}agent-inject-default-template"),
            ),
        };
        let template = match gotmpl::translate(&template_src) {
            Ok(t) => {
                if let Some(p) = &t.secret_path {
                    if p.trim_matches('/') != path.trim_matches('/') {
                        problems.push(Problem::new(
                            template_key.clone(),
                            format!(
                                "the template reads {p:?} but {} names {path:?}; \
                                 one secret per annotation",
                                full("agent-inject-secret-")
                            ),
                        ));
                    }
                }
                // The translation must also be within minijinja's limits, or
                // the pod would only fail once the agent renders it.
                match crate::annotations::check_template_within(
                    &t.source,
                    gotmpl::MAX_OUTPUT_BYTES,
                    "translated template",
                ) {
                    Ok(()) => Some(t.source),
                    Err(m) => {
                        problems.push(Problem::new(template_key.clone(), m));
                        None
                    }
                }
            }
            Err(e) => {
                problems.push(Problem::new(template_key, e.to_string()));
                None
            }
        };
        if let Some(cmd) = ann.get(&full("agent-inject-command-")) {
            extras.commands.insert(name.clone(), cmd.clone());
        }
        if let Some(v) = ann.get(&full("error-on-missing-key-")) {
            match goparse::parse_bool(v) {
                Ok(b) => {
                    extras.error_on_missing_key.insert(name.clone(), b);
                }
                Err(m) => problems.push(Problem::new(full("error-on-missing-key-"), m)),
            }
        }
        req.secrets.push(SecretRequest {
            name,
            path,
            format: Format::Template,
            key: None,
            template,
            file,
            mode,
        });
    }
    req.secrets.sort_by(|a, b| a.name.cmp(&b.name));
    for w in req.secrets.windows(2) {
        if w[0].name == w[1].name {
            problems.push(Problem::new(
                format!("{PREFIX}agent-inject-secret-{}", w[0].name),
                "two secrets have the same lowercased name; set preserve-secret-case",
            ));
        }
    }
    if problems.is_empty() {
        Ok(Some((req, extras)))
    } else {
        Err(crate::annotations::Error { problems })
    }
}

fn resource_name(suffix: &str) -> Result<&'static str, String> {
    match suffix {
        "cpu" => Ok("cpu"),
        "mem" => Ok("memory"),
        "ephemeral" => Ok("ephemeral-storage"),
        other => Err(format!(
            "unknown resource {other:?} (expected cpu, mem or ephemeral)"
        )),
    }
}
