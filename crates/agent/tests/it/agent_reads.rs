//! Files rendered from several Vault calls (translated vault-k8s templates):
//! identical calls made once and shared, a PKI issue (a write with
//! parameters) re-issued before the certificate expires, against a real
//! OpenBao.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::agent::{audit_lines, config, wait_for, AgentDirs, Sidecar};
use support::openbao::{OpenBao, ROLE};

const POLICY: &str = r#"
path "secret/data/*" { capabilities = ["read"] }
path "pki/issue/web" { capabilities = ["create", "update"] }
"#;

fn pki() -> Option<OpenBao> {
    let bao = OpenBao::start()?;
    bao.configure();
    let policy = bao.write_file("reads.hcl", POLICY);
    bao.bao(&["policy", "write", ROLE, policy.to_str().unwrap()]);
    bao.bao(&["secrets", "enable", "pki"]);
    bao.bao(&["secrets", "tune", "-max-lease-ttl=87600h", "pki"]);
    bao.bao(&[
        "write",
        "pki/root/generate/internal",
        "common_name=Test Root",
        "ttl=87600h",
    ]);
    bao.bao(&[
        "write",
        "pki/roles/web",
        "allowed_domains=example.com",
        "allow_subdomains=true",
        "max_ttl=1h",
    ]);
    bao.kv_put("secret", "web", &json!({"host": "a.example.com"}));
    Some(bao)
}

/// A translated template's file reading `reads[0]` (the certificate) and,
/// for the chain file, `reads[1]` (a KV secret) too.
fn file(name: &str, template: &str, reads: Value) -> Value {
    json!({"name": name, "path": "pki/issue/web", "file": name, "format": "template",
           "goTemplate": true, "template": template, "reads": reads})
}

#[test]
fn one_certificate_is_shared_and_reissued_before_it_expires() {
    let Some(bao) = pki() else { return };
    let dirs = AgentDirs::new(support::bin(), &bao);
    let issue = json!({"path": "pki/issue/web",
                       "params": {"common_name": "a.example.com", "ttl": "6s"}});
    let kv = json!({"path": "secret/web"});
    let cfg = config(
        &bao,
        json!([
            file("cert", "{{ reads[0].Data.certificate }}", json!([issue])),
            file("key", "{{ reads[0].Data.private_key }}", json!([issue])),
            file(
                "both",
                "{{ reads[1].Data.data.host }}\n{{ reads[0].Data.certificate }}",
                json!([issue, kv]),
            ),
        ]),
    );
    let mut sc = Sidecar::spawn(&cfg, &dirs);
    assert!(
        wait_for(Duration::from_secs(30), || dirs
            .state
            .join("ready")
            .is_file()),
        "{}",
        sc.output()
    );
    let cert = dirs.read("cert");
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    assert!(dirs.read("key").contains("PRIVATE KEY-----"));
    // The three files come from one issue call: the same certificate.
    assert_eq!(dirs.read("both"), format!("a.example.com\n{cert}"));
    let issues = |sc: &Sidecar| -> Vec<Value> {
        audit_lines(&sc.stdout())
            .into_iter()
            .filter(|a| a["path"] == "pki/issue/web" && a["event"] != "render")
            .collect()
    };
    assert_eq!(issues(&sc).len(), 1, "{}", sc.output());
    assert_eq!(issues(&sc)[0]["secret"], "cert");

    // A 6 s certificate is re-issued after about 4 s, before it expires;
    // every file follows the new one.
    let renewed = wait_for(Duration::from_secs(60), || {
        let c = dirs.read("cert");
        c != cert && dirs.read("both") == format!("a.example.com\n{c}")
    });
    assert!(renewed, "{}", sc.output());
    assert!(issues(&sc).iter().any(|e| e["event"] == "rotation"));
    assert_eq!(sc.terminate(), Some(0));
}
