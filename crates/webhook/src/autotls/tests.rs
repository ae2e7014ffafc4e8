//! The controller against kube's mocked API server (`tower_test::mock::pair`):
//! a scenario task asserts each request's method, path and body in order and
//! answers with canned objects.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tower_test::mock::{Handle, SendResponse};

use super::pki::{self, parse_pem_bundle, Policy, TlsMaterial};
use super::*;

const DAY: Duration = Duration::from_secs(24 * 3600);
const NS: &str = "vi";
const SECRET_PATH: &str = "/api/v1/namespaces/vi/secrets/vi-tls";
const SECRETS_PATH: &str = "/api/v1/namespaces/vi/secrets";
const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/vi/leases/vi-leader";
const LEASES_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/vi/leases";
const MWC_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/vi-webhook";
const MWCS_PATH: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";

type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// Verifies that `cert_pem` chains to one of the CAs in `bundle_pem` for
/// `host`, the way a TLS client (the API server) would.
pub(crate) fn assert_chain_valid(bundle_pem: &str, cert_pem: &str, host: &str) {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let der = |pem: &str| -> Vec<CertificateDer<'static>> {
        x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
            .map(|p| CertificateDer::from(p.unwrap().contents))
            .collect()
    };
    let mut roots = rustls::RootCertStore::empty();
    for ca in der(bundle_pem) {
        roots.add(ca).unwrap();
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let leaf = der(cert_pem).remove(0);
    verifier
        .verify_server_cert(
            &leaf,
            &[],
            &ServerName::try_from(host.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .unwrap_or_else(|e| panic!("certificate does not verify for {host}: {e}"));
}

fn args(cert_dir: &std::path::Path) -> AutoTlsArgs {
    AutoTlsArgs {
        auto_tls: true,
        tls_secret_name: "vi-tls".into(),
        webhook_config_name: "vi-webhook".into(),
        service_name: "vi".into(),
        namespace: NS.into(),
        cert_dir: cert_dir.to_owned(),
        lease_name: "vi-leader".into(),
        identity: Some("pod-a".into()),
        renew_before: 30 * DAY,
        cert_validity: 365 * DAY,
        ca_validity: 5 * 365 * DAY,
        resync: Duration::from_secs(5),
    }
}

fn mock() -> (kube::Client, ApiHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

fn names() -> Vec<String> {
    pki::service_dns_names("vi", NS)
}

/// Material as the leader would have created it `age` ago.
fn material_aged(age: Duration) -> TlsMaterial {
    let policy = Policy::default();
    let then = OffsetDateTime::now_utc() - age;
    let plan = pki::plan(None, &names(), &policy, then);
    pki::issue(None, &plan, &names(), &policy, then).unwrap()
}

fn secret_json(m: &TlsMaterial) -> Value {
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "vi-tls", "namespace": NS, "resourceVersion": "41"},
        "type": "kubernetes.io/tls",
        "data": {
            "ca.crt": b64(&m.ca_pem), "ca.key": b64(&m.ca_key_pem),
            "tls.crt": b64(&m.cert_pem), "tls.key": b64(&m.key_pem),
        }
    })
}

fn material_from_secret_json(v: &Value) -> TlsMaterial {
    let secret: Secret = serde_json::from_value(v.clone()).unwrap();
    material_of(&secret).expect("complete Secret")
}

/// A configuration with one entry per given bundle (PEM bytes or none).
fn webhook_config_json(bundles: &[Option<&str>]) -> Value {
    let cfg = MutatingWebhookConfiguration {
        metadata: kube::api::ObjectMeta {
            name: Some("vi-webhook".into()),
            resource_version: Some("7".into()),
            ..Default::default()
        },
        webhooks: Some(
            bundles
                .iter()
                .enumerate()
                .map(
                    |(i, b)| k8s_openapi::api::admissionregistration::v1::MutatingWebhook {
                        name: format!("w{i}.vault-injector.io"),
                        admission_review_versions: vec!["v1".into()],
                        side_effects: "None".into(),
                        client_config:
                            k8s_openapi::api::admissionregistration::v1::WebhookClientConfig {
                                ca_bundle: b
                                    .map(|b| k8s_openapi::ByteString(b.as_bytes().to_vec())),
                                ..Default::default()
                            },
                        ..Default::default()
                    },
                )
                .collect(),
        ),
    };
    let mut v = serde_json::to_value(cfg).unwrap();
    v["apiVersion"] = json!("admissionregistration.k8s.io/v1");
    v["kind"] = json!("MutatingWebhookConfiguration");
    v
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "not found", "reason": "NotFound", "code": 404})
}

/// Takes the next request, asserts method and path (query ignored), returns
/// its JSON body (Null if empty) and the responder.
async fn expect(
    handle: &mut ApiHandle,
    method: Method,
    path: &str,
) -> (Value, SendResponse<Response<Body>>) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {method} {path}"))
        .unwrap_or_else(|| panic!("client gone; expected {method} {path}"));
    assert_eq!(
        (request.method(), request.uri().path()),
        (&method, path),
        "unexpected request {} {}",
        request.method(),
        request.uri()
    );
    if method == Method::PATCH {
        assert_eq!(
            request.headers().get(http::header::CONTENT_TYPE).unwrap(),
            "application/json-patch+json"
        );
    }
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (body, send)
}

fn respond(send: SendResponse<Response<Body>>, status: u16, body: &Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

/// After the code under test is done and the client dropped, no request
/// may be left.
async fn expect_no_more(handle: &mut ApiHandle) {
    if let Some((req, _)) = handle.next_request().await {
        panic!("unexpected extra request {} {}", req.method(), req.uri());
    }
}

/// The caBundle values a JSON patch sets, by entry index.
fn patched_bundles(patch: &Value) -> Vec<(usize, String)> {
    patch
        .as_array()
        .unwrap()
        .iter()
        .filter(|op| op["op"] == "add")
        .map(|op| {
            let path = op["path"].as_str().unwrap();
            let idx = path.split('/').nth(2).unwrap().parse().unwrap();
            assert!(path.ends_with("/clientConfig/caBundle"), "{path}");
            use base64::Engine;
            let pem = base64::engine::general_purpose::STANDARD
                .decode(op["value"].as_str().unwrap())
                .unwrap();
            (idx, String::from_utf8(pem).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn first_start_without_secret_takes_the_lease_creates_the_secret_and_patches_both_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut handle) = mock();
    let ctl = Controller::new(&args(dir.path()), client).unwrap();

    let scenario = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, LEASE_PATH).await;
        respond(send, 404, &not_found());
        let (lease, send) = expect(&mut handle, Method::POST, LEASES_PATH).await;
        assert_eq!(lease["metadata"]["name"], "vi-leader");
        assert_eq!(lease["spec"]["holderIdentity"], "pod-a");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);
        respond(send, 201, &lease);

        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        respond(send, 404, &not_found());
        let (_, send) = expect(&mut handle, Method::GET, MWC_PATH).await;
        respond(send, 200, &webhook_config_json(&[None, None]));
        let (patch, send) = expect(&mut handle, Method::PATCH, MWC_PATH).await;
        let bundles = patched_bundles(&patch);
        assert_eq!(bundles.len(), 2, "both entries patched: {patch}");
        assert_eq!(bundles[0].0, 0);
        assert_eq!(bundles[1].0, 1);
        assert_eq!(bundles[0].1, bundles[1].1);
        respond(
            send,
            200,
            &webhook_config_json(&[Some(bundles[0].1.as_str()); 2]),
        );

        let (secret, send) = expect(&mut handle, Method::POST, SECRETS_PATH).await;
        assert_eq!(secret["metadata"]["name"], "vi-tls");
        assert_eq!(secret["type"], "kubernetes.io/tls");
        let created = material_from_secret_json(&secret);
        respond(send, 201, &secret);
        expect_no_more(&mut handle).await;
        (bundles[0].1.clone(), created)
    });

    let mut state = State::default();
    ctl.round(&mut state).await.unwrap();
    assert!(state.leading);
    drop(ctl);
    let (bundle, created) = scenario.await.unwrap();

    assert_eq!(bundle, created.ca_pem, "the webhook trusts the Secret's CA");
    assert_eq!(state.material.as_ref(), Some(&created));
    assert_chain_valid(&bundle, &created.cert_pem, "vi.vi.svc");
    // The key pair reached the cert dir for the server's reloader.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tls.crt")).unwrap(),
        created.cert_pem
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tls.key")).unwrap(),
        created.key_pem
    );
}

#[tokio::test]
async fn valid_secret_is_used_without_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut handle) = mock();
    let ctl = Controller::new(&args(dir.path()), client).unwrap();
    let existing = material_aged(10 * DAY);
    let secret = secret_json(&existing);

    let scenario = tokio::spawn(async move {
        // We already hold the lease: a renewal, keeping resourceVersion.
        let (_, send) = expect(&mut handle, Method::GET, LEASE_PATH).await;
        let now = k8s_openapi::chrono::Utc::now();
        let held = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "vi-leader", "namespace": NS, "resourceVersion": "99"},
            "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15,
                     "renewTime": now.to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Micros, true)}});
        respond(send, 200, &held);
        let (renewed, send) = expect(&mut handle, Method::PUT, LEASE_PATH).await;
        assert_eq!(renewed["metadata"]["resourceVersion"], "99");
        assert_eq!(renewed["spec"]["holderIdentity"], "pod-a");
        respond(send, 200, &renewed);

        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        respond(send, 200, &secret);
        expect_no_more(&mut handle).await;
    });

    let mut state = State::default();
    ctl.round(&mut state).await.unwrap();
    drop(ctl);
    scenario.await.unwrap();
    assert!(state.leading);
    assert_eq!(state.material.as_ref(), Some(&existing));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tls.crt")).unwrap(),
        existing.cert_pem
    );
}

#[tokio::test]
async fn follower_only_reads_the_secret_and_publishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut handle) = mock();
    let ctl = Controller::new(&args(dir.path()), client).unwrap();
    let existing = material_aged(DAY);
    let secret = secret_json(&existing);

    let scenario = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, LEASE_PATH).await;
        let now = k8s_openapi::chrono::Utc::now();
        respond(
            send,
            200,
            &json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "vi-leader", "namespace": NS, "resourceVersion": "5"},
            "spec": {"holderIdentity": "pod-b", "leaseDurationSeconds": 15,
                     "renewTime": now.to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Micros, true)}}),
        );
        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        respond(send, 200, &secret);
        expect_no_more(&mut handle).await;
    });

    let mut state = State::default();
    ctl.round(&mut state).await.unwrap();
    drop(ctl);
    scenario.await.unwrap();
    assert!(!state.leading);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tls.key")).unwrap(),
        existing.key_pem
    );
}

#[tokio::test]
async fn expiring_serving_certificate_is_renewed_and_the_ca_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut handle) = mock();
    let ctl = Controller::new(&args(dir.path()), client).unwrap();
    // Issued 340 days ago: 25 days left, under the 30-day margin.
    let old = material_aged(340 * DAY);
    let secret = secret_json(&old);
    let old_ca = old.ca_pem.clone();

    let scenario = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        respond(send, 200, &secret);
        // Same CA: the webhook already trusts it, so no PATCH.
        let (_, send) = expect(&mut handle, Method::GET, MWC_PATH).await;
        respond(send, 200, &webhook_config_json(&[Some(&old_ca)]));
        let (written, send) = expect(&mut handle, Method::PUT, SECRET_PATH).await;
        assert_eq!(
            written["metadata"]["resourceVersion"], "41",
            "optimistic update"
        );
        let renewed = material_from_secret_json(&written);
        respond(send, 200, &written);
        expect_no_more(&mut handle).await;
        renewed
    });

    let got = ctl
        .leader_reconcile(OffsetDateTime::now_utc())
        .await
        .unwrap();
    drop(ctl);
    let renewed = scenario.await.unwrap();
    assert_eq!(got, renewed);
    assert_eq!(renewed.ca_pem, old.ca_pem, "CA unchanged");
    assert_eq!(renewed.ca_key_pem, old.ca_key_pem);
    assert_ne!(renewed.cert_pem, old.cert_pem);
    let leaf = &parse_pem_bundle(&renewed.cert_pem).unwrap()[0];
    let left = leaf.not_after - OffsetDateTime::now_utc();
    assert!(
        left > 360 * DAY,
        "a fresh one-year certificate, {left} left"
    );
    assert_chain_valid(&old.ca_pem, &renewed.cert_pem, "vi.vi.svc.cluster.local");
}

#[tokio::test]
async fn expiring_ca_is_rotated_trusted_before_use_and_the_old_ca_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut handle) = mock();
    let ctl = Controller::new(&args(dir.path()), client).unwrap();
    // 5-year CA with under 1 year + 30 days left (rotation margin), serving
    // certificate renewed 10 days ago.
    let old = pki::tests::renewed_ago(
        material_aged(4 * 365 * DAY - 20 * DAY),
        10 * DAY,
        &names(),
        &Policy::default(),
    );
    let secret = secret_json(&old);
    let old_ca = old.ca_pem.clone();

    let scenario = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        respond(send, 200, &secret);
        let (_, send) = expect(&mut handle, Method::GET, MWC_PATH).await;
        respond(
            send,
            200,
            &webhook_config_json(&[Some(&old_ca), Some(&old_ca)]),
        );
        // The API server learns the new CA (with the old one) BEFORE the
        // Secret changes.
        let (patch, send) = expect(&mut handle, Method::PATCH, MWC_PATH).await;
        let bundles = patched_bundles(&patch);
        assert_eq!(bundles.len(), 2, "both entries: {patch}");
        respond(
            send,
            200,
            &webhook_config_json(&[Some(bundles[0].1.as_str()); 2]),
        );
        let (written, send) = expect(&mut handle, Method::PUT, SECRET_PATH).await;
        let rotated = material_from_secret_json(&written);
        respond(send, 200, &written);
        expect_no_more(&mut handle).await;
        (bundles[0].1.clone(), rotated)
    });

    ctl.leader_reconcile(OffsetDateTime::now_utc())
        .await
        .unwrap();
    drop(ctl);
    let (bundle, rotated) = scenario.await.unwrap();
    let cas = parse_pem_bundle(&rotated.ca_pem).unwrap();
    assert_eq!(cas.len(), 2, "new CA plus the old one");
    assert_eq!(cas[1], parse_pem_bundle(&old.ca_pem).unwrap()[0]);
    assert_eq!(bundle, rotated.ca_pem);
    // Replicas still serving the old certificate and those with the new one
    // are both trusted during the rotation.
    assert_chain_valid(&bundle, &old.cert_pem, "vi.vi.svc");
    assert_chain_valid(&bundle, &rotated.cert_pem, "vi.vi.svc");
}

#[tokio::test]
async fn a_ca_bundle_changed_by_someone_else_is_repatched_on_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut handle) = mock();
    let ctl = Controller::new(&args(dir.path()), client).unwrap();
    let m = material_aged(DAY);
    let foreign = material_aged(DAY).ca_pem;
    let ca = m.ca_pem.clone();

    let scenario = tokio::spawn(async move {
        let (patch, send) = expect(&mut handle, Method::PATCH, MWC_PATH).await;
        assert_eq!(
            patch_ops(&patch),
            vec![
                ("test", "/webhooks/0/name"),
                ("add", "/webhooks/0/clientConfig/caBundle"),
                ("test", "/webhooks/1/name"),
                ("add", "/webhooks/1/clientConfig/caBundle"),
            ]
        );
        assert!(patched_bundles(&patch).iter().all(|(_, b)| *b == ca));
        respond(send, 200, &webhook_config_json(&[Some(&ca), Some(&ca)]));
        expect_no_more(&mut handle).await;
    });

    let now = OffsetDateTime::now_utc();
    // Someone (a GitOps sync, helm upgrade) reset one entry and broke another.
    let changed: MutatingWebhookConfiguration =
        serde_json::from_value(webhook_config_json(&[None, Some(&foreign)])).unwrap();
    assert_eq!(ctl.on_webhook_change(&changed, &m, now).await.unwrap(), 2);
    // Our own patch comes back through the watch: nothing more to do.
    let ours: MutatingWebhookConfiguration =
        serde_json::from_value(webhook_config_json(&[Some(&m.ca_pem), Some(&m.ca_pem)])).unwrap();
    assert_eq!(ctl.on_webhook_change(&ours, &m, now).await.unwrap(), 0);
    drop(ctl);
    scenario.await.unwrap();
}

fn patch_ops(patch: &Value) -> Vec<(&str, &str)> {
    patch
        .as_array()
        .unwrap()
        .iter()
        .map(|op| (op["op"].as_str().unwrap(), op["path"].as_str().unwrap()))
        .collect()
}

#[tokio::test]
async fn a_concurrent_secret_write_is_a_conflict_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut handle) = mock();
    let ctl = Controller::new(&args(dir.path()), client).unwrap();
    let scenario = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        respond(send, 404, &not_found());
        let (_, send) = expect(&mut handle, Method::GET, MWC_PATH).await;
        respond(send, 404, &not_found());
        let (_, send) = expect(&mut handle, Method::POST, SECRETS_PATH).await;
        respond(
            send,
            409,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "already exists", "reason": "AlreadyExists", "code": 409}),
        );
        expect_no_more(&mut handle).await;
    });
    let err = ctl
        .leader_reconcile(OffsetDateTime::now_utc())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict(ref n) if n == "vi-tls"),
        "{err}"
    );
    drop(ctl);
    scenario.await.unwrap();
}

/// The whole loop: elected, Secret valid, then the watch reports a
/// configuration whose caBundle someone reset; the controller re-patches it,
/// and gives the lease up on shutdown.
#[tokio::test]
async fn run_repatches_when_the_watch_reports_a_change_and_releases_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut handle) = mock();
    let mut a = args(dir.path());
    a.resync = Duration::from_secs(3600);
    let m = material_aged(DAY);
    let secret = secret_json(&m);
    let ca = m.ca_pem.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();

    let scenario = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, LEASE_PATH).await;
        respond(send, 404, &not_found());
        let (lease, send) = expect(&mut handle, Method::POST, LEASES_PATH).await;
        let mut stored = lease.clone();
        stored["metadata"]["resourceVersion"] = json!("1");
        respond(send, 201, &stored);
        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        respond(send, 200, &secret);

        // The watcher: an initial list (bundle right: no patch), then a watch
        // that delivers a modification resetting caBundle.
        let mut watched = false;
        let mut stop_tx = Some(stop_tx);
        let mut saw_patch = false;
        loop {
            let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
                .await
                .expect("request")
                .expect("client alive");
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or_default().to_string();
            match (req.method().clone(), path.as_str()) {
                (Method::GET, MWCS_PATH) if !query.contains("watch=true") => {
                    assert!(
                        query.contains("fieldSelector=metadata.name%3Dvi-webhook"),
                        "{query}"
                    );
                    let mut item = webhook_config_json(&[Some(&ca), Some(&ca)]);
                    item.as_object_mut().unwrap().remove("apiVersion");
                    item.as_object_mut().unwrap().remove("kind");
                    respond(
                        send,
                        200,
                        &json!({
                        "apiVersion": "admissionregistration.k8s.io/v1",
                        "kind": "MutatingWebhookConfigurationList",
                        "metadata": {"resourceVersion": "7"},
                        "items": [item]}),
                    );
                }
                (Method::GET, MWCS_PATH) if !watched => {
                    let mut obj = webhook_config_json(&[Some(&ca), None]);
                    obj["metadata"]["resourceVersion"] = json!("8");
                    let event = json!({"type": "MODIFIED", "object": obj});
                    let mut line = serde_json::to_vec(&event).unwrap();
                    line.push(b'\n');
                    // The watch ends after this event; the watcher then
                    // re-watches from resourceVersion 8 (parked below).
                    send.send_response(
                        Response::builder()
                            .status(200)
                            .body(Body::from(line))
                            .unwrap(),
                    );
                    watched = true;
                }
                (Method::GET, MWCS_PATH) => {
                    // A re-watch: leave it hanging.
                    std::mem::forget(send);
                }
                (Method::PATCH, MWC_PATH) => {
                    let bytes = req.into_body().collect_bytes().await.unwrap();
                    let patch: Value = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(
                        patch_ops(&patch),
                        vec![
                            ("test", "/webhooks/1/name"),
                            ("add", "/webhooks/1/clientConfig/caBundle")
                        ],
                        "only the reset entry"
                    );
                    assert_eq!(patched_bundles(&patch)[0].1, ca);
                    respond(send, 200, &webhook_config_json(&[Some(&ca), Some(&ca)]));
                    saw_patch = true;
                    stop_tx.take().unwrap().send(()).unwrap();
                }
                (Method::GET, LEASE_PATH) if saw_patch => {
                    respond(send, 200, &stored);
                }
                (Method::PUT, LEASE_PATH) if saw_patch => {
                    let bytes = req.into_body().collect_bytes().await.unwrap();
                    let released: Value = serde_json::from_slice(&bytes).unwrap();
                    assert!(
                        released["spec"].get("holderIdentity").is_none(),
                        "{released}"
                    );
                    respond(send, 200, &released);
                    return;
                }
                (method, _) => panic!("unexpected request {method} {}", req.uri()),
            }
        }
    });

    let run = tokio::spawn(run(a, client, async {
        let _ = stop_rx.await;
    }));
    tokio::time::timeout(Duration::from_secs(20), scenario)
        .await
        .expect("scenario finished")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("run stopped after shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tls.crt")).unwrap(),
        m.cert_pem
    );
}

#[tokio::test]
async fn spawn_returns_once_the_key_pair_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut handle) = mock();
    let mut a = args(dir.path());
    a.resync = Duration::from_secs(3600);
    let m = material_aged(DAY);
    let secret = secret_json(&m);
    let scenario = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, LEASE_PATH).await;
        let now = k8s_openapi::chrono::Utc::now();
        respond(
            send,
            200,
            &json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "vi-leader", "namespace": NS, "resourceVersion": "5"},
            "spec": {"holderIdentity": "pod-b", "leaseDurationSeconds": 15,
                     "renewTime": now.to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Micros, true)}}),
        );
        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        respond(send, 200, &secret);
        handle
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = spawn(
        a,
        client,
        async {
            let _ = stop_rx.await;
        },
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tls.crt")).unwrap(),
        m.cert_pem
    );
    let _handle = scenario.await.unwrap();
    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn args_flatten_with_env_and_defaults() {
    use clap::Parser;
    #[derive(Debug, clap::Parser)]
    struct Outer {
        #[command(flatten)]
        tls: AutoTlsArgs,
    }
    let o = Outer::try_parse_from([
        "x",
        "--auto-tls",
        "--cert-dir=/run/tls",
        "--renew-before=48h",
        "--namespace=ns1",
    ])
    .unwrap();
    assert!(o.tls.auto_tls);
    assert_eq!(o.tls.renew_before, 2 * DAY);
    assert_eq!(
        o.tls.cert_paths(),
        ("/run/tls/tls.crt".into(), "/run/tls/tls.key".into())
    );
    assert!(Outer::try_parse_from(["x", "--renew-before=soon"]).is_err());
    let bad = AutoTlsArgs {
        renew_before: 400 * DAY,
        ..args(std::path::Path::new("/tmp"))
    };
    let (client, _h) = mock();
    let err = Controller::new(&bad, client).err().expect("rejected");
    assert!(err.to_string().contains("renew-before"), "{err}");
}
