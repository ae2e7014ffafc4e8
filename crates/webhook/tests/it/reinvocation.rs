//! Reinvocation as a real API server does it (issue 10, item 7): the
//! webhook's output goes through the ServiceAccount admission step (a
//! `kube-api-access-*` volume mounted into every container, the injected
//! init containers included), possibly through another webhook that adds
//! containers, and back through the webhook. The result must be a valid pod
//! (every mount names a volume of the pod, strict `kubernetes-validate`), the
//! same pod when nothing was added, and a pod whose added containers got
//! what the first injection gave its targets when something was; a further
//! pass on an unchanged pod is a no-op. `mutate` run on its own output
//! (where the bug reproduced offline) is held to the same.

use crate::support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};
use vault_injector::admission::Injector;
use vault_injector_core::config::WebhookConfig;

const SECRETS: &str = "vault-injector-secrets";
const SA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

struct Webhook(Injector);

enum Answer {
    Denied(String),
    /// The pod after the patch, and whether there was one.
    Allowed(Value, bool),
}

impl Webhook {
    fn new(cfg: WebhookConfig) -> Self {
        Webhook(Injector::try_new(Arc::new(cfg)).unwrap())
    }

    async fn admit(&self, pod: &Value) -> Answer {
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "5b1e2c6d-0000-4000-8000-000000000001",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": pod["metadata"]["namespace"].as_str().unwrap_or("shop"),
                "operation": "CREATE",
                "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                "object": pod,
            }
        });
        let out = self
            .0
            .review(&serde_json::to_vec(&review).unwrap())
            .await
            .expect("a valid review");
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        let r = &v["response"];
        if r["allowed"] != true {
            return Answer::Denied(r["status"]["message"].as_str().unwrap_or("").into());
        }
        let mut doc = pod.clone();
        let Some(p) = r.get("patch") else {
            return Answer::Allowed(doc, false);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p.as_str().unwrap())
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut doc, &patch)
            .unwrap_or_else(|e| panic!("patch does not apply: {e}\n{patch:?}\n{doc:#}"));
        Answer::Allowed(doc, true)
    }

    async fn allowed(&self, pod: &Value, what: &str) -> (Value, bool) {
        match self.admit(pod).await {
            Answer::Allowed(p, changed) => (p, changed),
            Answer::Denied(m) => panic!("{what}: denied: {m}\n{pod:#}"),
        }
    }
}

/// What the API server's ServiceAccount admission does to a pod: a projected
/// token volume, mounted read-only into every container and init container
/// that has no mount at the token path yet. It runs again on reinvocation,
/// which is how it reaches the init containers the webhook added.
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
    let name = vols
        .iter()
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with("kube-api-access-"))
        .map(str::to_string)
        .unwrap_or_else(|| {
            vols.push(json!({"name": "kube-api-access-x7k2p", "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt",
                               "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]}}));
            "kube-api-access-x7k2p".to_string()
        });
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
                mounts.push(json!({"name": name, "mountPath": SA_PATH, "readOnly": true}));
            }
        }
    }
}

/// Another webhook that runs after ours: a sidecar and an init container
/// appended, neither with a command.
fn late_webhook(pod: &mut Value) {
    let spec = pod["spec"].as_object_mut().unwrap();
    spec.entry("containers")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "mesh-proxy", "image": "proxy:1"}));
    spec.entry("initContainers")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "mesh-init", "image": "proxy:1"}));
}

fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|l| pod["spec"][*l].as_array().into_iter().flatten())
        .collect()
}

fn find<'a>(pod: &'a Value, name: &str) -> &'a Value {
    containers(pod)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn mount_names(c: &Value) -> BTreeSet<String> {
    c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

fn volume_names(pod: &Value) -> BTreeSet<String> {
    pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

/// What the API server checks beyond the schema: every mount names a volume
/// of the pod, names are unique, one mount per path in a container.
fn check_structure(pod: &Value, what: &str) {
    let vols = volume_names(pod);
    assert_eq!(
        vols.len(),
        pod["spec"]["volumes"].as_array().map_or(0, Vec::len),
        "{what}: duplicate volume names\n{pod:#}"
    );
    let mut names = BTreeSet::new();
    for c in containers(pod) {
        assert!(
            names.insert(c["name"].as_str().unwrap()),
            "{what}: duplicate container {}",
            c["name"]
        );
        let mut paths = BTreeSet::new();
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let n = m["name"].as_str().unwrap();
            assert!(
                vols.contains(n),
                "{what}: container {} mounts {n:?}, which is not a volume of the pod\n{pod:#}",
                c["name"]
            );
            assert!(
                paths.insert(m["mountPath"].as_str().unwrap()),
                "{what}: container {} mounts {} twice",
                c["name"],
                m["mountPath"]
            );
        }
    }
}

/// Strict schema validation of many pods in one run of the real tool.
fn validate_all(pods: &[(String, Value)]) {
    let Some(tool) = support::require_tool("kubernetes-validate") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, (_, pod)) in pods.iter().enumerate() {
        let mut pod = pod.clone();
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        if pod["metadata"].get("name").is_none() {
            pod["metadata"]["name"] = json!("pod-abcde");
        }
        let f = dir.path().join(format!("pod{i}.json"));
        std::fs::write(&f, serde_json::to_vec_pretty(&pod).unwrap()).unwrap();
        files.push(f);
    }
    let out = Command::new(&tool)
        .args(["--strict", "--quiet", "-k", "1.33.0"])
        .args(&files)
        .output()
        .expect("run kubernetes-validate");
    assert!(
        out.status.success(),
        "kubernetes-validate rejected some of {:?}:\n{}{}",
        pods.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The whole API-server sequence for one pod; returns the final pods to
/// validate. `late` adds the other webhook's containers between passes.
async fn reinvoke(hook: &Webhook, name: &str, pod: &Value, out: &mut Vec<(String, Value)>) {
    let (first, changed) = hook.allowed(pod, name).await;
    if !changed {
        return;
    }
    check_structure(&first, name);

    // Reinvocation after the ServiceAccount step only.
    let mut seen = first.clone();
    service_account_step(&mut seen);
    let (second, changed) = hook.allowed(&seen, &format!("{name}, reinvoked")).await;
    check_structure(&second, &format!("{name}, reinvoked"));
    assert!(
        !changed,
        "{name}: reinvocation changed a pod nothing was added to:\n{seen:#}\n->\n{second:#}"
    );

    // Reinvocation after another webhook added containers.
    let mut extended = first.clone();
    late_webhook(&mut extended);
    service_account_step(&mut extended);
    let (third, _) = hook.allowed(&extended, &format!("{name}, extended")).await;
    check_structure(&third, &format!("{name}, extended"));
    let app = containers(&first)
        .into_iter()
        .find(|c| !c["name"].as_str().unwrap().starts_with("vault-injector-"))
        .expect("an app container");
    let has_secrets = volume_names(&first).contains(SECRETS);
    for late in ["mesh-proxy", "mesh-init"] {
        let got = mount_names(find(&third, late));
        // What an injected container of the first pass has of ours, the
        // added one has too (the secrets mount only where there is a
        // secrets volume), and it never gains what no volume backs.
        let ann = &first["metadata"]["annotations"];
        let named = ann.get("vault-injector.io/containers").is_some()
            || ann
                .get("vault.hashicorp.com/agent-inject-containers")
                .is_some();
        let sidecar_only = ann["vault-injector.io/agent"] == "sidecar-only";
        let target = !(named || (late == "mesh-init" && sidecar_only));
        if has_secrets && mount_names(app).contains(SECRETS) && target {
            assert!(
                got.contains(SECRETS),
                "{name}: {late} lacks the secrets\n{third:#}"
            );
        }
        if !has_secrets {
            assert!(!got.contains(SECRETS), "{name}: {late} got a secrets mount");
        }
        if !target {
            assert!(
                !got.iter().any(|m| m.starts_with("vault-injector-")),
                "{name}: {late} is not a target but got {got:?}"
            );
            continue;
        }
        for v in mount_names(app)
            .iter()
            .filter(|v| v.starts_with("vault-injector-vol-"))
        {
            assert!(got.contains(v), "{name}: {late} lacks volume {v}");
        }
    }
    // The app containers are not touched again.
    assert_eq!(
        find(&third, app["name"].as_str().unwrap()),
        find(&extended, app["name"].as_str().unwrap())
    );
    let (fourth, changed) = hook
        .allowed(&third, &format!("{name}, extended twice"))
        .await;
    assert!(
        !changed,
        "{name}: a second pass on the extended pod changed it\n{fourth:#}"
    );

    out.push((format!("{name}, reinvoked"), second));
    out.push((format!("{name}, extended"), third));
}

fn fixture_pods() -> Vec<(String, Value)> {
    let mut pods = Vec::new();
    let dir = support::data("");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("review-") && n.ends_with(".json")
        })
        .collect();
    entries.sort();
    for p in entries {
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let mut pod = v["request"]["object"].clone();
        if pod.is_null() {
            continue;
        }
        if pod["metadata"].get("namespace").is_none() {
            pod["metadata"]["namespace"] = v["request"]["namespace"].clone();
        }
        pods.push((p.file_name().unwrap().to_string_lossy().into_owned(), pod));
    }
    let examples = support::root().join("examples");
    for e in std::fs::read_dir(examples).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let text = std::fs::read_to_string(&p).unwrap();
            for d in serde_yaml::Deserializer::from_str(&text) {
                let v: Value = serde::Deserialize::deserialize(d).unwrap();
                if v["kind"] == "Pod" {
                    pods.push((p.display().to_string(), v));
                }
            }
        }
    }
    assert!(pods.len() >= 7, "fixtures found: {}", pods.len());
    pods
}

fn shaped(annotations: Value, spec: Value) -> Value {
    let mut a = json!({"vault-injector.io/inject": "true", "vault-injector.io/role": "web"});
    if annotations
        .get("vault.hashicorp.com/agent-inject")
        .is_some()
    {
        a = json!({});
    }
    for (k, v) in annotations.as_object().unwrap() {
        a[k] = v.clone();
    }
    json!({"metadata": {"name": "shape", "namespace": "shop", "annotations": a}, "spec": spec})
}

fn app() -> Value {
    json!({"containers": [{"name": "app", "image": "app:1", "command": ["/app"]}]})
}

fn generated_shapes() -> Vec<(String, Value)> {
    let env = json!({"vault-injector.io/env-DB_PASSWORD": "secret/data/db#password"});
    let secret = json!({"vault-injector.io/secret-db": "secret/data/db"});
    let mut both = secret.clone();
    both["vault-injector.io/env-DB_PASSWORD"] = json!("secret/data/db#password");
    let with_inits = json!({
        "initContainers": [{"name": "migrate", "image": "m:1", "command": ["/migrate"]}],
        "containers": [{"name": "app", "image": "app:1", "command": ["/app"]},
                       {"name": "worker", "image": "w:1", "command": ["/w"],
                        "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}],
        "volumes": [{"name": "cache", "emptyDir": {}}]
    });
    let mut init_only = secret.clone();
    init_only["vault-injector.io/agent"] = json!("init-only");
    let mut sidecar_only = secret.clone();
    sidecar_only["vault-injector.io/agent"] = json!("sidecar-only");
    let mut approle = both.clone();
    approle["vault-injector.io/auth-type"] = json!("approle");
    let mut named = secret.clone();
    named["vault-injector.io/containers"] = json!("worker");
    let bank = json!({"containers": [{"name": "app", "image": "app:1", "command": ["/app"],
        "env": [{"name": "API_KEY", "value": "vault:secret/data/api#key"}]}]});
    let no_token = json!({"automountServiceAccountToken": false,
        "containers": [{"name": "app", "image": "app:1", "command": ["/app"]}]});
    let vk = json!({
        "vault.hashicorp.com/agent-inject": "true",
        "vault.hashicorp.com/role": "web",
        "vault.hashicorp.com/agent-inject-secret-db": "secret/data/db",
        "vault.hashicorp.com/agent-inject-template-db":
            "{{ with secret \"secret/data/db\" }}{{ .Data.data.password }}{{ end }}",
        "vault.hashicorp.com/secret-volume-path": "/etc/secrets",
    });
    let mut vk_init = vk.clone();
    vk_init["vault.hashicorp.com/agent-pre-populate-only"] = json!("true");
    vec![
        ("env-only".into(), shaped(env.clone(), app())),
        (
            "env-only, existing inits".into(),
            shaped(env, with_inits.clone()),
        ),
        ("secrets-only".into(), shaped(secret.clone(), app())),
        (
            "exec+secrets".into(),
            shaped(both.clone(), with_inits.clone()),
        ),
        ("exec+secrets, approle".into(), shaped(approle, app())),
        (
            "secrets, existing inits".into(),
            shaped(secret.clone(), with_inits.clone()),
        ),
        (
            "secrets, named container".into(),
            shaped(named, with_inits.clone()),
        ),
        ("init-only".into(), shaped(init_only, with_inits.clone())),
        (
            "sidecar-only".into(),
            shaped(sidecar_only, with_inits.clone()),
        ),
        ("vault: env reference".into(), shaped(json!({}), bank)),
        ("no automounted token".into(), shaped(both, no_token)),
        ("vault-k8s".into(), shaped(vk, with_inits.clone())),
        ("vault-k8s init-only".into(), shaped(vk_init, app())),
    ]
}

fn classic() -> WebhookConfig {
    let mut cfg = WebhookConfig::default();
    cfg.agent.native_sidecar = false;
    cfg
}

#[tokio::test]
async fn every_fixture_and_shape_survives_reinvocation() {
    let mut pods = fixture_pods();
    pods.extend(generated_shapes());
    let mut valid = Vec::new();
    for (layout, cfg) in [("native", WebhookConfig::default()), ("classic", classic())] {
        let hook = Webhook::new(cfg);
        for (name, pod) in &pods {
            let name = format!("{name} ({layout})");
            match hook.admit(pod).await {
                // The denied fixtures are denied for what they ask, not
                // for anything reinvocation does.
                Answer::Denied(_) if name.starts_with("review-invalid") => continue,
                Answer::Denied(m) => panic!("{name}: denied on the first pass: {m}"),
                Answer::Allowed(..) => reinvoke(&hook, &name, pod, &mut valid).await,
            }
        }
    }
    assert!(valid.len() >= 40, "{} pods checked", valid.len());
    validate_all(&valid);
}

#[tokio::test]
async fn env_only_pod_reinvoked_gets_no_secrets_mount() {
    // The reported case: the API server refused
    // `spec.containers[0].volumeMounts[3].name: Not found: "vault-injector-secrets"`.
    let hook = Webhook::new(WebhookConfig::default());
    let pod = shaped(
        json!({"vault-injector.io/env-DB_PASSWORD": "secret/data/db#password"}),
        app(),
    );
    let (mut first, _) = hook.allowed(&pod, "env-only").await;
    assert!(!volume_names(&first).contains(SECRETS));
    service_account_step(&mut first);
    let (second, changed) = hook.allowed(&first, "env-only reinvoked").await;
    assert!(!changed, "{second:#}");
    assert!(!mount_names(find(&second, "app")).contains(SECRETS));
}

#[tokio::test]
async fn a_status_annotation_alone_is_denied_and_named() {
    let hook = Webhook::new(WebhookConfig::default());
    let mut pod = shaped(
        json!({"vault-injector.io/secret-db": "secret/data/db",
               "vault-injector.io/status": "injected"}),
        app(),
    );
    match hook.admit(&pod).await {
        Answer::Denied(m) => {
            assert!(m.contains("vault-injector.io/status"), "{m}");
            assert!(m.contains("none of the containers or volumes"), "{m}");
        }
        Answer::Allowed(p, _) => panic!("a user-set status was trusted:\n{p:#}"),
    }
    // Env-only, the other shape that was refused by the API server.
    pod["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("vault-injector.io/secret-db");
    pod["metadata"]["annotations"]["vault-injector.io/env-X"] = json!("secret/data/db#x");
    assert!(matches!(hook.admit(&pod).await, Answer::Denied(_)));
}

#[tokio::test]
async fn production_volumes_reach_containers_added_later() {
    // Volume profiles are read from Vault on the first pass (tested against
    // OpenBao in volumes_openbao.rs); this is the pod such a pass returns.
    let hook = Webhook::new(WebhookConfig::default());
    let mut pod = shaped(
        json!({"vault-injector.io/volume-data": "nfs",
               "vault-injector.io/status": "injected"}),
        json!({
            "containers": [{"name": "app", "image": "app:1",
                "volumeMounts": [{"name": "vault-injector-vol-data", "mountPath": "/data"}]}],
            "volumes": [{"name": "vault-injector-vol-data", "nfs": {"server": "nfs", "path": "/x"}}]
        }),
    );
    let (same, changed) = hook.allowed(&pod, "volumes-only").await;
    assert!(!changed, "{same:#}");
    late_webhook(&mut pod);
    service_account_step(&mut pod);
    let (out, changed) = hook.allowed(&pod, "volumes-only, extended").await;
    assert!(changed);
    check_structure(&out, "volumes-only, extended");
    for late in ["mesh-proxy", "mesh-init"] {
        let m = &find(&out, late)["volumeMounts"];
        assert!(
            m.as_array()
                .unwrap()
                .contains(&json!({"name": "vault-injector-vol-data", "mountPath": "/data"})),
            "{late}: {m}"
        );
        assert!(!mount_names(find(&out, late)).contains(SECRETS));
    }
    validate_all(&[("volumes-only, extended".into(), out)]);
}

fn mutate(input: &str) -> String {
    let mut child = Command::new(support::bin())
        .args(["mutate", "-f", "-", "-o", "yaml"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mutate");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mutate failed on:\n{input}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn mutate_on_its_own_output_is_a_no_op() {
    let mut inputs: Vec<String> =
        vec![std::fs::read_to_string(support::root().join("examples/pod.yaml")).unwrap()];
    for (_, mut pod) in generated_shapes() {
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        inputs.push(serde_yaml::to_string(&pod).unwrap());
    }
    for input in inputs {
        let once = mutate(&input);
        let twice = mutate(&once);
        assert_eq!(once, twice, "mutate changed its own output");
        let mut pod: Value = serde_yaml::from_str(&once).unwrap();
        check_structure(&pod, "mutate output");
        service_account_step(&mut pod);
        let after_sa = serde_yaml::to_string(&pod).unwrap();
        let again: Value = serde_yaml::from_str(&mutate(&after_sa)).unwrap();
        assert_eq!(
            again, pod,
            "mutate changed its own output after the ServiceAccount step"
        );
    }
}
