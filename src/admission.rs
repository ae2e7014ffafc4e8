//! AdmissionReview in, AdmissionReview out: the one place where a business
//! error becomes a denial. The HTTP server (`server`) calls [`Injector`];
//! the `mutate` command calls [`mutate_pod`], the same core.
//!
//! Nothing here has side effects (no Vault, no Kubernetes API), so dry-run
//! requests are answered exactly like real ones.

use std::sync::Arc;

use json_patch::Patch;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, TypeMeta};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::audit::{AdmissionAudit, AuditSecret, Decision};
use crate::config::WebhookConfig;
use crate::plan::{self, Planned, RequestContext};
use crate::policy::gate::{Gate, GateDenial};
use crate::policy::PolicyRequest;

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
    #[error("cannot serialize the patch: {0}")]
    Patch(serde_json::Error),
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
            Error::NotAPod(_) | Error::NoObject | Error::Patch(_) => Decision::Error,
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
    pub fn try_new(config: Arc<WebhookConfig>) -> Result<Self, crate::policy::gate::Error> {
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
        // Pods are all the webhook is registered for, and reading one
        // straight into typed structs costs half as much as going through
        // `DynamicObject` (whose flattened map is buffered twice). Anything
        // else, including a pod too broken to read, takes the generic path.
        let (resp, audit, owners) = match serde_json::from_slice::<AdmissionReview<Pod>>(body) {
            Ok(review) => {
                let req: AdmissionRequest<Pod> =
                    review.try_into().map_err(|_| BadReview::NoRequest)?;
                self.decide(req, Ok).await
            }
            Err(_) => {
                let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)?;
                let req: AdmissionRequest<DynamicObject> =
                    review.try_into().map_err(|_| BadReview::NoRequest)?;
                self.decide(req, pod_from_dynamic).await
            }
        };
        let body = encode_review(&resp.types, &resp)?;
        Ok(Reviewed {
            body,
            audit,
            owners,
        })
    }

    async fn decide<T: kube::Resource>(
        &self,
        mut req: AdmissionRequest<T>,
        to_pod: fn(T) -> Result<Pod>,
    ) -> (
        AdmissionResponse,
        AdmissionAudit,
        Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    ) {
        let mut resp = AdmissionResponse::from(&req);
        let mut audit = AdmissionAudit {
            uid: std::mem::take(&mut req.uid),
            namespace: req.namespace.take().unwrap_or_default(),
            pod: std::mem::take(&mut req.name),
            user: std::mem::take(&mut req.user_info.username).unwrap_or_default(),
            operation: operation_str(&req.operation).into(),
            dry_run: req.dry_run,
            ..Default::default()
        };
        let is_pod = req.kind.group.is_empty() && req.kind.kind == "Pod";
        if !is_pod || req.operation != Operation::Create || req.sub_resource.is_some() {
            audit.decision = Decision::Skipped;
            audit.reason = format!("not a pod CREATE ({} {})", audit.operation, req.kind.kind);
            return (resp, audit, Vec::new());
        }
        let mut owners = Vec::new();
        let mutation = match req.object.take().ok_or(Error::NoObject).and_then(to_pod) {
            Ok(mut pod) => {
                let m =
                    mutate_pod(&pod, &self.config, &self.gate, Volumes::Resolve, &mut audit).await;
                owners = pod.metadata.owner_references.take().unwrap_or_default();
                m
            }
            Err(e) => Err(e),
        };
        let outcome = mutation.and_then(|m| {
            let patch = m
                .patch
                .map(|p| serde_json::to_vec(&p))
                .transpose()
                .map_err(Error::Patch)?;
            Ok((patch, m.warnings))
        });
        // The one place a business error becomes a denial.
        let resp = match outcome {
            Ok((patch, warnings)) => {
                audit.patch_digest = patch.as_deref().map(|p| hex::encode(Sha256::digest(p)));
                // `encode_review` writes `patchType` whenever there is a
                // patch; the bytes are set here directly so they are
                // serialized (and hashed) once.
                resp.patch = patch;
                if !warnings.is_empty() {
                    resp.warnings = Some(warnings);
                }
                resp
            }
            Err(e) => {
                audit.decision = e.decision();
                audit.reason = e.to_string();
                resp.deny(&audit.reason)
            }
        };
        (resp, audit, owners)
    }
}

/// kube's `AdmissionResponse` serializes its patch bytes as a JSON array of
/// numbers; the API server's canonical form for `[]byte` is a base64 string,
/// which is also a third of the size. Everything else is taken as is.
fn encode_review(types: &TypeMeta, resp: &AdmissionResponse) -> serde_json::Result<Vec<u8>> {
    use base64::Engine;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Out<'a> {
        api_version: &'a str,
        kind: &'a str,
        response: Response<'a>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Response<'a> {
        uid: &'a str,
        allowed: bool,
        status: &'a kube::core::Status,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch_type: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        warnings: Option<&'a Vec<String>>,
    }
    let patch = resp
        .patch
        .as_deref()
        .map(|p| base64::engine::general_purpose::STANDARD.encode(p));
    serde_json::to_vec(&Out {
        api_version: if types.api_version.is_empty() {
            "admission.k8s.io/v1"
        } else {
            &types.api_version
        },
        kind: "AdmissionReview",
        response: Response {
            uid: &resp.uid,
            allowed: resp.allowed,
            status: &resp.result,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            warnings: resp.warnings.as_ref(),
        },
    })
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
    pub patch: Option<Patch>,
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
        Planned::Remount(targets) => {
            audit.decision = Decision::Injected;
            audit.containers = targets.iter().map(|t| t.name.clone()).collect();
            audit.reason = format!(
                "already injected; mounted the secrets into containers added since: {}",
                audit.containers.join(", ")
            );
            Ok(Mutation {
                patch: Some(crate::patch::build_remount(pod, &targets)),
                warnings: Vec::new(),
            })
        }
        Planned::Inject(mut p) => {
            // Filled in first so that a denial's audit line says what was asked.
            audit.role = p.role.clone();
            audit.secrets = p
                .agent
                .secrets
                .iter()
                .map(|s| AuditSecret {
                    name: s.name.clone(),
                    path: s.path.clone(),
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
                secret_paths: p
                    .agent
                    .secrets
                    .iter()
                    .map(|s| (s.name.clone(), s.path.clone()))
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
            p.finish(&defaults)?;
            p.extra_volumes = resolved;
            audit.role = p.role.clone();
            let patch = crate::patch::build(pod, &p, cfg);
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
                patch: Some(patch),
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
        let patch: Patch = serde_json::from_slice(&bytes).unwrap();
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
        let cfg = crate::config::AgentConfig::from_json(
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
        let _: Patch = serde_json::from_slice(&patch).unwrap();
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
}
