//! Bank-Vaults style env values: `vault:PATH#KEY` and `vault:PATH#KEY#VERSION`,
//! where KEY may be a template over the secret's data
//! (`vault:PATH#prefix ${.KEY | b64enc} suffix`), and references inline in
//! other text (`scheme://${vault:PATH#user}:${vault:PATH#pass}@host`).
//! The literal reference stays in the pod spec; `vault-injector exec`
//! resolves it in the container's process just before `execve`.
//!
//! Refused with a message (docs/compat.md): `vault:login` (it hands the
//! pod's Vault token to the app) and `>>vault:` writes (a pod author's env
//! value would write to Vault).

/// Longest reference accepted, in bytes: far above any Vault path, and a
/// bound on what a pod author's env value costs to check.
pub const MAX_REF_BYTES: usize = 4096;

/// Most `/`-separated segments in a reference's path: every segment is
/// checked against the cluster policy's globs, so this bounds that work.
pub const MAX_REF_SEGMENTS: usize = 64;

/// Most `vault:` references in one pod (all containers together).
pub const MAX_REFS_PER_POD: usize = 256;

/// Prefix that marks an env value as a Vault reference.
pub const PREFIX: &str = "vault:";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvRef {
    pub path: String,
    /// The key, or with `template` the Go template (`${...}`) over the
    /// secret's data.
    pub key: String,
    pub version: Option<u64>,
    pub template: bool,
}

/// One part of an env value: literal text or a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Ref(EnvRef),
}

/// Is this env value a reference we must resolve (whole, or inline)?
pub fn is_ref(value: &str) -> bool {
    value.starts_with(PREFIX)
        || value.starts_with(WRITE_PREFIX)
        || value.contains("${") && find_inline(value).is_some()
}

/// Bank-Vaults' write form (`>>vault:PATH#...#JSON`), refused.
pub const WRITE_PREFIX: &str = ">>vault:";

/// The first inline reference in `s`: (start of `${`, end after its `}`,
/// the reference). Bank-Vaults matches `\${([>]{0,2}vault:.*?#*}?)}`: the
/// reference ends at the first `}`, which belongs to it when a second `}`
/// follows (`${vault:PATH#${.KEY}}`).
fn find_inline(s: &str) -> Option<(usize, usize, &str)> {
    let mut from = 0;
    while let Some(i) = s[from..].find("${") {
        let start = from + i;
        let body = &s[start + 2..];
        let rest = body.trim_start_matches('>');
        if body.len() - rest.len() <= 2 && rest.starts_with(PREFIX) {
            let j = body.find('}')?;
            return Some(if body[j + 1..].starts_with('}') {
                (start, start + 2 + j + 2, &body[..=j])
            } else {
                (start, start + 2 + j + 1, &body[..j])
            });
        }
        from = start + 2;
    }
    None
}

/// Splits an env value into text and references; `Ok(None)` when it holds
/// none. Every reference is checked as [`parse`] checks a whole value.
pub fn parse_value(value: &str) -> Result<Option<Vec<Piece>>, String> {
    if value.len() > MAX_REF_BYTES {
        return Err(format!(
            "reference is {} bytes, above the limit of {MAX_REF_BYTES} bytes",
            value.len()
        ));
    }
    if value.starts_with(PREFIX) || value.starts_with(WRITE_PREFIX) {
        return parse(value).map(|r| Some(vec![Piece::Ref(r)]));
    }
    let mut pieces = Vec::new();
    let mut rest = value;
    while let Some((start, end, inner)) = find_inline(rest) {
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].to_string()));
        }
        pieces.push(Piece::Ref(parse(inner)?));
        rest = &rest[end..];
    }
    if pieces.is_empty() {
        return Ok(None);
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(Some(pieces))
}

/// Parses `vault:PATH#KEY[#VERSION]`. The error names the part that is wrong
/// and quotes the reference (references are paths, not secret values).
pub fn parse(value: &str) -> Result<EnvRef, String> {
    if value.len() > MAX_REF_BYTES {
        // Not quoted: the message must stay small whatever the input.
        return Err(format!(
            "reference is {} bytes, above the limit of {MAX_REF_BYTES} bytes",
            value.len()
        ));
    }
    if value.trim_start_matches('>').starts_with(PREFIX) && value.starts_with('>') {
        return Err(format!(
            "{value:?}: writing to Vault from an env value (>>vault:) is not supported"
        ));
    }
    let body = value
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("{value:?} does not start with {PREFIX:?}"))?;
    if body == "login" {
        return Err(
            "vault:login is not supported: it would hand the pod's Vault token to the app".into(),
        );
    }
    // A template may hold '#' only after the key's `${`; Bank-Vaults splits
    // into at most three parts.
    let mut parts = body.splitn(3, '#');
    let path = parts.next().unwrap_or_default().trim_matches('/');
    let key = parts.next();
    let version = parts.next();
    if version.is_some_and(|v| v.contains('#')) {
        return Err(format!(
            "{value:?}: too many '#' (expected vault:PATH#KEY or vault:PATH#KEY#VERSION)"
        ));
    }
    if path.is_empty() {
        return Err(format!(
            "{value:?}: missing Vault path (expected vault:PATH#KEY)"
        ));
    }
    if path.split('/').nth(MAX_REF_SEGMENTS).is_some() {
        return Err(format!(
            "Vault path has more than {MAX_REF_SEGMENTS} segments"
        ));
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == ".." || seg == ".")
    {
        return Err(format!(
            "{value:?}: Vault path {path:?} has an empty, '.' or '..' segment"
        ));
    }
    let key = match key {
        Some(k) if !k.is_empty() => k.to_string(),
        _ => {
            return Err(format!(
                "{value:?}: missing key after '#' (expected vault:PATH#KEY)"
            ))
        }
    };
    let version = match version {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| format!("{value:?}: version {v:?} is not a positive integer"))?,
        ),
    };
    let template = key.contains("${") && key.contains('}');
    if template {
        crate::go::gotmpl::translate_bankvaults(&key)
            .map_err(|e| format!("{value:?}: the template after '#': {e}"))?;
    }
    Ok(EnvRef {
        path: path.to_string(),
        key,
        version,
        template,
    })
}

/// Bank-Vaults' annotation prefixes: its webhook's, the older one, and the
/// successor project's.
pub const ANNOTATION_PREFIXES: &[&str] = &[
    "vault.security.banzaicloud.io/",
    "vault.banzaicloud.io/",
    "secrets-webhook.security.bank-vaults.io/",
];

/// What a pod without an opt-in annotation asks for through Bank-Vaults'
/// annotations (`WebhookConfig.injector.bankVaultsWithoutOptIn`): role, auth
/// path and method. The address and TLS settings are judged by
/// `policy::overrides` like every dialect's; the env values themselves by
/// `plan`. `Ok(None)`: the pod says `mutate: skip`.
#[cfg(feature = "k8s")]
pub(crate) fn request_from_annotations(
    ann: &std::collections::BTreeMap<String, String>,
) -> crate::annotations::Result<Option<(crate::annotations::InjectionRequest, Vec<String>)>> {
    use crate::annotations::{InjectionRequest, Problem, STATUS};
    use crate::contract::AuthMethod;
    let mut req = InjectionRequest {
        inject: Some(true),
        status: ann.get(STATUS).cloned(),
        ..Default::default()
    };
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for (key, value) in ann {
        let Some(suffix) = ANNOTATION_PREFIXES.iter().find_map(|p| key.strip_prefix(p)) else {
            continue;
        };
        match suffix {
            "mutate" if value == "skip" => return Ok(None),
            "vault-role" if value.trim().is_empty() => {
                problems.push(Problem::new(key, "the role must not be empty"))
            }
            "vault-role" => req.role = Some(value.trim().to_string()),
            "vault-path" if value.trim_matches('/').is_empty() => {
                problems.push(Problem::new(key, "the auth path must not be empty"))
            }
            "vault-path" => req.auth_path = Some(value.trim().to_string()),
            "vault-auth-method" => match value.as_str() {
                "kubernetes" => req.auth_type = Some(AuthMethod::Kubernetes),
                "jwt" => req.auth_type = Some(AuthMethod::Jwt),
                other => problems.push(Problem::new(
                    key,
                    format!("auth method {other:?} is not supported (kubernetes or jwt)"),
                )),
            },
            // Judged by `policy::overrides` against the operator's allowlist.
            "vault-addr" | "vault-skip-verify" => {}
            "vault-tls-secret" => warnings.push(format!(
                "{key}: ignored: the agent verifies Vault with the operator's CA (vault.caPem)"
            )),
            "vault-env-from-path" => problems.push(Problem::new(
                key,
                "is not supported: name each variable as NAME=vault:PATH#KEY, so the cluster \
                 policy and the audit see which keys reach the app",
            )),
            s if s.starts_with("vault-agent") || s.starts_with("vault-ct") => {
                if !matches!(value.as_str(), "" | "false") {
                    problems.push(Problem::new(
                        key,
                        "is not supported: Bank-Vaults' Vault Agent and consul-template sidecars \
                         take their config from the pod; use vault-injector.io/secret-NAME files",
                    ))
                }
            }
            _ => warnings.push(format!(
                "{key}: not used by vault-injector's Bank-Vaults support; ignored"
            )),
        }
    }
    if problems.is_empty() {
        Ok(Some((req, warnings)))
    } else {
        Err(crate::annotations::Error { problems })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        assert_eq!(
            parse("vault:secret/data/app#password").unwrap(),
            EnvRef {
                path: "secret/data/app".into(),
                key: "password".into(),
                version: None,
                template: false,
            }
        );
        assert_eq!(
            parse("vault:secret/data/app#password#3").unwrap().version,
            Some(3)
        );
        assert!(is_ref("vault:x#y"));
        assert!(!is_ref("plain"));
        assert!(!is_ref("Vault:x#y"));
    }

    #[test]
    fn templates_and_inline_references() {
        let r = parse("vault:secret/data/app#prefix ${.value.nested.key} suffix").unwrap();
        assert!(r.template);
        assert_eq!(r.key, "prefix ${.value.nested.key} suffix");
        let r = parse("vault:secret/data/account#${.password}#1").unwrap();
        assert_eq!((r.template, r.version), (true, Some(1)));
        assert!(!parse("vault:secret/data/app#plain}").unwrap().template);
        let value = "scheme://${vault:secret/data/account#username}:${vault:secret/data/account#${.password | urlquery}}@127.0.0.1:8080";
        assert!(is_ref(value));
        let pieces = parse_value(value).unwrap().unwrap();
        let shape: Vec<String> = pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => format!("text {t}"),
                Piece::Ref(r) => format!("ref {} {} {}", r.path, r.key, r.template),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "text scheme://",
                "ref secret/data/account username false",
                "text :",
                "ref secret/data/account ${.password | urlquery} true",
                "text @127.0.0.1:8080",
            ]
        );
        assert_eq!(parse_value("no ${HOME} here").unwrap(), None);
        assert!(!is_ref("no ${HOME} here"));
        for (v, want) in [
            ("vault:login", "hand the pod's Vault token"),
            (
                ">>vault:transit/decrypt/k#${.plaintext}#{}",
                "writing to Vault",
            ),
            ("x ${>>vault:transit/decrypt/k#x}", "writing to Vault"),
            ("vault:secret/app#${ file \"/etc/passwd\" }", "reads files"),
            ("vault:secret/app#${ .x } ${ .y", "template after '#'"),
        ] {
            let e = parse_value(v).unwrap_err();
            assert!(e.contains(want), "{v}: {e}");
        }
    }

    #[test]
    fn rejects_bad_references_naming_the_part() {
        for (v, want) in [
            ("vault:", "missing Vault path"),
            ("vault:#k", "missing Vault path"),
            ("vault:secret/app", "missing key"),
            ("vault:secret/app#", "missing key"),
            ("vault:secret/app#k#x", "not a positive integer"),
            ("vault:secret/app#k#0", "not a positive integer"),
            ("vault:secret/app#k#1#2", "too many"),
            ("vault:secret/app#k#1#", "too many"),
            ("vault:secret/../app#k", "'..'"),
            ("vault:secret//app#k", "empty"),
        ] {
            let err = parse(v).unwrap_err();
            assert!(err.contains(want), "{v}: {err}");
        }
    }

    #[test]
    fn long_references_are_refused_without_echoing_them() {
        let v = format!("vault:{}#k", "a/".repeat(MAX_REF_BYTES));
        let err = parse(&v).unwrap_err();
        assert!(err.contains("above the limit of 4096 bytes"), "{err}");
        assert!(err.len() < 200, "{err}");
        let ok = format!("vault:{}#k", "a".repeat(MAX_REF_BYTES - 8));
        assert!(parse(&ok).is_ok());
        let deep = format!("vault:{}x#k", "a/".repeat(MAX_REF_SEGMENTS));
        let err = parse(&deep).unwrap_err();
        assert!(err.contains("more than 64 segments"), "{err}");
        assert!(parse(&format!("vault:{}x#k", "a/".repeat(MAX_REF_SEGMENTS - 1))).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn parse_never_panics_and_errors_stay_small(s in "vault:[a-z/#.0-9]{0,64}|.{0,300}") {
            match parse(&s) {
                Ok(r) => {
                    proptest::prop_assert!(!r.path.is_empty() && !r.key.is_empty());
                    proptest::prop_assert!(s.contains(&r.path) && s.contains(&r.key));
                }
                Err(m) => proptest::prop_assert!(m.len() <= s.len() * 6 + 200),
            }
        }
    }
}
