//! What a hostile pod author might write, and the denial each gets. Every
//! denial must name the annotation or the rule, so the author and the audit
//! line both say what was refused.

use std::collections::BTreeMap;
use std::path::Path;

use vault_injector_core::config::AgentOverrideSettings;
use vault_injector_core::config::VaultSettings;
use vault_injector_core::policy::overrides::connection_overrides;
use vault_injector_core::policy::{DenialKind, Policy, PolicyRequest};
use vault_injector_core::profile::{validate_profile_name, VolumeError};

const POLICY: &str = r#"
rules:
  - name: team-a
    namespaces: [team-a]
    roles: [team-a-*]
    secretPaths: [secret/team-a]
    volumeProfiles: [team-a-*]
  - name: team-b
    namespaces: [team-b]
    roles: [team-b-*]
    secretPaths: [secret/team-b]
    volumeProfiles: [team-b-*]
"#;

fn policy() -> Policy {
    Policy::from_yaml(POLICY, Path::new("policy.yaml")).unwrap()
}

fn team_a() -> PolicyRequest {
    PolicyRequest {
        namespace: "team-a".into(),
        service_account: "web".into(),
        ..Default::default()
    }
}

fn operator_vault() -> VaultSettings {
    VaultSettings {
        address: "https://vault.vault.svc:8200".into(),
        ..Default::default()
    }
}

fn annotations(k: &str, v: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("vault-injector.io/inject".to_string(), "true".to_string()),
        (k.to_string(), v.to_string()),
    ])
}

#[test]
fn redirecting_the_vault_address_is_denied() {
    // CVE-2026-54725 shape: point the agent (and its token) at the attacker.
    for key in [
        "vault-injector.io/vault-address",
        "vault.hashicorp.com/service",
        "vault.security.banzaicloud.io/vault-addr",
    ] {
        for target in [
            "https://attacker.example:8200",
            "http://169.254.169.254",
            "http://kubernetes.default.svc",
        ] {
            let e = connection_overrides(
                &annotations(key, target),
                &operator_vault(),
                &AgentOverrideSettings::default(),
            )
            .unwrap_err();
            assert_eq!(e.annotation, key);
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("annotation {key:?}")), "{msg}");
            assert!(msg.contains("may not change the Vault address"), "{msg}");
        }
    }
}

#[test]
fn an_allowlisted_address_does_not_open_lookalikes() {
    let allow = AgentOverrideSettings {
        allow_address: vec!["https://vault-dr.vault.svc:8200".into()],
        ..Default::default()
    };
    for target in [
        "https://vault-dr.vault.svc:8200.attacker.example",
        "https://vault-dr.vault.svc:8200@attacker.example",
        "https://vault-dr.vault.svc:8201",
        "http://vault-dr.vault.svc:8200",
    ] {
        let r = connection_overrides(
            &annotations("vault-injector.io/vault-address", target),
            &operator_vault(),
            &allow,
        );
        assert!(r.is_err(), "{target} was accepted");
    }
}

#[test]
fn turning_tls_verification_off_is_never_honoured() {
    for key in [
        "vault-injector.io/tls-skip-verify",
        "vault.hashicorp.com/tls-skip-verify",
        "vault.security.banzaicloud.io/vault-skip-verify",
    ] {
        if key.starts_with("vault-injector.io/") {
            let e = connection_overrides(
                &annotations(key, "true"),
                &operator_vault(),
                &AgentOverrideSettings::default(),
            )
            .unwrap_err();
            assert_eq!(e.annotation, key);
            assert!(e.to_string().contains("TLS verification"), "{e}");
            continue;
        }
        // The compatibility dialects: not honoured (the agent keeps
        // verifying), with a warning.
        let o = connection_overrides(
            &annotations(key, "true"),
            &operator_vault(),
            &AgentOverrideSettings::default(),
        )
        .unwrap();
        assert_eq!(o.tls_skip_verify, None, "{key}");
        assert!(
            o.warnings[0].contains("keeps verifying"),
            "{:?}",
            o.warnings
        );
    }
}

#[test]
fn pod_supplied_ca_or_proxy_is_denied() {
    for key in [
        "vault.hashicorp.com/ca-cert",
        "vault.hashicorp.com/tls-server-name",
        "vault.hashicorp.com/proxy-address",
        "vault-injector.io/ca-cert",
    ] {
        let e = connection_overrides(
            &annotations(
                key,
                "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----",
            ),
            &operator_vault(),
            &AgentOverrideSettings::default(),
        )
        .unwrap_err();
        assert_eq!(e.annotation, key, "{e}");
    }
}

#[test]
fn another_namespaces_role_is_denied() {
    let e = policy()
        .check(&PolicyRequest {
            role: Some("team-b-admin".into()),
            ..team_a()
        })
        .unwrap_err();
    assert_eq!(e.kind, DenialKind::Role);
    assert_eq!(e.rule.as_deref(), Some("team-a"));
    assert_eq!(
        e.message,
        "policy: namespace \"team-a\" service account \"web\" may not use role \"team-b-admin\" (rule \"team-a\" allows: team-a-*)"
    );
}

#[test]
fn paths_outside_the_prefix_are_denied_however_spelled() {
    for path in [
        "secret/team-b/db",
        "secret/data/team-b/db",
        "secret/team-a/../team-b/db",
        "secret/data/team-a/./../../team-b/db",
        "secret/team-ab/db",
        "sys/raw/logical",
        "/secret/team-b/db",
    ] {
        let e = policy()
            .check(&PolicyRequest {
                secret_paths: vec![("db".into(), path.into())],
                ..team_a()
            })
            .unwrap_err();
        assert_eq!(e.kind, DenialKind::SecretPath, "{path}");
        assert!(e.message.contains("secret \"db\""), "{}", e.message);
        assert!(e.message.contains(path), "{}", e.message);
    }
    // The same through an env var.
    let e = policy()
        .check(&PolicyRequest {
            env_paths: vec![("PASSWORD".into(), "secret/team-b/db".into())],
            ..team_a()
        })
        .unwrap_err();
    assert_eq!(e.kind, DenialKind::EnvPath);
    assert!(e.message.contains("env var \"PASSWORD\""), "{}", e.message);
}

#[test]
fn another_teams_volume_profile_is_denied() {
    let e = policy()
        .check(&PolicyRequest {
            volume_profiles: vec![("data".into(), "team-b-data".into())],
            ..team_a()
        })
        .unwrap_err();
    assert_eq!(e.kind, DenialKind::VolumeProfile);
    assert!(
        e.message
            .contains("volume profile \"team-b-data\" for volume \"data\""),
        "{}",
        e.message
    );
    assert!(e.message.contains("rule \"team-a\""), "{}", e.message);
}

#[test]
fn a_profile_name_cannot_steer_the_webhooks_own_read() {
    // The webhook reads profiles with its own identity; a name that walks
    // the path would make it a confused deputy.
    for name in ["../team-b/db", "x/../../sys", "team-b/data", "..", ""] {
        let e = validate_profile_name(name).unwrap_err();
        assert!(matches!(e, VolumeError::InvalidName { .. }), "{name}");
    }
}
