//! Slow and idle clients against the real `vault-injector webhook` binary
//! over real TLS: slow bodies, silent connections (HTTP/1.1 and HTTP/2),
//! kept-alive idleness and the connection cap, each with legitimate reviews
//! interleaved that must all succeed.

use crate::support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::webhook::{client, metric, pki, Pki, Webhook};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

type Tls = TlsStream<tokio::net::TcpStream>;

/// Slack on top of a configured deadline before a test calls a connection
/// "held": generous, the machine may be busy.
const MARGIN: Duration = Duration::from_secs(15);

fn review(uid: &str) -> String {
    let body = std::fs::read_to_string(support::data("review-simple.json")).unwrap();
    let mut v: Value = serde_json::from_str(&body).unwrap();
    v["request"]["uid"] = uid.into();
    v.to_string()
}

struct Server {
    _tmp: tempfile::TempDir,
    wh: Webhook,
    pki: Pki,
}

fn start(extra: &[&str]) -> Server {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki();
    std::fs::write(tmp.path().join("tls.crt"), &pki.cert_pem).unwrap();
    std::fs::write(tmp.path().join("tls.key"), &pki.key_pem).unwrap();
    let wh = Webhook::start(
        &tmp.path().join("tls.crt"),
        &tmp.path().join("tls.key"),
        extra,
        tmp.path(),
    );
    Server { _tmp: tmp, wh, pki }
}

fn connector(ca_pem: &str, alpn: &[&[u8]]) -> TlsConnector {
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
    TlsConnector::from(Arc::new(cfg))
}

async fn connect(c: &TlsConnector, addr: SocketAddr) -> std::io::Result<Tls> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(Duration::from_secs(30), c.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// Headers of a review that announce 10 bytes, then one byte of it.
async fn slow_body(c: &TlsConnector, addr: SocketAddr) -> Tls {
    let mut tls = connect(c, addr).await.unwrap();
    tls.write_all(
        b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Connection: close\r\nContent-Length: 10\r\n\r\n{",
    )
    .await
    .unwrap();
    tls.flush().await.unwrap();
    tls
}

/// Reads until the server closes (EOF or error); what was read, or None if
/// the connection is still open after `within`.
async fn closed_within(tls: &mut Tls, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, tls.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Every connection is closed by the server within `within`; returns what
/// each one received.
async fn all_closed_within(conns: Vec<Tls>, within: Duration) -> Vec<Vec<u8>> {
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut t| tokio::spawn(async move { closed_within(&mut t, within).await }))
        .collect();
    let mut out = Vec::new();
    let mut held = 0;
    for t in tasks {
        match t.await.unwrap() {
            Some(got) => out.push(got),
            None => held += 1,
        }
    }
    assert_eq!(held, 0, "{held} connections still open after {within:?}");
    out
}

/// `n` reviews on fresh connections (a new TLS handshake each), all of
/// which must be answered 200 with their own uid.
async fn legit_reviews(wh: &Webhook, ca: &str, tag: &str, n: usize) {
    let http = client(&[ca], true);
    for i in 0..n {
        let uid = format!("{tag}-{i}");
        let resp = http
            .post(wh.url("/mutate"))
            .header("content-type", "application/json")
            .body(review(&uid))
            .send()
            .await
            .unwrap_or_else(|e| panic!("legit review {uid} failed: {e:?}"));
        assert_eq!(resp.status(), 200, "legit review {uid}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["response"]["uid"], uid.as_str());
    }
}

async fn wait_metric(wh: &Webhook, series: &str, want: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = wh.metrics();
        if metric(&text, series).is_some_and(&want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never as wanted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_hold_no_admission_slot_and_are_answered_408() {
    const SLOW: usize = 64;
    let s = start(&[
        "--max-concurrency",
        "4",
        "--body-timeout",
        "3s",
        "--request-timeout",
        "30s",
    ]);
    let c = connector(&s.pki.ca_pem, &[b"http/1.1"]);
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        slow.push(slow_body(&c, s.wh.addr).await);
    }
    // Every slow request is in the handler, waiting for its body.
    wait_metric(&s.wh, "vault_injector_admissions_in_flight", |v| {
        v >= SLOW as f64
    })
    .await;
    let t0 = Instant::now();
    // Before the fix each of these waited for one of 4 slots held forever.
    legit_reviews(&s.wh, &s.pki.ca_pem, "during-slow-bodies", 12).await;
    let answers = all_closed_within(slow, Duration::from_secs(3) + MARGIN).await;
    for a in &answers {
        let text = String::from_utf8_lossy(a);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("--body-timeout"), "{text}");
    }
    assert!(t0.elapsed() < Duration::from_secs(3) + MARGIN);
    wait_metric(
        &s.wh,
        r#"vault_injector_connections_closed_total{reason="body_timeout"}"#,
        |v| v >= SLOW as f64,
    )
    .await;
    legit_reviews(&s.wh, &s.pki.ca_pem, "after-slow-bodies", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_after_the_request_timeout() {
    const EACH: usize = 40;
    let s = start(&["--request-timeout", "1s"]);
    let h1 = connector(&s.pki.ca_pem, &[b"http/1.1"]);
    let h2 = connector(&s.pki.ca_pem, &[b"h2"]);
    let mut silent = Vec::new();
    for _ in 0..EACH {
        // HTTP/1.1: nothing after the handshake.
        silent.push(connect(&h1, s.wh.addr).await.unwrap());
        // HTTP/2: the client preface, then nothing (no SETTINGS, no stream).
        let mut t = connect(&h2, s.wh.addr).await.unwrap();
        t.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        t.flush().await.unwrap();
        silent.push(t);
        // Slow loris: a request line, never the end of the headers.
        let mut t = connect(&h1, s.wh.addr).await.unwrap();
        t.write_all(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        t.flush().await.unwrap();
        silent.push(t);
    }
    let closing = tokio::spawn(all_closed_within(silent, Duration::from_secs(1) + MARGIN));
    legit_reviews(&s.wh, &s.pki.ca_pem, "during-silence", 12).await;
    closing.await.unwrap();
    wait_metric(
        &s.wh,
        r#"vault_injector_connections_closed_total{reason="idle"}"#,
        // The slow-loris ones may end by hyper's own header timeout.
        |v| v >= (2 * EACH) as f64,
    )
    .await;
    wait_metric(&s.wh, "vault_injector_connections_open", |v| v == 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_connections_are_closed_after_the_idle_timeout() {
    let s = start(&["--idle-timeout", "1s", "--request-timeout", "30s"]);
    let c = connector(&s.pki.ca_pem, &[b"http/1.1"]);
    let mut tls = connect(&c, s.wh.addr).await.unwrap();
    let body = review("keep-alive");
    let req = format!(
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let got = closed_within(&mut tls, Duration::from_secs(1) + MARGIN)
        .await
        .expect("kept-alive idle connection never closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("keep-alive"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_idle_connections_are_shed_first() {
    const CAP: usize = 32;
    let cap = CAP.to_string();
    // Timeouts far away: only the cap may close anything here.
    let s = start(&[
        "--max-connections",
        &cap,
        "--request-timeout",
        "120s",
        "--body-timeout",
        "120s",
    ]);
    let c = connector(&s.pki.ca_pem, &[b"http/1.1"]);
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(connect(&c, s.wh.addr).await.unwrap());
    }
    wait_metric(&s.wh, "vault_injector_connections_open", |v| {
        v == CAP as f64
    })
    .await;
    // Each review's connection makes room by closing the oldest idle one;
    // a new idle connection after it fills the cap again.
    const LEGIT: usize = 10;
    for i in 0..LEGIT {
        legit_reviews(&s.wh, &s.pki.ca_pem, &format!("at-cap-{i}"), 1).await;
        idle.push(connect(&c, s.wh.addr).await.unwrap());
    }
    let oldest: Vec<Tls> = idle.drain(..LEGIT).collect();
    all_closed_within(oldest, MARGIN).await;
    let open = metric(&s.wh.metrics(), "vault_injector_connections_open").unwrap();
    assert!(open <= CAP as f64, "{open} open over a cap of {CAP}");
    drop(idle);

    // Slow bodies fill the cap: they are not idle, but none has a whole
    // request in, so each newcomer cuts the oldest of them instead of
    // being refused; a slow body can never lock real reviews out.
    wait_metric(&s.wh, "vault_injector_connections_open", |v| v == 0.0).await;
    let mut slow = Vec::new();
    for _ in 0..CAP {
        slow.push(slow_body(&c, s.wh.addr).await);
    }
    wait_metric(&s.wh, "vault_injector_admissions_in_flight", |v| {
        v == CAP as f64
    })
    .await;
    for i in 0..5 {
        legit_reviews(&s.wh, &s.pki.ca_pem, &format!("cap-full-{i}"), 1).await;
        slow.push(slow_body(&c, s.wh.addr).await);
    }
    // Which ones were cut depends on timing (a newcomer still handshaking
    // counts as idle and goes first); at least one per review was.
    let watch: Vec<_> = slow
        .into_iter()
        .map(|mut t| tokio::spawn(async move { closed_within(&mut t, MARGIN).await }))
        .collect();
    let mut cut = 0;
    for w in watch {
        if let Some(got) = w.await.unwrap() {
            // Cut, not answered: a shed connection gets no 408.
            assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
            cut += 1;
        }
    }
    assert!(cut >= 4, "only {cut} slow bodies shed for 5 reviews");
    let text = s.wh.metrics();
    assert_eq!(
        metric(
            &text,
            r#"vault_injector_connections_closed_total{reason="refused"}"#
        ),
        None,
        "{text}"
    );
}

/// The binary named by `ABUSE_BIN` (e.g. `target/release/vault-injector`)
/// with its default limits; returns it with its HTTPS address.
fn start_measured(tmp: &std::path::Path, p: &Pki) -> (std::process::Child, SocketAddr, SocketAddr) {
    let bin = std::env::var_os("ABUSE_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(support::bin);
    std::fs::write(tmp.join("tls.crt"), &p.cert_pem).unwrap();
    std::fs::write(tmp.join("tls.key"), &p.key_pem).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], support::free_port()).into();
    let admin: SocketAddr = ([127, 0, 0, 1], support::free_port()).into();
    let child = std::process::Command::new(bin)
        .arg("webhook")
        .arg(format!("--listen={addr}"))
        .arg(format!("--admin-listen={admin}"))
        .arg(format!("--tls-cert={}", tmp.join("tls.crt").display()))
        .arg(format!("--tls-key={}", tmp.join("tls.key").display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while support::webhook::admin_get(admin, "/readyz").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "webhook not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, addr, admin)
}

/// Measurement, not a test: `ABUSE_N` (default 2000) connections of each
/// kind (slow body, silent, HTTP/2 preface only) against the webhook with
/// its default limits, and legitimate reviews meanwhile:
/// `ABUSE_BIN=target/release/vault-injector cargo test --test server_abuse
/// -- --ignored --nocapture measure`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_abuse_with_default_limits() {
    let n: usize = std::env::var("ABUSE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let tmp = tempfile::tempdir().unwrap();
    let p = pki();
    let (mut child, addr, admin) = start_measured(tmp.path(), &p);
    let pid = child.id() as i32;
    let url = format!("https://{addr}/mutate");
    let h1 = connector(&p.ca_pem, &[b"http/1.1"]);
    let h2 = connector(&p.ca_pem, &[b"h2"]);
    let rss = |pid: i32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let rss0 = rss(pid);
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = tokio::spawn({
        let sampling = sampling.clone();
        async move {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(rss(pid));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        }
    });
    // Legitimate reviews all along, on fresh connections.
    let legit = tokio::spawn({
        let http = client(&[&p.ca_pem], true);
        let url = url.clone();
        async move {
            let mut ok = 0;
            let mut latencies = Vec::new();
            for i in 0..300 {
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(review(&format!("m-{i}")))
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status() == 200) {
                    ok += 1;
                }
                latencies.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, latencies)
        }
    });
    let t0 = Instant::now();
    let mut abusive = Vec::new();
    let mut failed_connects = 0;
    for i in 0..3 * n {
        let r = match i % 3 {
            0 => connect(&h1, addr).await.map(|t| (t, &b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{"[..])),
            1 => connect(&h1, addr).await.map(|t| (t, &b""[..])),
            _ => connect(&h2, addr)
                .await
                .map(|t| (t, &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..])),
        };
        match r {
            Ok((mut t, first)) => {
                let _ = t.write_all(first).await;
                let _ = t.flush().await;
                abusive.push(tokio::spawn(async move {
                    let opened = Instant::now();
                    closed_within(&mut t, Duration::from_secs(120))
                        .await
                        .map(|_| opened.elapsed())
                }));
            }
            Err(_) => failed_connects += 1,
        }
    }
    let opened_in = t0.elapsed();
    let (ok, mut latencies) = legit.await.unwrap();
    latencies.sort();
    let mut held = 0;
    let mut lifetimes = Vec::new();
    for a in abusive {
        match a.await.unwrap() {
            Some(d) => lifetimes.push(d),
            None => held += 1,
        }
    }
    lifetimes.sort();
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let peak_rss = sampler.await.unwrap();
    let metrics = support::webhook::admin_get(admin, "/metrics").unwrap().1;
    let rss_after = rss(pid);
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "abusive connections: {} opened in {opened_in:?} ({failed_connects} refused at connect)\n\
         held after 120 s: {held}; lifetime p50 {:?} max {:?}\n\
         legit reviews: {ok}/300 ok; latency p50 {:?} p99 {:?} max {:?}\n\
         RSS: {rss0} kB idle, peak {peak_rss} kB, {} kB after\n\
         closed by reason: {}",
        3 * n - failed_connects,
        lifetimes.get(lifetimes.len() / 2),
        lifetimes.last(),
        latencies[150],
        latencies[296],
        latencies[299],
        rss_after,
        metrics
            .lines()
            .filter(|l| l.starts_with("vault_injector_connections"))
            .collect::<Vec<_>>()
            .join("; "),
    );
}
