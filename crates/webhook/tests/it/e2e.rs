//! End-to-end tests against a real cluster (`make e2e`, see docs/e2e.md).
//!
//! Each test starts the real `vault-injector webhook` binary on this machine
//! with a certificate from rcgen, registers it with a
//! MutatingWebhookConfiguration whose `url` client config points at
//! `E2E_WEBHOOK_HOST` (an address the API server can reach this machine on),
//! creates pods through the API server in a fresh namespace, and cleans up
//! whatever happens.
//!
//! Environment:
//! - `KUBECONFIG` (required): the cluster.
//! - `E2E_WEBHOOK_HOST` (required): IP or DNS name of this machine as seen
//!   from the API server (kind on Linux: the kind network's gateway, e.g.
//!   `172.18.0.1`).
//! - `E2E_WEBHOOK_PORT` (optional): port to listen on (default: a free one).

use crate::support;

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

const STATUS: &str = "vault-injector.io/status";

/// Everything one test created; `teardown` removes it.
struct Env {
    client: Client,
    namespace: String,
    webhook_name: String,
    _webhook: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Env {
    /// Starts the webhook, creates a namespace and registers the webhook for
    /// that namespace only (so nothing else in the cluster is affected).
    async fn setup(tag: &str) -> Env {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let host = std::env::var("E2E_WEBHOOK_HOST").expect(
            "E2E_WEBHOOK_HOST must name this machine as the API server reaches it (docs/e2e.md)",
        );
        let port: u16 = std::env::var("E2E_WEBHOOK_PORT")
            .ok()
            .map(|p| p.parse().expect("E2E_WEBHOOK_PORT is a port number"))
            .unwrap_or_else(support::free_port);
        let client = Client::try_default()
            .await
            .expect("a cluster from KUBECONFIG");
        let id = format!("{tag}-{:06x}", rand::random::<u32>() & 0xffffff);
        let namespace = format!("vi-e2e-{id}");
        let webhook_name = format!("vault-injector-e2e-{id}");

        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, cert, key) = certificate_for(&host);
        std::fs::write(dir.path().join("tls.crt"), cert).unwrap();
        std::fs::write(dir.path().join("tls.key"), key).unwrap();
        std::fs::write(
            dir.path().join("config.yaml"),
            "vault:\n  address: https://vault.e2e.invalid:8200\nauth:\n  role: e2e-default\n",
        )
        .unwrap();
        let admin = support::free_port();
        let webhook = ChildGuard(start_webhook(dir.path().to_owned(), port, admin));
        wait_ready(admin).await;

        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: ObjectMeta {
                        name: Some(namespace.clone()),
                        labels: Some([("vault-injector-e2e".into(), id.clone())].into()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await
            .expect("create the test namespace");

        let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let config = MutatingWebhookConfiguration {
            metadata: ObjectMeta {
                name: Some(webhook_name.clone()),
                ..Default::default()
            },
            webhooks: Some(vec![MutatingWebhook {
                name: "pods.e2e.vault-injector.io".into(),
                admission_review_versions: vec!["v1".into()],
                side_effects: "None".into(),
                failure_policy: Some("Fail".into()),
                reinvocation_policy: Some("IfNeeded".into()),
                timeout_seconds: Some(10),
                client_config: WebhookClientConfig {
                    url: Some(format!("https://{}/mutate", host_port(&host, port))),
                    ca_bundle: Some(ByteString(ca_pem.into_bytes())),
                    service: None,
                },
                rules: Some(vec![RuleWithOperations {
                    api_groups: Some(vec!["".into()]),
                    api_versions: Some(vec!["v1".into()]),
                    operations: Some(vec!["CREATE".into()]),
                    resources: Some(vec!["pods".into()]),
                    scope: Some("Namespaced".into()),
                }]),
                namespace_selector: Some(LabelSelector {
                    match_labels: Some([("vault-injector-e2e".into(), id.clone())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
        };
        configs
            .create(&PostParams::default(), &config)
            .await
            .expect("create the MutatingWebhookConfiguration");

        let env = Env {
            client,
            namespace,
            webhook_name,
            _webhook: webhook,
            _dir: dir,
        };
        env.wait_for_webhook().await;
        env
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The API server picks up a new webhook configuration asynchronously:
    /// wait until a dry-run of an annotated pod comes back injected.
    async fn wait_for_webhook(&self) {
        let dry = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(p) = self.pods().create(&dry, &annotated_pod("probe")).await {
                if status_of(&p).as_deref() == Some("injected") {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the API server never called the webhook; is E2E_WEBHOOK_HOST reachable from it?"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn teardown(self) {
        let configs: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let _ = configs
            .delete(&self.webhook_name, &DeleteParams::default())
            .await;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let _ = namespaces
            .delete(&self.namespace, &DeleteParams::default())
            .await;
    }
}

/// Stops the webhook process however the test ends (also when setup fails
/// half-way).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a test body gets: the client and its namespace.
#[derive(Clone)]
struct Ctx {
    client: Client,
    namespace: String,
}

impl Ctx {
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

/// Runs `body`, then tears down even if it panicked.
async fn with_env<F, Fut>(tag: &str, body: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let env = Env::setup(tag).await;
    let ctx = Ctx {
        client: env.client.clone(),
        namespace: env.namespace.clone(),
    };
    let outcome = AssertUnwindSafe(body(ctx)).catch_unwind().await;
    env.teardown().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn host_port(host: &str, port: u16) -> String {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    }
}

/// A CA and a serving certificate for `host` (IP or DNS name).
fn certificate_for(host: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), leaf.pem(), key.serialize_pem())
}

fn start_webhook(dir: PathBuf, port: u16, admin: u16) -> Child {
    Command::new(support::bin())
        .arg("webhook")
        .arg(format!("--listen=0.0.0.0:{port}"))
        .arg(format!("--admin-listen=127.0.0.1:{admin}"))
        .arg(format!("--tls-cert={}", dir.join("tls.crt").display()))
        .arg(format!("--tls-key={}", dir.join("tls.key").display()))
        .arg(format!("--config={}", dir.join("config.yaml").display()))
        .arg("--log-format=plain")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start vault-injector webhook")
}

async fn wait_ready(admin: u16) {
    let url = format!("http://127.0.0.1:{admin}/readyz");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(r) = http.get(&url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("webhook not ready on {url}");
}

fn pod(name: &str, annotations: &[(&str, &str)]) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "annotations": annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        },
        "spec": {
            // Never scheduled long enough to matter; the test only reads the
            // stored object back.
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
            "terminationGracePeriodSeconds": 0,
        }
    }))
    .unwrap()
}

fn annotated_pod(name: &str) -> Pod {
    pod(
        name,
        &[
            ("vault-injector.io/inject", "true"),
            ("vault-injector.io/role", "r"),
            ("vault-injector.io/secret-db", "secret/data/db"),
        ],
    )
}

fn status_of(p: &Pod) -> Option<String> {
    p.metadata.annotations.as_ref()?.get(STATUS).cloned()
}

fn mounts_secrets(p: &Pod, container: &str) -> bool {
    p.spec
        .as_ref()
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| c.name == container)
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .any(|m| m.mount_path == "/vault/secrets")
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn annotated_pod_is_injected_through_the_api_server() {
    with_env("inject", |env| async move {
        let created = env
            .pods()
            .create(&PostParams::default(), &annotated_pod("annotated"))
            .await
            .expect("create the annotated pod");
        let stored = env.pods().get("annotated").await.unwrap();
        assert_eq!(created.metadata.uid, stored.metadata.uid);
        assert_eq!(status_of(&stored).as_deref(), Some("injected"));
        let spec = stored.spec.as_ref().unwrap();
        assert!(mounts_secrets(&stored, "app"), "app mounts /vault/secrets");
        let agent_config = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .flat_map(|c| c.env.iter().flatten())
            .find(|e| e.name == "VAULT_INJECTOR_CONFIG")
            .and_then(|e| e.value.clone())
            .expect("an agent container carries VAULT_INJECTOR_CONFIG");
        let cfg: serde_json::Value = serde_json::from_str(&agent_config).unwrap();
        assert_eq!(cfg["auth"]["role"], "r");
        assert_eq!(cfg["secrets"][0]["path"], "secret/data/db");
        let memory_volume = spec.volumes.iter().flatten().any(|v| {
            v.empty_dir
                .as_ref()
                .and_then(|e| e.medium.as_deref())
                .is_some_and(|m| m == "Memory")
        });
        assert!(memory_volume, "secrets live in a memory volume");
    })
    .await;
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn unannotated_pod_is_untouched() {
    with_env("plain", |env| async move {
        env.pods()
            .create(&PostParams::default(), &pod("plain", &[]))
            .await
            .expect("create the plain pod");
        let stored = env.pods().get("plain").await.unwrap();
        assert_eq!(status_of(&stored), None);
        let spec = stored.spec.unwrap();
        assert_eq!(spec.containers.len(), 1);
        assert!(spec.init_containers.unwrap_or_default().is_empty());
        assert!(!spec
            .containers
            .iter()
            .flat_map(|c| c.volume_mounts.iter().flatten())
            .any(|m| m.mount_path.starts_with("/vault")));
    })
    .await;
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn invalid_annotation_is_denied_with_the_webhooks_message() {
    with_env("deny", |env| async move {
        let mut bad = annotated_pod("bad");
        bad.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("vault-injector.io/mode-db".into(), "999".into());
        let err = env
            .pods()
            .create(&PostParams::default(), &bad)
            .await
            .expect_err("the webhook denies an invalid mode");
        let kube::Error::Api(status) = err else {
            panic!("expected an API error, got {err}");
        };
        assert!(
            status.message.contains("denied the request"),
            "{}",
            status.message
        );
        assert!(
            status.message.contains("mode-db"),
            "the message names the annotation: {}",
            status.message
        );
        assert!(
            env.pods().get_opt("bad").await.unwrap().is_none(),
            "nothing was stored"
        );
    })
    .await;
}

/// The auto-TLS controller against a real API server: it creates the
/// Secret, patches both entries of a configuration, and re-patches one that
/// someone resets.
#[tokio::test]
#[ignore = "needs cluster"]
async fn auto_tls_creates_the_secret_and_keeps_every_ca_bundle_right() {
    use vault_injector::autotls;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default()
        .await
        .expect("a cluster from KUBECONFIG");
    let id = format!("{:06x}", rand::random::<u32>() & 0xffffff);
    let namespace = format!("vi-e2e-autotls-{id}");
    let config_name = format!("vault-injector-e2e-autotls-{id}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap(),
        )
        .await
        .unwrap();
    // Two entries that match nothing (no namespace has this label), so the
    // test cannot disturb the cluster.
    let entry = |name: &str| {
        json!({
            "name": name, "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Ignore",
            "clientConfig": {"url": "https://127.0.0.1:1/mutate"},
            "namespaceSelector": {"matchLabels": {"vault-injector-e2e-never": id}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
        })
    };
    configs
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": config_name},
                "webhooks": [entry("a.e2e.vault-injector.io"), entry("b.e2e.vault-injector.io")],
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let args = autotls::AutoTlsArgs {
        auto_tls: true,
        tls_secret_name: "vi-tls".into(),
        webhook_config_name: config_name.clone(),
        service_name: "vault-injector".into(),
        namespace: namespace.clone(),
        cert_dir: dir.path().to_owned(),
        lease_name: "vi-leader".into(),
        identity: Some("e2e".into()),
        renew_before: Duration::from_secs(30 * 24 * 3600),
        cert_validity: Duration::from_secs(365 * 24 * 3600),
        ca_validity: Duration::from_secs(5 * 365 * 24 * 3600),
        resync: Duration::from_secs(2),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let outcome = AssertUnwindSafe(async {
        let task = autotls::spawn(
            args,
            client.clone(),
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(60),
        )
        .await
        .expect("auto-TLS wrote a key pair");
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let secret = secrets.get("vi-tls").await.unwrap();
        let ca = secret.data.unwrap()["ca.crt"].0.clone();
        let bundles = |c: MutatingWebhookConfiguration| -> Vec<Option<Vec<u8>>> {
            c.webhooks
                .unwrap()
                .into_iter()
                .map(|w| w.client_config.ca_bundle.map(|b| b.0))
                .collect()
        };
        eventually(|| async {
            bundles(configs.get(&config_name).await.unwrap())
                == vec![Some(ca.clone()), Some(ca.clone())]
        })
        .await;
        // Someone resets the second entry; the watch brings it back.
        configs
            .patch(
                &config_name,
                &PatchParams::default(),
                &Patch::Json::<()>(
                    serde_json::from_value(json!([
                        {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": "Zm9yZWlnbgo="}
                    ]))
                    .unwrap(),
                ),
            )
            .await
            .unwrap();
        eventually(|| async {
            bundles(configs.get(&config_name).await.unwrap())
                == vec![Some(ca.clone()), Some(ca.clone())]
        })
        .await;
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    })
    .catch_unwind()
    .await;
    let _ = configs.delete(&config_name, &DeleteParams::default()).await;
    let _ = namespaces
        .delete(&namespace, &DeleteParams::default())
        .await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..60 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("condition not met within 30s");
}
