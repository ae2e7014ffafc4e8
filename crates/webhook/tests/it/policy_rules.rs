//! Policy table tests against the documented example policy
//! (tests/data/policy-example.yaml, the file docs/policy.md shows).

use crate::support;

use std::path::Path;

use vault_injector_core::config::PolicySettings;
use vault_injector_core::policy::{DenialKind, Policy, PolicyHandle, PolicyRequest};

fn example() -> Policy {
    Policy::load(&support::data("policy-example.yaml")).expect("example policy parses")
}

fn req(ns: &str, sa: &str) -> PolicyRequest {
    PolicyRequest {
        namespace: ns.into(),
        service_account: sa.into(),
        ..Default::default()
    }
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[derive(Debug)]
enum Want {
    Allow(Option<&'static str>),
    Deny(DenialKind, &'static [&'static str]),
}

#[test]
fn table() {
    use DenialKind::*;
    use Want::*;
    let p = example();
    let cases: Vec<(&str, PolicyRequest, Want)> = vec![
        (
            "no role named: the rule's default role",
            req("team-a", "web"),
            Allow(Some("team-a-web")),
        ),
        (
            "allowed role, paths and profile",
            PolicyRequest {
                role: Some("web-ro".into()),
                secret_paths: pairs(&[
                    ("cfg", "secret/data/team-a/web/config"),
                    ("db", "database/creds/team-a-ro"),
                ]),
                env_paths: pairs(&[("API_KEY", "secret/team-a/web/api")]),
                volume_profiles: pairs(&[("data", "team-a-data")]),
                agent_resources: true,
                ..req("team-a", "web")
            },
            Allow(Some("team-a-web")),
        ),
        (
            "namespace glob",
            PolicyRequest {
                role: Some("web".into()),
                ..req("team-a-staging", "web")
            },
            Allow(Some("team-a-web")),
        ),
        (
            "denied role names the rule and what it allows",
            PolicyRequest {
                role: Some("admin".into()),
                ..req("team-a", "web")
            },
            Deny(
                Role,
                &[
                    "policy: namespace \"team-a\" service account \"web\" may not use role \"admin\" (rule \"team-a-web\" allows: web, web-ro)",
                ],
            ),
        ),
        (
            "secret path outside the prefix",
            PolicyRequest {
                secret_paths: pairs(&[("db", "secret/data/team-a/batch/db")]),
                ..req("team-a", "web")
            },
            Deny(
                SecretPath,
                &[
                    "path \"secret/data/team-a/batch/db\" for secret \"db\"",
                    "rule \"team-a-web\" allows paths under: secret/team-a/web, database/creds/team-a-*",
                ],
            ),
        ),
        (
            "a prefix is whole segments, not characters",
            PolicyRequest {
                secret_paths: pairs(&[("x", "secret/team-a/webhooks/key")]),
                ..req("team-a", "web")
            },
            Deny(SecretPath, &["secret/team-a/webhooks/key"]),
        ),
        (
            "env var path outside the prefix",
            PolicyRequest {
                env_paths: pairs(&[("DB_PASSWORD", "secret/team-b/db")]),
                ..req("team-a", "web")
            },
            Deny(EnvPath, &["env var \"DB_PASSWORD\"", "secret/team-b/db"]),
        ),
        (
            "volume profile of another team",
            PolicyRequest {
                volume_profiles: pairs(&[("data", "team-b-data")]),
                ..req("team-a", "web")
            },
            Deny(
                VolumeProfile,
                &["volume profile \"team-b-data\" for volume \"data\"", "(rule \"team-a-web\" allows: team-a-*)"],
            ),
        ),
        (
            "omitted list grants nothing",
            PolicyRequest {
                volume_profiles: pairs(&[("data", "team-a-data")]),
                ..req("team-a", "batch-nightly")
            },
            Deny(VolumeProfile, &["rule \"team-a-batch\" allows: none"]),
        ),
        (
            "ns/sa service accounts bind the namespace",
            req("team-a-staging", "batch-nightly"),
            Deny(NoRule, &["namespace \"team-a-staging\" service account \"batch-nightly\" is not admitted by any policy rule"]),
        ),
        (
            "auth path allowed (with or without auth/)",
            PolicyRequest {
                auth_path: Some("k8s-batch".into()),
                role: Some("batch".into()),
                ..req("team-a", "batch-nightly")
            },
            Allow(Some("team-a-batch")),
        ),
        (
            "auth path denied",
            PolicyRequest {
                auth_path: Some("auth/jwt".into()),
                ..req("team-a", "web")
            },
            Deny(AuthPath, &["may not use auth path \"auth/jwt\" (rule \"team-a-web\" allows: none)"]),
        ),
        (
            "agent resource override refused by the rule",
            PolicyRequest {
                agent_resources: true,
                ..req("team-a", "batch-x")
            },
            Deny(AgentResources, &["allowAgentResources: false", "team-a-batch"]),
        ),
        (
            "wildcards",
            PolicyRequest {
                role: Some("anything".into()),
                secret_paths: pairs(&[("a", "kv/deep/path/x")]),
                volume_profiles: pairs(&[("v", "any-profile")]),
                ..req("platform-tools", "ci")
            },
            Allow(Some("platform")),
        ),
        (
            "no rule for the namespace",
            req("team-c", "web"),
            Deny(NoRule, &["namespace \"team-c\"", "not admitted by any policy rule"]),
        ),
    ];
    for (what, r, want) in cases {
        let got = p.check(&r);
        match (want, got) {
            (Allow(rule), Ok(d)) => assert_eq!(d.rule.as_deref(), rule, "{what}"),
            (Deny(kind, needles), Err(d)) => {
                assert_eq!(d.kind, kind, "{what}: {}", d.message);
                for n in needles {
                    assert!(d.message.contains(n), "{what}: {:?} lacks {n:?}", d.message);
                }
            }
            (want, got) => panic!("{what}: wanted {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn defaults_come_from_the_matching_rule() {
    let p = example();
    let d = p.check(&req("team-a", "web")).unwrap();
    assert_eq!(d.role.as_deref(), Some("web"));
    let res = d.agent_resources.expect("agent resources default");
    assert_eq!(res.limits.unwrap()["memory"].0, "32Mi");
    let d = p.check(&req("platform-x", "sa")).unwrap();
    assert_eq!(d.role, None);
    assert_eq!(
        d.agent_image.as_deref(),
        Some("registry.internal/vault-injector:0.1.0")
    );
}

#[test]
fn no_policy_file_allows_everything() {
    let h = PolicyHandle::from_settings(&PolicySettings::default()).unwrap();
    assert!(h.current().is_none());
    let d = h
        .check(&PolicyRequest {
            role: Some("admin".into()),
            secret_paths: pairs(&[("x", "secret/anything")]),
            volume_profiles: pairs(&[("v", "any")]),
            ..req("anywhere", "default")
        })
        .unwrap();
    assert_eq!(d, Default::default());
}

#[test]
fn a_configured_policy_that_cannot_be_read_is_a_startup_error() {
    let e = PolicyHandle::from_settings(&PolicySettings {
        file: Some("/nonexistent/policy.yaml".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/policy.yaml"), "{e}");
}

#[test]
fn invalid_policies_are_rejected_with_the_problem_named() {
    let cases = [
        (
            "rules:\n  - name: a\n    namespaces: [x]\n    rolez: [y]\n",
            "rolez",
        ),
        (
            "rules:\n  - name: a\n    namespaces: []\n",
            "namespaces must list",
        ),
        (
            "rules:\n  - {name: a, namespaces: [x]}\n  - {name: a, namespaces: [y]}\n",
            "used twice",
        ),
        (
            "rules:\n  - {name: a, namespaces: [x], secretPaths: [\"secret/../x\"]}\n",
            "secretPaths entry",
        ),
        ("rules: 3\n", "rules"),
    ];
    for (text, needle) in cases {
        let e = Policy::from_yaml(text, Path::new("policy.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("policy.yaml"), "{e}");
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn webhook_config_carries_the_new_sections() {
    use vault_injector_core::config::WebhookConfig;
    use vault_injector_core::contract::AuthMethod;
    let yaml = r#"
policy:
  file: /etc/vault-injector/policy/policy.yaml
  reloadInterval: 2s
volumes:
  kvMount: kv
  prefix: platform/volumes
  cacheTtl: 30s
  requestTimeout: 3s
  allowHostPath: true
webhookAuth:
  method: approle
  path: auth/approle
  roleIdPath: /etc/approle/role-id
  secretIdPath: /etc/approle/secret-id
agentOverrides:
  allowAddress: ["https://vault-dr.vault.svc:8200"]
  allowTlsSkipVerify: false
  allowCaCert: true
events:
  enabled: true
"#;
    let cfg = WebhookConfig::from_yaml(yaml, Path::new("webhook.yaml")).unwrap();
    assert_eq!(cfg.policy.reload_interval().unwrap().as_secs(), 2);
    assert_eq!(cfg.volumes.profile_path("x"), "platform/volumes/x");
    assert_eq!(cfg.volumes.cache_ttl().as_secs(), 30);
    assert_eq!(cfg.webhook_auth.method, AuthMethod::Approle);
    assert_eq!(cfg.agent_overrides.allow_address.len(), 1);
    assert!(cfg.agent_overrides.allow_ca_cert);
    assert!(cfg.events.enabled);

    let defaults = WebhookConfig::default();
    assert!(defaults.policy.file.is_none());
    assert!(!defaults.events.enabled);
    assert!(defaults.agent_overrides.allow_address.is_empty());
    assert!(!defaults.agent_overrides.allow_tls_skip_verify);
    assert_eq!(
        defaults.volumes.profile_path("p"),
        "vault-injector/volumes/p"
    );

    for (bad, needle) in [
        ("volumes:\n  cacheTTL: 5s\n", "cacheTTL"),
        ("volumes:\n  cacheTtl: soon\n", "volumes.cacheTtl"),
        ("policy:\n  reloadInterval: x\n", "policy.reloadInterval"),
        ("webhookAuth:\n  method: approle\n", "roleIdPath"),
        ("agentOverrides:\n  allowAddresses: []\n", "allowAddresses"),
    ] {
        let e = WebhookConfig::from_yaml(bad, Path::new("webhook.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
}
