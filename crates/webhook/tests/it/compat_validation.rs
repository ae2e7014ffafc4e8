//! vault-k8s's own annotation validation tests (tests/compat/validation-cases.yaml,
//! 239 cases transcribed from hashicorp/vault-k8s), run through the code
//! `mutate` and the webhook run: `admission::mutate_pod`, offline.
//!
//! vault-k8s's tests call `Init`/`New` on a pod already chosen for injection,
//! so the harness adds `agent-inject: "true"` where a case leaves it out
//! (except the handler and ShouldInject cases, which test exactly that), a
//! neutral secret where a case names none (vault-k8s injects an agent with
//! nothing to render; we refuse a pod that asks for nothing), and gives the
//! operator config a default role (vault-k8s's `Init`/`New` do not check the
//! role; `Validate`'s "no Vault role" case sets `role: ""`, which our parser
//! refuses). The operator's address and auth path are the vault-k8s
//! injector's of the case.
//!
//! At least 95% must agree; every other case is listed in [`DENIED`] with
//! the security reason and the section of docs/compat.md that explains it,
//! and a listed case that starts to agree fails the test too, so the list
//! stays true.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use vault_injector::admission::{self, Volumes};
use vault_injector::gate::Gate;
use vault_injector_core::audit::AdmissionAudit;
use vault_injector_core::config::WebhookConfig;

const P: &str = "vault.hashicorp.com/";

/// Cases vault-k8s accepts and we deny on purpose: (id, why, docs/compat.md
/// section).
const DENIED: &[(&str, &str, &str)] = &[
    ("172", "agent-configmap replaces the agent's whole config", "#security-denials"),
    ("228", "agent-configmap replaces the agent's whole config", "#security-denials"),
    ("235", "agent-configmap replaces the agent's whole config", "#security-denials"),
    ("236", "agent-configmap replaces the agent's whole config", "#security-denials"),
    ("224", "agent-json-patch rewrites the agent container", "#security-denials"),
    ("225", "agent-init-json-patch rewrites the agent container", "#security-denials"),
    ("173", "service moves the agent (and the pod's token) to another Vault outside the operator's allowlist", "#security-denials"),
    ("116", "agent-inject-template-file: a template the cluster policy cannot check", "#security-denials"),
    ("118", "agent-inject-template-file: a template the cluster policy cannot check", "#security-denials"),
];

fn data() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/compat/validation-cases.yaml"
    );
    let text = std::fs::read_to_string(path).expect("tests/compat/validation-cases.yaml");
    serde_yaml::from_str(&text).expect("validation-cases.yaml parses")
}

fn container(v: &Value) -> Value {
    match v {
        Value::String(name) => json!({"name": name, "image": "app"}),
        other => other.clone(),
    }
}

/// The vault-k8s test pod with the case's changes.
fn pod(case: &Value, defaults: &Value) -> (Pod, String) {
    let base = &defaults["default_test_pod"];
    let mut first = json!({
        "name": base["name"].as_str().unwrap_or("foo"),
        "image": "app",
        "volumeMounts": base["containers"][0]["volumeMounts"],
        "securityContext": base["containers"][0]["securityContext"],
    });
    if let Some(name) = base["containers"][0]["name"].as_str() {
        first["name"] = json!(name);
    }
    let mut containers = vec![first];
    let mut inits: Option<Vec<Value>> = None;
    let mut namespace = String::new();
    if let Some(over) = case["pod"].as_object() {
        for (k, v) in over {
            match k.as_str() {
                "containers[0].securityContext" => {
                    containers[0]["securityContext"] = v.clone();
                }
                "containers[0].volumeMounts" => containers[0]["volumeMounts"] = v.clone(),
                "containers[0]" => containers[0] = container(v),
                "containers" => {
                    containers = v.as_array().unwrap().iter().map(container).collect();
                }
                "initContainers" => {
                    inits = Some(v.as_array().unwrap().iter().map(container).collect());
                }
                "namespace" => namespace = v.as_str().unwrap_or_default().to_string(),
                other => panic!("case {}: unknown pod field {other}", case["id"]),
            }
        }
    }
    for c in &mut containers {
        if c["securityContext"].is_null() {
            c.as_object_mut().unwrap().remove("securityContext");
        }
    }
    let mut annotations: BTreeMap<String, String> = case["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let test = case["test"].as_str().unwrap_or_default();
    if !matches!(test, "TestHandlerHandle" | "TestShouldInject") {
        annotations
            .entry(format!("{P}agent-inject"))
            .or_insert_with(|| "true".into());
    }
    let names_a_secret = annotations.iter().any(|(k, v)| {
        k.strip_prefix(P).is_some_and(|s| {
            s.strip_prefix("agent-inject-secret-")
                .or_else(|| s.strip_prefix("agent-inject-template-"))
                .is_some_and(|n| !n.is_empty())
        }) && !v.trim().is_empty()
    });
    if !names_a_secret {
        annotations.insert(
            format!("{P}agent-inject-secret-compat-baseline"),
            "secret/data/baseline".into(),
        );
    }
    let mut spec = json!({"containers": containers});
    if let Some(i) = inits {
        spec["initContainers"] = json!(i);
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "foo", "annotations": annotations},
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("case {}: pod: {e}", case["id"]));
    (pod, namespace)
}

fn config(case: &Value, defaults: &Value) -> WebhookConfig {
    let ic = &case["injector_config"];
    let get = |k: &str| {
        ic[k]
            .as_str()
            .or_else(|| defaults["default_injector_config"][k].as_str())
            .map(str::to_string)
    };
    let mut cfg = WebhookConfig::default();
    if let Some(a) = get("vault_address").or_else(|| get("address")) {
        cfg.vault.address = a;
    }
    if let Some(p) = get("auth_path") {
        cfg.auth.path = p;
    }
    cfg.auth.role = Some("compat-default".into());
    cfg
}

#[test]
fn vault_k8s_validation_cases_agree_or_are_documented_security_denials() {
    let all = data();
    let defaults = &all["about"];
    let cases = all["cases"].as_array().expect("cases");
    assert!(cases.len() >= 239, "{} cases", cases.len());
    let mut agree = 0usize;
    let mut unexpected = Vec::new();
    for case in cases {
        let id = case["id"].as_str().map(str::to_string).unwrap_or_else(|| {
            // YAML reads ids like 008 as numbers.
            format!("{:03}", case["id"].as_u64().expect("id"))
        });
        let want_ok = case["outcome"] == "accepted";
        let (pod, namespace) = pod(case, defaults);
        let cfg = config(case, defaults);
        let gate = Gate::from_config(&cfg).unwrap();
        let mut audit = AdmissionAudit {
            namespace: if namespace.is_empty() {
                "test".into()
            } else {
                namespace
            },
            ..Default::default()
        };
        let got = futures::executor::block_on(admission::mutate_pod(
            &pod,
            &cfg,
            &gate,
            Volumes::Offline,
            &mut audit,
        ));
        if let (Some(should), Ok(m)) = (case["expect"]["should_inject"].as_bool(), &got) {
            assert_eq!(m.patch.is_some(), should, "case {id}: should_inject");
        }
        let listed = DENIED.iter().find(|(d, _, _)| *d == id);
        match (&got, want_ok, listed) {
            (Ok(_), true, None) | (Err(_), false, None) => agree += 1,
            (Err(e), true, Some((_, why, doc))) => {
                eprintln!("case {id}: denied on purpose ({why}, docs/compat.md{doc}): {e}");
            }
            (Ok(_), _, Some(_)) | (Err(_), false, Some(_)) => unexpected.push(format!(
                "case {id} ({}) is listed in DENIED but now agrees: remove it from the list",
                case["name"]
            )),
            (Ok(_), false, None) => unexpected.push(format!(
                "case {id} ({}): vault-k8s rejects {}, we accept",
                case["name"], case["annotations"]
            )),
            (Err(e), true, None) => unexpected.push(format!(
                "case {id} ({}): vault-k8s accepts {}, we deny: {e}",
                case["name"], case["annotations"]
            )),
        }
    }
    let pct = agree as f64 * 100.0 / cases.len() as f64;
    eprintln!(
        "vault-k8s validation cases: {agree}/{} agree ({pct:.1}%), {} documented security denials",
        cases.len(),
        DENIED.len()
    );
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    assert!(pct >= 95.0, "{agree}/{} agree ({pct:.1}%)", cases.len());
}
