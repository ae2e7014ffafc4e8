//! Annotations a hostile pod author writes, against the real binary: the
//! webhook over TLS denies them naming the annotation and the limit, and
//! keeps answering; `mutate` and `lint` say the same offline.

use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::webhook::{client, pki, Webhook};

const TEMPLATE_DB: &str = "vault.hashicorp.com/agent-inject-template-db";

/// The template that used to overflow a tokio worker's stack: ~9.7 KB of
/// parentheses around `.Data.data.x`.
fn deep_parens() -> String {
    let n = 4850;
    format!(
        "{{{{ with secret \"secret/data/db\" }}}}{{{{ {}.Data.data.x{} }}}}{{{{ end }}}}",
        "(".repeat(n),
        ")".repeat(n)
    )
}

fn vault_k8s(template: &str) -> Value {
    json!({
        "vault.hashicorp.com/agent-inject": "true",
        "vault.hashicorp.com/role": "app",
        "vault.hashicorp.com/agent-inject-secret-db": "secret/data/db",
        TEMPLATE_DB: template,
    })
}

fn ours(template: &str) -> Value {
    json!({
        "vault-injector.io/inject": "true",
        "vault-injector.io/role": "app",
        "vault-injector.io/secret-db": "secret/data/db",
        "vault-injector.io/template-db": template,
    })
}

/// Hostile annotation sets, each with the annotation and the words its
/// denial must name.
fn cases() -> Vec<(Value, &'static str, &'static str)> {
    let n = 4000;
    vec![
        (
            vault_k8s(&deep_parens()),
            TEMPLATE_DB,
            "nesting exceeds 64 levels",
        ),
        (
            vault_k8s(&format!(
                "{{{{ with secret \"secret/data/db\" }}}}{}{}{{{{ end }}}}",
                "{{ if .Data.x }}".repeat(n / 2),
                "{{ end }}".repeat(n / 2)
            )),
            TEMPLATE_DB,
            "nesting exceeds 64 levels",
        ),
        (
            vault_k8s(&"x".repeat(70_000)),
            TEMPLATE_DB,
            "above the limit of 65536 bytes",
        ),
        (
            ours(&format!(
                "{{{{ {}data.x{} }}}}",
                "(".repeat(n),
                ")".repeat(n)
            )),
            "vault-injector.io/template-db",
            "a template tag has more than 512 tokens",
        ),
        (
            ours(&format!(
                "{{{{ {}data.x{} }}}}",
                "(".repeat(100),
                ")".repeat(100)
            )),
            "vault-injector.io/template-db",
            "template nesting exceeds 150 levels",
        ),
        (
            ours(&format!("{{{{ {}data.x }}}}", "not ".repeat(n))),
            "vault-injector.io/template-db",
            "a template tag has more than 512 tokens",
        ),
        (
            ours(&format!(
                "{}x{}",
                "{% if true %}".repeat(n / 2),
                "{% endif %}".repeat(n / 2)
            )),
            "vault-injector.io/template-db",
            "template nesting exceeds 150 levels",
        ),
        (
            ours(&format!("{{{{ {}1{} }}}}", "[".repeat(n), "]".repeat(n))),
            "vault-injector.io/template-db",
            "a template tag has more than 512 tokens",
        ),
    ]
}

fn review(uid: &str, annotations: &Value) -> String {
    let body = std::fs::read_to_string(support::data("review-3c5s.json")).unwrap();
    let mut v: Value = serde_json::from_str(&body).unwrap();
    v["request"]["uid"] = uid.into();
    v["request"]["object"]["metadata"]["annotations"] = annotations.clone();
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_templates_are_denied_over_tls_and_the_webhook_keeps_answering() {
    let tmp = tempfile::tempdir().unwrap();
    let p = pki();
    let (cert, key) = (tmp.path().join("tls.crt"), tmp.path().join("tls.key"));
    std::fs::write(&cert, &p.cert_pem).unwrap();
    std::fs::write(&key, &p.key_pem).unwrap();
    let mut wh = Webhook::start(&cert, &key, &[], tmp.path());
    let http = client(&[&p.ca_pem], false);
    let legit = std::fs::read_to_string(support::data("review-3c5s.json")).unwrap();

    for (i, (annotations, annotation, limit)) in cases().into_iter().enumerate() {
        let uid = format!("hostile-{i}");
        let resp = http
            .post(wh.url("/mutate"))
            .header("content-type", "application/json")
            .body(review(&uid, &annotations))
            .send()
            .await
            .unwrap_or_else(|e| panic!("case {i}: {e}\n{}", wh.stderr()));
        assert_eq!(resp.status(), 200, "case {i}");
        let r: Value = resp.json().await.unwrap();
        assert_eq!(r["response"]["uid"], uid.as_str());
        assert_eq!(r["response"]["allowed"], false, "case {i}: {r}");
        let msg = r["response"]["status"]["message"].as_str().unwrap_or("");
        assert!(msg.contains(annotation), "case {i}: {msg}");
        assert!(msg.contains(limit), "case {i}: {msg}");
        assert!(msg.len() < 2000, "case {i}: the denial must stay short");

        // A legitimate review right after is answered as usual.
        let resp = http
            .post(wh.url("/mutate"))
            .header("content-type", "application/json")
            .body(legit.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("after case {i}: {e}\n{}", wh.stderr()));
        assert_eq!(resp.status(), 200);
        let r: Value = resp.json().await.unwrap();
        assert_eq!(r["response"]["allowed"], true, "after case {i}: {r}");
    }
    assert!(
        wh.wait_exit(std::time::Duration::from_millis(100))
            .is_none(),
        "the webhook must still run:\n{}",
        wh.stderr()
    );
}

fn pod_yaml(annotations: &Value) -> String {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hostile", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "app:1", "command": ["/app"]}]},
    });
    serde_json::to_string(&pod).unwrap()
}

fn run(sub: &str, args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(support::bin())
        .arg(sub)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn mutate_and_lint_refuse_the_same_templates_offline() {
    for (i, (annotations, annotation, limit)) in cases().into_iter().enumerate() {
        let input = pod_yaml(&annotations);
        let out = run("mutate", &["-f", "-"], &input);
        assert!(!out.status.success(), "case {i}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(annotation) && err.contains(limit),
            "case {i}: {err}"
        );
        assert!(out.stdout.is_empty(), "case {i}");

        let out = run("lint", &["-"], &input);
        assert!(!out.status.success(), "case {i}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(annotation) && text.contains(limit),
            "case {i}: {text}"
        );
    }
}

#[test]
fn oversized_values_and_totals_are_refused_naming_the_limit() {
    let mut big = ours("{{ data.x }}");
    big["vault-injector.io/secret-db"] = "a/".repeat(10_000).into();
    let out = run("lint", &["-"], &pod_yaml(&big));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("vault-injector.io/secret-db")
            && text.contains("above the limit of 16384 bytes"),
        "{text}"
    );

    let mut three = ours(&"t".repeat(30_000));
    for i in 0..2 {
        three[format!("vault-injector.io/template-t{i}")] = "t".repeat(30_000).into();
        three[format!("vault-injector.io/secret-t{i}")] = "secret/data/t".into();
    }
    let out = run("lint", &["-"], &pod_yaml(&three));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("templates total 90000 bytes, above the limit of 65536 bytes"),
        "{text}"
    );

    let mut many = ours("{{ data.x }}");
    for i in 0..40 {
        many[format!("vault-injector.io/template-t{i}")] = "y".repeat(8000).into();
        many[format!("vault-injector.io/secret-t{i}")] = "secret/data/t".into();
    }
    let out = run("lint", &["-"], &pod_yaml(&many));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("vault-injector.io/*") && text.contains("above the limit of 262144 bytes"),
        "{text}"
    );
}

#[test]
fn too_many_vault_references_are_refused() {
    let env: Vec<Value> = (0..257)
        .map(|i| json!({"name": format!("V{i}"), "value": "vault:secret/data/app#k"}))
        .collect();
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "refs", "annotations": {"vault-injector.io/inject": "true",
            "vault-injector.io/role": "app"}},
        "spec": {"containers": [{"name": "app", "image": "app:1", "command": ["/app"], "env": env}]},
    });
    let out = run("mutate", &["-f", "-"], &pod.to_string());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("more than 256 vault: env values"), "{err}");
}
