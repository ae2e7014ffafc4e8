//! Property tests over the annotation parser, the plan, the patch and the
//! admission core (issue 10): pods with random annotation sets in both
//! dialects (valid and invalid values), random containers, init containers,
//! volumes and mounts. For every pod the core answers without panicking;
//! for every allowed pod the patch applies, the result is structurally a
//! valid pod, feeding it back (after the API server's ServiceAccount step)
//! changes nothing, and a sample passes the real `kubernetes-validate`.
//!
//! Case counts are bounded (`CASES`) so `make test` stays fast; raise
//! `PROPTEST_CASES` for a longer local run.

use crate::support;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use vault_injector::admission::{mutate_pod, Injector, Volumes};
use vault_injector_core::audit::AdmissionAudit;
use vault_injector_core::config::WebhookConfig;

const CASES: u32 = 256;
/// Allowed pods handed to `kubernetes-validate` (one run for all).
const VALIDATE_SAMPLE: usize = 32;
const SA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn config() -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(CASES),
        // Failures are reported with the shrunk input; nothing is written
        // next to the sources.
        failure_persistence: None,
        ..Config::default()
    }
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z][a-z0-9-]{0,6}[a-z0-9]",
        1 => Just("app".to_string()),
        1 => Just("vault-injector-agent".to_string()),
    ]
}

/// Any text, weighted towards what the parsers treat specially.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("injected".to_string()),
        Just("secret/data/db".to_string()),
        Just("secret/data/db#password".to_string()),
        Just("kv/api#token#2".to_string()),
        Just("init-only".to_string()),
        Just("sidecar-only".to_string()),
        Just("both".to_string()),
        Just("env".to_string()),
        Just("json".to_string()),
        Just("yaml".to_string()),
        Just("0440".to_string()),
        Just("hup".to_string()),
        Just("approle".to_string()),
        Just("jwt".to_string()),
        Just("/etc/secrets".to_string()),
        Just("[\"/srv/app\",\"--serve\"]".to_string()),
        Just("{{ .password }}".to_string()),
        Just("{% raw %}x{% endraw %}".to_string()),
        Just("{{ with secret \"secret/data/db\" }}{{ .Data.data.password }}{{ end }}".to_string()),
        Just("{{ range $k, $v := .Data.data }}{{ $k }}={{ $v }}\n{{ end }}".to_string()),
        Just("250m".to_string()),
        Just("1000".to_string()),
        Just("app,worker".to_string()),
        "\\PC{0,24}",
        "[a-z0-9/#,.{}% -]{0,24}",
    ]
}

fn our_annotation(containers: Vec<String>) -> impl Strategy<Value = (String, String)> {
    let suffix = prop_oneof![
        Just("role".to_string()),
        Just("auth-type".to_string()),
        Just("auth-path".to_string()),
        Just("agent".to_string()),
        Just("containers".to_string()),
        Just("reload".to_string()),
        Just("status".to_string()),
        Just("containers".to_string()),
        "secret-[a-z]{1,3}",
        "format-[a-z]{1,3}",
        "key-[a-z]{1,3}",
        "template-[a-z]{1,3}",
        "file-[a-z]{1,3}",
        "mode-[a-z]{1,3}",
        "env-[A-Z_]{1,4}",
        "volume-[a-z]{1,3}",
        proptest::sample::select(containers).prop_map(|c| format!("entrypoint-{c}")),
    ];
    (suffix, text()).prop_map(|(s, v)| (format!("vault-injector.io/{s}"), v))
}

fn vault_k8s_annotation() -> impl Strategy<Value = (String, String)> {
    let suffix = prop_oneof![
        Just("role".to_string()),
        Just("auth-type".to_string()),
        Just("auth-path".to_string()),
        Just("namespace".to_string()),
        Just("agent-pre-populate".to_string()),
        Just("agent-pre-populate-only".to_string()),
        Just("agent-init-first".to_string()),
        Just("agent-inject-status".to_string()),
        Just("secret-volume-path".to_string()),
        Just("agent-run-as-user".to_string()),
        Just("agent-limits-cpu".to_string()),
        Just("agent-requests-mem".to_string()),
        Just("preserve-secret-case".to_string()),
        "agent-inject-secret-[a-z]{1,3}",
        "agent-inject-template-[a-z]{1,3}",
        "agent-inject-file-[a-z]{1,3}",
        "agent-inject-perms-[a-z]{1,3}",
        "agent-inject-command-[a-z]{1,3}",
        "error-on-missing-key-[a-z]{1,3}",
    ];
    (suffix, text()).prop_map(|(s, v)| (format!("vault.hashicorp.com/{s}"), v))
}

/// (name, is init, command, env (name, value)).
type ContainerShape = (String, bool, Option<Vec<String>>, Vec<(String, String)>);

#[derive(Debug, Clone)]
struct Shape {
    containers: Vec<ContainerShape>,
    volumes: Vec<String>,
    mounts: Vec<(usize, usize, String)>,
    automount: Option<bool>,
}

fn shape() -> impl Strategy<Value = Shape> {
    let container = (
        name(),
        prop::bool::weighted(0.3),
        prop::option::weighted(0.8, prop::collection::vec("/[a-z]{1,5}", 1..3)),
        prop::collection::vec(
            (
                "[A-Z]{1,4}",
                prop_oneof![
                    Just("plain".to_string()),
                    Just("vault:secret/data/api#key".to_string()),
                    "vault:[a-z/#]{0,12}",
                ],
            ),
            0..2,
        ),
    );
    (
        prop::collection::vec(container, 1..4),
        prop::collection::vec(name(), 0..3),
        prop::collection::vec(
            (
                0usize..4,
                0usize..3,
                prop_oneof![
                    Just("/data".to_string()),
                    Just("/vault/secrets".to_string()),
                    Just("/vault/bin".to_string()),
                    "/[a-z]{1,4}",
                ],
            ),
            0..4,
        ),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(containers, volumes, mounts, automount)| Shape {
            containers,
            volumes,
            mounts,
            automount,
        })
}

/// A structurally valid pod (unique names, mounts that name its volumes) so
/// that whatever is wrong with the output is the webhook's doing.
fn build_pod(shape: &Shape, annotations: BTreeMap<String, String>) -> Value {
    let mut seen = BTreeSet::new();
    let mut containers = Vec::new();
    let mut inits = Vec::new();
    let volumes: Vec<String> = shape
        .volumes
        .iter()
        .filter(|v| seen.insert((*v).clone()))
        .cloned()
        .collect();
    let mut seen = BTreeSet::new();
    for (i, (name, init, command, env)) in shape.containers.iter().enumerate() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let mut c = json!({"name": name, "image": "busybox:1.36"});
        if let Some(cmd) = command {
            c["command"] = json!(cmd);
        }
        if !env.is_empty() {
            let mut names = BTreeSet::new();
            c["env"] = env
                .iter()
                .filter(|(n, _)| names.insert(n.clone()))
                .map(|(n, v)| json!({"name": n, "value": v}))
                .collect();
        }
        let mut paths = BTreeSet::new();
        let mounts: Vec<Value> = shape
            .mounts
            .iter()
            .filter(|(ci, vi, _)| *ci == i && *vi < volumes.len())
            .filter(|(_, _, p)| paths.insert(p.clone()))
            .map(|(_, vi, p)| json!({"name": volumes[*vi], "mountPath": p}))
            .collect();
        if !mounts.is_empty() {
            c["volumeMounts"] = json!(mounts);
        }
        if *init {
            inits.push(c);
        } else {
            containers.push(c);
        }
    }
    if containers.is_empty() {
        containers.push(json!({"name": "main", "image": "busybox:1.36", "command": ["/main"]}));
    }
    let mut spec = json!({"containers": containers});
    if !inits.is_empty() {
        spec["initContainers"] = json!(inits);
    }
    if !volumes.is_empty() {
        spec["volumes"] = volumes
            .iter()
            .map(|v| json!({"name": v, "emptyDir": {}}))
            .collect();
    }
    if let Some(a) = shape.automount {
        spec["automountServiceAccountToken"] = json!(a);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "prop", "namespace": "shop", "annotations": annotations},
        "spec": spec,
    })
}

fn pod_strategy() -> impl Strategy<Value = Value> {
    shape().prop_flat_map(|shape| {
        let names: Vec<String> = shape.containers.iter().map(|c| c.0.clone()).collect();
        // A valid core plus a few random annotations, so that both allowed
        // and denied pods are common.
        let core = prop_oneof![
            Just(vec![("secret-db", "secret/data/db")]),
            Just(vec![("env-DB_PASSWORD", "secret/data/db#password")]),
            Just(vec![
                ("secret-db", "secret/data/db"),
                ("env-API", "kv/api#key")
            ]),
            Just(vec![]),
        ];
        let ours =
            (core, prop::collection::vec(our_annotation(names), 0..4)).prop_map(|(core, extra)| {
                let mut m = BTreeMap::from([
                    ("vault-injector.io/inject".to_string(), "true".to_string()),
                    ("vault-injector.io/role".to_string(), "web".to_string()),
                ]);
                for (k, v) in core {
                    m.insert(format!("vault-injector.io/{k}"), v.to_string());
                }
                m.extend(extra);
                m
            });
        let theirs = prop::collection::vec(vault_k8s_annotation(), 0..4).prop_map(|extra| {
            let mut m = BTreeMap::from([
                (
                    "vault.hashicorp.com/agent-inject".to_string(),
                    "true".to_string(),
                ),
                ("vault.hashicorp.com/role".to_string(), "web".to_string()),
                (
                    "vault.hashicorp.com/agent-inject-secret-db".to_string(),
                    "secret/data/db".to_string(),
                ),
            ]);
            m.extend(extra);
            m
        });
        let either = prop_oneof![3 => ours, 2 => theirs];
        (Just(shape), either).prop_map(|(s, a)| build_pod(&s, a))
    })
}

/// The ServiceAccount admission step (see tests/reinvocation.rs).
fn service_account_step(pod: &mut Value) {
    let spec = pod["spec"].as_object_mut().unwrap();
    if spec.get("automountServiceAccountToken") == Some(&Value::Bool(false)) {
        return;
    }
    let vols = spec
        .entry("volumes")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .unwrap();
    vols.push(
        json!({"name": "kube-api-access-q8z2m", "projected": {"sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}),
    );
    for list in ["initContainers", "containers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let mounts = c
                .as_object_mut()
                .unwrap()
                .entry("volumeMounts")
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .unwrap();
            if !mounts.iter().any(|m| m["mountPath"] == SA_PATH) {
                mounts.push(
                    json!({"name": "kube-api-access-q8z2m", "mountPath": SA_PATH,
                                   "readOnly": true}),
                );
            }
        }
    }
}

fn structural_problems(pod: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let vols: Vec<&str> = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v["name"].as_str().unwrap_or(""))
        .collect();
    let unique: BTreeSet<&str> = vols.iter().copied().collect();
    if unique.len() != vols.len() {
        problems.push(format!("duplicate volume names: {vols:?}"));
    }
    let mut names = BTreeSet::new();
    for list in ["initContainers", "containers"] {
        for c in pod["spec"][list].as_array().into_iter().flatten() {
            let n = c["name"].as_str().unwrap_or("");
            if !names.insert(n) {
                problems.push(format!("duplicate container name {n:?}"));
            }
            let mut paths = BTreeSet::new();
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                let v = m["name"].as_str().unwrap_or("");
                if !unique.contains(v) {
                    problems.push(format!("container {n:?} mounts missing volume {v:?}"));
                }
                if !paths.insert(m["mountPath"].as_str().unwrap_or("")) {
                    problems.push(format!("container {n:?} mounts {} twice", m["mountPath"]));
                }
            }
            let mut env = BTreeSet::new();
            for e in c["env"].as_array().into_iter().flatten() {
                if !env.insert(e["name"].as_str().unwrap_or("")) {
                    problems.push(format!("container {n:?} sets env {} twice", e["name"]));
                }
            }
        }
    }
    problems
}

struct Core {
    injector: Injector,
    rt: tokio::runtime::Runtime,
}

impl Core {
    fn new(cfg: WebhookConfig) -> Self {
        Core {
            injector: Injector::try_new(Arc::new(cfg)).unwrap(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    /// The webhook's answer as (allowed, patched pod). Pods naming volume
    /// profiles go through the core offline (profiles live in Vault, and
    /// these tests use no network); all others through the whole review.
    fn admit(&self, pod: &Value) -> (bool, Option<Value>) {
        let wants_profiles = pod["metadata"]["annotations"]
            .as_object()
            .is_some_and(|a| a.keys().any(|k| k.starts_with("vault-injector.io/volume-")));
        if wants_profiles {
            let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
            let mut audit = AdmissionAudit::default();
            let m = self.rt.block_on(mutate_pod(
                &typed,
                self.injector.config(),
                self.injector.gate(),
                Volumes::Offline,
                &mut audit,
            ));
            return match m {
                Err(_) => (false, None),
                Ok(m) => (
                    true,
                    m.patch.map(|p| {
                        let mut doc = pod.clone();
                        json_patch::patch(&mut doc, &p.to_json_patch())
                            .unwrap_or_else(|e| panic!("patch does not apply: {e}"));
                        doc
                    }),
                ),
            };
        }
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "0d9c7f0e-1111-4222-8333-444455556666",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop",
                "operation": "CREATE",
                "userInfo": {"username": "alice"},
                "object": pod,
            }
        });
        let out = self
            .rt
            .block_on(self.injector.review(&serde_json::to_vec(&review).unwrap()))
            .expect("a valid review");
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        let r = &v["response"];
        if r["allowed"] != true {
            let msg = r["status"]["message"].as_str().unwrap_or("");
            assert!(!msg.is_empty(), "a denial without a message");
            return (false, None);
        }
        let patched = r.get("patch").map(|p| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(p.as_str().unwrap())
                .unwrap();
            let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
            let mut doc = pod.clone();
            json_patch::patch(&mut doc, &patch)
                .unwrap_or_else(|e| panic!("patch does not apply: {e}\n{patch:?}"));
            doc
        });
        (true, patched)
    }
}

fn validate_sample(sample: &[Value]) {
    if sample.is_empty() {
        return;
    }
    let Some(tool) = support::require_tool("kubernetes-validate") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = sample
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let f = dir.path().join(format!("pod{i}.json"));
            std::fs::write(&f, serde_json::to_vec_pretty(p).unwrap()).unwrap();
            f
        })
        .collect();
    let out = Command::new(tool)
        .args(["--strict", "--quiet", "-k", "1.33.0"])
        .args(&files)
        .output()
        .expect("run kubernetes-validate");
    assert!(
        out.status.success(),
        "kubernetes-validate rejected a patched pod:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_property(cfg: WebhookConfig) {
    let core = Core::new(cfg);
    let sample = RefCell::new(Vec::new());
    let allowed = RefCell::new(0usize);
    let mut runner = TestRunner::new(config());
    runner
        .run(&pod_strategy(), |pod| {
            let (ok, patched) = core.admit(&pod);
            let Some(patched) = patched.filter(|_| ok) else {
                return Ok(());
            };
            *allowed.borrow_mut() += 1;
            let problems = structural_problems(&patched);
            prop_assert!(problems.is_empty(), "{problems:?}\n{patched:#}");
            // Seen again as is: nothing to do.
            let (ok, again) = core.admit(&patched);
            prop_assert!(ok, "the patched pod is denied on reinvocation");
            prop_assert!(again.is_none(), "reinvocation changed {patched:#}");
            // Seen again after the ServiceAccount step: still nothing.
            let mut sa = patched.clone();
            service_account_step(&mut sa);
            let (ok, again) = core.admit(&sa);
            prop_assert!(ok, "denied after the ServiceAccount step");
            prop_assert!(again.is_none(), "reinvocation after SA changed {sa:#}");
            let mut s = sample.borrow_mut();
            if s.len() < VALIDATE_SAMPLE {
                s.push(patched);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{} of {} generated pods allowed and patched",
        allowed.borrow(),
        config().cases
    );
    // A generator that never gets past the parser proves nothing.
    assert!(
        *allowed.borrow() >= 8,
        "only {} pods allowed",
        allowed.borrow()
    );
    validate_sample(&sample.borrow());
}

#[test]
fn random_pods_native_layout() {
    run_property(WebhookConfig::default());
}

#[test]
fn random_pods_classic_layout() {
    let mut cfg = WebhookConfig::default();
    cfg.agent.native_sidecar = false;
    run_property(cfg);
}

/// The parser alone, on arbitrary keys and values: never a panic, and a
/// denial always names an annotation or the pod.
#[test]
fn arbitrary_annotations_never_panic() {
    let core = Core::new(WebhookConfig::default());
    let mut runner = TestRunner::new(config());
    let anns = prop::collection::btree_map(
        prop_oneof![
            "vault-injector\\.io/\\PC{0,16}",
            "vault\\.hashicorp\\.com/\\PC{0,24}",
        ],
        "\\PC{0,48}",
        0..10,
    );
    runner
        .run(&(anns, any::<bool>()), |(mut a, vk)| {
            if vk {
                a.insert("vault.hashicorp.com/agent-inject".into(), "true".into());
            } else {
                a.insert("vault-injector.io/inject".into(), "true".into());
            }
            a.remove(if vk {
                "vault-injector.io/inject"
            } else {
                "vault.hashicorp.com/agent-inject"
            });
            let pod = json!({"metadata": {"name": "p", "annotations": a},
                "spec": {"containers": [{"name": "app", "image": "x", "command": ["/app"]}]}});
            let (ok, patched) = core.admit(&pod);
            if let Some(p) = patched.filter(|_| ok) {
                let problems = structural_problems(&p);
                prop_assert!(problems.is_empty(), "{problems:?}");
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
