//! hashicorp/vault-k8s annotations (`vault.hashicorp.com/*`) -> the same
//! [`InjectionRequest`] our own annotations produce, plus the few settings
//! only that dialect has ([`VaultK8sExtras`]).
//!
//! Meaning, defaults and validation follow vault-k8s: booleans are
//! `parseutil.ParseBool` (Go's `strconv.ParseBool` plus `""` = false),
//! integers `strconv.ParseInt`/`ParseUint`, quantities Kubernetes'
//! `resource.ParseQuantity`, and a default applies only when a key is
//! absent; the secret NAME becomes the file name, lowercased unless
//! `preserve-secret-case` says otherwise; templates are Go templates,
//! translated by [`crate::go::gotmpl`]. vault-k8s never rejects a key it does
//! not know, so neither do we: such keys (typos included) come back as
//! warnings. Annotations that would change where the agent connects, what it
//! runs or how it is configured are refused: a pod author must not be able
//! to redirect or reconfigure the agent (docs/compat.md, docs/security.md).

use std::collections::BTreeMap;
use std::time::Duration;

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
    /// `secret-volume-path-NAME`: secret name -> where app containers see
    /// that secret's file instead.
    pub secret_volume_paths: BTreeMap<String, String>,
    /// `agent-limits-*` / `agent-requests-*`: resource name -> quantity.
    pub limits: BTreeMap<String, String>,
    pub requests: BTreeMap<String, String>,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    /// `agent-run-as-same-user`: the agent takes the first container's
    /// `runAsUser` (checked against the pod by `plan`).
    pub run_as_same_user: bool,
    /// `agent-share-process-namespace`.
    pub share_process_namespace: Option<bool>,
    /// `auth-min-backoff` / `auth-max-backoff`: the agent's retry delays.
    pub min_backoff: Option<Duration>,
    pub max_backoff: Option<Duration>,
    /// `agent-extra-secret`: a Secret of the pod's namespace mounted
    /// read-only into the agent containers at [`EXTRA_SECRET_DIR`].
    pub extra_secret: Option<String>,
    /// `agent-copy-volume-mounts`: the app container whose mounts the agent
    /// containers get too (read-only).
    pub copy_volume_mounts: Option<String>,
    /// `tls-skip-verify: true` asked for; honoured only if the operator
    /// allows it.
    pub tls_skip_verify: bool,
    pub revoke_on_shutdown: Option<bool>,
    /// `auth-config-*` (dashes turned into underscores, as vault-k8s does).
    pub auth_config: BTreeMap<String, String>,
    /// Per secret NAME: command to run after render, missing-key strictness.
    pub commands: BTreeMap<String, String>,
    pub error_on_missing_key: BTreeMap<String, bool>,
    /// Annotations accepted but ignored or adjusted, for admission warnings
    /// (vault-k8s never rejects a key it does not know).
    pub warnings: Vec<String>,
}

/// Where `agent-extra-secret` is mounted in the agent containers (as in
/// vault-k8s).
pub const EXTRA_SECRET_DIR: &str = "/vault/custom";

/// Longest `agent-template-left-delim-*`/`-right-delim-*`: every action of
/// the template is searched for it.
pub const MAX_DELIM_BYTES: usize = 16;

/// vault-k8s annotations that tune Vault Agent internals our agent does
/// not have: accepted (vault-k8s' syntax checked where it checks any) and
/// ignored, with a warning.
const IGNORED: &[&str] = &[
    "agent-cache-use-auto-auth-token",
    "agent-cache-listener-port",
    "log-level",
    "log-format",
    "client-max-retries",
    "client-timeout",
    "agent-disable-idle-connections",
    "agent-disable-keep-alives",
    "template-static-secret-render-interval",
    "template-config-static-secret-render-interval",
    "go-max-procs",
    "agent-metrics-listener-port",
    "agent-shm-volume",
    "agent-service-account-token-volume-name",
];

/// Booleans (parseutil.ParseBool) that tune Vault Agent internals: checked,
/// then ignored.
const IGNORED_BOOLS: &[&str] = &[
    "agent-cache-enable",
    "agent-cache-exit-on-err",
    "agent-enable-quit",
    "agent-auto-auth-exit-on-err",
    "template-config-exit-on-retry-failure",
];

/// Annotations that would let a pod author change where the agent connects,
/// what it runs or how it is configured: denied when set (operators set
/// these). An empty value is unset, as in vault-k8s.
const OPERATOR_ONLY: &[&str] = &[
    "ca-cert",
    "ca-key",
    "client-cert",
    "client-key",
    "tls-server-name",
    "proxy-address",
    "agent-configmap",
];

/// Per-secret annotation families, longest prefix first where one is the
/// prefix of another (`agent-inject-template-file-` before
/// `agent-inject-template-`).
const PER_SECRET: &[&str] = &[
    "agent-inject-secret-",
    "agent-inject-template-file-",
    "agent-inject-template-",
    "agent-inject-file-",
    "agent-inject-perms-",
    "agent-inject-command-",
    "error-on-missing-key-",
    "preserve-secret-case-",
    "agent-template-left-delim-",
    "agent-template-right-delim-",
    "secret-volume-path-",
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
    let mut warnings: Vec<String> = Vec::new();

    let boolean = |key: &str, default: bool, problems: &mut Vec<Problem>| -> bool {
        let full = format!("{PREFIX}{key}");
        match ann.get(&full) {
            None => default,
            Some(v) => goparse::parse_bool_or_empty(v).unwrap_or_else(|m| {
                problems.push(Problem::new(full, m));
                default
            }),
        }
    };

    req.inject = match goparse::parse_bool_or_empty(inject_raw) {
        Ok(b) => Some(b),
        Err(m) => {
            problems.push(Problem::new(INJECT, m));
            Some(false)
        }
    };
    req.status = ann.get(STATUS).cloned();

    // vault-k8s swallows a bad value here and lower-cases names.
    let preserve_all = match ann.get(&format!("{PREFIX}preserve-secret-case")) {
        None => false,
        Some(v) => goparse::parse_bool_or_empty(v).unwrap_or_else(|m| {
            warnings.push(format!(
                "{PREFIX}preserve-secret-case: {m}; secret names are lower-cased, as vault-k8s does"
            ));
            false
        }),
    };
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
        .map(|v| v.to_ascii_lowercase())
        .as_deref()
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

    // Secrets: a NAME is a secret when it has a non-empty
    // agent-inject-secret-NAME, or a non-empty agent-inject-template-NAME
    // alone (a template-only secret: its paths come from its template).
    let mut secret_names: Vec<&str> = Vec::new();
    let mut per_secret: Vec<(&str, &str, &str)> = Vec::new();
    for (key, value) in ann.range(PREFIX.to_string()..) {
        let Some(suffix) = key.strip_prefix(PREFIX) else {
            break;
        };
        let full = key.as_str();
        if let Some((family, raw)) = PER_SECRET
            .iter()
            .find_map(|p| suffix.strip_prefix(p).map(|raw| (*p, raw)))
        {
            if raw.is_empty() {
                warnings.push(format!(
                    "{full}: no secret name after {family}; ignored, as vault-k8s does"
                ));
                continue;
            }
            match family {
                "agent-inject-secret-" if value.trim().is_empty() => warnings.push(format!(
                    "{full}: the Vault path is empty; the secret is ignored, as vault-k8s does"
                )),
                "agent-inject-secret-" => secret_names.push(raw),
                "agent-inject-template-"
                    if !value.is_empty()
                        && !ann.contains_key(&format!("{PREFIX}agent-inject-secret-{raw}")) =>
                {
                    secret_names.push(raw)
                }
                _ => per_secret.push((family, raw, full)),
            }
            continue;
        }
        if let Some(param) = suffix.strip_prefix("auth-config-") {
            extras
                .auth_config
                .insert(param.replace('-', "_"), value.clone());
            continue;
        }
        if let Some(res) = suffix
            .strip_prefix("agent-limits-")
            .map(|r| (r, true))
            .or_else(|| suffix.strip_prefix("agent-requests-").map(|r| (r, false)))
        {
            let (res, limit) = res;
            match resource_name(res) {
                Err(m) => warnings.push(format!("{full}: {m}; ignored")),
                // vault-k8s sets no limit at all for an empty value; the
                // operator's resources stay (docs/compat.md).
                Ok(_) if value.is_empty() => warnings.push(format!(
                    "{full}: empty, so the operator's default for the agent applies"
                )),
                Ok(r) => match goparse::parse_quantity(value) {
                    Ok(q) => {
                        let list = if limit {
                            &mut extras.limits
                        } else {
                            &mut extras.requests
                        };
                        list.insert(r.into(), q);
                    }
                    Err(m) => problems.push(Problem::new(full, m)),
                },
            }
            continue;
        }
        if suffix.starts_with("agent-telemetry-") {
            warnings.push(format!(
                "{full}: the agent has no telemetry stanza; ignored (docs/compat.md)"
            ));
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
            "auth-min-backoff" | "auth-max-backoff" if value.is_empty() => {}
            "auth-min-backoff" | "auth-max-backoff" => match goparse::parse_duration(value) {
                Ok(d) if d.is_zero() => problems.push(Problem::new(
                    full,
                    "must be above zero: the agent would retry its login without pause",
                )),
                Ok(d) if suffix == "auth-min-backoff" => extras.min_backoff = Some(d),
                Ok(d) => extras.max_backoff = Some(d),
                Err(m) => problems.push(Problem::new(full, m)),
            },
            "namespace" if value.is_empty() => {}
            "namespace" => extras.vault_namespace = Some(value.clone()),
            "secret-volume-path" => match check_mount_path(value) {
                Ok(p) => extras.secret_volume_path = Some(p),
                Err(m) => problems.push(Problem::new(full, m)),
            },
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
                // A group of 0 runs nothing as root (OpenShift runs every
                // pod so); a user of 0 would.
                // Not honoured, not denied: the agent renders the same files
                // as a non-root user (vault-k8s writes them 0644).
                Ok(0) if suffix == "agent-run-as-user" => warnings.push(format!(
                    "{full}: ignored: the agent never runs as root; it runs as the pod's \
                     or the operator's non-root user"
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
            "agent-run-as-same-user" => {
                extras.run_as_same_user = boolean(suffix, false, &mut problems);
            }
            "agent-share-process-namespace" => {
                extras.share_process_namespace = Some(boolean(suffix, false, &mut problems));
            }
            "agent-set-security-context" => match goparse::parse_bool_or_empty(value) {
                Ok(true) => {}
                Ok(false) => warnings.push(format!(
                    "{full}: the agent always runs with a restrictive securityContext \
                     (non-root, read-only root, no capabilities); false is ignored"
                )),
                Err(m) => problems.push(Problem::new(full, m)),
            },
            "agent-revoke-grace" => {
                if let Err(m) = goparse::parse_uint(value) {
                    problems.push(Problem::new(full, m));
                }
            }
            "template-lease-renewal-threshold" | "template-config-lease-renewal-threshold" => {
                match goparse::parse_float(value) {
                    Ok(_) => warnings.push(format!(
                        "{full}: the agent renews leases at its own threshold; ignored (docs/compat.md)"
                    )),
                    Err(m) => problems.push(Problem::new(full, m)),
                }
            }
            "template-max-connections-per-host" | "template-config-max-connections-per-host" => {
                if !value.is_empty() {
                    if let Err(m) = goparse::parse_int(value) {
                        problems.push(Problem::new(full, m));
                    }
                }
            }
            "agent-request-namespace" if value.is_empty() => problems.push(Problem::new(
                full,
                "must not be empty (vault-k8s: namespace missing from request)",
            )),
            "agent-request-namespace" => {}
            "agent-image" => problems.push(Problem::new(
                full,
                "is set by the operator in the injector's config, not by pods \
                 (a pod must not choose what the agent container runs)",
            )),
            "agent-json-patch" | "agent-init-json-patch" => match json_patch_kind(value) {
                PatchKind::Empty => {}
                PatchKind::Invalid => {
                    problems.push(Problem::new(full, "is not a JSON patch (RFC 6902)"))
                }
                PatchKind::Changes => problems.push(Problem::new(
                    full,
                    "pods may not patch the agent containers: a patch can change their image, \
                     command, config or securityContext (docs/compat.md)",
                )),
            },
            "agent-extra-secret" if value.is_empty() => {}
            "agent-extra-secret" => match check_k8s_name(value) {
                Ok(()) => extras.extra_secret = Some(value.clone()),
                Err(m) => problems.push(Problem::new(full, m)),
            },
            "agent-copy-volume-mounts" if value.is_empty() => {}
            "agent-copy-volume-mounts" => extras.copy_volume_mounts = Some(value.clone()),
            "tls-secret" => {
                if !value.is_empty() {
                    warnings.push(format!(
                        "{full}: ignored: the agent verifies Vault with the operator's CA \
                         (vault.caPem), never with pod-supplied TLS material"
                    ));
                }
            }
            "agent-inject-token" => {
                if boolean(suffix, false, &mut problems) {
                    problems.push(Problem::new(
                        full,
                        "is not supported: the Vault token stays in the agent's private volume",
                    ));
                }
            }
            s if OPERATOR_ONLY.contains(&s) => {
                if !value.is_empty() {
                    problems.push(Problem::new(
                        full,
                        "is set by the operator in the injector's config, not by pods \
                         (a pod must not change where the agent connects or what it runs)",
                    ));
                }
            }
            s if IGNORED_BOOLS.contains(&s) => {
                if boolean(s, false, &mut problems) {
                    warnings.push(format!(
                        "{full}: tunes a Vault Agent feature our agent does not have; ignored"
                    ));
                }
            }
            s if IGNORED.contains(&s) => {
                if !value.is_empty() {
                    warnings.push(format!(
                        "{full}: tunes a Vault Agent feature our agent does not have; ignored"
                    ));
                }
            }
            _ => warnings.push(format!(
                "{full}: not a vault-k8s annotation; ignored (vault-k8s ignores it too; check for a typo)"
            )),
        }
    }

    for (_, raw, full) in &per_secret {
        if !secret_names.contains(raw) {
            warnings.push(format!(
                "{full}: there is no {PREFIX}agent-inject-secret-{raw} or \
                 {PREFIX}agent-inject-template-{raw}; ignored, as vault-k8s does"
            ));
        }
    }

    for raw in secret_names {
        let full = |p: &str| format!("{PREFIX}{p}{raw}");
        let get = |p: &str| ann.get(&full(p)).map(String::as_str);
        let path = get("agent-inject-secret-").unwrap_or("").trim().to_string();
        let preserve = match get("preserve-secret-case-") {
            Some(v) => goparse::parse_bool_or_empty(v).unwrap_or_else(|m| {
                warnings.push(format!(
                    "{}: {m}; the name follows preserve-secret-case, as vault-k8s does",
                    full("preserve-secret-case-")
                ));
                preserve_all
            }),
            None => preserve_all,
        };
        let name = if preserve {
            raw.to_string()
        } else {
            raw.to_lowercase()
        };
        let file = match get("agent-inject-file-").filter(|f| !f.is_empty()) {
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
        let mode = match get("agent-inject-perms-").filter(|m| !m.is_empty()) {
            Some(m) => parse_mode(m).unwrap_or_else(|msg| {
                problems.push(Problem::new(full("agent-inject-perms-"), msg));
                crate::contract::default_mode()
            }),
            // Vault Agent writes templates 0644 unless told otherwise.
            None => 0o644,
        };
        let inline = get("agent-inject-template-").filter(|t| !t.is_empty());
        match (
            inline,
            get("agent-inject-template-file-").filter(|t| !t.is_empty()),
        ) {
            (Some(_), Some(_)) => warnings.push(format!(
                "{}: ignored: {} is set and wins, as in vault-k8s",
                full("agent-inject-template-file-"),
                full("agent-inject-template-")
            )),
            (None, Some(_)) => problems.push(Problem::new(
                full("agent-inject-template-file-"),
                "templates read from files in the agent container are not supported: the \
                 cluster policy checks the paths a template reads at admission, which it \
                 cannot do for a file; put the template in agent-inject-template-NAME",
            )),
            _ => {}
        }
        let (template_src, template_key) = match inline {
            Some(t) => (t.to_string(), full("agent-inject-template-")),
            None => (
                default_template.replacen("%s", &path, 1),
                format!("{PREFIX}agent-inject-default-template"),
            ),
        };
        let mut delim = |p: &str| -> Option<&str> {
            let v = get(p).filter(|d| !d.is_empty())?;
            if v.len() > MAX_DELIM_BYTES {
                problems.push(Problem::new(
                    full(p),
                    format!("a delimiter of more than {MAX_DELIM_BYTES} bytes"),
                ));
                return None;
            }
            Some(v)
        };
        let delims = gotmpl::Delims {
            left: delim("agent-template-left-delim-").unwrap_or(gotmpl::GO_DELIMS.left),
            right: delim("agent-template-right-delim-").unwrap_or(gotmpl::GO_DELIMS.right),
        };
        // As in vault-k8s, a template reads whatever paths it names: the
        // secret annotation's path is only the default template's. Every
        // path read is in `reads`, which the policy gate checks.
        let mut reads = Vec::new();
        let template = match gotmpl::translate_with(&template_src, delims) {
            Ok(t) => {
                reads = t.reads;
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
        // A template-only secret has no path of its own: its audit lines
        // name the first path its template reads.
        let path = match (path.is_empty(), reads.first()) {
            (true, Some(r)) => r.path.clone(),
            _ => path,
        };
        if let Some(cmd) = get("agent-inject-command-").filter(|c| !c.is_empty()) {
            extras.commands.insert(name.clone(), cmd.to_string());
        }
        if let Some(v) = get("error-on-missing-key-") {
            match goparse::parse_bool_or_empty(v) {
                Ok(b) => {
                    extras.error_on_missing_key.insert(name.clone(), b);
                }
                Err(m) => problems.push(Problem::new(full("error-on-missing-key-"), m)),
            }
        }
        if let Some(v) = get("secret-volume-path-").filter(|v| !v.is_empty()) {
            match check_mount_path(v) {
                Ok(p) => {
                    extras.secret_volume_paths.insert(name.clone(), p);
                }
                Err(m) => problems.push(Problem::new(full("secret-volume-path-"), m)),
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
            reads,
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
    if let (Some(min), Some(max)) = (extras.min_backoff, extras.max_backoff) {
        if min > max {
            problems.push(Problem::new(
                format!("{PREFIX}auth-min-backoff"),
                "is above auth-max-backoff",
            ));
        }
    }
    extras.warnings = warnings;
    if problems.is_empty() {
        Ok(Some((req, extras)))
    } else {
        Err(crate::annotations::Error { problems })
    }
}

/// An absolute mount path without `.`/`..` segments.
fn check_mount_path(value: &str) -> Result<String, String> {
    let p = value.trim_end_matches('/');
    if !p.starts_with('/') || p.split('/').any(|s| s == ".." || s == ".") {
        return Err(format!(
            "{value:?} must be an absolute path without '.' or '..'"
        ));
    }
    if p.chars().any(|c| c.is_control()) {
        return Err(format!("{value:?} must not contain control characters"));
    }
    Ok(p.to_string())
}

/// A Kubernetes object name (DNS subdomain).
fn check_k8s_name(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!("{value:?} is not a Kubernetes Secret name"))
    }
}

enum PatchKind {
    /// Unset, `null` or `[]`: changes nothing.
    Empty,
    Invalid,
    Changes,
}

fn json_patch_kind(value: &str) -> PatchKind {
    if value.is_empty() {
        return PatchKind::Empty;
    }
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(serde_json::Value::Null) => PatchKind::Empty,
        Ok(serde_json::Value::Array(ops)) if ops.is_empty() => PatchKind::Empty,
        Ok(serde_json::Value::Array(ops))
            if ops.iter().all(|op| {
                matches!(
                    op.get("op").and_then(|o| o.as_str()),
                    Some("add" | "remove" | "replace" | "move" | "copy" | "test")
                ) && op.get("path").is_some_and(|p| p.is_string())
            }) =>
        {
            PatchKind::Changes
        }
        _ => PatchKind::Invalid,
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
