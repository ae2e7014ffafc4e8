//! AdmissionReview in, AdmissionReview out: the one place where a business
//! error becomes a denial. The HTTP server (`server`) calls [`Injector`];
//! the `mutate` command calls [`mutate_pod`], the same core.
//!
//! Nothing here has side effects (no Vault, no Kubernetes API), so dry-run
//! requests are answered exactly like real ones.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::core::admission::Operation;
use kube::core::{DynamicObject, Status};
use sha2::{Digest, Sha256};

use crate::gate::{Gate, GateDenial};
use vault_injector_core::audit::{AdmissionAudit, AuditSecret, Decision};
use vault_injector_core::config::WebhookConfig;
use vault_injector_core::plan::{self, Planned, RequestContext};
use vault_injector_core::policy::PolicyRequest;

mod lean;

/// A body that is not a usable AdmissionReview. The server answers 400 with
/// the message; nothing else happens.
#[derive(Debug, thiserror::Error)]
pub enum BadReview {
    #[error("body is not a valid AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    #[error("AdmissionReview has no request")]
    NoRequest,
}

/// Why a pod is not admitted as is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pod asks for something invalid: the user's to fix.
    #[error(transparent)]
    Plan(#[from] plan::Error),
    /// The object is not a pod we can read.
    #[error("the object is not a valid Pod: {0}")]
    NotAPod(serde_json::Error),
    #[error("the request carries no object")]
    NoObject,
    /// Refused by the connection-override allowlist, the cluster policy or a
    /// volume profile; or Vault could not be asked about a profile.
    #[error(transparent)]
    Gate(#[from] GateDenial),
}

impl Error {
    fn decision(&self) -> Decision {
        match self {
            Error::Plan(_) => Decision::Denied,
            Error::Gate(g) => g.decision(),
            Error::NotAPod(_) | Error::NoObject => Decision::Error,
        }
    }
}

/// Whether volume profiles are read from Vault (the webhook) or left out
/// (`mutate`, which never touches the network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volumes {
    Resolve,
    Offline,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The serialized response review plus its audit record (the server fills in
/// `latency_ms` and emits it).
pub struct Reviewed {
    pub body: Vec<u8>,
    pub audit: AdmissionAudit,
    /// The pod's owner references, for optional Kubernetes Events.
    pub owners: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
}

#[derive(Clone)]
pub struct Injector {
    config: Arc<WebhookConfig>,
    gate: Gate,
}

impl Injector {
    /// Loads the cluster policy (if configured) and prepares the volume
    /// profile store; fails on an unreadable or invalid policy file.
    pub fn try_new(config: Arc<WebhookConfig>) -> Result<Self, crate::gate::Error> {
        let gate = Gate::from_config(&config)?;
        Ok(Self { config, gate })
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// Handles one AdmissionReview body.
    pub async fn review(&self, body: &[u8]) -> Result<Reviewed, BadReview> {
        // Pods are all the webhook is registered for: they are read with
        // only the fields the core uses (`lean`). Anything else, including a
        // pod too broken to read that way, takes the generic path, which
        // reads the object untyped and names what is wrong with it.
        let (facts, object) = match serde_json::from_slice::<lean::Review<lean::LeanPod>>(body) {
            Ok(review) => review.split(|o| Ok(Pod::from(o)))?,
            Err(_) => serde_json::from_slice::<lean::Review<DynamicObject>>(body)?
                .split(pod_from_dynamic)?,
        };
        let (answer, audit, owners) = self.decide(facts, object).await;
        let body = encode_review(&answer)?;
        Ok(Reviewed {
            body,
            audit,
            owners,
        })
    }

    async fn decide(
        &self,
        req: lean::Facts,
        object: Option<Result<Pod>>,
    ) -> (
        Answer,
        AdmissionAudit,
        Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    ) {
        let mut answer = Answer {
            api_version: req.api_version,
            uid: req.uid.clone(),
            allowed: true,
            status: Status::default(),
            patch: None,
            warnings: None,
        };
        let mut audit = AdmissionAudit {
            uid: req.uid,
            namespace: req.namespace.unwrap_or_default(),
            pod: req.name,
            user: req.username.unwrap_or_default(),
            operation: operation_str(&req.operation).into(),
            dry_run: req.dry_run,
            ..Default::default()
        };
        let is_pod = req.kind.group.is_empty() && req.kind.kind == "Pod";
        if !is_pod || req.operation != Operation::Create || req.sub_resource.is_some() {
            audit.decision = Decision::Skipped;
            audit.reason = format!("not a pod CREATE ({} {})", audit.operation, req.kind.kind);
            return (answer, audit, Vec::new());
        }
        let mut owners = Vec::new();
        let mutation = match object.unwrap_or(Err(Error::NoObject)) {
            Ok(mut pod) => {
                let m =
                    mutate_pod(&pod, &self.config, &self.gate, Volumes::Resolve, &mut audit).await;
                owners = pod.metadata.owner_references.take().unwrap_or_default();
                m
            }
            Err(e) => Err(e),
        };
        // The one place a business error becomes a denial.
        match mutation {
            Ok(m) => {
                let patch = m.patch.map(|p| p.to_bytes());
                audit.patch_digest = patch.as_deref().map(|p| hex::encode(Sha256::digest(p)));
                answer.patch = patch;
                if !m.warnings.is_empty() {
                    answer.warnings = Some(m.warnings);
                }
            }
            Err(e) => {
                audit.decision = e.decision();
                audit.reason = e.to_string();
                answer.allowed = false;
                answer.status.message = audit.reason.clone();
            }
        }
        (answer, audit, owners)
    }
}

/// The response review's content.
struct Answer {
    api_version: String,
    uid: String,
    allowed: bool,
    status: Status,
    /// The JSON patch, before base64.
    patch: Option<Vec<u8>>,
    warnings: Option<Vec<String>>,
}

/// Writes the response review. The patch is a base64 string, the API
/// server's canonical form for `[]byte` (kube's `AdmissionResponse` would
/// write a JSON array of numbers, three times the size). The review is
/// written field by field so the patch, the largest part by far, is
/// base64-encoded straight into the output: base64 needs no JSON escaping.
fn encode_review(answer: &Answer) -> serde_json::Result<Vec<u8>> {
    use base64::Engine;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let patch_len = answer
        .patch
        .as_ref()
        .map_or(0, |p| base64::encoded_len(p.len(), true).unwrap_or(0));
    let mut out = Vec::with_capacity(256 + patch_len + answer.status.message.len());
    let api_version = if answer.api_version.is_empty() {
        "admission.k8s.io/v1"
    } else {
        &answer.api_version
    };
    out.extend_from_slice(br#"{"apiVersion":"#);
    serde_json::to_writer(&mut out, api_version)?;
    out.extend_from_slice(br#","kind":"AdmissionReview","response":{"uid":"#);
    serde_json::to_writer(&mut out, &answer.uid)?;
    out.extend_from_slice(if answer.allowed {
        br#","allowed":true,"status":"#
    } else {
        br#","allowed":false,"status":"#
    });
    serde_json::to_writer(&mut out, &answer.status)?;
    if let Some(patch) = &answer.patch {
        out.extend_from_slice(br#","patch":""#);
        let start = out.len();
        out.resize(start + patch_len, 0);
        let n = b64
            .encode_slice(patch, &mut out[start..])
            .expect("buffer sized by encoded_len");
        out.truncate(start + n);
        out.extend_from_slice(br#"","patchType":"JSONPatch""#);
    }
    if let Some(warnings) = &answer.warnings {
        out.extend_from_slice(br#","warnings":"#);
        serde_json::to_writer(&mut out, warnings)?;
    }
    out.extend_from_slice(b"}}");
    Ok(out)
}

fn operation_str(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// Reads a Pod out of the untyped admission object without re-serializing
/// the whole thing: metadata is already typed, only the spec is converted.
pub fn pod_from_dynamic(obj: DynamicObject) -> Result<Pod> {
    let DynamicObject { metadata, data, .. } = obj;
    let spec = match data {
        serde_json::Value::Object(mut map) => match map.remove("spec") {
            Some(spec) => Some(serde_json::from_value::<PodSpec>(spec).map_err(Error::NotAPod)?),
            None => None,
        },
        _ => None,
    };
    Ok(Pod {
        metadata,
        spec,
        status: None,
    })
}

/// What to do to an admitted pod.
#[derive(Debug, Default)]
pub struct Mutation {
    /// `None`: admit unchanged.
    pub patch: Option<vault_injector_core::patch::PodPatch>,
    /// Admission warnings for the client (`kubectl` prints them).
    pub warnings: Vec<String>,
}

/// Plans and patches one pod, filling the audit record as facts become
/// known. A [`Mutation`] without a patch: admit unchanged. Shared by the
/// webhook and `mutate`.
pub async fn mutate_pod(
    pod: &Pod,
    cfg: &WebhookConfig,
    gate: &Gate,
    volumes: Volumes,
    audit: &mut AdmissionAudit,
) -> Result<Mutation> {
    if audit.namespace.is_empty() {
        audit.namespace = pod.metadata.namespace.clone().unwrap_or_default();
    }
    let name = plan::pod_display_name(pod);
    if !name.is_empty() {
        audit.pod = name;
    }
    audit.service_account = plan::service_account(pod).to_string();
    let ctx = RequestContext {
        namespace: audit.namespace.clone(),
    };
    match plan::plan(pod, &ctx, cfg)? {
        Planned::Skip(reason) => {
            audit.decision = Decision::Skipped;
            audit.reason = reason;
            Ok(Mutation::default())
        }
        Planned::Remount(remounts) => {
            audit.decision = Decision::Injected;
            audit.containers = remounts.iter().map(|r| r.target.name.clone()).collect();
            audit.reason = format!(
                "already injected; mounted its volumes into containers added since: {}",
                audit.containers.join(", ")
            );
            Ok(Mutation {
                patch: Some(vault_injector_core::patch::build_remount(pod, &remounts)),
                warnings: Vec::new(),
            })
        }
        Planned::Inject(mut p) => {
            // Filled in first so that a denial's audit line says what was asked.
            audit.role = p.role.clone();
            // One entry per path the agent will call: a Go template that
            // reads several paths is audited under each.
            audit.secrets = p
                .agent
                .secrets
                .iter()
                .flat_map(|s| {
                    s.fetches().into_iter().map(|r| AuditSecret {
                        name: s.name.clone(),
                        path: r.path,
                    })
                })
                .collect();
            audit.env_vars = p.env.iter().map(|e| e.var.clone()).collect();
            audit.volume_profiles = p.volumes.iter().map(|v| v.profile.clone()).collect();
            audit.containers = p.targets.iter().map(|t| t.name.clone()).collect();
            let preq = PolicyRequest {
                namespace: audit.namespace.clone(),
                service_account: audit.service_account.clone(),
                role: p.role.clone(),
                auth_path: p.requested_auth_path.clone(),
                // Every path the agent will call for a file, the paths a
                // Go template reads included.
                secret_paths: p
                    .agent
                    .secrets
                    .iter()
                    .flat_map(|s| s.fetches().into_iter().map(|r| (s.name.clone(), r.path)))
                    .collect(),
                env_paths: p
                    .env
                    .iter()
                    .map(|e| (e.var.clone(), e.path.clone()))
                    .chain(p.env_refs.iter().cloned())
                    .collect(),
                volume_profiles: p
                    .volumes
                    .iter()
                    .map(|v| (v.name.clone(), v.profile.clone()))
                    .collect(),
                agent_resources: p.resources != cfg.agent.resources,
            };
            let empty = Default::default();
            let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
            let (connection, defaults, resolved) = match volumes {
                Volumes::Resolve => {
                    let a = gate.admit(annotations, &preq).await?;
                    (a.connection, a.defaults, a.volumes)
                }
                Volumes::Offline => {
                    let (c, d) = gate.check(annotations, &preq)?;
                    (c, d, Vec::new())
                }
            };
            let mut resolved = resolved;
            for (r, want) in resolved.iter_mut().zip(&p.volumes) {
                r.customize(want.mount_path.as_deref(), want.read_only)
                    .map_err(GateDenial::from)?;
            }
            connection.apply(&mut p.agent.vault);
            p.warnings.extend(connection.warnings.iter().cloned());
            p.finish(&defaults)?;
            p.extra_volumes = resolved;
            audit.role = p.role.clone();
            let patch = vault_injector_core::patch::build(pod, &p, cfg);
            audit.decision = Decision::Injected;
            audit
                .env_vars
                .extend(p.env_refs.iter().map(|(var, _)| var.clone()));
            audit.reason = format!(
                "{} secret(s), {} env var(s), {} volume(s){}{}; agent {}{}",
                audit.secrets.len(),
                audit.env_vars.len(),
                audit.volume_profiles.len(),
                match &defaults.rule {
                    Some(r) => format!(", policy rule {r:?}"),
                    None => String::new(),
                },
                if connection.honoured.is_empty() {
                    String::new()
                } else {
                    format!(", overrides allowed: {}", connection.honoured.join(", "))
                },
                p.lifecycle.as_str(),
                if p.native_sidecar {
                    " (native sidecar)"
                } else {
                    " (classic)"
                }
            );
            Ok(Mutation {
                patch: (!patch.0.is_empty()).then_some(patch),
                warnings: std::mem::take(&mut p.warnings),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn review(request: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": request,
        }))
        .unwrap()
    }

    fn pod_request(pod: Value) -> Value {
        json!({
            "uid": "u-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": pod,
            "dryRun": true,
        })
    }

    async fn run(body: &[u8]) -> (Value, AdmissionAudit) {
        let inj = Injector::try_new(Arc::new(WebhookConfig::default())).unwrap();
        let r = inj.review(body).await.unwrap();
        (serde_json::from_slice(&r.body).unwrap(), r.audit)
    }

    /// The patched pod, from a response that must allow with a patch.
    fn patched(pod: &Value, resp: &Value) -> Pod {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(resp["response"]["patch"].as_str().expect("a patch"))
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        let mut doc = pod.clone();
        json_patch::patch(&mut doc, &patch).unwrap();
        serde_json::from_value(doc).unwrap()
    }

    #[tokio::test]
    async fn vault_k8s_pods_are_injected_with_their_meaning() {
        let pod = json!({
            "metadata": {"name": "web", "annotations": {
                "vault.hashicorp.com/agent-inject": "1",
                "vault.hashicorp.com/role": "web",
                "vault.hashicorp.com/agent-inject-secret-DB.env": "secret/data/db",
                "vault.hashicorp.com/agent-inject-template-DB.env":
                    "{{ with secret \"secret/data/db\" }}{{ range $k, $v := .Data.data }}{{ $k }}={{ $v }}\n{{ end }}{{ end }}",
                "vault.hashicorp.com/agent-inject-perms-DB.env": "0440",
                "vault.hashicorp.com/secret-volume-path": "/etc/app",
                "vault.hashicorp.com/agent-limits-mem": "96Mi"}},
            "spec": {"containers": [{"name": "app", "image": "x"}]}
        });
        let (v, audit) = run(&review(pod_request(pod.clone()))).await;
        assert_eq!(v["response"]["allowed"], true, "{v}");
        assert_eq!(audit.decision, Decision::Injected);
        let out = patched(&pod, &v);
        let ann = out.metadata.annotations.unwrap();
        assert_eq!(ann["vault-injector.io/status"], "injected");
        assert_eq!(ann["vault.hashicorp.com/agent-inject-status"], "injected");
        let spec = out.spec.unwrap();
        let app_mount = spec.containers[0].volume_mounts.as_ref().unwrap()[0].clone();
        assert_eq!(app_mount.mount_path, "/etc/app");
        let agent = &spec.init_containers.as_ref().unwrap()[0];
        let limits = agent.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["memory"].0, "96Mi");
        let cfg = vault_injector_core::contract::AgentConfig::from_json(
            agent.env.as_ref().unwrap()[0].value.as_deref().unwrap(),
        )
        .unwrap();
        let s = &cfg.secrets[0];
        assert_eq!(
            (s.name.as_str(), s.file.as_str(), s.mode),
            ("db.env", "db.env", 0o440)
        );
        assert!(s.go_template);
    }

    /// Every path a Go template reads goes through the cluster policy and
    /// into the audit line, not only the secret annotation's path.
    #[tokio::test]
    async fn paths_read_by_templates_are_checked_by_the_policy_and_audited() {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.yaml");
        std::fs::write(
            &policy,
            "rules:\n  - name: shop\n    namespaces: [shop]\n    roles: [\"*\"]\n    \
             secretPaths: [\"secret/shop/*\", \"database/creds/shop\"]\n",
        )
        .unwrap();
        let mut cfg = WebhookConfig::default();
        cfg.policy.file = Some(policy);
        let inj = Injector::try_new(Arc::new(cfg)).unwrap();
        let pod = |second: &str| {
            json!({
                "metadata": {"name": "web", "annotations": {
                    "vault.hashicorp.com/agent-inject": "true",
                    "vault.hashicorp.com/role": "web",
                    "vault.hashicorp.com/agent-inject-secret-cfg": "secret/shop/app",
                    "vault.hashicorp.com/agent-inject-template-cfg": format!(
                        "{{{{ with secret \"secret/shop/app\" }}}}{{{{ .Data.data.k }}}}{{{{ end }}}}\
                         {{{{ with secret \"{second}\" }}}}{{{{ .Data.username }}}}{{{{ end }}}}"
                    )}},
                "spec": {"containers": [{"name": "app", "image": "x"}]}
            })
        };
        let r = inj
            .review(&review(pod_request(pod("secret/other/key"))))
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["response"]["allowed"], false, "{v}");
        assert!(
            r.audit.reason.contains("secret/other/key"),
            "{}",
            r.audit.reason
        );

        let r = inj
            .review(&review(pod_request(pod("database/creds/shop"))))
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["response"]["allowed"], true, "{v}");
        let paths: Vec<&str> = r.audit.secrets.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["secret/shop/app", "database/creds/shop"]);
    }

    #[tokio::test]
    async fn two_dialects_on_one_pod_are_denied() {
        let pod = json!({
            "metadata": {"name": "web", "annotations": {
                "vault-injector.io/inject": "true",
                "vault.hashicorp.com/agent-inject": "true"}},
            "spec": {"containers": [{"name": "app", "image": "x"}]}
        });
        let (v, audit) = run(&review(pod_request(pod))).await;
        assert_eq!(v["response"]["allowed"], false);
        assert_eq!(audit.decision, Decision::Denied);
        assert!(
            audit.reason.contains("one annotation dialect"),
            "{}",
            audit.reason
        );
    }

    #[tokio::test]
    async fn redirecting_the_agent_is_denied_and_audited() {
        for (key, value) in [
            (
                "vault-injector.io/vault-address",
                "https://evil.example:8200",
            ),
            ("vault-injector.io/tls-skip-verify", "true"),
        ] {
            let pod = json!({
                "metadata": {"name": "web", "annotations": {
                    "vault-injector.io/inject": "true",
                    "vault-injector.io/role": "web",
                    "vault-injector.io/secret-db": "secret/data/db",
                    key: value}},
                "spec": {"containers": [{"name": "app", "image": "x"}]}
            });
            let (v, audit) = run(&review(pod_request(pod))).await;
            assert_eq!(v["response"]["allowed"], false, "{key}");
            assert_eq!(audit.decision, Decision::Denied, "{key}");
            assert!(audit.reason.contains(key), "{key}: {}", audit.reason);
            assert_eq!(
                audit.secrets.len(),
                1,
                "a denial still lists what was asked: {audit:?}"
            );
        }
    }

    #[tokio::test]
    async fn not_a_review_is_bad() {
        let inj = Injector::try_new(Arc::new(WebhookConfig::default())).unwrap();
        assert!(matches!(inj.review(b"{").await, Err(BadReview::Json(_))));
        assert!(matches!(inj.review(b"[1]").await, Err(BadReview::Json(_))));
        let no_req = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;
        assert!(matches!(
            inj.review(no_req).await,
            Err(BadReview::NoRequest)
        ));
    }

    #[tokio::test]
    async fn injected_pod_gets_a_base64_patch_and_full_audit() {
        let body = review(pod_request(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-", "annotations": {
                "vault-injector.io/inject": "true",
                "vault-injector.io/role": "web",
                "vault-injector.io/secret-db": "secret/data/db",
                "vault-injector.io/env-TOKEN": "secret/data/api#token"}},
            "spec": {"serviceAccountName": "web-sa", "containers": [{"name": "app", "image": "x", "command": ["/app"]}]}
        })));
        let (v, audit) = run(&body).await;
        let resp = &v["response"];
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(resp["uid"], "u-1");
        assert_eq!(resp["allowed"], true);
        assert_eq!(resp["patchType"], "JSONPatch");
        use base64::Engine;
        let patch = base64::engine::general_purpose::STANDARD
            .decode(resp["patch"].as_str().expect("patch is a base64 string"))
            .unwrap();
        let _: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        assert_eq!(
            audit.patch_digest.as_deref(),
            Some(hex::encode(Sha256::digest(&patch)).as_str())
        );
        assert_eq!(audit.decision, Decision::Injected);
        assert_eq!(audit.uid, "u-1");
        assert_eq!(audit.namespace, "shop");
        assert_eq!(audit.pod, "web-*");
        assert_eq!(audit.service_account, "web-sa");
        assert_eq!(audit.user, "alice");
        assert_eq!(audit.operation, "CREATE");
        assert!(audit.dry_run);
        assert_eq!(audit.role.as_deref(), Some("web"));
        assert_eq!(audit.secrets[0].path, "secret/data/db");
        assert_eq!(audit.env_vars, ["TOKEN"]);
        assert_eq!(audit.containers, ["app"]);
    }

    #[tokio::test]
    async fn invalid_annotations_are_denied_with_the_annotation_named() {
        let body = review(pod_request(json!({
            "metadata": {"name": "p", "annotations": {
                "vault-injector.io/inject": "true",
                "vault-injector.io/role": "web",
                "vault-injector.io/secret-db": "kv/db",
                "vault-injector.io/file-db": "../../etc/shadow"}},
            "spec": {"containers": [{"name": "app", "image": "x"}]}
        })));
        let (v, audit) = run(&body).await;
        assert_eq!(v["response"]["allowed"], false);
        let msg = v["response"]["status"]["message"].as_str().unwrap();
        assert!(msg.contains("vault-injector.io/file-db"), "{msg}");
        assert_eq!(audit.decision, Decision::Denied);
        assert_eq!(audit.reason, msg);
        assert!(v["response"].get("patch").is_none());
    }

    #[tokio::test]
    async fn other_requests_pass_untouched() {
        let mut upd = pod_request(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}));
        upd["operation"] = "UPDATE".into();
        let (v, audit) = run(&review(upd)).await;
        assert_eq!(v["response"]["allowed"], true);
        assert!(v["response"].get("patch").is_none());
        assert_eq!(audit.decision, Decision::Skipped);

        let mut svc = pod_request(json!({"metadata": {"name": "s"}, "spec": {}}));
        svc["kind"] = json!({"group": "", "version": "v1", "kind": "Service"});
        let (v, audit) = run(&review(svc)).await;
        assert_eq!(v["response"]["allowed"], true);
        assert_eq!(audit.decision, Decision::Skipped);
    }

    /// Odd inputs get an answer or a 400, never a panic.
    #[tokio::test]
    async fn odd_objects_are_answered() {
        let objects = [
            json!(null),
            json!({}),
            json!({"metadata": {}}),
            json!({"metadata": {"annotations": {"vault-injector.io/inject": "true"}}}),
            json!({"metadata": {"annotations": {"vault-injector.io/inject": "true",
                "vault-injector.io/secret-a": "kv/a", "vault-injector.io/role": "r"}}}),
            json!({"metadata": {"annotations": {"vault-injector.io/inject": 5}}, "spec": {"containers": []}}),
            json!({"metadata": {"annotations": {"vault-injector.io/inject": "true",
                "vault-injector.io/secret-a": "kv/a", "vault-injector.io/role": "r"}},
                "spec": {"containers": []}}),
            json!({"kind": "Deployment", "metadata": {}}),
            json!([1, 2]),
        ];
        let inj = Injector::try_new(Arc::new(WebhookConfig::default())).unwrap();
        let mut answered = Vec::new();
        for obj in objects {
            let body = review(pod_request(obj.clone()));
            // Objects the API server could never send (metadata not typed
            // as Kubernetes defines it) make the whole review unreadable.
            let r = match inj.review(&body).await {
                Ok(r) => r,
                Err(BadReview::Json(_)) => continue,
                Err(e) => panic!("{obj}: {e}"),
            };
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert!(v["response"]["allowed"].is_boolean(), "{obj}");
            if v["response"]["allowed"] == false {
                assert!(!r.audit.reason.is_empty(), "{obj}");
            }
            answered.push((obj, r.audit.decision));
        }
        let decisions: Vec<_> = answered.iter().map(|(_, d)| *d).collect();
        assert_eq!(
            decisions,
            [
                Decision::Error,   // null object
                Decision::Skipped, // {}
                Decision::Skipped, // no annotations
                Decision::Denied,  // inject without anything to inject
                Decision::Denied,  // no spec
                Decision::Injected,
                Decision::Skipped, // kind says Deployment: not a pod to us
            ],
            "{answered:?}"
        );
    }

    #[tokio::test]
    async fn warnings_reach_the_client() {
        let mut cfg = WebhookConfig::default();
        cfg.agent.native_sidecar = false;
        let inj = Injector::try_new(Arc::new(cfg)).unwrap();
        let body = review(pod_request(json!({
            "metadata": {"name": "job-x", "annotations": {
                "vault-injector.io/inject": "true",
                "vault-injector.io/role": "r",
                "vault-injector.io/secret-db": "kv/db"}},
            "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "app", "image": "x"}]}
        })));
        let r = inj.review(&body).await.unwrap();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["response"]["allowed"], true);
        let w = v["response"]["warnings"][0].as_str().unwrap();
        assert!(w.contains("init-only"), "{w}");
    }

    #[tokio::test]
    async fn unreadable_pod_is_denied_as_error() {
        let body = review(pod_request(json!({
            "metadata": {"name": "p"}, "spec": {"containers": "not-a-list"}
        })));
        let (v, audit) = run(&body).await;
        assert_eq!(v["response"]["allowed"], false);
        assert_eq!(audit.decision, Decision::Error);
        assert!(audit.reason.contains("not a valid Pod"), "{}", audit.reason);
    }

    /// The webhook reads pods with only the fields the core uses (`lean`);
    /// `mutate` and `lint` read them whole. Both must give the same answer
    /// for every pod shape, or the lean reading dropped a field plan or
    /// patch reads.
    #[tokio::test]
    async fn lean_and_full_pod_readings_give_the_same_answer() {
        let mut pods: Vec<Value> = std::fs::read_dir("tests/data")
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter_map(|p| {
                let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                let o = v["request"]["object"].clone();
                o.is_object().then_some(o)
            })
            .collect();
        assert!(pods.len() >= 5, "fixtures: {}", pods.len());
        let ann = |extra: Value| {
            let mut a = json!({
                "vault-injector.io/inject": "true",
                "vault-injector.io/role": "app",
                "vault-injector.io/secret-db": "secret/data/db",
            });
            a.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            a
        };
        pods.extend([
            // `vault:` env references and exec, with and without a command.
            json!({"metadata": {"name": "exec", "annotations": ann(json!({
                    "vault-injector.io/entrypoint-migrate": "[\"/bin/migrate\"]"}))},
                "spec": {"containers": [{"name": "app", "image": "x", "command": ["/app"],
                    "args": ["--port", "80"],
                    "env": [{"name": "PASSWORD", "value": "vault:secret/data/db#password"},
                            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
                    "initContainers": [{"name": "migrate", "image": "m",
                        "env": [{"name": "DSN", "value": "vault:secret/data/db#dsn#2"}]}]}}),
            // Pod-level user and group, restart policy, old-style account.
            json!({"metadata": {"generateName": "job-", "namespace": "batch", "annotations": ann(json!({}))},
                "spec": {"serviceAccount": "legacy", "restartPolicy": "Never",
                    "securityContext": {"runAsUser": 1000, "runAsGroup": 2000, "fsGroup": 3000},
                    "containers": [{"name": "app", "image": "x",
                        "resources": {"limits": {"memory": "1Gi"}},
                        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": false}]}],
                    "volumes": [{"name": "data", "emptyDir": {}}]}}),
            // Injected before; a container added since gets the mount at the
            // path the first injection chose.
            json!({"metadata": {"name": "again", "annotations": ann(json!({
                    "vault-injector.io/status": "injected"}))},
                "spec": {"containers": [
                    {"name": "app", "image": "x", "volumeMounts": [
                        {"name": "vault-injector-secrets", "mountPath": "/etc/secrets", "readOnly": true}]},
                    {"name": "late", "image": "y"}],
                    "volumes": [{"name": "vault-injector-secrets", "emptyDir": {"medium": "Memory"}}]}}),
            // A reserved volume name.
            json!({"metadata": {"name": "clash", "annotations": ann(json!({}))},
                "spec": {"containers": [{"name": "app", "image": "x"}],
                    "volumes": [{"name": "vault-injector-secrets", "emptyDir": {}}]}}),
            // The injector's own pod.
            json!({"metadata": {"name": "self", "labels": {"app.kubernetes.io/name": "vault-injector"},
                    "annotations": ann(json!({}))},
                "spec": {"containers": [{"name": "app", "image": "x"}]}}),
            // Required fields missing: k8s-openapi reads them as empty.
            json!({"metadata": {"name": "sparse", "annotations": ann(json!({}))},
                "spec": {"volumes": [{"emptyDir": {}}]}}),
            json!({"metadata": {"name": "sparse2", "annotations": ann(json!({}))},
                "spec": {"containers": [{"image": "x", "env": [{"value": "v"}],
                    "volumeMounts": [{"name": "v"}]}]}}),
            // The vault-k8s dialect.
            json!({"metadata": {"name": "vk", "annotations": {
                    "vault.hashicorp.com/agent-inject": "true",
                    "vault.hashicorp.com/role": "app",
                    "vault.hashicorp.com/agent-inject-secret-db": "secret/data/db"}},
                "spec": {"containers": [{"name": "app", "image": "x"}]}}),
        ]);
        let mut classic = WebhookConfig::default();
        classic.agent.native_sidecar = false;
        for cfg in [WebhookConfig::default(), classic] {
            let gate = Gate::from_config(&cfg).unwrap();
            for obj in &pods {
                let full: Pod = serde_json::from_value(obj.clone()).unwrap();
                let lean = Pod::from(serde_json::from_value::<lean::LeanPod>(obj.clone()).unwrap());
                let mut answers = Vec::new();
                for pod in [&full, &lean] {
                    let mut audit = AdmissionAudit::default();
                    let m = mutate_pod(pod, &cfg, &gate, Volumes::Offline, &mut audit).await;
                    let m = m
                        .map(|m| (m.patch.map(|p| p.to_bytes()), m.warnings))
                        .map_err(|e| e.to_string());
                    let mut line: Value =
                        serde_json::from_str(&vault_injector_core::audit::admission_line(&audit))
                            .unwrap();
                    line.as_object_mut().unwrap().remove("ts");
                    answers.push((m, line));
                }
                assert_eq!(answers[0], answers[1], "{obj}");
            }
        }
        // A wrong type in a field the core reads fails both readings (so
        // the generic path reports it).
        for broken in [
            json!({"spec": {"containers": "x"}}),
            json!({"spec": {"containers": [{"name": 5}]}}),
            json!({"spec": {"containers": [{"name": "a", "volumeMounts": [{"name": "v", "readOnly": "yes"}]}]}}),
            json!({"spec": {"containers": [{"name": "a", "env": {"A": "b"}}]}}),
            json!({"spec": {"securityContext": {"runAsUser": "root"}}}),
            json!({"metadata": {"annotations": {"a": 1}}}),
        ] {
            assert!(
                serde_json::from_value::<Pod>(broken.clone()).is_err(),
                "{broken}"
            );
            assert!(
                serde_json::from_value::<lean::LeanPod>(broken.clone()).is_err(),
                "{broken}"
            );
        }
    }

    #[test]
    fn response_review_is_json_whatever_the_text() {
        let odd = "quote \" backslash \\ newline \n tab \t nul \u{0} snowman \u{2603}";
        for (allowed, patch, warnings) in [
            (
                true,
                Some(b"[{\"op\":\"add\"}]\xff".to_vec()),
                Some(vec![odd.to_string()]),
            ),
            (false, None, None),
            (true, Some(Vec::new()), None),
        ] {
            let mut status = Status::default();
            if !allowed {
                status.message = odd.into();
            }
            let answer = Answer {
                api_version: String::new(),
                uid: odd.into(),
                allowed,
                status,
                patch: patch.clone(),
                warnings: warnings.clone(),
            };
            let v: Value = serde_json::from_slice(&encode_review(&answer).unwrap()).unwrap();
            assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
            assert_eq!(v["kind"], "AdmissionReview");
            let r = &v["response"];
            assert_eq!(r["uid"], odd);
            assert_eq!(r["allowed"], allowed);
            if allowed {
                assert_eq!(r["status"], json!({}));
            } else {
                assert_eq!(r["status"]["message"], odd);
            }
            use base64::Engine;
            match &patch {
                Some(p) => {
                    let got = base64::engine::general_purpose::STANDARD
                        .decode(r["patch"].as_str().unwrap())
                        .unwrap();
                    assert_eq!(&got, p);
                    assert_eq!(r["patchType"], "JSONPatch");
                }
                None => {
                    assert!(r.get("patch").is_none() && r.get("patchType").is_none());
                }
            }
            match &warnings {
                Some(w) => assert_eq!(r["warnings"], json!(w)),
                None => assert!(r.get("warnings").is_none()),
            }
        }
    }
}
