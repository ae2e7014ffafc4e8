//! Bank-Vaults style env values: `vault:PATH#KEY` and `vault:PATH#KEY#VERSION`.
//! The literal reference stays in the pod spec; `vault-injector exec`
//! resolves it in the container's process just before `execve`.

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
    pub key: String,
    pub version: Option<u64>,
}

/// Is this env value a reference we must resolve?
pub fn is_ref(value: &str) -> bool {
    value.starts_with(PREFIX)
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
    let body = value
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("{value:?} does not start with {PREFIX:?}"))?;
    let mut parts = body.split('#');
    let path = parts.next().unwrap_or_default().trim_matches('/');
    let key = parts.next();
    let version = parts.next();
    if parts.next().is_some() {
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
    Ok(EnvRef {
        path: path.to_string(),
        key,
        version,
    })
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
                version: None
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
    fn rejects_bad_references_naming_the_part() {
        for (v, want) in [
            ("vault:", "missing Vault path"),
            ("vault:#k", "missing Vault path"),
            ("vault:secret/app", "missing key"),
            ("vault:secret/app#", "missing key"),
            ("vault:secret/app#k#x", "not a positive integer"),
            ("vault:secret/app#k#0", "not a positive integer"),
            ("vault:secret/app#k#1#2", "too many"),
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
