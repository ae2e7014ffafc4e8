//! A [`Plan`] -> an RFC 6902 JSON patch against the pod as received.
//!
//! Built from typed operations and pointers made with
//! `PointerBuf::from_tokens` (which escapes `/` and `~`), never from strings.
//! Arrays and maps that are missing are added whole; existing ones are
//! appended to, so the patch is right for any pod shape. Operations that
//! address existing init containers by index come before the agent is
//! inserted at the front, because that insertion shifts the indices.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, ExecAction, Pod, PodSpec, Probe,
    ProjectedVolumeSource, SeccompProfile, SecretVolumeSource, SecurityContext,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::ser::SerializeStruct;
use serde::Serialize;

use crate::annotations::{Lifecycle, STATUS, STATUS_INJECTED};
use crate::config::WebhookConfig;
use crate::contract::{AuthMethod, AGENT_BIN, AGENT_CONFIG_ENV, SECRETS_DIR, STATE_DIR};
use crate::plan::{
    ExecTarget, Plan, Remount, AGENT_CONTAINER, BIN_DIR, BIN_VOLUME, COPY_CONTAINER, EXTRA_VOLUME,
    INIT_CONTAINER, SECRETS_VOLUME, STATE_VOLUME, TOKEN_DIR, TOKEN_VOLUME,
};

/// How long the startup probe of the native sidecar waits for the first
/// render (seconds, at one probe per second).
pub const STARTUP_PROBE_SECONDS: i32 = 120;
/// Lifetime of the agent's projected service-account token.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3600;

/// A JSON patch of `add` operations (the only kind injection needs) whose
/// values stay typed until the patch is written: serializing Kubernetes
/// structs straight to bytes costs a fraction of building a
/// `serde_json::Value` tree first (docs/benchmarks.md).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodPatch(pub Vec<AddOp>);

/// `{"op": "add", "path": ..., "value": ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct AddOp {
    pub path: PointerBuf,
    pub value: OpValue,
}

/// What an [`AddOp`] adds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OpValue {
    Volume(Box<Volume>),
    Volumes(Vec<Volume>),
    Mount(VolumeMount),
    Mounts(Vec<VolumeMount>),
    Container(Box<Container>),
    Containers(Vec<Container>),
    Env(EnvVar),
    Envs(Vec<EnvVar>),
    Strings(Vec<String>),
    Str(&'static str),
    Map(BTreeMap<&'static str, &'static str>),
    Bool(bool),
}

impl Serialize for AddOp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut op = s.serialize_struct("AddOp", 3)?;
        op.serialize_field("op", "add")?;
        op.serialize_field("path", &self.path)?;
        op.serialize_field("value", &self.value)?;
        op.end()
    }
}

impl Serialize for PodPatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl PodPatch {
    /// The patch as the API server wants it (before base64).
    pub fn to_bytes(&self) -> Vec<u8> {
        // An injection patch is a few KiB.
        crate::json_sized(self, 4096)
    }

    /// The same operations as a `json_patch::Patch`, to apply locally
    /// (`mutate`, tests).
    pub fn to_json_patch(&self) -> json_patch::Patch {
        serde_json::from_slice(&self.to_bytes()).expect("a patch reads back")
    }
}

macro_rules! op_value {
    ($($t:ty => $one:ident, $many:ident;)*) => {$(
        impl From<$t> for OpValue {
            fn from(v: $t) -> Self {
                OpValue::$one(v.into())
            }
        }
        impl From<Vec<$t>> for OpValue {
            fn from(v: Vec<$t>) -> Self {
                OpValue::$many(v)
            }
        }
    )*};
}
op_value! {
    Volume => Volume, Volumes;
    VolumeMount => Mount, Mounts;
    Container => Container, Containers;
    EnvVar => Env, Envs;
}

/// The patch that injects `plan` into `pod`.
pub fn build(pod: &Pod, plan: &Plan, cfg: &WebhookConfig) -> PodPatch {
    let empty = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let mut ops = Vec::with_capacity(8 + plan.targets.len());

    let mut volumes = Vec::new();
    if plan.needs_agent {
        volumes.push(memory_volume(
            SECRETS_VOLUME,
            &cfg.agent.secrets_volume_size,
        ));
        volumes.push(memory_volume(STATE_VOLUME, &cfg.agent.state_volume_size));
        if let Some(secret) = &plan.agent_extra_secret {
            volumes.push(Volume {
                name: EXTRA_VOLUME.into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    if uses_token(plan) && (plan.needs_agent || !plan.exec.is_empty()) {
        volumes.push(token_volume());
    }
    if !plan.exec.is_empty() {
        volumes.push(memory_volume(BIN_VOLUME, BIN_VOLUME_SIZE));
    }
    volumes.extend(plan.extra_volumes.iter().map(|v| v.volume.clone()));
    if !volumes.is_empty() {
        add_all(
            &mut ops,
            &["spec", "volumes"],
            spec.volumes.is_some(),
            volumes,
        );
    }
    // Mounts (and, below, command rewrites) address existing containers by
    // index, so they come before anything is inserted into the arrays.
    let secrets_mount = plan.needs_agent.then(|| VolumeMount {
        name: SECRETS_VOLUME.into(),
        mount_path: plan.secrets_mount_path.clone(),
        read_only: Some(true),
        ..Default::default()
    });
    let extra: Vec<VolumeMount> = plan.extra_volumes.iter().map(|v| v.mount.clone()).collect();
    let secret_dirs: Vec<VolumeMount> = plan
        .extra_secret_mounts
        .iter()
        .filter(|_| plan.needs_agent)
        .map(|(path, dir)| VolumeMount {
            name: SECRETS_VOLUME.into(),
            mount_path: path.clone(),
            sub_path: Some(dir.clone()),
            read_only: Some(true),
            ..Default::default()
        })
        .collect();
    for t in &plan.targets {
        let mut m: Vec<VolumeMount> = secrets_mount.iter().cloned().collect();
        m.extend(secret_dirs.iter().cloned());
        m.extend(extra.iter().cloned());
        if plan
            .exec
            .iter()
            .any(|e| e.init == t.init && e.index == t.index)
        {
            m.extend(exec_mounts(plan));
        }
        container_mounts(&mut ops, spec, t.init, t.index, m);
    }
    for e in &plan.exec {
        if !plan
            .targets
            .iter()
            .any(|t| t.init == e.init && t.index == e.index)
        {
            container_mounts(&mut ops, spec, e.init, e.index, exec_mounts(plan));
        }
        exec_rewrite(&mut ops, plan, e);
    }

    if !plan.exec.is_empty() {
        let copy = copy_container(plan, cfg);
        insert_first_init(&mut ops, spec.init_containers.is_some(), copy);
    }
    if plan.needs_agent {
        let config = plan.agent.to_json();
        let agent = |name: &str, mode: &str, native: bool, probe: bool| {
            agent_container(name, mode, native, probe, &config, plan, cfg)
        };
        let native = plan.native_sidecar;
        let (init, sidecar) = match (plan.lifecycle, native) {
            (Lifecycle::Both, true) => (Some(agent(AGENT_CONTAINER, "sidecar", true, true)), None),
            (Lifecycle::Both, false) => (
                Some(agent(INIT_CONTAINER, "init", false, false)),
                Some(agent(AGENT_CONTAINER, "sidecar", false, false)),
            ),
            (Lifecycle::InitOnly, _) => (Some(agent(INIT_CONTAINER, "init", false, false)), None),
            // Nothing waits for a sidecar-only agent, so no startup probe.
            (Lifecycle::SidecarOnly, true) => {
                (Some(agent(AGENT_CONTAINER, "sidecar", true, false)), None)
            }
            (Lifecycle::SidecarOnly, false) => {
                (None, Some(agent(AGENT_CONTAINER, "sidecar", false, false)))
            }
        };
        if let Some(init) = init {
            // First, so that every other init container and app container
            // starts with the secrets already rendered.
            let has_inits = spec.init_containers.is_some() || !plan.exec.is_empty();
            insert_first_init(&mut ops, has_inits, init);
        }
        if let Some(sidecar) = sidecar {
            ops.push(add(
                PointerBuf::from_tokens(["spec", "containers", "-"]),
                sidecar,
            ));
        }
    }

    if let Some(share) = plan
        .share_process_namespace
        .filter(|s| spec.share_process_namespace != Some(*s))
    {
        ops.push(add(
            PointerBuf::from_tokens(["spec", "shareProcessNamespace"]),
            OpValue::Bool(share),
        ));
    }

    // Offline (`mutate`), a pod asking only for volume profiles gets
    // nothing: marking it injected would claim what it does not carry.
    if !ops.is_empty() {
        status_annotation(&mut ops, pod, plan.vault_k8s);
    }
    PodPatch(ops)
}

/// Size limit of the memory volume holding the binary copy for `exec`.
pub const BIN_VOLUME_SIZE: &str = "64Mi";

/// Puts `c` at the front of `initContainers`, creating the array when the
/// pod (as patched so far) has none.
fn insert_first_init(ops: &mut Vec<AddOp>, exists: bool, c: Container) {
    if exists {
        ops.push(add(
            PointerBuf::from_tokens(["spec", "initContainers", "0"]),
            c,
        ));
    } else {
        ops.push(add(
            PointerBuf::from_tokens(["spec", "initContainers"]),
            vec![c],
        ));
    }
}

fn exec_mounts(plan: &Plan) -> Vec<VolumeMount> {
    let mut m = vec![VolumeMount {
        name: BIN_VOLUME.into(),
        mount_path: BIN_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    }];
    if uses_token(plan) {
        m.push(VolumeMount {
            name: TOKEN_VOLUME.into(),
            mount_path: TOKEN_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    m
}

/// `command: [/vault/bin/vault-injector-agent, exec, --, ORIGINAL...]` (args are
/// left as they are: the kubelet appends them after the command) and the
/// config `exec` reads, which names paths and keys, never values.
fn exec_rewrite(ops: &mut Vec<AddOp>, plan: &Plan, e: &ExecTarget) {
    let list = if e.init {
        "initContainers"
    } else {
        "containers"
    };
    let index = e.index.to_string();
    let mut command = vec![
        format!("{BIN_DIR}/{AGENT_BIN}"),
        "exec".to_string(),
        "--".to_string(),
    ];
    command.extend(e.command.iter().cloned());
    ops.push(add(
        PointerBuf::from_tokens(["spec", list, &index, "command"]),
        OpValue::Strings(command),
    ));
    let mut cfg = plan.agent.clone();
    cfg.secrets.clear();
    cfg.env
        .retain(|s| s.containers.is_empty() || s.containers.contains(&e.name));
    let var = EnvVar {
        name: AGENT_CONFIG_ENV.into(),
        value: Some(cfg.to_json()),
        value_from: None,
    };
    add_all(ops, &["spec", list, &index, "env"], e.has_env, vec![var]);
}

fn copy_container(plan: &Plan, cfg: &WebhookConfig) -> Container {
    let mut c = agent_container(COPY_CONTAINER, "init", false, false, "", plan, cfg);
    c.args = Some(vec!["copy-self".into(), BIN_DIR.into()]);
    c.env = None;
    c.volume_mounts = Some(vec![VolumeMount {
        name: BIN_VOLUME.into(),
        mount_path: BIN_DIR.into(),
        ..Default::default()
    }]);
    c
}

/// The patch for a pod seen again after injection: the mounts the planner
/// found missing, nothing else.
pub fn build_remount(pod: &Pod, remounts: &[Remount]) -> PodPatch {
    let empty = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let mut ops = Vec::with_capacity(remounts.len());
    for r in remounts {
        container_mounts(
            &mut ops,
            spec,
            r.target.init,
            r.target.index,
            r.mounts.clone(),
        );
    }
    PodPatch(ops)
}

fn uses_token(plan: &Plan) -> bool {
    plan.agent.auth.method != AuthMethod::Approle
}

fn add(path: PointerBuf, value: impl Into<OpValue>) -> AddOp {
    AddOp {
        path,
        value: value.into(),
    }
}

/// Appends `items` to the array at `parent`, creating it when absent.
fn add_all<T>(ops: &mut Vec<AddOp>, parent: &[&str], exists: bool, items: Vec<T>)
where
    T: Into<OpValue>,
    Vec<T>: Into<OpValue>,
{
    if exists {
        for item in items {
            let mut p = PointerBuf::from_tokens(parent.iter().copied());
            p.push_back("-");
            ops.push(add(p, item));
        }
    } else {
        ops.push(add(PointerBuf::from_tokens(parent.iter().copied()), items));
    }
}

fn container_mounts(
    ops: &mut Vec<AddOp>,
    spec: &PodSpec,
    init: bool,
    index: usize,
    mounts: Vec<VolumeMount>,
) {
    if mounts.is_empty() {
        return;
    }
    let (list, container) = if init {
        (
            "initContainers",
            spec.init_containers.as_ref().and_then(|c| c.get(index)),
        )
    } else {
        ("containers", spec.containers.get(index))
    };
    let exists = container.is_some_and(|c| c.volume_mounts.is_some());
    let index = index.to_string();
    add_all(ops, &["spec", list, &index, "volumeMounts"], exists, mounts);
}

fn status_annotation(ops: &mut Vec<AddOp>, pod: &Pod, vault_k8s: bool) {
    let mut keys = vec![STATUS];
    if vault_k8s {
        keys.push(crate::compat::vaultk8s::STATUS);
    }
    if pod.metadata.annotations.is_some() {
        for k in keys {
            ops.push(add(
                PointerBuf::from_tokens(["metadata", "annotations", k]),
                OpValue::Str(STATUS_INJECTED),
            ));
        }
    } else {
        let map = keys.into_iter().map(|k| (k, STATUS_INJECTED)).collect();
        ops.push(add(
            PointerBuf::from_tokens(["metadata", "annotations"]),
            OpValue::Map(map),
        ));
    }
}

fn memory_volume(name: &str, size: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(Quantity(size.into())),
        }),
        ..Default::default()
    }
}

/// The agent gets its own short-lived token rather than relying on the
/// default service-account mount: that mount is absent when the pod sets
/// `automountServiceAccountToken: false`, and it is added by an admission
/// plugin that runs before webhooks, so it never reaches containers we add.
fn token_volume() -> Volume {
    Volume {
        name: TOKEN_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    path: "token".into(),
                    expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                    audience: None,
                }),
                ..Default::default()
            }]),
            default_mode: None,
        }),
        ..Default::default()
    }
}

fn agent_container(
    name: &str,
    mode: &str,
    native: bool,
    startup_probe: bool,
    config: &str,
    plan: &Plan,
    cfg: &WebhookConfig,
) -> Container {
    let mut volume_mounts = vec![
        VolumeMount {
            name: SECRETS_VOLUME.into(),
            mount_path: SECRETS_DIR.into(),
            ..Default::default()
        },
        VolumeMount {
            name: STATE_VOLUME.into(),
            mount_path: STATE_DIR.into(),
            ..Default::default()
        },
    ];
    if uses_token(plan) {
        volume_mounts.push(VolumeMount {
            name: TOKEN_VOLUME.into(),
            mount_path: TOKEN_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if plan.agent_extra_secret.is_some() {
        volume_mounts.push(VolumeMount {
            name: EXTRA_VOLUME.into(),
            mount_path: crate::compat::vaultk8s::EXTRA_SECRET_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    volume_mounts.extend(plan.agent_copied_mounts.iter().cloned());
    let mut args = vec!["agent".to_string(), "--mode".into(), mode.into()];
    args.extend(plan.agent_args.iter().cloned());
    Container {
        name: name.into(),
        image: Some(plan.image.clone()),
        image_pull_policy: Some(cfg.agent.image_pull_policy.clone()),
        command: Some(vec![AGENT_BIN.into()]),
        args: Some(args),
        env: Some(vec![EnvVar {
            name: AGENT_CONFIG_ENV.into(),
            value: Some(config.into()),
            value_from: None,
        }]),
        resources: Some(plan.resources.clone()),
        restart_policy: native.then(|| "Always".into()),
        startup_probe: startup_probe.then(|| Probe {
            exec: Some(ExecAction {
                command: Some(vec![AGENT_BIN.into(), "probe".into()]),
            }),
            period_seconds: Some(1),
            failure_threshold: Some(STARTUP_PROBE_SECONDS),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(plan.run_as_user),
            run_as_group: Some(plan.run_as_group),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        volume_mounts: Some(volume_mounts),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures::*;
    use crate::plan::{plan, Planned, RequestContext};
    use serde_json::json;

    fn injected(pod: &Pod, cfg: &WebhookConfig) -> Pod {
        let p = match plan(pod, &RequestContext::default(), cfg).unwrap() {
            Planned::Inject(p) => p,
            other => panic!("{other:?}"),
        };
        let patch = build(pod, &p, cfg);
        apply(pod, &patch)
    }

    fn apply(pod: &Pod, patch: &PodPatch) -> Pod {
        let mut doc = serde_json::to_value(pod).unwrap();
        json_patch::patch(&mut doc, &patch.to_json_patch())
            .unwrap_or_else(|e| panic!("{e}: {patch:?}"));
        serde_json::from_value(doc).unwrap()
    }

    fn vault_k8s_pod(extra: &[(&str, &str)], spec: serde_json::Value) -> Pod {
        let mut ann = serde_json::Map::new();
        for (k, v) in [
            ("agent-inject", "true"),
            ("role", "web"),
            ("agent-inject-secret-db", "secret/data/db"),
            ("agent-inject-secret-env", "secret/data/env"),
        ]
        .iter()
        .chain(extra)
        {
            ann.insert(format!("vault.hashicorp.com/{k}"), json!(v));
        }
        pod(json!({"metadata": {"name": "web", "annotations": ann}, "spec": spec}))
    }

    #[test]
    fn vault_k8s_pod_settings_reach_the_pod() {
        let cfg = WebhookConfig::default();
        let p = vault_k8s_pod(
            &[
                ("secret-volume-path-env", "/etc/container_environment"),
                ("secret-volume-path-db", "/vault/secrets"),
                ("agent-share-process-namespace", "true"),
                ("auth-min-backoff", "2s"),
                ("auth-max-backoff", "1m"),
                ("agent-extra-secret", "approle-ids"),
                ("agent-copy-volume-mounts", "app"),
                ("agent-run-as-same-user", "true"),
            ],
            json!({"containers": [{"name": "app", "image": "x",
                "securityContext": {"runAsUser": 4242},
                "volumeMounts": [{"name": "certs", "mountPath": "/etc/certs"}]}],
                "volumes": [{"name": "certs", "emptyDir": {}}]}),
        );
        let out = injected(&p, &cfg);
        let spec = out.spec.unwrap();
        assert_eq!(spec.share_process_namespace, Some(true));
        let app = &spec.containers[0];
        let secret_mounts: Vec<(String, Option<String>)> = app
            .volume_mounts
            .iter()
            .flatten()
            .filter(|m| m.name == SECRETS_VOLUME)
            .map(|m| (m.mount_path.clone(), m.sub_path.clone()))
            .collect();
        assert_eq!(
            secret_mounts,
            vec![
                ("/vault/secrets".to_string(), None),
                (
                    "/etc/container_environment".to_string(),
                    Some(".volume-path-0".to_string())
                )
            ]
        );
        let agent = &spec.init_containers.as_ref().unwrap()[0];
        let cfg_json = &agent.env.as_ref().unwrap()[0].value;
        let agent_cfg: crate::contract::AgentConfig =
            serde_json::from_str(cfg_json.as_deref().unwrap()).unwrap();
        let files: Vec<&str> = agent_cfg.secrets.iter().map(|s| s.file.as_str()).collect();
        assert_eq!(files, ["db", ".volume-path-0/env"]);
        assert_eq!(
            agent.args.as_deref().unwrap(),
            [
                "agent",
                "--mode",
                "sidecar",
                "--retry-initial",
                "2000ms",
                "--retry-max",
                "60000ms"
            ]
        );
        let sc = agent.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_user, Some(4242));
        let agent_mounts: Vec<(&str, &str, Option<bool>)> = agent
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
            .collect();
        assert!(
            agent_mounts.contains(&(EXTRA_VOLUME, "/vault/custom", Some(true))),
            "{agent_mounts:?}"
        );
        assert!(
            agent_mounts.contains(&("certs", "/etc/certs", Some(true))),
            "{agent_mounts:?}"
        );
        let extra = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == EXTRA_VOLUME)
            .unwrap();
        assert_eq!(
            extra.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("approle-ids")
        );
        // The pod's own setting is not overwritten by an absent annotation.
        let plain = vault_k8s_pod(
            &[],
            json!({"shareProcessNamespace": false, "containers": [{"name": "app", "image": "x"}]}),
        );
        assert_eq!(
            injected(&plain, &cfg).spec.unwrap().share_process_namespace,
            Some(false)
        );
    }

    #[test]
    fn a_container_added_after_injection_gets_every_secrets_mount() {
        let cfg = WebhookConfig::default();
        let p = vault_k8s_pod(
            &[("secret-volume-path-env", "/etc/env")],
            json!({"containers": [{"name": "app", "image": "x"}]}),
        );
        let mut out = injected(&p, &cfg);
        out.spec
            .as_mut()
            .unwrap()
            .containers
            .push(serde_json::from_value(json!({"name": "late", "image": "y"})).unwrap());
        let remounts = match plan(&out, &RequestContext::default(), &cfg).unwrap() {
            Planned::Remount(r) => r,
            other => panic!("{other:?}"),
        };
        let late = remounts.iter().find(|r| r.target.name == "late").unwrap();
        let got: Vec<(&str, Option<&str>)> = late
            .mounts
            .iter()
            .map(|m| (m.mount_path.as_str(), m.sub_path.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("/vault/secrets", None),
                ("/etc/env", Some(".volume-path-0"))
            ]
        );
    }

    #[test]
    fn vault_k8s_pod_level_denials() {
        let cfg = WebhookConfig::default();
        let deny = |extra: &[(&str, &str)], spec: serde_json::Value, ns: &str| {
            let ctx = RequestContext {
                namespace: ns.into(),
            };
            plan(&vault_k8s_pod(extra, spec), &ctx, &cfg)
                .expect_err("must be denied")
                .to_string()
        };
        let app = json!({"containers": [{"name": "app", "image": "x"}]});
        for (extra, spec, ns, want) in [
            (
                vec![("agent-run-as-same-user", "true")],
                app.clone(),
                "shop",
                "no securityContext.runAsUser",
            ),
            (
                vec![("agent-run-as-same-user", "true")],
                json!({"containers": [{"name": "app", "image": "x", "securityContext": {"runAsUser": 0}}]}),
                "shop",
                "runs as root",
            ),
            (
                vec![("agent-share-process-namespace", "true")],
                json!({"shareProcessNamespace": false, "containers": [{"name": "app", "image": "x"}]}),
                "shop",
                "shareProcessNamespace: false",
            ),
            (
                vec![("agent-copy-volume-mounts", "ghost")],
                app.clone(),
                "shop",
                "no container \"ghost\"",
            ),
            (vec![], app.clone(), "kube-system", "system namespaces"),
            (
                vec![],
                json!({"containers": [{"name": "app", "image": "x",
                    "volumeMounts": [{"name": "mine", "mountPath": "/vault/secrets"}]}]}),
                "shop",
                "container \"app\" already mounts volume \"mine\" at /vault/secrets",
            ),
            (
                vec![("secret-volume-path-env", "/etc/env")],
                json!({"containers": [{"name": "app", "image": "x",
                    "volumeMounts": [{"name": "mine", "mountPath": "/etc/env"}]}]}),
                "shop",
                "container \"app\" already mounts volume \"mine\" at /etc/env",
            ),
        ] {
            let e = deny(&extra, spec, ns);
            assert!(e.contains(want), "{extra:?}: {e}");
        }
        // A pod with its own volume at /vault/secrets can move ours.
        let moved = vault_k8s_pod(
            &[("secret-volume-path", "/run/vault")],
            json!({"containers": [{"name": "app", "image": "x",
                "volumeMounts": [{"name": "mine", "mountPath": "/vault/secrets"}]}]}),
        );
        let out = injected(&moved, &cfg);
        assert!(out.spec.unwrap().containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == SECRETS_VOLUME && m.mount_path == "/run/vault"));
    }

    fn names(cs: &Option<Vec<Container>>) -> Vec<String> {
        cs.iter().flatten().map(|c| c.name.clone()).collect()
    }

    fn mount_names(c: &Container) -> Vec<String> {
        c.volume_mounts
            .iter()
            .flatten()
            .map(|m| m.name.clone())
            .collect()
    }

    #[test]
    fn bare_pod_gets_every_array_created() {
        let pod = pod(json!({
            "metadata": {"name": "p", "annotations": {
                "vault-injector.io/inject": "true", "vault-injector.io/role": "r",
                "vault-injector.io/secret-db": "kv/db"}},
            "spec": {"containers": [{"name": "app", "image": "x"}]}
        }));
        let out = injected(&pod, &WebhookConfig::default());
        let spec = out.spec.unwrap();
        let vols: Vec<_> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(vols, [SECRETS_VOLUME, STATE_VOLUME, TOKEN_VOLUME]);
        let secrets = &spec.volumes.as_ref().unwrap()[0];
        let ed = secrets.empty_dir.as_ref().unwrap();
        assert_eq!(ed.medium.as_deref(), Some("Memory"));
        assert_eq!(ed.size_limit, Some(Quantity("16Mi".into())));
        // Native layout: one init container, first, restartPolicy Always.
        assert_eq!(names(&spec.init_containers), [AGENT_CONTAINER]);
        let agent = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(agent.restart_policy.as_deref(), Some("Always"));
        assert_eq!(
            agent.args.as_ref().unwrap(),
            &["agent", "--mode", "sidecar"]
        );
        let probe = agent.startup_probe.as_ref().unwrap();
        assert_eq!(
            probe.exec.as_ref().unwrap().command.as_ref().unwrap(),
            &["vault-injector-agent", "probe"]
        );
        assert_eq!(probe.period_seconds, Some(1));
        let sc = agent.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
            &["ALL"]
        );
        assert_eq!(
            mount_names(agent),
            [SECRETS_VOLUME, STATE_VOLUME, TOKEN_VOLUME]
        );
        let env = &agent.env.as_ref().unwrap()[0];
        assert_eq!(env.name, AGENT_CONFIG_ENV);
        let cfg = crate::contract::AgentConfig::from_json(env.value.as_ref().unwrap()).unwrap();
        assert_eq!(cfg.secrets[0].path, "kv/db");
        assert_eq!(cfg.auth.token_path, crate::plan::TOKEN_PATH);
        // The app sees the secrets read-only and never the agent's state.
        let app = &spec.containers[0];
        assert_eq!(mount_names(app), [SECRETS_VOLUME]);
        assert_eq!(app.volume_mounts.as_ref().unwrap()[0].read_only, Some(true));
        assert_eq!(out.metadata.annotations.unwrap()[STATUS], STATUS_INJECTED);
    }

    #[test]
    fn existing_arrays_are_appended_to_and_indices_stay_right() {
        let pod = pod(json!({
            "metadata": {"name": "p", "annotations": {
                "vault-injector.io/inject": "true", "vault-injector.io/role": "r",
                "vault-injector.io/secret-db": "kv/db",
                "vault-injector.io/containers": "web,migrate"}},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "fsGroup": 2000},
                "volumes": [{"name": "cache", "emptyDir": {}}],
                "initContainers": [
                    {"name": "setup", "image": "x"},
                    {"name": "migrate", "image": "x", "volumeMounts": [{"name": "cache", "mountPath": "/c"}]}
                ],
                "containers": [
                    {"name": "sidecar", "image": "x", "volumeMounts": [{"name": "cache", "mountPath": "/c"}]},
                    {"name": "web", "image": "x"}
                ]
            }
        }));
        let out = injected(&pod, &WebhookConfig::default());
        let spec = out.spec.unwrap();
        let vols: Vec<_> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(vols, ["cache", SECRETS_VOLUME, STATE_VOLUME, TOKEN_VOLUME]);
        assert_eq!(
            names(&spec.init_containers),
            [AGENT_CONTAINER, "setup", "migrate"]
        );
        let inits = spec.init_containers.as_ref().unwrap();
        assert_eq!(mount_names(&inits[1]), Vec::<String>::new());
        assert_eq!(mount_names(&inits[2]), ["cache", SECRETS_VOLUME]);
        assert_eq!(mount_names(&spec.containers[0]), ["cache"]);
        assert_eq!(mount_names(&spec.containers[1]), [SECRETS_VOLUME]);
        // The pod's own security context is left alone.
        let psc = spec.security_context.unwrap();
        assert_eq!(psc.fs_group, Some(2000));
    }

    #[test]
    fn classic_layout_and_lifecycles() {
        let mut classic = WebhookConfig::default();
        classic.agent.native_sidecar = false;
        let native = WebhookConfig::default();
        let with_agent = |agent: &str| {
            let mut p = simple(&["app"]);
            p.metadata
                .annotations
                .as_mut()
                .unwrap()
                .insert("vault-injector.io/agent".into(), agent.into());
            p
        };
        // (lifecycle, config, init containers, containers, init restartPolicy)
        type Case<'a> = (
            &'a str,
            &'a WebhookConfig,
            &'a [&'a str],
            &'a [&'a str],
            Option<&'a str>,
        );
        let cases: [Case; 6] = [
            (
                "both",
                &native,
                &[AGENT_CONTAINER],
                &["app"],
                Some("Always"),
            ),
            (
                "both",
                &classic,
                &[INIT_CONTAINER],
                &["app", AGENT_CONTAINER],
                None,
            ),
            ("init-only", &native, &[INIT_CONTAINER], &["app"], None),
            ("init-only", &classic, &[INIT_CONTAINER], &["app"], None),
            (
                "sidecar-only",
                &native,
                &[AGENT_CONTAINER],
                &["app"],
                Some("Always"),
            ),
            (
                "sidecar-only",
                &classic,
                &[],
                &["app", AGENT_CONTAINER],
                None,
            ),
        ];
        for (lifecycle, cfg, inits, containers, restart) in cases {
            let out = injected(&with_agent(lifecycle), cfg).spec.unwrap();
            assert_eq!(names(&out.init_containers), inits, "{lifecycle}");
            assert_eq!(
                names(&Some(out.containers.clone())),
                containers,
                "{lifecycle}"
            );
            if let Some(init) = out.init_containers.as_ref().and_then(|c| c.first()) {
                assert_eq!(init.restart_policy.as_deref(), restart, "{lifecycle}");
                let mode = &init.args.as_ref().unwrap()[2];
                assert_eq!(mode, if restart.is_some() { "sidecar" } else { "init" });
                // Only the native sidecar of `both` gates the app on a render.
                assert_eq!(
                    init.startup_probe.is_some(),
                    lifecycle == "both" && restart.is_some(),
                    "{lifecycle}"
                );
            }
            if let Some(side) = out.containers.iter().find(|c| c.name == AGENT_CONTAINER) {
                assert_eq!(side.args.as_ref().unwrap()[2], "sidecar");
                assert_eq!(side.restart_policy, None);
            }
        }
    }

    #[test]
    fn annotation_keys_are_escaped() {
        let mut pod = simple(&["app"]);
        // A pod with no annotations map cannot opt in, but the builder must
        // still create the map rather than add into a missing parent.
        let p = match plan(&pod, &RequestContext::default(), &WebhookConfig::default()).unwrap() {
            Planned::Inject(p) => p,
            other => panic!("{other:?}"),
        };
        let ops = build(&pod, &p, &WebhookConfig::default()).0;
        let last = serde_json::to_value(ops.last().unwrap()).unwrap();
        assert_eq!(
            last["path"],
            "/metadata/annotations/vault-injector.io~1status"
        );
        pod.metadata.annotations = None;
        let ops = build(&pod, &p, &WebhookConfig::default()).0;
        let last = serde_json::to_value(ops.last().unwrap()).unwrap();
        assert_eq!(last["path"], "/metadata/annotations");
        assert_eq!(last["value"][STATUS], STATUS_INJECTED);
        assert_eq!(
            PointerBuf::from_tokens(["a", "x~y/z"]).as_str(),
            "/a/x~0y~1z"
        );
    }

    #[test]
    fn approle_gets_no_token_volume_and_remount_only_mounts() {
        let mut pod = simple(&["app"]);
        pod.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("vault-injector.io/auth-type".into(), "approle".into());
        let out = injected(&pod, &WebhookConfig::default()).spec.unwrap();
        assert!(!out.volumes.iter().flatten().any(|v| v.name == TOKEN_VOLUME));

        let late = Pod {
            spec: Some(PodSpec {
                init_containers: Some(vec![Container {
                    name: "late".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let patch = build_remount(
            &late,
            &[Remount {
                target: crate::plan::Target {
                    name: "late".into(),
                    init: true,
                    index: 0,
                },
                mounts: vec![VolumeMount {
                    name: SECRETS_VOLUME.into(),
                    mount_path: SECRETS_DIR.into(),
                    read_only: Some(true),
                    ..Default::default()
                }],
            }],
        );
        let out = apply(&late, &patch);
        assert_eq!(
            mount_names(&out.spec.unwrap().init_containers.unwrap()[0]),
            [SECRETS_VOLUME]
        );
    }

    #[test]
    fn pods_without_automounted_token_still_give_the_agent_one() {
        let mut pod = simple(&["app"]);
        pod.spec.as_mut().unwrap().automount_service_account_token = Some(false);
        let out = injected(&pod, &WebhookConfig::default()).spec.unwrap();
        let token = out
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == TOKEN_VOLUME)
            .expect("token volume");
        let src = token.projected.as_ref().unwrap().sources.as_ref().unwrap();
        assert_eq!(src[0].service_account_token.as_ref().unwrap().path, "token");
        // Only the agent mounts it; the pod's choice holds for the app.
        assert_eq!(mount_names(&out.containers[0]), [SECRETS_VOLUME]);
        assert_eq!(out.automount_service_account_token, Some(false));
    }

    #[test]
    fn env_only_pods_get_exec_but_no_agent() {
        let pod = pod(json!({
            "metadata": {"name": "p", "annotations": {
                "vault-injector.io/inject": "true", "vault-injector.io/role": "r",
                "vault-injector.io/entrypoint-app": "[\"/srv/app\", \"--serve\"]",
                "vault-injector.io/env-DB_PASS": "kv/db#password"}},
            "spec": {"containers": [
                {"name": "app", "image": "x", "args": ["--port", "80"]},
                {"name": "side", "image": "y", "command": ["/side"],
                 "env": [{"name": "API_KEY", "value": "vault:secret/data/api#key#2"}]},
            ]}
        }));
        let out = injected(&pod, &WebhookConfig::default());
        let spec = out.spec.clone().unwrap();
        // Only the copy init container: no agent, no secrets volume.
        assert_eq!(names(&spec.init_containers), vec![COPY_CONTAINER]);
        let vols: Vec<_> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.clone())
            .collect();
        assert_eq!(vols, vec![TOKEN_VOLUME, BIN_VOLUME]);
        let app = &spec.containers[0];
        assert_eq!(
            app.command.as_deref().unwrap(),
            [
                "/vault/bin/vault-injector-agent",
                "exec",
                "--",
                "/srv/app",
                "--serve"
            ]
        );
        assert_eq!(app.args.as_deref().unwrap(), ["--port", "80"]);
        assert_eq!(mount_names(app), vec![BIN_VOLUME, TOKEN_VOLUME]);
        let cfg_json = &app.env.as_ref().unwrap()[0];
        assert_eq!(cfg_json.name, AGENT_CONFIG_ENV);
        let agent_cfg =
            crate::contract::AgentConfig::from_json(cfg_json.value.as_deref().unwrap()).unwrap();
        assert_eq!(agent_cfg.env[0].var, "DB_PASS");
        assert!(agent_cfg.secrets.is_empty());
        // A Bank-Vaults reference: the literal stays, the command is wrapped.
        let side = &spec.containers[1];
        assert_eq!(side.command.as_deref().unwrap()[3], "/side");
        let env = side.env.as_ref().unwrap();
        assert_eq!(env[0].value.as_deref(), Some("vault:secret/data/api#key#2"));
        assert_eq!(env[1].name, AGENT_CONFIG_ENV);
        assert_eq!(out.metadata.annotations.unwrap()[STATUS], STATUS_INJECTED);
    }
}
