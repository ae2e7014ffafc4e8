//! Bank-Vaults style env values: `vault:PATH#KEY` and `vault:PATH#KEY#VERSION`.
//! The literal reference stays in the pod spec; `vault-injector exec`
//! resolves it in the container's process just before `execve`.

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
}
