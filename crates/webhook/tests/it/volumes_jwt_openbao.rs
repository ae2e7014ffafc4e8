//! The webhook's own identity through JWT auth (how it logs in with its
//! projected service-account token where Vault validates Kubernetes JWTs by
//! key rather than by TokenReview), against a real OpenBao.

use crate::support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rcgen::{KeyPair, SigningKey, PKCS_ED25519};
use serde_json::json;
use support::bao_dev::BaoDev;
use vault_injector::profile_store::ProfileStore;
use vault_injector_core::config::WebhookConfig;
use vault_injector_core::contract::AuthMethod;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const WEBHOOK_SUB: &str = "system:serviceaccount:vault-injector:vault-injector";

fn jwt(key: &KeyPair, sub: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "EdDSA", "typ": "JWT"}).to_string());
    let claims = URL_SAFE_NO_PAD.encode(
        json!({"iss": ISSUER, "sub": sub, "aud": ["vault"], "iat": now, "nbf": now - 5, "exp": now + 600})
            .to_string(),
    );
    let input = format!("{header}.{claims}");
    let sig = key.sign(input.as_bytes()).expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

#[tokio::test]
async fn profiles_are_read_with_the_webhooks_jwt_login() {
    let Some(bao) = BaoDev::start().await else {
        return;
    };
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    bao.post("sys/auth/jwt", json!({"type": "jwt"})).await;
    bao.post(
        "auth/jwt/config",
        json!({"jwt_validation_pubkeys": [key.public_key_pem()], "bound_issuer": ISSUER}),
    )
    .await;
    bao.post(
        "sys/policies/acl/vault-injector",
        json!({"policy": "path \"secret/data/vault-injector/volumes/*\" { capabilities = [\"read\"] }"}),
    )
    .await;
    bao.post(
        "auth/jwt/role/vault-injector",
        json!({
            "role_type": "jwt",
            "bound_audiences": ["vault"],
            "user_claim": "sub",
            "bound_subject": WEBHOOK_SUB,
            "token_policies": ["vault-injector"],
            "token_ttl": "1h"
        }),
    )
    .await;
    bao.kv_put(
        "secret",
        "vault-injector/volumes/reports",
        json!({
            "volume": {"ephemeral": {"volumeClaimTemplate": {"spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}
            }}}},
            "mountPath": "/reports",
            "readOnly": false,
            "allowed": {"namespaces": ["team-a"]}
        }),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, jwt(&key, WEBHOOK_SUB)).unwrap();
    let mut cfg = WebhookConfig::default();
    cfg.vault.address = bao.addr.clone();
    cfg.webhook_auth.method = AuthMethod::Jwt;
    cfg.webhook_auth.path = "auth/jwt".into();
    cfg.webhook_auth.role = Some("vault-injector".into());
    cfg.webhook_auth.token_path = token.clone();

    let r = ProfileStore::new(&cfg)
        .resolve("reports", "reports", "team-a", "web")
        .await
        .unwrap();
    assert!(r.volume.ephemeral.is_some());
    assert_eq!(r.mount.read_only, Some(false));

    // A token for some other account is not the webhook's identity.
    std::fs::write(&token, jwt(&key, "system:serviceaccount:team-a:web")).unwrap();
    let msg = ProfileStore::new(&cfg)
        .resolve("reports", "reports", "team-a", "web")
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("webhook login at auth/jwt failed"), "{msg}");
    assert!(!msg.contains("eyJ"), "the JWT leaked into: {msg}");

    // Kubernetes and jwt logins need a role.
    cfg.webhook_auth.role = None;
    let msg = ProfileStore::new(&cfg)
        .resolve("reports", "reports", "team-a", "web")
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("webhookAuth.role is not set"), "{msg}");
}
