//! The real `vault-injector webhook` binary over real TLS: HTTP contract,
//! audit lines, metrics, certificate rotation through a Kubernetes-style
//! `..data` symlink swap, and SIGTERM draining in-flight requests.

use crate::support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::webhook::{admin_get, client, metric, parse_response, pki, Webhook};

fn fixture() -> (String, String) {
    let body = std::fs::read_to_string(support::data("review-3c5s.json")).unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    let uid = v["request"]["uid"].as_str().unwrap().to_string();
    (body, uid)
}

fn with_uid(body: &str, uid: &str) -> String {
    let mut v: Value = serde_json::from_str(body).unwrap();
    v["request"]["uid"] = uid.into();
    v.to_string()
}

fn write_pair(dir: &Path, cert: &str, key: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_reviews_over_tls_with_audit_lines_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    // Material from the `certs` subcommand itself, so the test also proves
    // its output is usable as-is.
    let certs = tmp.path().join("certs");
    let out = std::process::Command::new(support::bin())
        .args(["certs", "--out"])
        .arg(&certs)
        .args(["--host", "localhost,127.0.0.1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = tmp.path().join("config.yaml");
    std::fs::write(&config, "injector:\n  maxBodyBytes: 65536\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let wh = Webhook::start(
        &certs.join("tls.crt"),
        &certs.join("tls.key"),
        &["--config", config_arg],
        tmp.path(),
    );
    let ca = std::fs::read_to_string(certs.join("ca.crt")).unwrap();
    let http = client(&[&ca], false);
    let (body, uid) = fixture();

    let resp = http
        .post(wh.url("/mutate"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let review: Value = resp.json().await.unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(review["response"]["uid"], uid.as_str());
    assert!(review["response"]["allowed"].is_boolean(), "{review}");

    let second = with_uid(&body, "second-uid");
    let resp = http
        .post(wh.url("/mutate"))
        .header("content-type", "application/json; charset=utf-8")
        .body(second)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let review: Value = resp.json().await.unwrap();
    assert_eq!(review["response"]["uid"], "second-uid");

    let resp = http
        .post(wh.url("/mutate"))
        .header("content-type", "application/yaml")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    assert!(resp.text().await.unwrap().contains("application/json"));

    let resp = http
        .post(wh.url("/mutate"))
        .header("content-type", "application/json")
        .body(" ".repeat(70_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(resp.text().await.unwrap().contains("65536"));

    let resp = http
        .post(wh.url("/mutate"))
        .header("content-type", "application/json")
        .body("{\"apiVersion\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let msg = resp.text().await.unwrap();
    assert!(msg.contains("not a valid AdmissionReview"), "{msg}");

    let resp = http.get(wh.url("/mutate")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let resp = http.post(wh.url("/other")).send().await.unwrap();
    assert_eq!(resp.status(), 404);

    // One audit line per decision, none for requests rejected at the HTTP
    // level.
    let lines = wh.wait_stdout(2);
    std::thread::sleep(Duration::from_millis(200));
    let lines_after = wh.stdout_lines();
    assert_eq!(lines_after.len(), 2, "{lines_after:#?}");
    let uids: Vec<String> = lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert_eq!(v["audit"], "admission", "{l}");
            let d = v["decision"].as_str().unwrap();
            assert!(
                ["injected", "skipped", "denied", "error"].contains(&d),
                "{l}"
            );
            assert!(v["latency_ms"].as_f64().unwrap() > 0.0, "{l}");
            v["uid"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(uids, vec![uid.clone(), "second-uid".to_string()]);

    let m = wh.metrics();
    let total: f64 = m
        .lines()
        .filter(|l| l.starts_with("vault_injector_admissions_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(total, 2.0, "{m}");
    assert_eq!(
        metric(&m, "vault_injector_admission_duration_seconds_count"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(metric(&m, "vault_injector_admissions_in_flight"), Some(0.0));
    assert_eq!(admin_get(wh.admin, "/healthz").unwrap().0, 200);
}

#[test]
fn bad_tls_material_fails_before_binding() {
    let tmp = tempfile::tempdir().unwrap();
    let a = pki();
    let b = pki();
    // Key of another pair: must be refused, naming the files.
    write_pair(tmp.path(), &a.cert_pem, &b.key_pem);
    let admin_port = support::free_port();
    let port = support::free_port();
    let out = std::process::Command::new(support::bin())
        .arg("webhook")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .arg("--tls-cert")
        .arg(tmp.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(tmp.path().join("tls.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls.key") && err.contains("does not belong"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// Lays out a directory like a mounted Secret: `..2026_N/` holds the files,
/// `..data` points at it, and `tls.crt`/`tls.key` point through `..data`.
fn secret_mount_version(root: &Path, version: &str, cert: &str, key: &str) {
    let dir = root.join(version);
    write_pair(&dir, cert, key);
    // kubelet's atomic swap: a new symlink renamed over `..data`.
    let tmp_link = root.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(version, &tmp_link).unwrap();
    std::fs::rename(&tmp_link, root.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        let link = root.join(f);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), &link).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotates_on_data_symlink_swap_under_traffic() {
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("tls");
    std::fs::create_dir_all(&mount).unwrap();
    let old = pki();
    let new = pki();
    secret_mount_version(
        &mount,
        "..2026_11_23_10_00_00.1",
        &old.cert_pem,
        &old.key_pem,
    );
    let wh = Webhook::start(
        &mount.join("tls.crt"),
        &mount.join("tls.key"),
        &["--tls-reload-interval", "200ms"],
        tmp.path(),
    );
    let (body, _) = fixture();

    // Traffic that trusts both CAs, on pooled and on fresh connections,
    // runs across the swap; none of it may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for fresh in [false, true] {
        let http = client(&[&old.ca_pem, &new.ca_pem], fresh);
        let (stop, ok, url, body) = (stop.clone(), ok.clone(), wh.url("/mutate"), body.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("{e:?}")),
                }
            }
            failures
        }));
    }

    let old_only = client(&[&old.ca_pem], true);
    let new_only = client(&[&new.ca_pem], true);
    let probe = |c: reqwest::Client| {
        let (url, body) = (wh.url("/mutate"), body.clone());
        async move {
            c.post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    assert_eq!(probe(old_only.clone()).await.unwrap(), 200);
    assert!(
        probe(new_only.clone()).await.is_err(),
        "new CA trusted too early"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_swap = ok.load(Ordering::Relaxed);
    secret_mount_version(
        &mount,
        "..2026_11_23_11_00_00.2",
        &new.cert_pem,
        &new.key_pem,
    );
    std::fs::remove_dir_all(mount.join("..2026_11_23_10_00_00.1")).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    while probe(new_only.clone()).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "new certificate not served 10 s after the swap"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        probe(old_only.clone()).await.is_err(),
        "new connections must no longer see the old certificate"
    );
    let at_rotation = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let failures = w.await.unwrap();
        assert!(failures.is_empty(), "requests failed: {failures:?}");
    }
    let total = ok.load(Ordering::Relaxed);
    assert!(
        before_swap > 0 && total > at_rotation,
        "traffic did not run across the swap ({before_swap}, {at_rotation}, {total})"
    );

    let m = wh.metrics();
    assert_eq!(
        metric(&m, r#"vault_injector_tls_reloads_total{result="success"}"#),
        Some(1.0),
        "{m}"
    );
    let (_, pem) = x509_parser::pem::parse_x509_pem(new.cert_pem.as_bytes()).unwrap();
    let new_not_after = pem.parse_x509().unwrap().validity().not_after.timestamp();
    assert_eq!(
        metric(&m, "vault_injector_tls_cert_not_after_timestamp_seconds"),
        Some(new_not_after as f64),
        "{m}"
    );
}

/// A raw HTTP/1.1 request over TLS whose body arrives in two parts, so the
/// request is in flight (headers read, handler waiting for the body) for as
/// long as the test wants.
struct SlowRequest {
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    rest: Vec<u8>,
}

async fn tls_connector(ca_pem: &str) -> tokio_rustls::TlsConnector {
    tls_connector_alpn(ca_pem, &[]).await
}

async fn tls_connector_alpn(ca_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

impl SlowRequest {
    async fn start(
        connector: &tokio_rustls::TlsConnector,
        addr: std::net::SocketAddr,
        body: &str,
    ) -> Self {
        use tokio::io::AsyncWriteExt;
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let head = format!(
            "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let half = body.len() / 2;
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(&body.as_bytes()[..half]).await.unwrap();
        tls.flush().await.unwrap();
        Self {
            tls,
            rest: body.as_bytes()[half..].to_vec(),
        }
    }

    /// Sends the rest of the body and reads the response (the server closes
    /// the connection after it, since it is draining).
    async fn finish(mut self) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.tls.write_all(&self.rest).await.unwrap();
        self.tls.flush().await.unwrap();
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.tls.read_to_end(&mut raw)).await;
        parse_response(&String::from_utf8_lossy(&raw))
            .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&raw)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    const N: usize = 8;
    let tmp = tempfile::tempdir().unwrap();
    let p = pki();
    write_pair(tmp.path(), &p.cert_pem, &p.key_pem);
    let mut wh = Webhook::start(
        &tmp.path().join("tls.crt"),
        &tmp.path().join("tls.key"),
        &["--drain-timeout", "20s", "--body-timeout", "120s"],
        tmp.path(),
    );
    let connector = tls_connector(&p.ca_pem).await;
    let (body, _) = fixture();

    let mut pending = Vec::new();
    for i in 0..N {
        let b = with_uid(&body, &format!("drain-{i}"));
        pending.push(SlowRequest::start(&connector, wh.addr, &b).await);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&wh.metrics(), "vault_injector_admissions_in_flight") != Some(N as f64) {
        assert!(
            Instant::now() < deadline,
            "requests never in flight:\n{}",
            wh.metrics()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(wh.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();

    // Readiness drops and the TLS port closes while requests are still open.
    let deadline = Instant::now() + Duration::from_secs(5);
    while admin_get(wh.admin, "/readyz").map(|r| r.0) != Some(503) {
        assert!(
            Instant::now() < deadline,
            "/readyz still ready during drain"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        tokio::net::TcpStream::connect(wh.addr).await.is_err(),
        "listener still accepting during drain"
    );
    assert!(
        wh.wait_exit(Duration::from_millis(300)).is_none(),
        "exited before the in-flight requests finished"
    );

    for (i, req) in pending.into_iter().enumerate() {
        let (status, resp) = req.finish().await;
        assert_eq!(status, 200, "request {i}: {resp}");
        let v: Value = serde_json::from_str(&resp).unwrap();
        assert_eq!(v["response"]["uid"], format!("drain-{i}"));
    }

    let status = wh
        .wait_exit(Duration::from_secs(10))
        .expect("webhook did not exit after draining");
    assert_eq!(status.code(), Some(0), "{}", wh.stderr());
    let lines = wh.stdout_lines();
    assert_eq!(
        lines.len(),
        N,
        "one audit line per drained request: {lines:#?}"
    );
    assert!(wh.stderr().contains("draining"), "{}", wh.stderr());
}

fn sigterm(wh: &Webhook) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(wh.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

async fn stalled_request(wh: &Webhook, p: &support::webhook::Pki) -> SlowRequest {
    let connector = tls_connector(&p.ca_pem).await;
    let (body, _) = fixture();
    let req = SlowRequest::start(&connector, wh.addr, &body).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&wh.metrics(), "vault_injector_admissions_in_flight") != Some(1.0) {
        assert!(Instant::now() < deadline, "request never in flight");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_gives_up_after_the_drain_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let p = pki();
    write_pair(tmp.path(), &p.cert_pem, &p.key_pem);
    let mut wh = Webhook::start(
        &tmp.path().join("tls.crt"),
        &tmp.path().join("tls.key"),
        &["--drain-timeout", "1s", "--body-timeout", "120s"],
        tmp.path(),
    );
    let _stalled = stalled_request(&wh, &p).await;
    let t0 = Instant::now();
    sigterm(&wh);
    let status = wh
        .wait_exit(Duration::from_secs(10))
        .expect("webhook did not give up draining");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "exited after {waited:?}"
    );
    assert_eq!(status.code(), Some(0), "{}", wh.stderr());
    assert!(wh.stderr().contains("drain timeout"), "{}", wh.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_signal_aborts_the_drain() {
    let tmp = tempfile::tempdir().unwrap();
    let p = pki();
    write_pair(tmp.path(), &p.cert_pem, &p.key_pem);
    let mut wh = Webhook::start(
        &tmp.path().join("tls.crt"),
        &tmp.path().join("tls.key"),
        &["--drain-timeout", "60s", "--body-timeout", "120s"],
        tmp.path(),
    );
    let _stalled = stalled_request(&wh, &p).await;
    sigterm(&wh);
    let deadline = Instant::now() + Duration::from_secs(5);
    while admin_get(wh.admin, "/readyz").map(|r| r.0) != Some(503) {
        assert!(Instant::now() < deadline, "never started draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(wh.wait_exit(Duration::from_millis(300)).is_none());
    sigterm(&wh);
    let status = wh
        .wait_exit(Duration::from_secs(5))
        .expect("second SIGTERM did not abort the drain");
    assert_eq!(status.code(), Some(130), "{}", wh.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_http2_and_http1_by_alpn() {
    let tmp = tempfile::tempdir().unwrap();
    let p = pki();
    write_pair(tmp.path(), &p.cert_pem, &p.key_pem);
    let wh = Webhook::start(
        &tmp.path().join("tls.crt"),
        &tmp.path().join("tls.key"),
        &[],
        tmp.path(),
    );
    for (offer, want) in [
        (vec![&b"h2"[..], &b"http/1.1"[..]], &b"h2"[..]),
        (vec![&b"http/1.1"[..]], &b"http/1.1"[..]),
    ] {
        let connector = tls_connector_alpn(&p.ca_pem, &offer).await;
        let tcp = tokio::net::TcpStream::connect(wh.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(want));
    }
}
