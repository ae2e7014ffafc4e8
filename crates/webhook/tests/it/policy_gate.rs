//! The admission-path gate end to end against a real OpenBao: connection
//! overrides, cluster policy and volume profiles together, and the order
//! that keeps refused pods from reaching Vault.

use crate::support;

use std::collections::BTreeMap;

use serde_json::json;
use support::bao_dev::BaoDev;
use vault_injector::gate::{Gate, GateDenial};
use vault_injector_core::audit::Decision;
use vault_injector_core::config::WebhookConfig;
use vault_injector_core::contract::AuthMethod;
use vault_injector_core::policy::{DenialKind, PolicyRequest};
use vault_injector_core::profile::VolumeError;

const POLICY: &str = r#"
rules:
  - name: team-a
    namespaces: [team-a]
    roles: [team-a-*]
    secretPaths: [secret/team-a]
    volumeProfiles: [team-a-*]
    defaults: {role: team-a-app}
  - name: platform
    namespaces: [platform]
    roles: ["*"]
    secretPaths: ["*"]
    volumeProfiles: ["*"]
"#;

fn inject() -> BTreeMap<String, String> {
    BTreeMap::from([("vault-injector.io/inject".into(), "true".into())])
}

fn pod(ns: &str, volumes: &[(&str, &str)]) -> PolicyRequest {
    PolicyRequest {
        namespace: ns.into(),
        service_account: "web".into(),
        secret_paths: vec![("db".into(), "secret/data/team-a/db".into())],
        volume_profiles: volumes
            .iter()
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn gate_checks_overrides_then_policy_then_profiles() {
    let Some(mut bao) = BaoDev::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (rid, sid) = bao
        .approle(
            "vault-injector",
            "path \"secret/data/vault-injector/volumes/*\" { capabilities = [\"read\"] }",
            dir.path(),
        )
        .await;
    bao.kv_put(
        "secret",
        "vault-injector/volumes/team-a-data",
        json!({
            "volume": {"csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": true}},
            "mountPath": "/mnt/data",
            "allowed": {"namespaces": ["team-a"]}
        }),
    )
    .await;
    let policy_file = dir.path().join("policy.yaml");
    std::fs::write(&policy_file, POLICY).unwrap();

    let mut cfg = WebhookConfig::default();
    cfg.vault.address = bao.addr.clone();
    cfg.webhook_auth.method = AuthMethod::Approle;
    cfg.webhook_auth.path = "approle".into();
    cfg.webhook_auth.role_id_path = Some(rid);
    cfg.webhook_auth.secret_id_path = Some(sid);
    cfg.policy.file = Some(policy_file);
    cfg.volumes.cache_ttl = "1h".into();
    let gate = Gate::from_config(&cfg).unwrap();

    let ok = gate
        .admit(&inject(), &pod("team-a", &[("data", "team-a-data")]))
        .await
        .unwrap();
    assert_eq!(ok.defaults.rule.as_deref(), Some("team-a"));
    assert_eq!(ok.defaults.role.as_deref(), Some("team-a-app"));
    assert_eq!(ok.volumes.len(), 1);
    assert_eq!(ok.volumes[0].volume.name, "vault-injector-vol-data");
    assert_eq!(
        ok.volumes[0].volume.csi.as_ref().unwrap().driver,
        "secrets-store.csi.k8s.io"
    );
    assert_eq!(ok.volumes[0].mount.mount_path, "/mnt/data");
    assert!(ok.connection.honoured.is_empty());

    // Even where the policy allows any profile, a name that would walk the
    // webhook's own read elsewhere is refused...
    let e = gate
        .admit(&inject(), &pod("platform", &[("data", "nope-../x")]))
        .await
        .unwrap_err();
    assert!(
        matches!(e, GateDenial::Volume(VolumeError::InvalidName { .. })),
        "{e}"
    );
    // ...and where the policy allows any profile, the profile's own
    // allowlist still holds.
    let mut platform = pod("platform", &[("data", "team-a-data")]);
    platform.secret_paths.clear();
    let e = gate.admit(&inject(), &platform).await.unwrap_err();
    assert!(
        matches!(e, GateDenial::Volume(VolumeError::NotAllowed { .. })),
        "{e}"
    );
    assert_eq!(e.decision(), Decision::Denied);
    assert!(e.to_string().contains("allowed.namespaces"), "{e}");

    // With OpenBao down, pods the pure checks refuse get the real reason,
    // not a Vault error: they never reached Vault.
    bao.stop();
    let mut attack = inject();
    attack.insert(
        "vault.hashicorp.com/service".into(),
        "https://attacker.example".into(),
    );
    let e = gate
        .admit(&attack, &pod("team-a", &[("data", "team-a-data")]))
        .await
        .unwrap_err();
    match &e {
        GateDenial::Override(d) => assert_eq!(d.annotation, "vault.hashicorp.com/service"),
        other => panic!("expected an override denial, got {other}"),
    }
    let mut other_role = pod("team-a", &[("data", "team-a-data")]);
    other_role.role = Some("team-b-app".into());
    let e = gate.admit(&inject(), &other_role).await.unwrap_err();
    match &e {
        GateDenial::Policy(d) => assert_eq!(d.kind, DenialKind::Role),
        other => panic!("expected a policy denial, got {other}"),
    }
    let e = gate
        .admit(&inject(), &pod("team-a", &[("data", "team-b-data")]))
        .await
        .unwrap_err();
    match &e {
        GateDenial::Policy(d) => assert_eq!(d.kind, DenialKind::VolumeProfile),
        other => panic!("expected a policy denial, got {other}"),
    }

    // Cached (TTL 1h) profile still served while OpenBao is down; an uncached
    // one is an error, which the audit records as `error`.
    gate.admit(&inject(), &pod("team-a", &[("data", "team-a-data")]))
        .await
        .unwrap();
    let e = gate
        .admit(&inject(), &pod("team-a", &[("logs", "team-a-logs")]))
        .await
        .unwrap_err();
    assert_eq!(e.decision(), Decision::Error, "{e}");
    assert!(
        e.to_string().contains("\"team-a-logs\" cannot be read"),
        "{e}"
    );
}
