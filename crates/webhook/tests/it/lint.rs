//! `vault-injector lint` as the real binary: exit codes, line format, and
//! messages identical to the webhook's denial for the same pod.

use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use vault_injector::admission::Injector;
use vault_injector_core::config::WebhookConfig;

fn lint(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(support::bin())
        .arg("lint")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vault-injector lint");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

const GOOD: &str = r#"apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    metadata:
      annotations:
        vault-injector.io/inject: "true"
        vault-injector.io/role: app
        vault-injector.io/agent: init-only
        vault-injector.io/secret-db: database/creds/app
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: x}]
"#;

#[test]
fn clean_tree_exits_zero_and_bad_one_names_file_object_annotation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("job.yaml"), GOOD).unwrap();
    let out = lint(&[dir.path().to_str().unwrap()], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());

    let bad = GOOD.replace(
        "database/creds/app",
        "database/creds/app\n        vault-injector.io/file-db: /etc/passwd",
    );
    std::fs::write(dir.path().join("bad.yml"), &bad).unwrap();
    let out = lint(&[dir.path().to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let file = dir.path().join("bad.yml");
    assert_eq!(
        text.trim_end(),
        format!(
            "{}:Job/migrate:vault-injector.io/file-db: file \"/etc/passwd\" must be relative to /vault/secrets",
            file.display()
        )
    );

    let out = lint(&["-"], &bad);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout)
        .starts_with("<stdin>:Job/migrate:vault-injector.io/file-db: "));
}

#[tokio::test]
async fn lint_says_what_the_webhook_says() {
    let review: serde_json::Value =
        serde_json::from_slice(&std::fs::read(support::data("review-invalid.json")).unwrap())
            .unwrap();
    let injector = Injector::try_new(Arc::new(WebhookConfig::default())).unwrap();
    let out = injector
        .review(&serde_json::to_vec(&review).unwrap())
        .await
        .unwrap();
    let resp: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
    let denial = resp["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .to_string();

    let pod = serde_json::to_string(&review["request"]["object"]).unwrap();
    let out = lint(&["-"], &pod);
    assert_eq!(out.status.code(), Some(1));
    let line = String::from_utf8(out.stdout).unwrap();
    // `<stdin>:Pod#1:ANNOTATION: MESSAGE` vs `annotation ANNOTATION: MESSAGE`.
    let (_, rest) = line.trim_end().split_once("Pod#1:").unwrap();
    assert_eq!(format!("annotation {rest}"), denial);
}
