//! The admission core end to end, in process: real AdmissionReview fixtures
//! from `tests/data/` through `Injector::review`, the returned patch applied
//! to the original pod, and the result checked as a typed Pod and by the real
//! `kubernetes-validate` in strict mode. `mutate` is run as the real binary.

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use base64::Engine;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;
use vault_injector::admission::Injector;
use vault_injector_core::audit::{AdmissionAudit, Decision};
use vault_injector_core::config::WebhookConfig;
use vault_injector_core::contract::{AgentConfig, Format, AGENT_CONFIG_ENV};

struct Outcome {
    response: Value,
    audit: AdmissionAudit,
    original: Value,
    patched: Option<Value>,
}

impl Outcome {
    fn pod(&self) -> Pod {
        serde_json::from_value(self.patched.clone().expect("a patch"))
            .expect("patched pod is a Pod")
    }
}

fn load(fixture: &str) -> Value {
    let text = std::fs::read(support::data(fixture)).expect("fixture");
    serde_json::from_slice(&text).expect("fixture is JSON")
}

async fn review_with(review: &Value, cfg: WebhookConfig) -> Outcome {
    let injector = Injector::try_new(Arc::new(cfg)).unwrap();
    let body = serde_json::to_vec(review).unwrap();
    let out = injector.review(&body).await.expect("a valid review");
    let v: Value = serde_json::from_slice(&out.body).expect("response is JSON");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    let response = v["response"].clone();
    assert_eq!(response["uid"], review["request"]["uid"]);
    let original = review["request"]["object"].clone();
    let patched = response.get("patch").map(|p| {
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p.as_str().expect("patch is base64 text"))
            .expect("valid base64");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSON patch");
        let mut doc = original.clone();
        json_patch::patch(&mut doc, &patch).expect("patch applies to the original pod");
        doc
    });
    Outcome {
        response,
        audit: out.audit,
        original,
        patched,
    }
}

async fn review(fixture: &str) -> Outcome {
    review_with(&load(fixture), WebhookConfig::default()).await
}

/// Strict schema validation with the real tool. Pods made by controllers
/// carry only `generateName`; the API server names them after admission.
fn validate(doc: &Value) {
    let Some(tool) = support::require_tool("kubernetes-validate") else {
        return;
    };
    let mut doc = doc.clone();
    if doc["metadata"].get("name").is_none() {
        let g = doc["metadata"]["generateName"].as_str().unwrap_or("pod-");
        doc["metadata"]["name"] = Value::String(format!("{g}abcde"));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("object.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    run_validate(&tool, &file);
}

fn run_validate(tool: &Path, file: &Path) {
    let out = Command::new(tool)
        .args(["--strict", "-k", "1.33.0"])
        .arg(file)
        .output()
        .expect("run kubernetes-validate");
    assert!(
        out.status.success(),
        "kubernetes-validate rejected {}:\n{}{}\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(file).unwrap_or_default()
    );
}

fn names(cs: &Option<Vec<Container>>) -> Vec<&str> {
    cs.iter().flatten().map(|c| c.name.as_str()).collect()
}

fn mounts(c: &Container) -> Vec<(&str, &str, bool)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            (
                m.name.as_str(),
                m.mount_path.as_str(),
                m.read_only == Some(true),
            )
        })
        .collect()
}

fn has_secrets(c: &Container) -> bool {
    mounts(c).contains(&("vault-injector-secrets", "/vault/secrets", true))
}

fn agent_config(c: &Container) -> AgentConfig {
    let env = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == AGENT_CONFIG_ENV)
        .expect("agent config env var");
    AgentConfig::from_json(env.value.as_deref().unwrap()).expect("agent config parses")
}

#[tokio::test]
async fn simple_pod_gets_a_native_sidecar() {
    let o = review("review-simple.json").await;
    assert_eq!(o.response["allowed"], true);
    assert_eq!(o.audit.decision, Decision::Injected);
    assert_eq!(o.audit.pod, "web-6d8f7b9c5d-*");
    assert_eq!(o.audit.service_account, "web");
    let pod = o.pod();
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(names(&spec.init_containers), ["vault-injector-agent"]);
    let agent = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(agent.restart_policy.as_deref(), Some("Always"));
    assert!(agent.startup_probe.is_some());
    assert!(has_secrets(&spec.containers[0]));
    // The default service-account mount the API server added is untouched.
    assert!(mounts(&spec.containers[0])
        .iter()
        .any(|m| m.1 == "/var/run/secrets/kubernetes.io/serviceaccount"));
    let cfg = agent_config(agent);
    assert_eq!(cfg.auth.role, "web");
    assert_eq!(cfg.pod.namespace, "shop");
    assert_eq!(
        pod.metadata.annotations.unwrap()["vault-injector.io/status"],
        "injected"
    );
    validate(o.patched.as_ref().unwrap());
}

#[tokio::test]
async fn three_containers_five_secrets() {
    let o = review("review-3c5s.json").await;
    assert_eq!(o.audit.decision, Decision::Injected);
    assert_eq!(o.audit.containers, ["api", "worker"]);
    assert_eq!(o.audit.namespace, "payments");
    assert_eq!(o.audit.service_account, "payments-api");
    let names_paths: Vec<_> = o
        .audit
        .secrets
        .iter()
        .map(|s| (s.name.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(
        names_paths,
        [
            ("config", "secret/data/payments/config"),
            ("db", "database/creds/payments-rw"),
            ("kafka", "secret/data/payments/kafka"),
            ("stripe", "secret/data/payments/stripe"),
            ("tls", "secret/data/payments/tls"),
        ]
    );
    assert_eq!(o.audit.patch_digest.as_ref().map(String::len), Some(64));
    let pod = o.pod();
    let spec = pod.spec.as_ref().unwrap();
    let by_name = |n: &str| spec.containers.iter().find(|c| c.name == n).unwrap();
    assert!(has_secrets(by_name("api")));
    assert!(has_secrets(by_name("worker")));
    assert!(!has_secrets(by_name("metrics")));
    let cfg = agent_config(&spec.init_containers.as_ref().unwrap()[0]);
    let get = |n: &str| cfg.secrets.iter().find(|s| s.name == n).unwrap();
    let stripe = get("stripe");
    assert_eq!(
        (
            stripe.format,
            stripe.key.as_deref(),
            stripe.file.as_str(),
            stripe.mode
        ),
        (Format::Raw, Some("api_key"), "stripe", 0o400)
    );
    let tls = get("tls");
    assert_eq!(
        (tls.format, tls.file.as_str()),
        (Format::Template, "tls/bundle.pem")
    );
    assert_eq!(get("config").mode, 0o440);
    assert_eq!(get("db").format, Format::Env);
    assert_eq!(get("kafka").format, Format::Yaml);
    validate(o.patched.as_ref().unwrap());

    // The classic layout for clusters older than 1.29 validates too.
    let mut classic = WebhookConfig::default();
    classic.agent.native_sidecar = false;
    let o = review_with(&load("review-3c5s.json"), classic).await;
    let pod = o.pod();
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(names(&spec.init_containers), ["vault-injector-init"]);
    assert_eq!(
        names(&Some(spec.containers.clone())),
        ["api", "worker", "metrics", "vault-injector-agent"]
    );
    validate(o.patched.as_ref().unwrap());
}

#[tokio::test]
async fn existing_volumes_init_containers_and_security_context() {
    let o = review("review-existing.json").await;
    assert_eq!(o.audit.decision, Decision::Injected, "{}", o.audit.reason);
    let pod = o.pod();
    let spec = pod.spec.as_ref().unwrap();
    let vols: Vec<_> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        vols,
        [
            "cache",
            "ca",
            "kube-api-access-q9d2m",
            "vault-injector-secrets",
            "vault-injector-state",
            "vault-injector-token"
        ]
    );
    assert_eq!(
        names(&spec.init_containers),
        ["vault-injector-agent", "migrate", "wait-for-db"]
    );
    let inits = spec.init_containers.as_ref().unwrap();
    assert!(has_secrets(&inits[1]), "migrate is named in containers");
    assert!(!has_secrets(&inits[2]), "wait-for-db is not");
    assert!(inits[2].volume_mounts.is_none());
    let api = &spec.containers[0];
    assert_eq!(mounts(api).len(), 3);
    assert!(has_secrets(api));
    // The agent runs as the pod's user so 0400 files stay readable.
    let sc = inits[0].security_context.as_ref().unwrap();
    assert_eq!(
        (sc.run_as_user, sc.run_as_group),
        (Some(10001), Some(10001))
    );
    assert_eq!(agent_config(&inits[0]).auth.mount, "k8s-prod");
    let annotations = pod.metadata.annotations.unwrap();
    assert_eq!(annotations["example.com/team"], "payments");
    validate(o.patched.as_ref().unwrap());
}

#[tokio::test]
async fn job_with_init_only_agent() {
    let o = review("review-job.json").await;
    assert_eq!(o.audit.decision, Decision::Injected);
    let pod = o.pod();
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(names(&spec.init_containers), ["vault-injector-init"]);
    let init = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.restart_policy, None, "a plain init container ends");
    assert_eq!(init.args.as_ref().unwrap(), &["agent", "--mode", "init"]);
    assert_eq!(names(&Some(spec.containers.clone())), ["report"]);
    validate(o.patched.as_ref().unwrap());
}

#[tokio::test]
async fn invalid_annotation_is_denied() {
    let o = review("review-invalid.json").await;
    assert_eq!(o.response["allowed"], false);
    assert!(o.patched.is_none());
    let msg = o.response["status"]["message"].as_str().unwrap();
    assert!(msg.contains("vault-injector.io/mode-db"), "{msg}");
    assert!(msg.contains("0999"), "{msg}");
    assert_eq!(o.audit.decision, Decision::Denied);
}

#[tokio::test]
async fn unannotated_pod_passes_untouched() {
    let o = review("review-unannotated.json").await;
    assert_eq!(o.response["allowed"], true);
    assert!(o.patched.is_none());
    assert_eq!(o.audit.decision, Decision::Skipped);
    validate(&o.original);
}

#[tokio::test]
async fn dry_run_is_answered_like_a_real_request() {
    let o = review("review-dry-run.json").await;
    assert!(o.audit.dry_run);
    assert_eq!(o.audit.user, "alice@example.com");
    assert_eq!(o.audit.pod, "debug-web");
    assert_eq!(o.audit.decision, Decision::Injected);
    let mut real = load("review-dry-run.json");
    real["request"]["dryRun"] = Value::Bool(false);
    let r = review_with(&real, WebhookConfig::default()).await;
    assert_eq!(r.patched, o.patched);
    // sidecar-only: a native sidecar that nothing waits for.
    let pod = o.pod();
    let agent = &pod.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
    assert_eq!(agent.restart_policy.as_deref(), Some("Always"));
    assert!(agent.startup_probe.is_none());
    validate(o.patched.as_ref().unwrap());
}

#[tokio::test]
async fn reinvocation_is_idempotent_and_mounts_late_init_containers() {
    let first = review("review-simple.json").await;
    let mut again = load("review-simple.json");
    again["request"]["object"] = first.patched.clone().unwrap();
    let second = review_with(&again, WebhookConfig::default()).await;
    assert!(second.patched.is_none(), "an injected pod is left alone");
    assert_eq!(second.audit.decision, Decision::Skipped);

    // Another webhook appended an init container after we ran.
    let mut obj = first.patched.clone().unwrap();
    obj["spec"]["initContainers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "late", "image": "busybox"}));
    again["request"]["object"] = obj;
    let third = review_with(&again, WebhookConfig::default()).await;
    let pod = third.pod();
    let inits = pod.spec.as_ref().unwrap().init_containers.as_ref().unwrap();
    assert_eq!(
        names(&Some(inits.clone())),
        ["vault-injector-agent", "late"]
    );
    assert!(has_secrets(&inits[1]));
    assert_eq!(third.audit.containers, ["late"]);
    validate(third.patched.as_ref().unwrap());
}

const MANIFESTS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations:
        vault-injector.io/inject: "true"
        vault-injector.io/role: web
        vault-injector.io/secret-db: secret/data/shop/db
    spec:
      containers:
        - name: web
          image: registry.example.com/shop/web:1.4.2
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        metadata:
          annotations:
            vault-injector.io/inject: "true"
            vault-injector.io/role: reports
            vault-injector.io/agent: init-only
            vault-injector.io/secret-dwh: database/creds/reports
        spec:
          restartPolicy: Never
          containers:
            - name: report
              image: registry.example.com/batch/report:1.0.0
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
    - port: 80
      targetPort: 8080
"#;

fn mutate(input: &str, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(support::bin())
        .arg("mutate")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vault-injector mutate");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn mutate_rewrites_templates_and_passes_other_kinds_through() {
    let out = mutate(MANIFESTS, &["-f", "-", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("JSON documents");
    assert_eq!(docs.len(), 3);
    let deploy = &docs[0]["spec"]["template"];
    assert_eq!(
        deploy["spec"]["initContainers"][0]["name"],
        "vault-injector-agent"
    );
    assert_eq!(
        deploy["metadata"]["annotations"]["vault-injector.io/status"],
        "injected"
    );
    let agent: Container =
        serde_json::from_value(deploy["spec"]["initContainers"][0].clone()).unwrap();
    assert_eq!(agent_config(&agent).pod.namespace, "shop");
    let job = &docs[1]["spec"]["jobTemplate"]["spec"]["template"];
    assert_eq!(
        job["spec"]["initContainers"][0]["name"],
        "vault-injector-init"
    );
    let cron_agent: Container =
        serde_json::from_value(job["spec"]["initContainers"][0].clone()).unwrap();
    assert_eq!(agent_config(&cron_agent).pod.namespace, "default");
    let service: Value = serde_yaml::from_str(MANIFESTS.split("---").nth(2).unwrap()).unwrap();
    assert_eq!(docs[2], service, "other kinds pass through unchanged");

    if let Some(tool) = support::require_tool("kubernetes-validate") {
        let dir = tempfile::tempdir().unwrap();
        for (i, doc) in docs.iter().enumerate() {
            let f = dir.path().join(format!("doc{i}.json"));
            std::fs::write(&f, serde_json::to_vec(doc).unwrap()).unwrap();
            run_validate(&tool, &f);
        }
    }

    // YAML output round-trips to the same objects.
    let out = mutate(MANIFESTS, &["-f", "-"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let yaml_docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(yaml_docs, docs);
}

#[test]
fn mutate_names_the_document_it_denies() {
    let bad = MANIFESTS.replace(
        "vault-injector.io/agent: init-only",
        "vault-injector.io/agent: sometimes",
    );
    let out = mutate(&bad, &["-f", "-"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("document 2"), "{err}");
    assert!(err.contains("CronJob"), "{err}");
    assert!(err.contains("nightly"), "{err}");
    assert!(err.contains("vault-injector.io/agent"), "{err}");
    assert!(out.stdout.is_empty(), "nothing printed on a denial");
}

#[test]
fn mutate_reads_files_and_uses_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.yaml");
    std::fs::write(&file, MANIFESTS).unwrap();
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(
        &cfg,
        "agent:\n  nativeSidecar: false\n  image: registry.example.com/vi:9\n",
    )
    .unwrap();
    let out = mutate(
        "",
        &[
            "-f",
            file.to_str().unwrap(),
            "-o",
            "json",
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: Value = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    let spec = &first["spec"]["template"]["spec"];
    assert_eq!(spec["initContainers"][0]["name"], "vault-injector-init");
    assert_eq!(spec["containers"][1]["name"], "vault-injector-agent");
    assert_eq!(spec["containers"][1]["image"], "registry.example.com/vi:9");

    let missing = mutate("", &["-f", "/nonexistent/m.yaml"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/m.yaml"));
}

/// Not a timed assertion: prints how long the in-process core takes per
/// admission of the benchmark pod. Run with
/// `cargo test --test mutation -- --ignored --nocapture review_cost`.
#[tokio::test]
#[ignore = "measurement, not a test"]
async fn review_cost() {
    let body = std::fs::read(support::data("review-3c5s.json")).unwrap();
    let compact = serde_json::to_vec(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap();
    let injector = Injector::try_new(Arc::new(WebhookConfig::default())).unwrap();
    for _ in 0..200 {
        injector.review(&compact).await.unwrap();
    }
    let n = 5000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        injector.review(&compact).await.unwrap();
    }
    let per = start.elapsed() / n;
    let parse_start = std::time::Instant::now();
    for _ in 0..n {
        let _: Value = serde_json::from_slice(&compact).unwrap();
    }
    let parse = parse_start.elapsed() / n;
    println!(
        "review-3c5s ({} bytes): review {per:?}/admission ({:.0}/s on one core); \
         bare serde_json::Value parse {parse:?}",
        compact.len(),
        1.0 / per.as_secs_f64()
    );
}

#[tokio::test]
#[ignore = "measurement, not a test"]
async fn review_cost_breakdown() {
    use kube::core::admission::{AdmissionRequest, AdmissionReview};
    use kube::core::DynamicObject;
    let body = std::fs::read(support::data("review-3c5s.json")).unwrap();
    let compact = serde_json::to_vec(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap();
    let cfg = WebhookConfig::default();
    let n = 3000;
    let time = |label: &str, f: &mut dyn FnMut()| {
        for _ in 0..100 {
            f();
        }
        let s = std::time::Instant::now();
        for _ in 0..n {
            f();
        }
        println!("{label}: {:?}", s.elapsed() / n);
    };
    time("parse review", &mut || {
        let _: AdmissionReview<DynamicObject> = serde_json::from_slice(&compact).unwrap();
    });
    time("parse review typed", &mut || {
        let _: AdmissionReview<Pod> = serde_json::from_slice(&compact).unwrap();
    });
    time("parse Value", &mut || {
        let _: Value = serde_json::from_slice(&compact).unwrap();
    });
    let injector = Injector::try_new(Arc::new(WebhookConfig::default())).unwrap();
    time("review", &mut || {
        futures::executor::block_on(injector.review(&compact)).unwrap();
    });
    let rev: AdmissionReview<DynamicObject> = serde_json::from_slice(&compact).unwrap();
    let req: AdmissionRequest<DynamicObject> = rev.try_into().unwrap();
    let obj = req.object.unwrap();
    time("pod_from_dynamic", &mut || {
        vault_injector::admission::pod_from_dynamic(obj.clone()).unwrap();
    });
    let pod = vault_injector::admission::pod_from_dynamic(obj.clone()).unwrap();
    let ann = pod.metadata.annotations.clone().unwrap();
    time("annotations", &mut || {
        vault_injector_core::annotations::from_annotations(&ann).unwrap();
    });
    let ctx = vault_injector_core::plan::RequestContext {
        namespace: "shop".into(),
    };
    time("plan", &mut || {
        vault_injector_core::plan::plan(&pod, &ctx, &cfg).unwrap();
    });
    let vault_injector_core::plan::Planned::Inject(p) =
        vault_injector_core::plan::plan(&pod, &ctx, &cfg).unwrap()
    else {
        panic!()
    };
    time("patch", &mut || {
        vault_injector_core::patch::build(&pod, &p, &cfg);
    });
    let patch = vault_injector_core::patch::build(&pod, &p, &cfg);
    time("patch to_vec", &mut || {
        serde_json::to_vec(&patch).unwrap();
    });
}
