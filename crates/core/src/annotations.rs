//! `vault-injector.io/*` annotations -> a typed [`InjectionRequest`].
//!
//! Parsing is pure and sees only the annotation map; checks that need the pod
//! (does `containers` name real containers?) happen in `plan`. Every problem
//! names the exact annotation key, and all problems are reported at once so a
//! user fixes a manifest in one round trip (the webhook denial and `lint`
//! print the same list).
//!
//! Other annotation dialects (hashicorp vault-k8s) are meant to produce the
//! same [`InjectionRequest`], so nothing downstream knows which one was used.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;

use crate::contract::{AuthMethod, Format, Reload};
use crate::go::goparse::parse_bool;

/// Our annotation prefix.
pub const PREFIX: &str = "vault-injector.io/";
/// The opt-in annotation.
pub const INJECT: &str = "vault-injector.io/inject";
/// Written by the webhook after injection; never by users.
pub const STATUS: &str = "vault-injector.io/status";
/// The value of [`STATUS`] after injection.
pub const STATUS_INJECTED: &str = "injected";

/// Largest value of one annotation in either dialect, except templates. Far
/// above any legitimate path, list or entrypoint; it bounds what every
/// parser of annotation text sees.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// Largest template annotation (`template-NAME`, `agent-inject-template-*`).
pub const MAX_TEMPLATE_BYTES: usize = crate::go::gotmpl::MAX_TEMPLATE_BYTES;
/// Largest total of the keys and values of a pod's injection annotations:
/// Kubernetes refuses more than this for all of a pod's annotations, so no
/// pod it would run is denied by it.
pub const MAX_TOTAL_BYTES: usize = 256 * 1024;

/// Largest total of a pod's template annotations: each is compiled at
/// admission, so this bounds the compile work of one admission.
pub const MAX_TEMPLATES_TOTAL_BYTES: usize = 64 * 1024;

/// Size limits on the annotations under `prefix`, checked before any of
/// them is parsed. Each problem names the annotation and the limit.
pub fn check_sizes(
    annotations: &BTreeMap<String, String>,
    prefix: &str,
    is_template: impl Fn(&str) -> bool,
) -> Result<()> {
    let mut problems = Vec::new();
    let (mut total, mut templates) = (0usize, 0usize);
    for (key, value) in annotations.range::<str, _>((Bound::Included(prefix), Bound::Unbounded)) {
        let Some(suffix) = key.strip_prefix(prefix) else {
            break;
        };
        total += key.len() + value.len();
        let (limit, what) = if is_template(suffix) {
            templates += value.len();
            (MAX_TEMPLATE_BYTES, "template")
        } else {
            (MAX_VALUE_BYTES, "value")
        };
        if value.len() > limit {
            problems.push(Problem::new(
                key,
                format!(
                    "{what} is {} bytes, above the limit of {limit} bytes",
                    value.len()
                ),
            ));
        }
    }
    if templates > MAX_TEMPLATES_TOTAL_BYTES {
        problems.push(Problem::new(
            format!("{prefix}*"),
            format!(
                "the pod's templates total {templates} bytes, above the limit of {MAX_TEMPLATES_TOTAL_BYTES} bytes"
            ),
        ));
    }
    if total > MAX_TOTAL_BYTES {
        problems.push(Problem::new(
            format!("{prefix}*"),
            format!(
                "the {prefix}* annotations total {total} bytes, above the limit of {MAX_TOTAL_BYTES} bytes"
            ),
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error { problems })
    }
}

/// One thing wrong with one annotation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation}: {message}")]
pub struct Problem {
    /// The full annotation key, e.g. `vault-injector.io/mode-db`.
    pub annotation: String,
    pub message: String,
}

impl Problem {
    pub fn new(annotation: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            annotation: annotation.into(),
            message: message.into(),
        }
    }
}

/// Every problem found in a pod's annotations (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    pub problems: Vec<Problem>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl From<Problem> for Error {
    fn from(p: Problem) -> Self {
        Self { problems: vec![p] }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which agent containers the pod gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lifecycle {
    /// Render before the app starts, then keep fresh.
    #[default]
    Both,
    /// Render once before the app starts (Jobs).
    InitOnly,
    /// Keep fresh only; the app may start before the first render.
    SidecarOnly,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Both => "both",
            Lifecycle::InitOnly => "init-only",
            Lifecycle::SidecarOnly => "sidecar-only",
        }
    }
}

/// One `secret-NAME` with its companions, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRequest {
    pub name: String,
    pub path: String,
    pub format: Format,
    pub key: Option<String>,
    pub template: Option<String>,
    /// Relative to the secrets directory.
    pub file: String,
    pub mode: u32,
    /// Every Vault call of a translated Go template (empty otherwise).
    pub reads: Vec<crate::contract::ReadSpec>,
}

/// One `env-VAR: PATH#KEY[#VERSION]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvRequest {
    pub var: String,
    pub path: String,
    pub key: String,
    pub version: Option<u64>,
}

/// One `volume-NAME: PROFILE`; profiles are resolved against Vault later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRequest {
    pub name: String,
    pub profile: String,
    /// `mountPath=...`: where the pod wants it (the profile's path otherwise).
    pub mount_path: Option<String>,
    /// `readOnly=...`: a pod may make a writable profile read-only, never
    /// the reverse (checked when the profile is resolved).
    pub read_only: Option<bool>,
}

/// What a pod asks for, whatever annotation dialect it used.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InjectionRequest {
    /// `None` when the pod does not mention injection at all.
    pub inject: Option<bool>,
    /// The status the webhook wrote earlier, if any.
    pub status: Option<String>,
    pub role: Option<String>,
    pub auth_path: Option<String>,
    pub auth_type: Option<AuthMethod>,
    /// Sorted by name.
    pub secrets: Vec<SecretRequest>,
    /// Sorted by variable name.
    pub env: Vec<EnvRequest>,
    /// Sorted by name.
    pub volumes: Vec<VolumeRequest>,
    /// `None`: every app container.
    pub containers: Option<Vec<String>>,
    pub agent: Lifecycle,
    pub reload: Option<Reload>,
    /// `entrypoint-CONTAINER`: the image's entrypoint for containers without
    /// `command`, which `exec` needs to wrap (no registry calls at admission).
    pub entrypoints: BTreeMap<String, Vec<String>>,
}

impl InjectionRequest {
    /// True when the pod opted in.
    pub fn wants_injection(&self) -> bool {
        self.inject == Some(true)
    }

    pub fn is_injected(&self) -> bool {
        self.status.as_deref() == Some(STATUS_INJECTED)
    }
}

/// Companion annotations of a secret, keyed by NAME.
#[derive(Default)]
struct Companions<'a> {
    path: Option<&'a str>,
    format: Option<(&'a str, &'a str)>,
    key: Option<(&'a str, &'a str)>,
    template: Option<(&'a str, &'a str)>,
    file: Option<(&'a str, &'a str)>,
    mode: Option<(&'a str, &'a str)>,
}

/// Parses every `vault-injector.io/*` annotation; others are ignored.
pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Result<InjectionRequest> {
    check_sizes(annotations, PREFIX, |s| s.starts_with("template-"))?;
    let mut req = InjectionRequest::default();
    let mut problems = Vec::new();
    let mut secrets: BTreeMap<&str, Companions<'_>> = BTreeMap::new();
    let mut reload_signal: Option<(&str, String)> = None;
    let mut reload_command: Option<(&str, &str)> = None;

    for (key, value) in annotations.range::<str, _>((Bound::Included(PREFIX), Bound::Unbounded)) {
        let Some(suffix) = key.strip_prefix(PREFIX) else {
            break;
        };
        let key = key.as_str();
        let value = value.as_str();
        let mut bad = |msg: String| problems.push(Problem::new(key, msg));
        match suffix {
            "inject" => match parse_bool(value).ok() {
                Some(b) => req.inject = Some(b),
                None => bad(format!(
                    "{value:?} is not a boolean (use true or false; \
                     1, t, T, TRUE, True, 0, f, F, FALSE, False are accepted too)"
                )),
            },
            "status" => req.status = Some(value.to_string()),
            "role" => match non_blank(value) {
                Some(v) => req.role = Some(v.to_string()),
                None => bad("must not be empty".into()),
            },
            "auth-path" => match check_auth_path(value) {
                Ok(v) => req.auth_path = Some(v.to_string()),
                Err(m) => bad(m),
            },
            "auth-type" => match value.trim().parse::<AuthMethod>() {
                Ok(m) => req.auth_type = Some(m),
                Err(m) => bad(m),
            },
            "containers" => match parse_container_list(value) {
                Ok(list) => req.containers = Some(list),
                Err(m) => bad(m),
            },
            "agent" => match value.trim() {
                "both" => req.agent = Lifecycle::Both,
                "init-only" => req.agent = Lifecycle::InitOnly,
                "sidecar-only" => req.agent = Lifecycle::SidecarOnly,
                other => bad(format!(
                    "unknown agent lifecycle {other:?} (expected both, init-only or sidecar-only)"
                )),
            },
            "reload" => match parse_signal(value) {
                Ok(sig) => reload_signal = Some((key, sig)),
                Err(m) => bad(m),
            },
            "reload-command" => match non_blank(value) {
                Some(v) => reload_command = Some((key, v)),
                None => bad("must not be empty".into()),
            },
            // Connection overrides: known keys, but judged against the
            // operator's allowlist by `policy::overrides`, which owns them.
            "vault-address" | "tls-skip-verify" | "ca-cert" => {}
            _ => {
                let Some((family, name)) = split_family(suffix) else {
                    bad(unknown_key_message(suffix));
                    continue;
                };
                match family {
                    Family::Env => match parse_env(name, value) {
                        Ok(e) => req.env.push(e),
                        Err(m) => bad(m),
                    },
                    Family::Entrypoint => {
                        match check_name(name).and_then(|()| parse_entrypoint(value)) {
                            Ok(argv) => {
                                req.entrypoints.insert(name.to_string(), argv);
                            }
                            Err(m) => bad(m),
                        }
                    }
                    Family::Volume => {
                        match check_name(name).and_then(|()| parse_volume(name, value)) {
                            Ok(v) => req.volumes.push(v),
                            Err(m) => bad(m),
                        }
                    }
                    _ => {
                        if let Err(m) = check_name(name) {
                            bad(m);
                            continue;
                        }
                        let c = secrets.entry(name).or_default();
                        match family {
                            Family::Secret => c.path = Some(value),
                            Family::Format => c.format = Some((key, value)),
                            Family::Key => c.key = Some((key, value)),
                            Family::Template => c.template = Some((key, value)),
                            Family::File => c.file = Some((key, value)),
                            Family::Mode => c.mode = Some((key, value)),
                            Family::Env | Family::Volume | Family::Entrypoint => {
                                unreachable!("handled above")
                            }
                        }
                    }
                }
            }
        }
    }

    match (reload_signal, reload_command) {
        (Some((k, _)), Some(_)) => problems.push(Problem::new(
            k,
            format!("set either {PREFIX}reload or {PREFIX}reload-command, not both"),
        )),
        (Some((_, signal)), None) => {
            req.reload = Some(Reload::Signal {
                signal,
                process: None,
            })
        }
        (None, Some((_, command))) => {
            req.reload = Some(Reload::Command {
                command: command.to_string(),
            })
        }
        (None, None) => {}
    }

    // file -> (secret, whether its file annotation is explicit)
    let mut files: BTreeMap<String, (&str, bool)> = BTreeMap::new();
    for (name, c) in secrets {
        match build_secret(name, &c) {
            Ok(s) => {
                let explicit = c.file.is_some();
                if let Some((other, other_explicit)) =
                    files.insert(s.file.clone(), (name, explicit))
                {
                    // Name an annotation that exists: two default file names
                    // cannot collide, so at least one of the two is explicit.
                    let culprit = if explicit || !other_explicit {
                        name
                    } else {
                        other
                    };
                    let partner = if culprit == name { other } else { name };
                    problems.push(Problem::new(
                        format!("{PREFIX}file-{culprit}"),
                        format!(
                            "file {:?} is also used by secret {partner:?}; each secret needs its own file",
                            s.file
                        ),
                    ));
                }
                req.secrets.push(s);
            }
            Err(mut p) => problems.append(&mut p),
        }
    }
    let mut seen_env = std::collections::BTreeSet::new();
    for e in &req.env {
        if !seen_env.insert(e.var.as_str()) {
            problems.push(Problem::new(
                format!("{PREFIX}env-{}", e.var),
                "the variable is named twice".to_string(),
            ));
        }
    }
    req.env.sort_by(|a, b| a.var.cmp(&b.var));

    if problems.is_empty() {
        Ok(req)
    } else {
        Err(Error { problems })
    }
}

#[derive(Clone, Copy)]
enum Family {
    Secret,
    Format,
    Key,
    Template,
    File,
    Mode,
    Env,
    Volume,
    Entrypoint,
}

fn split_family(suffix: &str) -> Option<(Family, &str)> {
    const FAMILIES: [(&str, Family); 9] = [
        ("secret-", Family::Secret),
        ("format-", Family::Format),
        ("key-", Family::Key),
        ("template-", Family::Template),
        ("file-", Family::File),
        ("mode-", Family::Mode),
        ("env-", Family::Env),
        ("volume-", Family::Volume),
        ("entrypoint-", Family::Entrypoint),
    ];
    FAMILIES
        .iter()
        .find_map(|(p, f)| suffix.strip_prefix(p).map(|name| (*f, name)))
}

fn unknown_key_message(suffix: &str) -> String {
    format!(
        "unknown annotation {suffix:?} under {PREFIX} (known: inject, role, auth-path, auth-type, \
         secret-NAME, format-NAME, key-NAME, template-NAME, file-NAME, mode-NAME, env-VAR, \
         volume-NAME, entrypoint-CONTAINER, containers, agent, reload, reload-command, status, vault-address, \
         tls-skip-verify, ca-cert)"
    )
}

fn build_secret(name: &str, c: &Companions<'_>) -> Result<SecretRequest, Vec<Problem>> {
    let secret_key = format!("{PREFIX}secret-{name}");
    let mut problems = Vec::new();
    let Some(path) = c.path else {
        for (k, _) in [c.format, c.key, c.template, c.file, c.mode]
            .into_iter()
            .flatten()
        {
            problems.push(Problem::new(
                k,
                format!("there is no {secret_key} annotation for this to apply to"),
            ));
        }
        return Err(problems);
    };
    let path = match check_vault_path(path) {
        Ok(p) => p.to_string(),
        Err(m) => {
            problems.push(Problem::new(&secret_key, m));
            String::new()
        }
    };
    let explicit_format = match c.format {
        Some((k, v)) => match v.trim().parse::<Format>() {
            Ok(f) => Some(f),
            Err(m) => {
                problems.push(Problem::new(k, m));
                None
            }
        },
        None => None,
    };
    // A key or template on its own implies its format, so the common case
    // needs one annotation less.
    let format = explicit_format.unwrap_or(match (c.key, c.template) {
        (Some(_), None) => Format::Raw,
        (None, Some(_)) => Format::Template,
        _ => Format::Json,
    });
    let format_key = format!("{PREFIX}format-{name}");
    let key = match (format, c.key) {
        (Format::Raw, Some((k, v))) => match non_blank(v) {
            Some(v) => Some(v.to_string()),
            None => {
                problems.push(Problem::new(k, "must not be empty"));
                None
            }
        },
        (Format::Raw, None) => {
            problems.push(Problem::new(
                &format_key,
                format!("format raw needs {PREFIX}key-{name} naming the key to write"),
            ));
            None
        }
        (_, Some((k, _))) if explicit_format.is_some() => {
            problems.push(Problem::new(
                k,
                format!("a key is only used with format raw, but {format_key} is not raw"),
            ));
            None
        }
        _ => None,
    };
    let template = match (format, c.template) {
        (Format::Template, Some((k, v))) => match check_template(v) {
            Ok(()) => Some(v.to_string()),
            Err(m) => {
                problems.push(Problem::new(k, m));
                None
            }
        },
        (Format::Template, None) => {
            problems.push(Problem::new(
                &format_key,
                format!("format template needs {PREFIX}template-{name}"),
            ));
            None
        }
        (_, Some((k, _))) => {
            problems.push(Problem::new(
                k,
                format!("a template is only used with format template, but {format_key} is not template"),
            ));
            None
        }
        _ => None,
    };
    let file = match c.file {
        Some((k, v)) => match check_file(v) {
            Ok(f) => f,
            Err(m) => {
                problems.push(Problem::new(k, m));
                String::new()
            }
        },
        None => name.to_string(),
    };
    let mode = match c.mode {
        Some((k, v)) => match parse_mode(v) {
            Ok(m) => m,
            Err(m) => {
                problems.push(Problem::new(k, m));
                0
            }
        },
        None => crate::contract::default_mode(),
    };
    if problems.is_empty() {
        Ok(SecretRequest {
            name: name.to_string(),
            path,
            format,
            key,
            template,
            file,
            mode,
            reads: vec![],
        })
    } else {
        Err(problems)
    }
}

fn non_blank(s: &str) -> Option<&str> {
    let t = s.trim();
    (!t.is_empty()).then_some(t)
}

/// A DNS label: it becomes part of volume names, file names and audit lines.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be a DNS label: 1-63 lowercase letters, digits or '-', \
             starting and ending with a letter or digit"
        ))
    }
}

fn check_vault_path(value: &str) -> Result<&str, String> {
    let p = value.trim();
    if p.is_empty() {
        return Err("the Vault path must not be empty".into());
    }
    if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "Vault path {p:?} must not contain whitespace or control characters"
        ));
    }
    if p.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(format!(
            "Vault path {p:?} must not contain '.' or '..' segments"
        ));
    }
    Ok(p.trim_matches('/'))
}

fn check_auth_path(value: &str) -> Result<&str, String> {
    let p = value.trim();
    if p.is_empty() {
        return Err("must not be empty".into());
    }
    check_vault_path(p).map(|_| p)
}

/// `PROFILE[,mountPath=/path][,readOnly=true|false]`.
fn parse_volume(name: &str, value: &str) -> Result<VolumeRequest, String> {
    let mut parts = value.split(',');
    let profile = parts.next().unwrap_or_default().trim();
    check_profile(profile)?;
    let mut v = VolumeRequest {
        name: name.to_string(),
        profile: profile.to_string(),
        mount_path: None,
        read_only: None,
    };
    for opt in parts {
        let (k, val) = opt
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| {
                format!("option {opt:?} must be key=value (mountPath=/path or readOnly=true)")
            })?;
        match k {
            "mountPath" if val.starts_with('/') && !val.split('/').any(|s| s == "..") => {
                v.mount_path = Some(val.to_string())
            }
            "mountPath" => {
                return Err(format!(
                    "mountPath {val:?} must be an absolute path without '..'"
                ))
            }
            "readOnly" => {
                v.read_only = Some(
                    parse_bool(val).map_err(|_| format!("readOnly {val:?} is not a boolean"))?,
                )
            }
            other => {
                return Err(format!(
                    "unknown volume option {other:?} (known: mountPath, readOnly)"
                ))
            }
        }
    }
    Ok(v)
}

fn check_profile(value: &str) -> Result<(), String> {
    let p = value.trim();
    let ok = !p.is_empty()
        && p.len() <= 253
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !p.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "volume profile {p:?} must be a non-empty name of letters, digits, '-', '_' or '.' \
             (not starting with '.')"
        ))
    }
}

/// A relative file under the secrets mount: the agent joins it to the mount
/// path, so anything that could escape the mount is refused.
pub fn check_file(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("the file name must not be empty".into());
    }
    if value.starts_with('/') {
        return Err(format!(
            "file {value:?} must be relative to {}",
            crate::contract::SECRETS_DIR
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(format!(
            "file {value:?} must not contain control characters"
        ));
    }
    let mut parts = Vec::new();
    for seg in value.split('/') {
        match seg {
            ".." => return Err(format!("file {value:?} must not contain a '..' component")),
            "" | "." => {}
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err(format!("file {value:?} does not name a file"));
    }
    if value.ends_with('/') {
        return Err(format!("file {value:?} names a directory, not a file"));
    }
    Ok(parts.join("/"))
}

/// An octal file mode such as `0400`, `440` or `0o644`, at most `0777`.
pub fn parse_mode(value: &str) -> Result<u32, String> {
    let v = value.trim();
    let digits = v.strip_prefix("0o").unwrap_or(v);
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(format!(
            "{value:?} is not an octal file mode (write it like 0400, 0440 or 0644)"
        ));
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|e| format!("{value:?}: {e}"))?;
    if mode > 0o777 {
        return Err(format!(
            "mode {value:?} is above 0777 (setuid, setgid and sticky bits are not allowed)"
        ));
    }
    Ok(mode)
}

fn parse_container_list(value: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in value.split(',') {
        let name = part.trim();
        if name.is_empty() {
            return Err(format!(
                "{value:?} must be a comma-separated list of container names without empty entries"
            ));
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

const SIGNALS: [&str; 9] = [
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGALRM", "SIGCONT",
    "SIGWINCH",
];

/// A reload signal; `HUP`, `sighup` and `SIGHUP` all mean `SIGHUP`.
pub fn parse_signal(value: &str) -> Result<String, String> {
    let upper = value.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if SIGNALS.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(format!(
            "{value:?} is not a reload signal (expected one of {})",
            SIGNALS.join(", ")
        ))
    }
}

/// A POSIX-style environment variable name.
pub fn check_env_name(var: &str) -> Result<(), String> {
    let mut bytes = var.bytes();
    let ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{var:?} is not a valid environment variable name (letters, digits and '_', \
             not starting with a digit)"
        ))
    }
}

/// `PATH#KEY` or `PATH#KEY#VERSION`, shared with Bank-Vaults style
/// `vault:` env values.
pub fn parse_env_ref(value: &str) -> Result<(String, String, Option<u64>), String> {
    let v = value.trim();
    let mut parts = v.split('#');
    let path = parts.next().unwrap_or_default();
    let key = parts.next();
    let version = parts.next();
    if parts.next().is_some() {
        return Err(format!(
            "{v:?} has too many '#' (expected PATH#KEY or PATH#KEY#VERSION)"
        ));
    }
    let Some(key) = key.and_then(non_blank) else {
        return Err(format!(
            "{v:?} must be PATH#KEY (the Vault path and the key to read from it)"
        ));
    };
    let path = check_vault_path(path)?;
    let version = match version {
        None => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| format!("{v:?}: version {s:?} is not a positive integer"))?,
        ),
    };
    Ok((path.to_string(), key.to_string(), version))
}

fn parse_env(var: &str, value: &str) -> Result<EnvRequest, String> {
    check_env_name(var)?;
    let (path, key, version) = parse_env_ref(value)?;
    Ok(EnvRequest {
        var: var.to_string(),
        path,
        key,
        version,
    })
}

/// A JSON array of strings, e.g. `["/app/server", "--port", "8080"]`.
fn parse_entrypoint(value: &str) -> Result<Vec<String>, String> {
    let argv: Vec<String> = serde_json::from_str(value).map_err(|_| {
        "must be a JSON array of strings, e.g. [\"/app/server\", \"--flag\"]".to_string()
    })?;
    if argv.first().is_none_or(|p| p.trim().is_empty()) {
        return Err(
            "must name the program to run (the array is empty or starts with an empty string)"
                .into(),
        );
    }
    Ok(argv)
}

/// Checks template syntax now rather than at the first render in the pod.
pub(crate) fn check_template(source: &str) -> Result<(), String> {
    check_template_within(source, MAX_TEMPLATE_BYTES, "template")
}

/// [`check_template`] for a source of at most `limit` bytes; `what` names
/// it in the message (a translated template may be longer than its input).
pub(crate) fn check_template_within(source: &str, limit: usize, what: &str) -> Result<(), String> {
    if source.trim().is_empty() {
        return Err(format!("the {what} must not be empty"));
    }
    if source.len() > limit {
        return Err(format!(
            "{what} is {} bytes, above the limit of {limit} bytes",
            source.len()
        ));
    }
    if TEMPLATES_OK.with(|ok| ok.borrow().contains(source)) {
        return Ok(());
    }
    check_tag_sizes(source)?;
    // Parsing alone finds every error compiling would (minijinja's code
    // generator cannot fail), without the instruction list: for a 64 KiB
    // template that list is most of the admission's memory.
    minijinja::machinery::parse(
        source,
        "template",
        Default::default(),
        minijinja::machinery::WhitespaceConfig::default(),
    )
    .map_err(|e| {
        // minijinja's parser stops at a fixed depth (tested below to fit
        // a tokio worker's stack); say which limit it is.
        if e.to_string().contains("recursion limit") {
            format!("template nesting exceeds {TEMPLATE_NESTING} levels (expressions and blocks)")
        } else {
            format!("the template does not parse: {e}")
        }
    })?;
    if source.len() <= TEMPLATE_CACHE_MAX_LEN {
        TEMPLATES_OK.with(|ok| {
            let mut ok = ok.borrow_mut();
            if ok.len() >= TEMPLATE_CACHE_ENTRIES {
                ok.clear();
            }
            ok.insert(source.into());
        });
    }
    Ok(())
}

/// Most tokens in one `{{ ... }}` or `{% ... %}` tag of a minijinja template.
/// minijinja's parser guards nesting across tags (150 levels) but recurses
/// unguarded on `not`/`-` chains and `a if b else ...`, and its compiler
/// recurses on long operator chains: bounding each tag bounds all of these.
pub const MAX_TAG_TOKENS: usize = 512;

/// Most tokens in all the tags of one template (literal text not counted).
/// The syntax tree the admission check builds is about 33 bytes a token and
/// is dropped before the next template is checked, so this bounds the
/// check's memory (~0.5 MiB) whatever the template's size.
pub const MAX_TEMPLATE_TOKENS: usize = 16 * 1024;

/// Counts tokens per tag with minijinja's own lexer, so the count is exactly
/// what its parser would see.
fn check_tag_sizes(source: &str) -> Result<(), String> {
    use minijinja::machinery::{tokenize, Token, WhitespaceConfig};
    let mut in_tag = 0usize;
    let mut total = 0usize;
    for tok in tokenize(
        source,
        false,
        Default::default(),
        WhitespaceConfig::default(),
    ) {
        // A lexer error ends the stream here; the parser reports it.
        let Ok((tok, _)) = tok else {
            return Ok(());
        };
        match tok {
            Token::VariableStart | Token::BlockStart => in_tag = 0,
            Token::VariableEnd | Token::BlockEnd | Token::TemplateData(_) => {}
            _ => {
                in_tag += 1;
                total += 1;
                if in_tag > MAX_TAG_TOKENS {
                    return Err(format!(
                        "a template tag has more than {MAX_TAG_TOKENS} tokens"
                    ));
                }
                if total > MAX_TEMPLATE_TOKENS {
                    return Err(format!(
                        "the template has more than {MAX_TEMPLATE_TOKENS} tokens in its tags"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Templates that parsed, per thread: the pods of one Deployment repeat the
/// same templates, and compiling one to check it costs more than the rest
/// of the pod's annotations together. Bounded: at most this many sources of
/// at most this many bytes each (4 MiB per thread at worst).
const TEMPLATE_CACHE_ENTRIES: usize = 256;
/// minijinja's own parser limit (`MAX_RECURSION` in its parser), a constant
/// of the crate.
pub const TEMPLATE_NESTING: usize = 150;
const TEMPLATE_CACHE_MAX_LEN: usize = 16 * 1024;

thread_local! {
    static TEMPLATES_OK: std::cell::RefCell<std::collections::HashSet<Box<str>>> =
        Default::default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_check_remembers_only_templates_that_parse() {
        let good = "{{ data.user }}:{{ data.password }}";
        let cached = || TEMPLATES_OK.with(|ok| ok.borrow().contains(good));
        TEMPLATES_OK.with(|ok| ok.borrow_mut().clear());
        assert!(check_template(good).is_ok());
        assert!(cached());
        assert!(check_template(good).is_ok());
        for _ in 0..2 {
            let e = check_template("{{ data.user ").unwrap_err();
            assert!(e.contains("does not parse"), "{e}");
        }
        let long = format!("{{{{ data.a }}}}{}", "x".repeat(TEMPLATE_CACHE_MAX_LEN));
        assert!(check_template(&long).is_ok());
        assert!(!TEMPLATES_OK.with(|ok| ok.borrow().contains(long.as_str())));
        for n in 0..TEMPLATE_CACHE_ENTRIES {
            check_template(&format!("{{{{ data.k{n} }}}}")).unwrap();
        }
        let size = TEMPLATES_OK.with(|ok| ok.borrow().len());
        assert!(size <= TEMPLATE_CACHE_ENTRIES, "{size}");
    }

    /// Templates a pod author could write to exhaust minijinja's parser or
    /// compiler: deep nesting and long operator chains (which build deep
    /// trees without recursing in the parser).
    fn nest(n: usize, inner: &str) -> String {
        format!(
            "{}{inner}{}",
            "{% if x %}".repeat(n),
            "{% endif %}".repeat(n)
        )
    }

    fn hostile_templates() -> Vec<(&'static str, String)> {
        // `pre` + `open`*n + `mid` + `close`*n + `post`, as long as the
        // template limit allows.
        let fit = |pre: &str, open: &str, mid: &str, close: &str, post: &str| {
            let n = (MAX_TEMPLATE_BYTES - pre.len() - mid.len() - post.len())
                / (open.len() + close.len());
            format!("{pre}{}{mid}{}{post}", open.repeat(n), close.repeat(n))
        };
        vec![
            ("parens", fit("{{ ", "(", "x", ")", " }}")),
            ("lists", fit("{{ ", "[", "1", "]", " }}")),
            ("maps", fit("{{ ", "{'a': ", "1", "}", " }}")),
            ("not", fit("{{ ", "not ", "x", "", " }}")),
            ("minus", fit("{{ ", "-", "1", "", " }}")),
            ("ifs", fit("", "{% if x %}", "x", "{% endif %}", "")),
            ("fors", fit("", "{% for a in x %}", "x", "{% endfor %}", "")),
            (
                "withs",
                fit("", "{% with a = 1 %}", "x", "{% endwith %}", ""),
            ),
            (
                "filters",
                fit("", "{% filter upper %}", "x", "{% endfilter %}", ""),
            ),
            ("ifexpr", fit("{{ ", "1 if x else ", "1", "", " }}")),
            ("plus", fit("{{ 1", "", "", " + 1", " }}")),
            ("and", fit("{{ x", "", "", " and x", " }}")),
            ("concat", fit("{{ x", "", "", " ~ x", " }}")),
            ("compare", fit("{{ x", "", "", " == x", " }}")),
            ("pipe", fit("{{ x", "", "", "|upper", " }}")),
            ("attrs", fit("{{ x", "", "", ".a", " }}")),
            ("items", fit("{{ x", "", "", "[0]", " }}")),
            ("calls", fit("{{ x", "", "", "()", " }}")),
            // The worst that passes the checks: blocks just under the
            // parser's guard around a tag just under MAX_TAG_TOKENS.
            (
                "blocks+not",
                nest(140, &format!("{{{{ {}x }}}}", "not ".repeat(510))),
            ),
            (
                "blocks+plus",
                nest(140, &format!("{{{{ x{} }}}}", " + x".repeat(255))),
            ),
            (
                "blocks+ifexpr",
                nest(140, &format!("{{{{ {}1 }}}}", "1 if x else ".repeat(127))),
            ),
            (
                "blocks+minus",
                nest(140, &format!("{{{{ {}1 }}}}", "-".repeat(511))),
            ),
            (
                "blocks+parens",
                nest(
                    70,
                    &format!("{{{{ {}x{} }}}}", "(".repeat(70), ")".repeat(70)),
                ),
            ),
        ]
    }

    #[test]
    fn hostile_templates_fit_a_tokio_worker_stack() {
        // tokio's worker threads have 2 MiB of stack; the admission check
        // must fail cleanly (or pass) within it, never overflow.
        let handle = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                for (name, src) in hostile_templates() {
                    assert!(src.len() <= MAX_TEMPLATE_BYTES, "{name}");
                    match check_template(&src) {
                        Err(e) => assert!(
                            e.contains("exceeds 150 levels")
                                || e.contains("more than 512 tokens")
                                || e.contains("more than 16384 tokens in its tags"),
                            "{name}: {e}"
                        ),
                        Ok(()) => {
                            let mut env = minijinja::Environment::new();
                            crate::go::gotmpl::register_filters(&mut env);
                            let r = env.render_str(&src, minijinja::context! { x => true });
                            eprintln!("{name}: passes the check, renders {:?}", r.map(|s| s.len()));
                        }
                    }
                }
            })
            .unwrap();
        handle.join().expect("no stack overflow");
    }

    #[test]
    fn a_template_has_a_token_budget_whatever_its_size() {
        // 4,000 small tags: each far under MAX_TAG_TOKENS, the whole over
        // the budget that bounds the syntax tree the check builds.
        let many = "{{ x.a.b.c }}".repeat(4000);
        assert!(many.len() <= MAX_TEMPLATE_BYTES);
        let e = check_template(&many).unwrap_err();
        assert!(
            e.contains(&format!("more than {MAX_TEMPLATE_TOKENS} tokens")),
            "{e}"
        );
        // Literal text is not counted: a large mostly-literal template passes.
        let text = format!("{}{{{{ x }}}}", "literal line\n".repeat(4000));
        assert!(text.len() <= MAX_TEMPLATE_BYTES);
        check_template(&text).unwrap();
    }

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<InjectionRequest> {
        from_annotations(&ann(pairs))
    }

    #[test]
    fn go_booleans() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t).ok(), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f).ok(), Some(false), "{f}");
        }
        for bad in ["yes", "no", "tRUE", "", " true", "2", "on"] {
            assert_eq!(parse_bool(bad).ok(), None, "{bad}");
        }
    }

    #[test]
    fn full_request_parses_with_defaults() {
        let req = parse(&[
            ("inject", "true"),
            ("role", "app"),
            ("auth-path", "auth/k8s-prod"),
            ("auth-type", "jwt"),
            ("secret-db", "database/creds/app"),
            ("format-db", "env"),
            ("file-db", "config/db.env"),
            ("mode-db", "0440"),
            ("secret-api", "secret/data/api"),
            ("secret-tls", "secret/tls"),
            ("key-tls", "cert"),
            ("secret-cfg", "secret/cfg"),
            ("template-cfg", "user={{ username }}"),
            ("env-API_TOKEN", "secret/data/api#token"),
            ("env-OLD", "secret/data/api#token#3"),
            ("volume-data", "nfs-prod"),
            ("containers", "app, worker"),
            ("agent", "init-only"),
            ("reload", "hup"),
            ("status", "injected"),
            (
                "entrypoint-worker",
                r#"["/app/worker", "--queue", "orders"]"#,
            ),
        ])
        .unwrap();
        assert_eq!(
            req.entrypoints["worker"],
            ["/app/worker", "--queue", "orders"]
        );
        assert!(req.wants_injection());
        assert!(req.is_injected());
        assert_eq!(req.role.as_deref(), Some("app"));
        assert_eq!(req.auth_type, Some(AuthMethod::Jwt));
        assert_eq!(req.agent, Lifecycle::InitOnly);
        assert_eq!(
            req.containers,
            Some(vec!["app".to_string(), "worker".to_string()])
        );
        let names: Vec<_> = req.secrets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api", "cfg", "db", "tls"]);
        let api = &req.secrets[0];
        assert_eq!(
            (api.format, api.file.as_str(), api.mode),
            (Format::Json, "api", 0o400)
        );
        let cfg = &req.secrets[1];
        assert_eq!(cfg.format, Format::Template);
        assert_eq!(cfg.template.as_deref(), Some("user={{ username }}"));
        let db = &req.secrets[2];
        assert_eq!(
            (db.format, db.file.as_str(), db.mode),
            (Format::Env, "config/db.env", 0o440)
        );
        let tls = &req.secrets[3];
        assert_eq!(
            (tls.format, tls.key.as_deref()),
            (Format::Raw, Some("cert"))
        );
        assert_eq!(req.env.len(), 2);
        assert_eq!(req.env[0].var, "API_TOKEN");
        assert_eq!(req.env[1].version, Some(3));
        assert_eq!(
            req.volumes,
            vec![VolumeRequest {
                name: "data".into(),
                profile: "nfs-prod".into(),
                mount_path: None,
                read_only: None,
            }]
        );
        assert_eq!(
            req.reload,
            Some(Reload::Signal {
                signal: "SIGHUP".into(),
                process: None
            })
        );
    }

    #[test]
    fn other_prefixes_are_ignored_and_absent_inject_is_none() {
        let mut a = ann(&[]);
        a.insert("vault-injector.io.example/x".into(), "y".into());
        a.insert("example.com/secret-x".into(), "y".into());
        a.insert("vault-injector.ioX".into(), "y".into());
        let req = from_annotations(&a).unwrap();
        assert_eq!(req.inject, None);
        assert!(!req.wants_injection());
    }

    /// (annotations, annotation that must be named, text the message must hold)
    #[test]
    fn rejections_name_the_annotation() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[("inject", "yes")], "inject", "not a boolean"),
            (
                &[("inject", "true"), ("bogus", "1")],
                "bogus",
                "unknown annotation",
            ),
            (&[("secrets-db", "x")], "secrets-db", "unknown annotation"),
            (
                &[("secret-db", "kv/db"), ("file-db", "../etc/passwd")],
                "file-db",
                "'..'",
            ),
            (
                &[("secret-db", "kv/db"), ("file-db", "a/../../b")],
                "file-db",
                "'..'",
            ),
            (
                &[("secret-db", "kv/db"), ("file-db", "/etc/passwd")],
                "file-db",
                "relative",
            ),
            (
                &[("secret-db", "kv/db"), ("file-db", "")],
                "file-db",
                "empty",
            ),
            (
                &[("secret-db", "kv/db"), ("file-db", "dir/")],
                "file-db",
                "directory",
            ),
            (
                &[("secret-db", "kv/db"), ("mode-db", "0999")],
                "mode-db",
                "octal",
            ),
            (
                &[("secret-db", "kv/db"), ("mode-db", "abc")],
                "mode-db",
                "octal",
            ),
            (
                &[("secret-db", "kv/db"), ("mode-db", "01777")],
                "mode-db",
                "above 0777",
            ),
            (
                &[("secret-db", "kv/db"), ("mode-db", "")],
                "mode-db",
                "octal",
            ),
            (&[("secret-db", "")], "secret-db", "must not be empty"),
            (&[("secret-db", "   ")], "secret-db", "must not be empty"),
            (&[("secret-db", "kv/../db")], "secret-db", "'..'"),
            (
                &[("secret-db", "kv/db"), ("format-db", "xml")],
                "format-db",
                "unknown format",
            ),
            (
                &[("secret-db", "kv/db"), ("format-db", "raw")],
                "format-db",
                "key-db",
            ),
            (
                &[("secret-db", "kv/db"), ("format-db", "template")],
                "format-db",
                "template-db",
            ),
            (
                &[
                    ("secret-db", "kv/db"),
                    ("format-db", "json"),
                    ("key-db", "k"),
                ],
                "key-db",
                "only used with format raw",
            ),
            (
                &[
                    ("secret-db", "kv/db"),
                    ("format-db", "env"),
                    ("template-db", "x"),
                ],
                "template-db",
                "only used with format template",
            ),
            (
                &[("secret-db", "kv/db"), ("template-db", "{% if %}")],
                "template-db",
                "does not parse",
            ),
            (
                &[("secret-db", "kv/db"), ("key-db", " ")],
                "key-db",
                "must not be empty",
            ),
            (
                &[("format-db", "json")],
                "format-db",
                "no vault-injector.io/secret-db",
            ),
            (
                &[("file-db", "x")],
                "file-db",
                "no vault-injector.io/secret-db",
            ),
            (
                &[("mode-db", "0400")],
                "mode-db",
                "no vault-injector.io/secret-db",
            ),
            (
                &[("key-db", "k")],
                "key-db",
                "no vault-injector.io/secret-db",
            ),
            (
                &[("template-db", "k")],
                "template-db",
                "no vault-injector.io/secret-db",
            ),
            (&[("secret-DB", "kv/db")], "secret-DB", "DNS label"),
            (&[("secret-", "kv/db")], "secret-", "DNS label"),
            (&[("secret-db_x", "kv/db")], "secret-db_x", "DNS label"),
            (
                &[("secret-a", "kv/a"), ("secret-b", "kv/b"), ("file-b", "a")],
                "file-b",
                "also used",
            ),
            (
                &[("secret-a", "kv/a"), ("secret-b", "kv/b"), ("file-a", "b")],
                "file-a",
                "also used by secret \"b\"",
            ),
            (
                &[
                    ("secret-a", "kv/a"),
                    ("secret-b", "kv/b"),
                    ("file-a", "x"),
                    ("file-b", "./x"),
                ],
                "file-b",
                "also used by secret \"a\"",
            ),
            (
                &[("agent", "always")],
                "agent",
                "both, init-only or sidecar-only",
            ),
            (
                &[("auth-type", "ldap")],
                "auth-type",
                "kubernetes, jwt or approle",
            ),
            (&[("auth-path", "")], "auth-path", "empty"),
            (&[("role", " ")], "role", "empty"),
            (&[("containers", "app,,web")], "containers", "empty entries"),
            (&[("containers", "")], "containers", "empty entries"),
            (&[("reload", "SIGKILL")], "reload", "not a reload signal"),
            (
                &[("reload", "HUP"), ("reload-command", "kill 1")],
                "reload",
                "not both",
            ),
            (&[("reload-command", "")], "reload-command", "empty"),
            (
                &[("env-1X", "kv/a#k")],
                "env-1X",
                "environment variable name",
            ),
            (
                &[("env-A-B", "kv/a#k")],
                "env-A-B",
                "environment variable name",
            ),
            (&[("env-A", "kv/a")], "env-A", "PATH#KEY"),
            (&[("env-A", "kv/a#")], "env-A", "PATH#KEY"),
            (&[("env-A", "#k")], "env-A", "must not be empty"),
            (&[("env-A", "kv/a#k#x")], "env-A", "version"),
            (&[("env-A", "kv/a#k#1#2")], "env-A", "too many"),
            (&[("volume-data", "")], "volume-data", "volume profile"),
            (&[("volume-Data", "p")], "volume-Data", "DNS label"),
            (&[("volume-data", "../x")], "volume-data", "volume profile"),
            (
                &[("entrypoint-app", "/app/server")],
                "entrypoint-app",
                "JSON array",
            ),
            (
                &[("entrypoint-app", "[]")],
                "entrypoint-app",
                "name the program",
            ),
            (
                &[("entrypoint-App", "[\"x\"]")],
                "entrypoint-App",
                "DNS label",
            ),
        ];
        for (pairs, key, needle) in cases {
            let err = parse(pairs).expect_err(&format!("{pairs:?} must be rejected"));
            let full = format!("{PREFIX}{key}");
            assert!(
                err.problems.iter().any(|p| p.annotation == full),
                "{pairs:?}: expected a problem for {full}, got {err}"
            );
            let text = err.to_string();
            assert!(text.contains(&full), "{pairs:?}: {text}");
            assert!(
                text.contains(needle),
                "{pairs:?}: {text:?} lacks {needle:?}"
            );
        }
    }

    #[test]
    fn connection_override_keys_are_left_to_the_policy_layer() {
        let req = parse(&[
            ("inject", "true"),
            ("vault-address", "https://other:8200"),
            ("tls-skip-verify", "true"),
            ("ca-cert", "-----BEGIN CERTIFICATE-----"),
        ])
        .unwrap();
        assert!(req.wants_injection());
    }

    #[test]
    fn all_problems_are_reported_together() {
        let err = parse(&[("inject", "maybe"), ("mode-x", "9"), ("nope", "1")]).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
    }

    #[test]
    fn modes_and_files_normalise() {
        assert_eq!(parse_mode("0400"), Ok(0o400));
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0o440"), Ok(0o440));
        assert_eq!(parse_mode("0777"), Ok(0o777));
        assert_eq!(check_file("./a//b.json"), Ok("a/b.json".to_string()));
        assert!(check_file(".").is_err());
    }

    #[test]
    fn signals_normalise() {
        assert_eq!(parse_signal("SIGHUP").unwrap(), "SIGHUP");
        assert_eq!(parse_signal("usr1").unwrap(), "SIGUSR1");
        assert!(parse_signal("").is_err());
    }

    #[test]
    fn volume_options_narrow_a_profile() {
        let ann = |v: &str| {
            BTreeMap::from([
                ("vault-injector.io/inject".to_string(), "true".to_string()),
                ("vault-injector.io/volume-data".to_string(), v.to_string()),
            ])
        };
        let req = from_annotations(&ann("nfs-prod, mountPath=/srv/data ,readOnly=true")).unwrap();
        assert_eq!(req.volumes[0].profile, "nfs-prod");
        assert_eq!(req.volumes[0].mount_path.as_deref(), Some("/srv/data"));
        assert_eq!(req.volumes[0].read_only, Some(true));
        for (value, want) in [
            ("nfs,mountPath=srv", "absolute path"),
            ("nfs,mountPath=/a/../b", "absolute path"),
            ("nfs,readOnly=yes", "not a boolean"),
            ("nfs,subPath=x", "unknown volume option"),
            ("nfs,ro", "key=value"),
        ] {
            let err = from_annotations(&ann(value)).unwrap_err().to_string();
            assert!(
                err.contains("vault-injector.io/volume-data"),
                "{value}: {err}"
            );
            assert!(err.contains(want), "{value}: {err}");
        }
    }
}
