//! Table test: vault-k8s annotations, accepted or rejected the way vault-k8s
//! does (Go ParseBool, ParseInt, ParseQuantity, template and file rules), and
//! mapped to the same request our own annotations produce.

use std::collections::BTreeMap;

use vault_injector_core::annotations::Lifecycle;
use vault_injector_core::compat::vaultk8s::{self, VaultK8sExtras};

const P: &str = "vault.hashicorp.com/";

fn pod(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::from([
        (format!("{P}agent-inject"), "true".to_string()),
        (format!("{P}role"), "app".to_string()),
        (
            format!("{P}agent-inject-secret-db"),
            "secret/data/db".to_string(),
        ),
    ]);
    for (k, v) in extra {
        m.insert(format!("{P}{k}"), v.to_string());
    }
    m
}

/// (annotation suffix, value, None = accepted, Some(substring of the error),
/// Some("warn:" + substring of an admission warning) = accepted with that
/// warning, which names the annotation)
type Case = (&'static str, &'static str, Option<&'static str>);

const CASES: &[Case] = &[
    // Booleans: exactly Go's strconv.ParseBool.
    ("agent-inject", "true", None),
    ("agent-inject", "True", None),
    ("agent-inject", "TRUE", None),
    ("agent-inject", "t", None),
    ("agent-inject", "T", None),
    ("agent-inject", "1", None),
    ("agent-inject", "yes", Some("not a boolean")),
    ("agent-inject", "on", Some("not a boolean")),
    ("agent-inject", "tRuE", Some("not a boolean")),
    ("agent-inject", " true", Some("not a boolean")),
    // parseutil.ParseBool: "" is false (not injected), as in vault-k8s.
    ("agent-inject", "", None),
    ("agent-pre-populate", "false", None),
    ("agent-pre-populate", "F", None),
    ("agent-pre-populate", "0", None),
    ("agent-pre-populate", "no", Some("not a boolean")),
    ("agent-pre-populate-only", "true", None),
    ("agent-pre-populate-only", "FALSE", None),
    ("agent-pre-populate-only", "2", Some("not a boolean")),
    ("agent-init-first", "true", None),
    ("agent-init-first", "False", None),
    ("agent-init-first", "y", Some("not a boolean")),
    ("preserve-secret-case", "true", None),
    ("preserve-secret-case", "f", None),
    ("preserve-secret-case", "nope", Some("warn:not a boolean")),
    ("tls-skip-verify", "false", None),
    ("tls-skip-verify", "true", None),
    ("tls-skip-verify", "maybe", Some("not a boolean")),
    ("agent-revoke-on-shutdown", "true", None),
    ("agent-revoke-on-shutdown", "off", Some("not a boolean")),
    ("error-on-missing-key-db", "true", None),
    ("error-on-missing-key-db", "0", None),
    ("error-on-missing-key-db", "sure", Some("not a boolean")),
    ("error-on-missing-key-other", "true", Some("warn:there is no vault.hashicorp.com/agent-inject-secret-other")),
    ("preserve-secret-case-db", "true", None),
    ("preserve-secret-case-db", "x", Some("warn:not a boolean")),
    // Integers (run-as ids).
    ("agent-run-as-user", "1000", None),
    ("agent-run-as-user", "+1000", None),
    ("agent-run-as-user", "0", Some("warn:never runs as root")),
    ("agent-run-as-user", "-1", Some("not a valid id")),
    ("agent-run-as-user", "1000.0", Some("not a decimal integer")),
    ("agent-run-as-user", "abc", Some("not a decimal integer")),
    ("agent-run-as-user", "", Some("not a decimal integer")),
    ("agent-run-as-user", "99999999999999999999", Some("out of range")),
    ("agent-run-as-group", "3000", None),
    ("agent-run-as-group", "0x10", Some("not a decimal integer")),
    ("agent-run-as-group", "0", None),
    // Quantities.
    ("agent-limits-cpu", "500m", None),
    ("agent-limits-cpu", "1", None),
    ("agent-limits-cpu", "0.5", None),
    ("agent-limits-cpu", "1.5.5", Some("not a Kubernetes quantity")),
    ("agent-limits-cpu", "fast", Some("not a Kubernetes quantity")),
    ("agent-limits-mem", "128Mi", None),
    ("agent-limits-mem", "1Gi", None),
    ("agent-limits-mem", "1e9", None),
    ("agent-limits-mem", "128MB", Some("not a Kubernetes quantity")),
    ("agent-limits-mem", "128 Mi", Some("not a Kubernetes quantity")),
    ("agent-limits-ephemeral", "1Gi", None),
    ("agent-limits-gpu", "1", Some("warn:unknown resource")),
    ("agent-requests-cpu", "250m", None),
    ("agent-requests-cpu", "", Some("warn:operator's default")),
    ("agent-requests-mem", "64Mi", None),
    ("agent-requests-mem", "64mi", Some("not a Kubernetes quantity")),
    ("agent-requests-ephemeral", "100Mi", None),
    // Auth.
    ("auth-type", "kubernetes", None),
    ("auth-type", "jwt", None),
    ("auth-type", "approle", None),
    ("auth-type", "gcp", Some("not supported")),
    ("auth-type", "Kubernetes", Some("not supported")),
    ("auth-path", "auth/kubernetes", None),
    ("auth-path", "auth/k8s-prod", None),
    ("auth-path", "/", Some("must not be empty")),
    ("auth-config-role-id-file-path", "/etc/approle/role-id", None),
    ("role", "", Some("must not be empty")),
    ("role", "web", None),
    ("namespace", "team-a", None),
    // Default template.
    ("agent-inject-default-template", "map", None),
    ("agent-inject-default-template", "json", None),
    ("agent-inject-default-template", "yaml", Some("not a default template")),
    // Files and perms.
    ("agent-inject-file-db", "db.env", None),
    ("agent-inject-file-db", "conf/db.env", None),
    ("agent-inject-file-db", "/db.env", None),
    ("agent-inject-file-db", "../escape", Some("'..'")),
    ("agent-inject-file-db", "a/../../b", Some("'..'")),
    // Empty: the file is the secret's name, as in vault-k8s.
    ("agent-inject-file-db", "", None),
    ("agent-inject-file-db", "dir/", Some("directory")),
    ("agent-inject-file-other", "x", Some("warn:there is no vault.hashicorp.com/agent-inject-secret-other")),
    ("agent-inject-perms-db", "0440", None),
    ("agent-inject-perms-db", "0644", None),
    ("agent-inject-perms-db", "400", None),
    ("agent-inject-perms-db", "0999", Some("not an octal file mode")),
    ("agent-inject-perms-db", "rw-r--r--", Some("not an octal file mode")),
    ("agent-inject-perms-db", "04755", Some("above 0777")),
    ("agent-inject-command-db", "kill -HUP 1", None),
    ("agent-inject-command-zz", "true", Some("warn:there is no vault.hashicorp.com/agent-inject-secret-zz")),
    // Templates.
    ("agent-inject-template-db", "{{ with secret \"secret/data/db\" }}{{ .Data.data.password }}{{ end }}", None),
    ("agent-inject-template-db", "{{- with secret \"secret/data/db\" -}}{{ range $k, $v := .Data.data }}{{ $k }}={{ $v }}\n{{ end }}{{- end }}", None),
    ("agent-inject-template-db", "{{ with secret \"secret/data/db\" }}{{ .Data.data | toJSON }}{{ end }}", None),
    ("agent-inject-template-db", "{{ with secret \"secret/data/db\" }}{{ .Data.data.cert | base64Decode }}{{ end }}", None),
    ("agent-inject-template-db", "static text, no secret", None),
    // A template reads any paths, as in vault-k8s; each is policy-checked.
    ("agent-inject-template-db", "{{ with secret \"secret/data/other\" }}{{ .Data.data.x }}{{ end }}", None),
    ("agent-inject-template-db", "{{ with secret (printf \"secret/%s\" \"x\") }}{{ end }}", Some("computed path")),
    ("agent-inject-template-db", "{{ with secret \"secret/data/db\" }}", Some("unclosed")),
    ("agent-inject-template-db", "{{ with secret \"secret/data/db\" }}{{ .Data.x | sha256Hex }}{{ end }}", Some("`sha256Hex`")),
    ("agent-inject-template-db", "{{ with secret \"pki/issue/web\" \"common_name=x\" }}{{ .Data.certificate }}{{ end }}", None),
    ("agent-inject-template-db", "{{ with secret \"pki/issue/web\" \"common_name\" }}{{ end }}", Some("key=value")),
    ("agent-inject-template-db", "{{ template \"x\" }}", Some("`template`")),
    // A template-only secret.
    ("agent-inject-template-nope", "x", None),
    ("agent-inject-template-nope", "{{ with secret \"kv/other\" }}{{ .Data.x }}{{ end }}", None),
    ("agent-inject-template-nope", "", Some("warn:there is no vault.hashicorp.com/agent-inject-secret-nope")),
    ("agent-inject-template-file-db", "/vault/custom/db.tmpl", Some("cluster policy")),
    ("agent-template-left-delim-db", "[[", None),
    ("agent-template-left-delim-db", "[[[[[[[[[[[[[[[[[[", Some("more than 16 bytes")),
    ("agent-template-right-delim-db", "", None),
    ("agent-template-left-delim-zz", "[[", Some("warn:there is no")),
    ("agent-inject-file-nope", "x", Some("warn:there is no vault.hashicorp.com/agent-inject-secret-nope")),
    // Secrets.
    ("agent-inject-secret-", "secret/x", Some("warn:no secret name")),
    ("agent-inject-secret", "secret/x", Some("warn:not a vault-k8s annotation")),
    ("agent-inject-secret-empty", "", Some("warn:the Vault path is empty")),
    ("agent-inject-secret-db2", "database/creds/app", None),
    // Containers, volume path.
    ("agent-inject-containers", "app,worker", None),
    ("agent-inject-containers", " , ", Some("at least one container")),
    ("secret-volume-path", "/etc/secrets", None),
    ("secret-volume-path", "relative/path", Some("absolute path")),
    ("secret-volume-path", "/etc/../root", Some("absolute path")),
    ("secret-volume-path-db", "/x", None),
    ("secret-volume-path-db", "x", Some("absolute path")),
    // Operator-only: a pod cannot redirect the agent.
    // The address is judged by the operator's allowlist (policy gate), not here.
    ("service", "https://vault.other:8200", None),
    ("ca-cert", "/etc/ca.pem", Some("set by the operator")),
    ("tls-server-name", "evil", Some("set by the operator")),
    ("proxy-address", "http://proxy:3128", Some("set by the operator")),
    ("agent-image", "evil/agent:latest", Some("set by the operator")),
    ("agent-configmap", "my-config", Some("set by the operator")),
    ("agent-extra-secret", "s", None),
    ("agent-extra-secret", "Not_A_Name", Some("not a Kubernetes Secret name")),
    ("agent-json-patch", "[]", None),
    ("agent-json-patch", "null", None),
    ("agent-json-patch", "", None),
    ("agent-json-patch", "abc", Some("not a JSON patch")),
    ("agent-init-json-patch", "[{\"op\": \"replace\", \"path\": \"/image\", \"value\": \"evil\"}]", Some("may not patch the agent")),
    ("agent-configmap", "", None),
    ("agent-image", "", Some("set by the operator")),
    ("tls-secret", "vault-tls", Some("warn:operator's CA")),
    ("agent-inject-token", "false", None),
    ("agent-inject-token", "", None),
    // vault-k8s settings with a meaning here.
    ("agent-share-process-namespace", "true", None),
    ("agent-share-process-namespace", "", None),
    ("agent-share-process-namespace", "tRuE", Some("not a boolean")),
    ("auth-min-backoff", "5s", None),
    ("auth-min-backoff", "", None),
    ("auth-min-backoff", "x", Some("not a duration")),
    ("auth-max-backoff", "1m", None),
    ("auth-max-backoff", "0s", Some("above zero")),
    ("agent-run-as-same-user", "true", None),
    ("agent-run-as-same-user", "rooooooot", Some("not a boolean")),
    ("agent-revoke-grace", "-1", Some("non-negative")),
    ("agent-revoke-grace", "foobar", Some("non-negative")),
    ("agent-revoke-grace", "", Some("non-negative")),
    ("agent-set-security-context", "true", None),
    ("agent-set-security-context", "false", Some("warn:always runs with a restrictive securityContext")),
    ("agent-set-security-context", "secure", Some("not a boolean")),
    ("template-lease-renewal-threshold", "0.75", Some("warn:ignored")),
    ("template-lease-renewal-threshold", "one-third", Some("not a number")),
    ("template-max-connections-per-host", "", None),
    ("template-max-connections-per-host", "abc", Some("not a decimal integer")),
    ("agent-inject-default-template", "JSON", None),
    ("agent-inject-default-template", "", Some("not a default template")),
    ("agent-request-namespace", "", Some("must not be empty")),
    ("namespace", "", None),
    ("agent-inject-token", "true", Some("not supported")),
    // Harmless Vault Agent tuning: accepted, ignored.
    ("agent-cache-enable", "true", Some("warn:does not have; ignored")),
    ("agent-cache-enable", "", None),
    ("agent-cache-enable", "tRuE", Some("not a boolean")),
    ("log-level", "debug", Some("warn:does not have; ignored")),
    ("agent-revoke-grace", "5", None),
    // Unknown.
    ("agent-injekt", "true", Some("warn:not a vault-k8s annotation")),
    ("agent-inject-TEMPLATE-db", "x", Some("warn:not a vault-k8s annotation")),
];

#[test]
fn table_of_vault_k8s_cases() {
    assert!(CASES.len() >= 100, "only {} cases", CASES.len());
    let mut failures = Vec::new();
    for (suffix, value, want) in CASES {
        let ann = pod(&[(suffix, value)]);
        let got = vaultk8s::from_annotations(&ann);
        match (got, want) {
            (Ok(Some((_, extras))), Some(w)) if w.starts_with("warn:") => {
                let sub = &w["warn:".len()..];
                let key = format!("{P}{suffix}");
                if !extras
                    .warnings
                    .iter()
                    .any(|m| m.contains(sub) && m.starts_with(&key))
                {
                    failures.push(format!(
                        "{suffix}={value:?}: no warning naming {key} with {sub:?}: {:?}",
                        extras.warnings
                    ));
                }
            }
            (Ok(Some((_, extras))), None) if !extras.warnings.is_empty() => failures.push(format!(
                "{suffix}={value:?}: unexpected warnings {:?}",
                extras.warnings
            )),
            (Ok(Some(_)), None) => {}
            (Err(e), Some(sub)) => {
                let msg = e.to_string();
                let key = format!("{P}{suffix}");
                if !msg.contains(sub) {
                    failures.push(format!("{suffix}={value:?}: {msg:?} lacks {sub:?}"));
                } else if !msg.contains(&key)
                    && !suffix.starts_with("agent-inject-secret-")
                    && !msg.contains("agent-inject-default-template")
                {
                    failures.push(format!("{suffix}={value:?}: {msg:?} does not name {key}"));
                }
            }
            (Ok(_), Some(sub)) => failures.push(format!(
                "{suffix}={value:?}: accepted, wanted error {sub:?}"
            )),
            (Err(e), None) => failures.push(format!("{suffix}={value:?}: rejected: {e}")),
            (Ok(None), None) => {
                failures.push(format!("{suffix}={value:?}: not recognised as vault-k8s"))
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn no_agent_inject_means_not_this_dialect() {
    let ann = BTreeMap::from([(format!("{P}role"), "x".to_string())]);
    assert!(vaultk8s::from_annotations(&ann).unwrap().is_none());
}

#[test]
fn mapping_follows_vault_k8s_defaults() {
    let (req, extras) = vaultk8s::from_annotations(&pod(&[
        ("agent-inject-secret-MyCert", "pki/cert"),
        ("agent-inject-perms-db", "0440"),
        ("agent-inject-command-db", "pkill -HUP app"),
        ("agent-limits-mem", "128Mi"),
        ("agent-requests-cpu", "50m"),
        ("namespace", "team-a"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(req.role.as_deref(), Some("app"));
    assert_eq!(req.agent, Lifecycle::Both);
    let names: Vec<_> = req
        .secrets
        .iter()
        .map(|s| (s.name.as_str(), s.file.as_str(), s.mode))
        .collect();
    // Lowercased by default, files named after the secret, 0644 like Vault Agent.
    assert_eq!(
        names,
        vec![("db", "db", 0o440), ("mycert", "mycert", 0o644)]
    );
    let db = &req.secrets[0];
    let tpl = db.template.as_deref().unwrap();
    assert!(
        tpl.contains("go_items"),
        "default map template translated: {tpl}"
    );
    assert_eq!(
        extras,
        VaultK8sExtras {
            vault_namespace: Some("team-a".into()),
            limits: BTreeMap::from([("memory".into(), "128Mi".into())]),
            requests: BTreeMap::from([("cpu".into(), "50m".into())]),
            commands: BTreeMap::from([("db".into(), "pkill -HUP app".into())]),
            ..Default::default()
        }
    );
}

#[test]
fn preserve_case_and_lifecycles() {
    let (req, _) = vaultk8s::from_annotations(&pod(&[
        ("agent-inject-secret-MyCert", "pki/cert"),
        ("preserve-secret-case-MyCert", "true"),
        ("agent-pre-populate-only", "true"),
    ]))
    .unwrap()
    .unwrap();
    assert!(req
        .secrets
        .iter()
        .any(|s| s.name == "MyCert" && s.file == "MyCert"));
    assert_eq!(req.agent, Lifecycle::InitOnly);

    let (req, _) = vaultk8s::from_annotations(&pod(&[("agent-pre-populate", "false")]))
        .unwrap()
        .unwrap();
    assert_eq!(req.agent, Lifecycle::SidecarOnly);

    let (req, _) = vaultk8s::from_annotations(&pod(&[("agent-inject", "false")]))
        .unwrap()
        .unwrap();
    assert!(!req.wants_injection());
}

#[test]
fn all_problems_reported_at_once() {
    let err = vaultk8s::from_annotations(&pod(&[
        ("agent-init-first", "yes"),
        ("agent-inject-perms-db", "999"),
        ("ca-cert", "/etc/ca.pem"),
    ]))
    .unwrap_err();
    assert_eq!(err.problems.len(), 3, "{err}");
}
