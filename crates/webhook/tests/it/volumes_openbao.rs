//! Volume profiles read from a real OpenBao with the webhook's own AppRole
//! identity: allowlists, malformed and missing profiles, the cache while
//! OpenBao is down, and its expiry.

use crate::support;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::bao_dev::BaoDev;
use vault_injector::profile_store::ProfileStore;
use vault_injector_core::config::WebhookConfig;
use vault_injector_core::contract::AuthMethod;
use vault_injector_core::profile::VolumeError;

/// The webhook may read profiles and nothing else.
const WEBHOOK_POLICY: &str = r#"
path "secret/data/vault-injector/volumes/*" {
  capabilities = ["read"]
}
"#;

fn config(bao: &BaoDev, role_id: &Path, secret_id: &Path, ttl: &str) -> WebhookConfig {
    let mut cfg = WebhookConfig::default();
    cfg.vault.address = bao.addr.clone();
    cfg.webhook_auth.method = AuthMethod::Approle;
    cfg.webhook_auth.path = "auth/approle".into();
    cfg.webhook_auth.role_id_path = Some(role_id.to_owned());
    cfg.webhook_auth.secret_id_path = Some(secret_id.to_owned());
    cfg.volumes.cache_ttl = ttl.into();
    cfg.volumes.request_timeout = "2s".into();
    cfg
}

async fn setup() -> Option<(BaoDev, tempfile::TempDir, WebhookConfig)> {
    let bao = BaoDev::start().await?;
    let dir = tempfile::tempdir().unwrap();
    let (rid, sid) = bao
        .approle("vault-injector", WEBHOOK_POLICY, dir.path())
        .await;
    bao.kv_put(
        "secret",
        "vault-injector/volumes/team-a-data",
        json!({
            "volume": {"persistentVolumeClaim": {"claimName": "team-a-prod-data"}},
            "mountPath": "/data",
            "allowed": {"namespaces": ["team-a", "team-a-*"], "serviceAccounts": ["web", "team-a-batch/worker"]}
        }),
    )
    .await;
    // Stored as one string value, the way KV web UIs write it.
    bao.kv_put(
        "secret",
        "vault-injector/volumes/shared-nfs",
        json!({ "profile": "volume:\n  nfs: {server: 10.1.2.3, path: /exports/shared}\nmountPath: /mnt/shared\nreadOnly: false\nsubPath: reports\nallowed:\n  namespaces: ['*']\n" }),
    )
    .await;
    bao.kv_put(
        "secret",
        "vault-injector/volumes/typo",
        json!({
            "volume": {"nfs": {"server": "10.1.2.3", "path": "/x", "readonly": true}},
            "mountPath": "/mnt/x",
            "allowed": {"namespaces": ["*"]}
        }),
    )
    .await;
    // Outside the webhook's policy: the webhook must not be able to read it.
    bao.kv_put("secret", "team-b/db", json!({"password": "hunter2"}))
        .await;
    let cfg = config(&bao, &rid, &sid, "60s");
    Some((bao, dir, cfg))
}

#[tokio::test]
async fn profiles_resolve_and_the_allowlist_is_enforced() {
    let Some((_bao, _dir, cfg)) = setup().await else {
        return;
    };
    let store = ProfileStore::new(&cfg);

    let r = store
        .resolve("data", "team-a-data", "team-a", "web")
        .await
        .unwrap();
    assert_eq!(r.volume.name, "vault-injector-vol-data");
    assert_eq!(
        r.volume
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "team-a-prod-data"
    );
    assert_eq!(r.mount.mount_path, "/data");
    assert_eq!(r.mount.read_only, Some(true));
    store
        .resolve("data", "team-a-data", "team-a-batch", "worker")
        .await
        .unwrap();

    let r = store
        .resolve("shared", "shared-nfs", "anything", "default")
        .await
        .unwrap();
    assert_eq!(r.volume.nfs.as_ref().unwrap().path, "/exports/shared");
    assert_eq!(r.mount.read_only, Some(false));
    assert_eq!(r.mount.sub_path.as_deref(), Some("reports"));

    // Another team's pod asks for team A's volume.
    let e = store
        .resolve("data", "team-a-data", "team-b", "web")
        .await
        .unwrap_err();
    assert!(matches!(e, VolumeError::NotAllowed { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("\"team-a-data\""), "{msg}");
    assert!(msg.contains("allowed.namespaces"), "{msg}");
    assert!(msg.contains("\"team-b\""), "{msg}");
    // Right namespace, wrong service account.
    let msg = store
        .resolve("data", "team-a-data", "team-a", "default")
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("allowed.serviceAccounts"), "{msg}");
    assert!(msg.contains("team-a/default"), "{msg}");
    // `ns/sa` entries bind the namespace too.
    let msg = store
        .resolve("data", "team-a-data", "team-a-other", "worker")
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("allowed.serviceAccounts"), "{msg}");
}

#[tokio::test]
async fn malformed_missing_and_out_of_reach_profiles_are_named() {
    let Some((bao, dir, cfg)) = setup().await else {
        return;
    };
    let store = ProfileStore::new(&cfg);

    let e = store
        .resolve("x", "typo", "team-a", "web")
        .await
        .unwrap_err();
    match &e {
        VolumeError::Malformed { profile, field, .. } => {
            assert_eq!(profile, "typo");
            assert_eq!(field, "volume.nfs.readonly");
        }
        other => panic!("expected Malformed, got {other}"),
    }

    let e = store
        .resolve("x", "does-not-exist", "team-a", "web")
        .await
        .unwrap_err();
    assert!(matches!(e, VolumeError::NotFound { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("\"does-not-exist\""), "{msg}");
    assert!(
        msg.contains("secret/data/vault-injector/volumes/does-not-exist"),
        "{msg}"
    );

    // A profile name cannot walk the webhook's read to another path.
    for name in ["../../team-b/db", "team-b/db", "..", "a..b"] {
        let e = store.resolve("x", name, "team-a", "web").await.unwrap_err();
        assert!(matches!(e, VolumeError::InvalidName { .. }), "{name}: {e}");
    }

    // Even with a prefix pointing there, the webhook's own Vault policy
    // refuses: it holds read on the profile prefix only.
    let mut wide = cfg.clone();
    wide.volumes.prefix = "team-b".into();
    let e = ProfileStore::new(&wide)
        .resolve("x", "db", "team-a", "web")
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, VolumeError::VaultUnavailable { .. }), "{msg}");
    assert!(msg.contains("may not read secret/data/team-b/db"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");

    // A bad AppRole secret: a clear login error that does not echo it.
    let bad = dir.path().join("bad-secret-id");
    std::fs::write(&bad, "00000000-1111-2222-3333-444444444444").unwrap();
    let mut wrong = cfg.clone();
    wrong.webhook_auth.secret_id_path = Some(bad);
    let msg = ProfileStore::new(&wrong)
        .resolve("x", "team-a-data", "team-a", "web")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("webhook login at auth/approle failed"),
        "{msg}"
    );
    assert!(!msg.contains("00000000-1111"), "{msg}");
    drop(bao);
}

#[tokio::test]
async fn cached_profiles_survive_an_outage_until_they_expire() {
    let Some((mut bao, _dir, mut cfg)) = setup().await else {
        return;
    };
    cfg.volumes.cache_ttl = "3s".into();
    let store = ProfileStore::new(&cfg);
    store
        .resolve("data", "team-a-data", "team-a", "web")
        .await
        .unwrap();

    // A change in Vault is not seen while the cached copy is fresh: proof
    // the second answer came from the cache, not from a new read.
    bao.kv_put(
        "secret",
        "vault-injector/volumes/team-a-data",
        json!({
            "volume": {"persistentVolumeClaim": {"claimName": "changed"}},
            "mountPath": "/data",
            "allowed": {"namespaces": ["team-a"]}
        }),
    )
    .await;
    let r = store
        .resolve("data", "team-a-data", "team-a", "web")
        .await
        .unwrap();
    assert_eq!(
        r.volume.persistent_volume_claim.unwrap().claim_name,
        "team-a-prod-data"
    );

    bao.stop();
    let r = store
        .resolve("data", "team-a-data", "team-a", "web")
        .await
        .expect("served from cache while OpenBao is down");
    assert_eq!(r.mount.mount_path, "/data");
    // The allowlist is still enforced on cached profiles.
    assert!(store
        .resolve("data", "team-a-data", "team-b", "web")
        .await
        .is_err());
    // Nothing cached for this one: a clear error at once.
    let msg = store
        .resolve("x", "shared-nfs", "team-a", "web")
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("\"shared-nfs\" cannot be read"), "{msg}");

    tokio::time::sleep(Duration::from_millis(3200)).await;
    let e = store
        .resolve("data", "team-a-data", "team-a", "web")
        .await
        .unwrap_err();
    assert!(matches!(e, VolumeError::VaultUnavailable { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("\"team-a-data\" cannot be read"), "{msg}");
    assert!(msg.contains(&cfg.vault.address), "{msg}");
}

/// The webhook's own TLS settings come from `vault.caPem` /
/// `vault.tlsSkipVerify` in the config, and verification is on by default.
#[tokio::test]
async fn the_webhook_verifies_vault_with_the_configured_ca() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(bao) = BaoDev::start_tls().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (rid, sid) = bao
        .approle("vault-injector", WEBHOOK_POLICY, dir.path())
        .await;
    bao.kv_put(
        "secret",
        "vault-injector/volumes/p",
        json!({"volume": {"emptyDir": {}}, "mountPath": "/p", "allowed": {"namespaces": ["*"]}}),
    )
    .await;
    let mut cfg = config(&bao, &rid, &sid, "60s");

    // No CA configured: the dev CA is not trusted, so no login happens.
    let msg = ProfileStore::new(&cfg)
        .resolve("p", "p", "ns", "sa")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("webhook login at auth/approle failed"),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");

    cfg.vault.ca_pem = bao.ca_pem.clone();
    ProfileStore::new(&cfg)
        .resolve("p", "p", "ns", "sa")
        .await
        .expect("verified against vault.caPem");

    cfg.vault.ca_pem = None;
    cfg.vault.tls_skip_verify = true;
    ProfileStore::new(&cfg)
        .resolve("p", "p", "ns", "sa")
        .await
        .expect("operator chose tlsSkipVerify");
}

/// The webhook's token expires; the next read logs in again by itself.
#[tokio::test]
async fn an_expired_webhook_token_is_replaced() {
    let Some((bao, _dir, mut cfg)) = setup().await else {
        return;
    };
    bao.post(
        "auth/approle/role/vault-injector",
        json!({"token_policies": ["vault-injector"], "token_ttl": "2s", "token_max_ttl": "2s"}),
    )
    .await;
    cfg.volumes.cache_ttl = "500ms".into();
    let store = ProfileStore::new(&cfg);
    store
        .resolve("data", "team-a-data", "team-a", "web")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    store
        .resolve("data", "team-a-data", "team-a", "web")
        .await
        .expect("re-login after the token expired");
}

/// Through the whole admission path: a pod names a profile (and narrows it),
/// the webhook resolves it from OpenBao, and the patched pod mounts it.
#[tokio::test]
async fn admission_mounts_a_profile_and_lets_the_pod_narrow_it_only() {
    use std::sync::Arc;
    use vault_injector::admission::Injector;
    let Some((_bao, _dir, cfg)) = setup().await else {
        return;
    };
    let injector = Injector::try_new(Arc::new(cfg)).unwrap();
    let review = |volume: &str| {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u-vol", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "team-a", "operation": "CREATE", "userInfo": {"username": "ci"},
                "object": {
                    "metadata": {"name": "web-1", "annotations": {
                        "vault-injector.io/inject": "true",
                        "vault-injector.io/role": "web",
                        "vault-injector.io/volume-data": volume}},
                    "spec": {"serviceAccountName": "web",
                             "containers": [{"name": "app", "image": "x"}]}
                }
            }
        }))
        .unwrap()
    };
    let out = injector
        .review(&review("team-a-data,mountPath=/srv/data,readOnly=true"))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(v["response"]["allowed"], true, "{v}");
    assert_eq!(out.audit.volume_profiles, vec!["team-a-data".to_string()]);
    use base64::Engine;
    let patch = base64::engine::general_purpose::STANDARD
        .decode(v["response"]["patch"].as_str().unwrap())
        .unwrap();
    let patch: serde_json::Value = serde_json::from_slice(&patch).unwrap();
    let text = patch.to_string();
    assert!(text.contains("team-a-prod-data"), "{text}");
    assert!(text.contains("\"mountPath\":\"/srv/data\""), "{text}");

    // The profile mounts read-only by default: a pod cannot widen it.
    let out = injector
        .review(&review("team-a-data,readOnly=false"))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert!(
        out.audit.reason.contains("cannot make it writable"),
        "{}",
        out.audit.reason
    );
}
