//! The webhook's reading of an AdmissionReview: only the fields the
//! admission core uses are kept; everything else in the pod (resources,
//! probes, ports, tolerations, managed fields, ...) is skipped without being
//! allocated. Reading the whole `Pod` into k8s-openapi types cost the
//! webhook a fifth of its CPU under load (docs/benchmarks.md).
//!
//! The fields that are read follow k8s-openapi's rules (a missing required
//! field such as a container's name reads as empty; a value of the wrong
//! type fails), so a pod that fails here fails the full reading too, and the
//! fallback in [`super::Injector::review`] names what is wrong. Fields that
//! are skipped are not type-checked: the API server decoded the object into
//! its own types before calling us, so a request from it never has them
//! wrong.
//!
//! The result is a k8s-openapi [`Pod`] with only these fields set; plan and
//! patch read nothing else (`tests/mutation.rs` checks that every fixture
//! gives the same patch through this reading and through the full one).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, Pod, PodSecurityContext, PodSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::admission::Operation;
use kube::core::GroupVersionKind;
use serde::de::IgnoredAny;
use serde::Deserialize;

/// An AdmissionReview whose object is read as `O`: [`LeanPod`] first, the
/// untyped `DynamicObject` when that fails. Everything but the object is
/// read the same way either time.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Review<O> {
    #[serde(default)]
    api_version: String,
    request: Option<Request<O>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request<O> {
    uid: String,
    kind: GroupVersionKind,
    /// Required by the AdmissionReview schema; not used.
    #[allow(dead_code)]
    resource: IgnoredAny,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    user_info: UserInfo,
    object: Option<O>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
struct UserInfo {
    #[serde(default)]
    username: Option<String>,
}

impl<O> Review<O> {
    /// The request's facts, and its object made a pod by `to_pod`.
    pub(super) fn split(
        self,
        to_pod: impl FnOnce(O) -> super::Result<Pod>,
    ) -> Result<(Facts, Option<super::Result<Pod>>), super::BadReview> {
        let req = self.request.ok_or(super::BadReview::NoRequest)?;
        let facts = Facts {
            api_version: self.api_version,
            uid: req.uid,
            kind: req.kind,
            sub_resource: req.sub_resource,
            name: req.name,
            namespace: req.namespace,
            operation: req.operation,
            username: req.user_info.username,
            dry_run: req.dry_run,
        };
        Ok((facts, req.object.map(to_pod)))
    }
}

/// What the core needs to know about a request, however its object was read.
pub(super) struct Facts {
    pub api_version: String,
    pub uid: String,
    pub kind: GroupVersionKind,
    pub sub_resource: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub operation: Operation,
    pub username: Option<String>,
    pub dry_run: bool,
}

#[derive(Deserialize)]
pub(super) struct LeanPod {
    #[serde(default)]
    metadata: Meta,
    spec: Option<Spec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    generate_name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    service_account_name: Option<String>,
    service_account: Option<String>,
    security_context: Option<SecurityContext>,
    restart_policy: Option<String>,
    #[serde(default)]
    containers: Vec<LeanContainer>,
    init_containers: Option<Vec<LeanContainer>>,
    volumes: Option<Vec<Named>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecurityContext {
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanContainer {
    #[serde(default)]
    name: String,
    command: Option<Vec<String>>,
    env: Option<Vec<Env>>,
    volume_mounts: Option<Vec<Mount>>,
}

#[derive(Deserialize)]
struct Env {
    #[serde(default)]
    name: String,
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mount {
    #[serde(default)]
    name: String,
    #[serde(default)]
    mount_path: String,
    read_only: Option<bool>,
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    name: String,
}

impl From<LeanPod> for Pod {
    fn from(p: LeanPod) -> Self {
        let m = p.metadata;
        Pod {
            metadata: ObjectMeta {
                name: m.name,
                generate_name: m.generate_name,
                namespace: m.namespace,
                labels: m.labels,
                annotations: m.annotations,
                owner_references: m.owner_references,
                ..Default::default()
            },
            spec: p.spec.map(|s| PodSpec {
                service_account_name: s.service_account_name,
                service_account: s.service_account,
                security_context: s.security_context.map(|c| PodSecurityContext {
                    run_as_user: c.run_as_user,
                    run_as_group: c.run_as_group,
                    ..Default::default()
                }),
                restart_policy: s.restart_policy,
                containers: s.containers.into_iter().map(container).collect(),
                init_containers: s
                    .init_containers
                    .map(|cs| cs.into_iter().map(container).collect()),
                volumes: s.volumes.map(|vs| {
                    vs.into_iter()
                        .map(|v| Volume {
                            name: v.name,
                            ..Default::default()
                        })
                        .collect()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }
}

fn container(c: LeanContainer) -> Container {
    Container {
        name: c.name,
        command: c.command,
        env: c.env.map(|es| {
            es.into_iter()
                .map(|e| EnvVar {
                    name: e.name,
                    value: e.value,
                    value_from: None,
                })
                .collect()
        }),
        volume_mounts: c.volume_mounts.map(|ms| {
            ms.into_iter()
                .map(|m| VolumeMount {
                    name: m.name,
                    mount_path: m.mount_path,
                    read_only: m.read_only,
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    }
}
