//! Pod annotations that would change where the agent connects or how it
//! verifies TLS.
//!
//! The webhook's own Vault connection never depends on a request: it comes
//! from the operator's config only. The agent runs with the pod's identity,
//! but redirecting it still hands the pod's Vault token (and the secrets it
//! asked for) to whoever runs the other end; that is the shape of the 2026
//! Bank-Vaults SSRF (CVE-2026-54725), where an annotation redirected a token.
//! So such annotations are *denied*, not silently ignored, unless the
//! operator's `agentOverrides` allowlist permits them: the pod author learns
//! at once, and the audit line and the denial name the annotation.
//! An annotation that restates the operator's own setting is harmless and
//! passes.

use std::collections::BTreeMap;

use crate::config::{AgentOverrideSettings, VaultSettings};

/// Annotations that set the agent's Vault address.
pub const ADDRESS_ANNOTATIONS: &[&str] = &[
    "vault-injector.io/vault-address",
    "vault.hashicorp.com/service",
    "vault.security.banzaicloud.io/vault-addr",
    "vault.banzaicloud.io/vault-addr",
    "secrets-webhook.security.bank-vaults.io/vault-addr",
];
/// Annotations that turn TLS verification off.
pub const TLS_SKIP_ANNOTATIONS: &[&str] = &[
    "vault-injector.io/tls-skip-verify",
    "vault.hashicorp.com/tls-skip-verify",
    "vault.security.banzaicloud.io/vault-skip-verify",
    "vault.banzaicloud.io/vault-skip-verify",
    "secrets-webhook.security.bank-vaults.io/vault-skip-verify",
];
/// Annotation carrying a CA bundle (PEM) for the agent.
pub const CA_ANNOTATION: &str = "vault-injector.io/ca-cert";
/// vault-k8s annotations that pull TLS material or a proxy from the pod's
/// side. Never honoured: the CA comes from `vault.caPem`.
pub const REFUSED_ANNOTATIONS: &[&str] = &[
    "vault.hashicorp.com/ca-cert",
    "vault.hashicorp.com/ca-key",
    "vault.hashicorp.com/client-cert",
    "vault.hashicorp.com/client-key",
    "vault.hashicorp.com/tls-server-name",
    "vault.hashicorp.com/proxy-address",
];

/// What the pod may change, after the allowlist. None: the operator's
/// setting stands.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionOverride {
    pub address: Option<String>,
    pub tls_skip_verify: Option<bool>,
    pub ca_pem: Option<String>,
    /// Annotation keys that changed something, for the audit line.
    pub honoured: Vec<String>,
    /// Requests not honoured that need not deny the pod (asking to skip TLS
    /// verification: the agent keeps verifying), as admission warnings.
    pub warnings: Vec<String>,
}

impl ConnectionOverride {
    /// Applies the override to the agent's connection settings.
    pub fn apply(&self, conn: &mut crate::contract::VaultConnection) {
        if let Some(a) = &self.address {
            conn.address = a.clone();
        }
        if let Some(s) = self.tls_skip_verify {
            conn.tls_skip_verify = s;
        }
        if let Some(ca) = &self.ca_pem {
            conn.ca_pem = Some(ca.clone());
        }
    }
}

/// A refused override; the message names the annotation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation:?}: {message}")]
pub struct OverrideDenial {
    pub annotation: String,
    pub message: String,
}

fn denial(annotation: &str, message: String) -> OverrideDenial {
    OverrideDenial {
        annotation: annotation.to_string(),
        message,
    }
}

/// Shortens an annotation value for an error message.
fn shown(value: &str) -> String {
    let v: String = value.chars().take(100).collect();
    if v.len() < value.len() {
        format!("{v:?}...")
    } else {
        format!("{v:?}")
    }
}

/// `scheme://host[:port]`, lowercased, or None for anything with a user,
/// path, query or fragment (those can smuggle a different target past a
/// reader).
pub fn normalize_address(address: &str) -> Option<String> {
    let a = address.trim().trim_end_matches('/');
    let (scheme, rest) = a.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    if rest.is_empty()
        || rest.chars().any(|c| {
            matches!(c, '/' | '@' | '?' | '#' | '\\') || c.is_whitespace() || c.is_control()
        })
    {
        return None;
    }
    Some(format!("{scheme}://{}", rest.to_ascii_lowercase()))
}

/// Decides every connection-related annotation on a pod. Pure; call it from
/// planning with the pod's annotations and the operator's settings, and
/// apply the result to the agent's [`crate::contract::VaultConnection`].
pub fn connection_overrides(
    annotations: &BTreeMap<String, String>,
    vault: &VaultSettings,
    allow: &AgentOverrideSettings,
) -> Result<ConnectionOverride, OverrideDenial> {
    let mut out = ConnectionOverride::default();

    // vault-k8s reads an empty value as unset.
    for key in REFUSED_ANNOTATIONS {
        if annotations.get(*key).is_some_and(|v| !v.is_empty()) {
            return Err(denial(
                key,
                "pods may not supply TLS material, a TLS server name or a proxy for the Vault connection; the operator sets them (vault.caPem in the webhook config)".into(),
            ));
        }
    }

    for key in ADDRESS_ANNOTATIONS {
        let Some(value) = annotations.get(*key) else {
            continue;
        };
        let Some(addr) = normalize_address(value) else {
            return Err(denial(
                key,
                format!(
                    "{} is not a plain Vault address (http(s)://host[:port], no user, path or query)",
                    shown(value)
                ),
            ));
        };
        if normalize_address(&vault.address).as_ref() == Some(&addr) {
            continue;
        }
        let allowed = allow
            .allow_address
            .iter()
            .any(|a| normalize_address(a).as_deref() == Some(addr.as_str()));
        if !allowed {
            return Err(denial(
                key,
                format!(
                    "pods may not change the Vault address to {}: it is not in the operator's agentOverrides.allowAddress",
                    shown(value)
                ),
            ));
        }
        if let Some(prev) = &out.address {
            if *prev != addr {
                return Err(denial(
                    key,
                    format!("conflicts with another address annotation ({prev:?})"),
                ));
            }
        }
        out.address = Some(addr);
        out.honoured.push(key.to_string());
    }

    for key in TLS_SKIP_ANNOTATIONS {
        let Some(value) = annotations.get(*key) else {
            continue;
        };
        // The other dialects' booleans are parseutil's: "" is false.
        let parsed = if key.starts_with(crate::annotations::PREFIX) {
            crate::go::goparse::parse_bool(value)
        } else {
            crate::go::goparse::parse_bool_or_empty(value)
        };
        let Ok(skip) = parsed else {
            return Err(denial(
                key,
                format!("{} is not a boolean (true/false, 1/0, t/f)", shown(value)),
            ));
        };
        if skip == vault.tls_skip_verify {
            continue;
        }
        if skip && !allow.allow_tls_skip_verify && key.starts_with(crate::annotations::PREFIX) {
            return Err(denial(
                key,
                "pods may not turn off TLS verification of Vault: the operator's agentOverrides.allowTlsSkipVerify is false".into(),
            ));
        }
        // The compatibility dialects' manifests often carry this from a lab:
        // not honouring it keeps the connection as safe as the operator made
        // it, so the pod is admitted, with a warning.
        if skip && !allow.allow_tls_skip_verify {
            out.warnings.push(format!(
                "{key}: ignored: the agent keeps verifying Vault's TLS certificate \
                 (the operator's agentOverrides.allowTlsSkipVerify is false)"
            ));
            continue;
        }
        out.tls_skip_verify = Some(skip);
        out.honoured.push(key.to_string());
    }

    if let Some(value) = annotations.get(CA_ANNOTATION) {
        if vault.ca_pem.as_deref().map(str::trim) != Some(value.trim()) {
            if !allow.allow_ca_cert {
                return Err(denial(
                    CA_ANNOTATION,
                    "pods may not replace the CA used to verify Vault: the operator's agentOverrides.allowCaCert is false".into(),
                ));
            }
            if !value.contains("-----BEGIN CERTIFICATE-----") {
                return Err(denial(
                    CA_ANNOTATION,
                    "is not a PEM certificate bundle".into(),
                ));
            }
            out.ca_pem = Some(value.clone());
            out.honoured.push(CA_ANNOTATION.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn vault() -> VaultSettings {
        VaultSettings {
            address: "https://vault.vault.svc:8200".into(),
            ..Default::default()
        }
    }

    #[test]
    fn no_annotations_no_override() {
        let o = connection_overrides(&ann(&[]), &vault(), &Default::default()).unwrap();
        assert_eq!(o, ConnectionOverride::default());
    }

    #[test]
    fn restating_the_operator_address_passes() {
        let o = connection_overrides(
            &ann(&[(
                "vault.hashicorp.com/service",
                "HTTPS://vault.vault.svc:8200/",
            )]),
            &vault(),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(o.address, None);
        assert!(o.honoured.is_empty());
    }

    #[test]
    fn address_needs_the_allowlist() {
        for key in ADDRESS_ANNOTATIONS {
            let a = ann(&[(key, "https://attacker.example:8200")]);
            let err = connection_overrides(&a, &vault(), &Default::default()).unwrap_err();
            assert_eq!(err.annotation, *key);
            assert!(err.to_string().contains("allowAddress"), "{err}");
        }
        let allow = AgentOverrideSettings {
            allow_address: vec!["https://vault-dr.vault.svc:8200".into()],
            ..Default::default()
        };
        let o = connection_overrides(
            &ann(&[(
                "vault-injector.io/vault-address",
                "https://vault-dr.vault.svc:8200",
            )]),
            &vault(),
            &allow,
        )
        .unwrap();
        assert_eq!(
            o.address.as_deref(),
            Some("https://vault-dr.vault.svc:8200")
        );
        assert_eq!(o.honoured, vec!["vault-injector.io/vault-address"]);
    }

    #[test]
    fn smuggled_addresses_are_refused() {
        let allow = AgentOverrideSettings {
            allow_address: vec!["https://vault-dr.vault.svc:8200".into()],
            ..Default::default()
        };
        for bad in [
            "https://vault-dr.vault.svc:8200@attacker.example",
            "https://vault-dr.vault.svc:8200/../x",
            "https://vault-dr.vault.svc:8200?x=1",
            "file:///etc/passwd",
            "vault-dr.vault.svc:8200",
        ] {
            let a = ann(&[("vault-injector.io/vault-address", bad)]);
            let err = connection_overrides(&a, &vault(), &allow).unwrap_err();
            assert_eq!(err.annotation, "vault-injector.io/vault-address", "{bad}");
        }
    }

    #[test]
    fn tls_skip_needs_the_allowlist_and_a_boolean() {
        let err = connection_overrides(
            &ann(&[(TLS_SKIP_ANNOTATIONS[0], "true")]),
            &vault(),
            &Default::default(),
        )
        .unwrap_err();
        assert_eq!(err.annotation, TLS_SKIP_ANNOTATIONS[0]);
        assert!(err.to_string().contains("allowTlsSkipVerify"), "{err}");
        for key in &TLS_SKIP_ANNOTATIONS[1..] {
            let o = connection_overrides(&ann(&[(key, "true")]), &vault(), &Default::default())
                .unwrap();
            assert_eq!(o.tls_skip_verify, None, "{key} must not be honoured");
            assert!(o.honoured.is_empty());
            assert!(
                o.warnings[0].starts_with(key) && o.warnings[0].contains("allowTlsSkipVerify"),
                "{:?}",
                o.warnings
            );
        }
        // Asking for verification is never a widening.
        let o = connection_overrides(
            &ann(&[("vault.hashicorp.com/tls-skip-verify", "false")]),
            &vault(),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(o.tls_skip_verify, None);
        let err = connection_overrides(
            &ann(&[("vault-injector.io/tls-skip-verify", "yes")]),
            &vault(),
            &Default::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a boolean"), "{err}");
        let allow = AgentOverrideSettings {
            allow_tls_skip_verify: true,
            ..Default::default()
        };
        let o = connection_overrides(
            &ann(&[("vault-injector.io/tls-skip-verify", "1")]),
            &vault(),
            &allow,
        )
        .unwrap();
        assert_eq!(o.tls_skip_verify, Some(true));
    }

    #[test]
    fn pod_tls_material_is_always_refused() {
        let allow = AgentOverrideSettings {
            allow_address: vec!["https://x:1".into()],
            allow_tls_skip_verify: true,
            allow_ca_cert: true,
        };
        for key in REFUSED_ANNOTATIONS {
            let err = connection_overrides(&ann(&[(key, "/vault/tls/ca.crt")]), &vault(), &allow)
                .unwrap_err();
            assert_eq!(err.annotation, *key);
        }
    }

    #[test]
    fn ca_needs_the_allowlist() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let err =
            connection_overrides(&ann(&[(CA_ANNOTATION, pem)]), &vault(), &Default::default())
                .unwrap_err();
        assert!(err.to_string().contains("allowCaCert"), "{err}");
        let allow = AgentOverrideSettings {
            allow_ca_cert: true,
            ..Default::default()
        };
        let o = connection_overrides(&ann(&[(CA_ANNOTATION, pem)]), &vault(), &allow).unwrap();
        let mut conn = crate::contract::VaultConnection::from(&vault());
        o.apply(&mut conn);
        assert_eq!(conn.ca_pem.as_deref(), Some(pem));
        let err =
            connection_overrides(&ann(&[(CA_ANNOTATION, "nope")]), &vault(), &allow).unwrap_err();
        assert!(err.to_string().contains("PEM"), "{err}");
    }
}
