//! Decides what happens to a pod: skip it, or inject what its annotations ask
//! for. Pure: a function of (pod, request context, operator config).
//!
//! Checks that need the pod live here (does `containers` name real
//! containers, is a role known); the annotation syntax lives in
//! `annotations`.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements, VolumeMount};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::annotations::{
    self, EnvRequest, InjectionRequest, Lifecycle, Problem, VolumeRequest, INJECT, PREFIX,
};
use crate::compat::{bankvaults, vaultk8s};
use crate::config::WebhookConfig;
use crate::contract::{
    auth_mount, AgentAuth, AgentConfig, AuthMethod, EnvSpec, PodIdentity, SecretSpec, SECRETS_DIR,
    STATE_DIR,
};
use crate::go::goparse;

/// Names the injector adds to pods; a pod that already uses one for
/// something else is denied rather than silently clobbered.
pub const SECRETS_VOLUME: &str = "vault-injector-secrets";
pub const STATE_VOLUME: &str = "vault-injector-state";
pub const TOKEN_VOLUME: &str = "vault-injector-token";
/// vault-k8s `agent-extra-secret`, in the agent containers only.
pub const EXTRA_VOLUME: &str = "vault-injector-extra";
/// The native sidecar, or the classic sidecar.
pub const AGENT_CONTAINER: &str = "vault-injector-agent";
/// The classic (run-once) init container.
pub const INIT_CONTAINER: &str = "vault-injector-init";
/// Where the agent's own service-account token is projected.
pub const TOKEN_DIR: &str = "/var/run/secrets/vault-injector";
pub const TOKEN_PATH: &str = "/var/run/secrets/vault-injector/token";
/// Memory volume holding a copy of the binary for `vault-injector exec`.
pub const BIN_VOLUME: &str = "vault-injector-bin";
pub const BIN_DIR: &str = "/vault/bin";
/// The init container that copies the binary into [`BIN_VOLUME`].
pub const COPY_CONTAINER: &str = "vault-injector-copy";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Annotations(#[from] annotations::Error),
    #[error("{0}")]
    Pod(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Facts about the admission request that are not in the pod object.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The request's namespace (pods in a CREATE often omit it).
    pub namespace: String,
}

#[derive(Debug)]
pub enum Planned {
    Skip(String),
    Inject(Box<Plan>),
    /// An already injected pod seen again (reinvocation) in which other
    /// webhooks added containers that should see what the first injection
    /// mounted into its targets.
    Remount(Vec<Remount>),
}

/// Mounts a container added after injection gets, so that it sees what the
/// targets of the first injection see.
#[derive(Debug, Clone, PartialEq)]
pub struct Remount {
    pub target: Target,
    pub mounts: Vec<k8s_openapi::api::core::v1::VolumeMount>,
}

/// A container that gets the secrets mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub init: bool,
    /// Index in `spec.containers` or `spec.initContainers` of the pod as
    /// received.
    pub index: usize,
}

#[derive(Debug)]
pub struct Plan {
    pub lifecycle: Lifecycle,
    pub native_sidecar: bool,
    pub targets: Vec<Target>,
    /// The agent containers are added only when there are files to render.
    pub needs_agent: bool,
    pub agent: AgentConfig,
    pub run_as_user: i64,
    pub run_as_group: i64,
    pub role: Option<String>,
    pub env: Vec<EnvRequest>,
    pub volumes: Vec<VolumeRequest>,
    /// Where target containers see the secrets (vault-k8s
    /// `secret-volume-path`; `/vault/secrets` otherwise).
    pub secrets_mount_path: String,
    /// vault-k8s `secret-volume-path-NAME`: (mount path, directory in the
    /// secrets volume) mounted into the targets besides the main mount; the
    /// secret's file is rendered into that directory.
    pub extra_secret_mounts: Vec<(String, String)>,
    /// vault-k8s `agent-share-process-namespace`: the pod's
    /// `shareProcessNamespace` to set.
    pub share_process_namespace: Option<bool>,
    /// Extra arguments of the agent containers (vault-k8s auth backoff).
    pub agent_args: Vec<String>,
    /// vault-k8s `agent-extra-secret`: a Secret mounted read-only into the
    /// agent containers.
    pub agent_extra_secret: Option<String>,
    /// vault-k8s `agent-copy-volume-mounts`: the app container's mounts the
    /// agent containers get (read-only).
    pub agent_copied_mounts: Vec<VolumeMount>,
    /// Agent resources; the operator's unless annotations or policy say
    /// otherwise.
    pub resources: ResourceRequirements,
    /// Agent image; the operator's unless the policy rule names one.
    pub image: String,
    /// The pod used vault-k8s annotations: its status annotation is written
    /// too, so a vault-k8s injector still installed leaves the pod alone.
    pub vault_k8s: bool,
    /// Containers whose command is wrapped by `vault-injector exec`.
    pub exec: Vec<ExecTarget>,
    /// Production volumes, resolved from Vault by admission (never by the
    /// pure planner, which leaves this empty).
    pub extra_volumes: Vec<crate::profile::ResolvedVolume>,
    /// The auth path the pod named (None: the operator's default), for the
    /// cluster policy.
    pub requested_auth_path: Option<String>,
    /// The operator's default role, used when neither the pod nor the
    /// policy names one.
    pub default_role: Option<String>,
    /// The annotation that names the role in the pod's dialect, for the
    /// "no role" denial.
    pub role_annotation: String,
    /// Not wrong enough to deny, but worth telling whoever applies the pod
    /// (returned as admission warnings).
    pub warnings: Vec<String>,
    /// `(VAR, PATH)` of every `vault:` env value in the pod, for the policy
    /// check and the audit line.
    pub env_refs: Vec<(String, String)>,
}

/// A container that gets env-var secrets through `vault-injector exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTarget {
    pub name: String,
    pub init: bool,
    pub index: usize,
    /// The program to run: the container's `command`, or the entrypoint
    /// from `vault-injector.io/entrypoint-NAME`.
    pub command: Vec<String>,
    /// The container already has an `env` list.
    pub has_env: bool,
}

impl Plan {
    /// Applies what the cluster policy contributes, then checks what could
    /// only be checked once it had: a role must be known.
    pub fn finish(&mut self, defaults: &crate::policy::Defaults) -> Result<()> {
        if self.role.is_none() {
            self.role = defaults.role.clone().or_else(|| self.default_role.clone());
        }
        if let Some(r) = &defaults.agent_resources {
            self.resources = r.clone();
        }
        if let Some(i) = &defaults.agent_image {
            self.image = i.clone();
        }
        if self.role.is_none() && self.agent.auth.method != AuthMethod::Approle {
            return Err(Problem::new(
                self.role_annotation.clone(),
                "no Vault role: set this annotation (neither the webhook config nor the \
                 cluster policy gives a default role)",
            )
            .into_plan());
        }
        self.agent.auth.role = self.role.clone().unwrap_or_default();
        Ok(())
    }
}

/// Pod name for logs and audit: the name, or `generateName*`.
pub fn pod_display_name(pod: &Pod) -> String {
    match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(n), _) if !n.is_empty() => n.clone(),
        (_, Some(g)) => format!("{g}*"),
        _ => String::new(),
    }
}

pub fn service_account(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| {
            s.service_account_name
                .as_deref()
                .or(s.service_account.as_deref())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
}

pub fn plan(pod: &Pod, ctx: &RequestContext, cfg: &WebhookConfig) -> Result<Planned> {
    if is_own_pod(pod, cfg) {
        return Ok(Planned::Skip("the injector's own pod".into()));
    }
    let empty = Default::default();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    // The opt-in is decided before full parsing so that `inject: "false"`
    // switches a pod off even while its other annotations are being fixed.
    let (req, extras) = match (annotations.get(INJECT), annotations.get(vaultk8s::INJECT)) {
        (Some(_), Some(_)) => {
            return Err(Problem::new(
                INJECT,
                format!(
                    "the pod also has {}; use one annotation dialect so two injectors \
                     never act on the same pod",
                    vaultk8s::INJECT
                ),
            )
            .into_plan())
        }
        (None, None) if cfg.injector.bank_vaults_without_opt_in => {
            let has_refs = pod.spec.iter().any(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .flat_map(|c| c.env.iter().flatten())
                    .any(|e| e.value.as_deref().is_some_and(bankvaults::is_ref))
            });
            // Bank-Vaults forms that need no `vault:` value, which we refuse:
            // the pod must hear why rather than start without its secrets.
            let refused_form = annotations.keys().any(|k| {
                bankvaults::ANNOTATION_PREFIXES.iter().any(|p| {
                    k.strip_prefix(p)
                        .is_some_and(|s| s == "vault-env-from-path" || s.ends_with("configmap"))
                })
            });
            if !has_refs && !refused_form {
                return Ok(Planned::Skip(format!("no {INJECT} annotation")));
            }
            match bankvaults::request_from_annotations(annotations)? {
                Some((req, warnings)) => (
                    req,
                    Some(vaultk8s::VaultK8sExtras {
                        warnings,
                        ..Default::default()
                    }),
                ),
                None => return Ok(Planned::Skip("Bank-Vaults mutate: skip".into())),
            }
        }
        (None, None) => return Ok(Planned::Skip(format!("no {INJECT} annotation"))),
        (Some(v), None) => {
            if goparse::parse_bool(v) == Ok(false) {
                return Ok(Planned::Skip(format!("{INJECT} is false")));
            }
            (annotations::from_annotations(annotations)?, None)
        }
        (None, Some(v)) => {
            if goparse::parse_bool_or_empty(v) == Ok(false) {
                return Ok(Planned::Skip(format!("{} is false", vaultk8s::INJECT)));
            }
            match vaultk8s::from_annotations(annotations)? {
                Some((req, extras)) => (req, Some(extras)),
                None => return Ok(Planned::Skip(format!("no {INJECT} annotation"))),
            }
        }
    };
    let vault_k8s = extras.is_some() && annotations.contains_key(vaultk8s::INJECT);
    let role_annotation = match (&extras, vault_k8s) {
        (_, true) => format!("{}role", vaultk8s::PREFIX),
        (Some(_), false) => format!("{}vault-role", bankvaults::ANNOTATION_PREFIXES[0]),
        (None, _) => format!("{PREFIX}role"),
    };
    let extras = extras.unwrap_or_default();
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| Error::Pod("the pod has no spec".into()))?;

    if req.is_injected() {
        if !carries_injection(spec) {
            // The status annotation is text a pod author can write. Trusted
            // alone it would let a pod skip injection while claiming it had
            // it, and the remount would reference volumes the pod lacks.
            if vault_k8s && !annotations.contains_key(annotations::STATUS) {
                // Written by a vault-k8s injector that acted first: leave the
                // pod to it, as it leaves ours alone.
                return Ok(Planned::Skip(format!(
                    "already injected by another injector ({} is injected)",
                    vaultk8s::STATUS
                )));
            }
            return Err(Problem::new(
                if vault_k8s {
                    vaultk8s::STATUS.to_string()
                } else {
                    annotations::STATUS.to_string()
                },
                "says injected, but the pod has none of the containers or volumes \
                 vault-injector adds; the webhook writes this annotation, users must not: \
                 remove it",
            )
            .into_plan());
        }
        return remount(&req, spec, &extras);
    }
    if let Some(status) = req.status.as_ref().filter(|_| !vault_k8s) {
        return Err(Problem::new(
            format!("{PREFIX}status"),
            format!("is written by the webhook, not by users (found {status:?})"),
        )
        .into_plan());
    }

    if SYSTEM_NAMESPACES.contains(&ctx.namespace.as_str()) {
        return Err(Error::Pod(format!(
            "cannot inject into system namespaces: {} (as vault-k8s refuses too)",
            ctx.namespace
        )));
    }
    let env_refs = env_references(spec)?;
    if req.secrets.is_empty() && req.env.is_empty() && req.volumes.is_empty() && env_refs.is_empty()
    {
        return Err(Problem::new(
            INJECT,
            format!(
                "is true but there is no {PREFIX}secret-NAME, env-VAR or volume-NAME annotation \
                 and no container env value of the form vault:PATH#KEY"
            ),
        )
        .into_plan());
    }
    check_reserved_names(spec)?;
    let targets = targets(&req, spec, false)?;

    let exec = exec_targets(&req, spec, &targets, &env_refs)?;
    let method = req.auth_type.unwrap_or(cfg.auth.method);
    // A missing role may still come from the cluster policy or the operator's
    // default: `Plan::finish`.
    let role = req.role.clone();
    let requested_auth_path = req.auth_path.clone();
    let pod_name = pod_display_name(pod);
    let target_names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let InjectionRequest {
        auth_path,
        mut secrets,
        env,
        volumes,
        agent: lifecycle,
        reload,
        ..
    } = req;
    let secrets_mount_path = extras
        .secret_volume_path
        .clone()
        .unwrap_or_else(|| SECRETS_DIR.to_string());
    let extra_secret_mounts = secret_subdirs(&mut secrets, &extras, &secrets_mount_path);
    let mut vault: crate::contract::VaultConnection = (&cfg.vault).into();
    if let Some(ns) = &extras.vault_namespace {
        vault.namespace = Some(ns.clone());
    }
    let agent = AgentConfig {
        vault,
        auth: AgentAuth {
            method,
            mount: auth_mount(auth_path.as_deref().unwrap_or(&cfg.auth.path)),
            role: role.clone().unwrap_or_default(),
            token_path: TOKEN_PATH.into(),
            role_id_path: extras.auth_config.get("role_id_file_path").cloned(),
            secret_id_path: extras.auth_config.get("secret_id_file_path").cloned(),
        },
        secrets_dir: SECRETS_DIR.into(),
        state_dir: STATE_DIR.into(),
        secrets: secrets
            .into_iter()
            .map(|s| SecretSpec {
                error_on_missing_key: extras
                    .error_on_missing_key
                    .get(&s.name)
                    .copied()
                    .unwrap_or(false),
                command: extras.commands.get(&s.name).cloned(),
                go_template: vault_k8s,
                name: s.name,
                path: s.path,
                file: s.file,
                mode: s.mode,
                format: s.format,
                key: s.key,
                template: s.template,
                reads: s.reads,
            })
            .collect(),
        env: env
            .iter()
            .map(|e| EnvSpec {
                var: e.var.clone(),
                path: e.path.clone(),
                key: e.key.clone(),
                version: e.version,
                containers: target_names.clone(),
            })
            .collect(),
        refresh_interval_secs: cfg.refresh_interval_secs(),
        reload,
        revoke_on_shutdown: extras
            .revoke_on_shutdown
            .unwrap_or(cfg.agent.revoke_on_shutdown),
        log_format: cfg.agent.log_format,
        pod: PodIdentity {
            namespace: ctx.namespace.clone(),
            name: pod_name,
            service_account: service_account(pod).to_string(),
        },
    };
    // Files are written by the agent and read by the app: when the pod runs
    // as a fixed non-root user, the agent runs as that user too so the default
    // mode 0400 stays readable by the app.
    let pod_sc = spec.security_context.as_ref();
    let same_user = if extras.run_as_same_user {
        let key = format!("{}agent-run-as-same-user", vaultk8s::PREFIX);
        let first = spec.containers.first();
        match first
            .and_then(|c| c.security_context.as_ref())
            .and_then(|s| s.run_as_user)
        {
            None => {
                return Err(Problem::new(
                    key,
                    format!(
                        "container {:?} has no securityContext.runAsUser for the agent to take",
                        first.map(|c| c.name.as_str()).unwrap_or_default()
                    ),
                )
                .into_plan())
            }
            Some(0) => {
                return Err(Problem::new(
                    key,
                    "the first container runs as root (0); the agent never does",
                )
                .into_plan())
            }
            Some(u) => Some(u),
        }
    } else {
        None
    };
    let run_as_user = same_user.or(extras.run_as_user).unwrap_or_else(|| {
        pod_sc
            .and_then(|s| s.run_as_user)
            .filter(|&u| u != 0)
            .unwrap_or(cfg.agent.run_as_user)
    });
    let run_as_group = extras.run_as_group.unwrap_or_else(|| {
        pod_sc
            .and_then(|s| s.run_as_group)
            .filter(|&g| g != 0)
            .unwrap_or(cfg.agent.run_as_group)
    });
    if extras.share_process_namespace == Some(true) && spec.share_process_namespace == Some(false) {
        return Err(Problem::new(
            format!("{}agent-share-process-namespace", vaultk8s::PREFIX),
            "the pod sets shareProcessNamespace: false explicitly; refusing to turn it on \
             (as vault-k8s does)",
        )
        .into_plan());
    }
    let mut agent_copied_mounts = Vec::new();
    if let Some(name) = &extras.copy_volume_mounts {
        let key = format!("{}agent-copy-volume-mounts", vaultk8s::PREFIX);
        let Some(c) = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| &c.name == name)
        else {
            return Err(
                Problem::new(key, format!("there is no container {name:?} in the pod")).into_plan(),
            );
        };
        agent_copied_mounts = c
            .volume_mounts
            .iter()
            .flatten()
            .filter(|m| !is_agent_path(&m.mount_path) && !m.mount_path.contains("serviceaccount"))
            .map(|m| VolumeMount {
                read_only: Some(true),
                ..m.clone()
            })
            .collect();
    }
    let mut agent_args = Vec::new();
    for (flag, d) in [
        ("--retry-initial", extras.min_backoff),
        ("--retry-max", extras.max_backoff),
    ] {
        if let Some(d) = d {
            agent_args.push(flag.to_string());
            agent_args.push(format!("{}ms", d.as_millis().max(1)));
        }
    }
    let mut warnings = extras.warnings.clone();
    let classic_sidecar = !cfg.agent.native_sidecar && lifecycle != Lifecycle::InitOnly;
    if let Some(policy) = spec
        .restart_policy
        .as_deref()
        .filter(|p| classic_sidecar && *p != "Always")
    {
        warnings.push(format!(
            "{PREFIX}agent: the classic sidecar never exits, so this pod (restartPolicy \
             {policy}) never completes; use agent init-only for Jobs on this cluster"
        ));
    }
    let mut resources = cfg.agent.resources.clone();
    for (list, wanted) in [
        (&mut resources.limits, &extras.limits),
        (&mut resources.requests, &extras.requests),
    ] {
        for (k, v) in wanted {
            list.get_or_insert_with(Default::default)
                .insert(k.clone(), Quantity(v.clone()));
        }
    }
    let secret_paths: Vec<&str> = std::iter::once(secrets_mount_path.as_str())
        .chain(extra_secret_mounts.iter().map(|(p, _)| p.as_str()))
        .collect();
    check_mount_paths(
        spec,
        (!agent.secrets.is_empty()).then_some(&targets[..]),
        &secret_paths,
        &exec,
        method != AuthMethod::Approle,
    )?;
    Ok(Planned::Inject(Box::new(Plan {
        lifecycle,
        native_sidecar: cfg.agent.native_sidecar,
        targets,
        needs_agent: !agent.secrets.is_empty(),
        agent,
        run_as_user,
        run_as_group,
        role,
        env,
        volumes,
        secrets_mount_path,
        extra_secret_mounts,
        share_process_namespace: extras.share_process_namespace,
        agent_args,
        agent_extra_secret: extras.extra_secret.clone(),
        agent_copied_mounts,
        resources,
        image: cfg.agent.image.clone(),
        vault_k8s,
        exec,
        extra_volumes: Vec::new(),
        requested_auth_path,
        default_role: cfg.auth.role.clone(),
        role_annotation,
        warnings,
        env_refs: env_refs
            .into_iter()
            .map(|(_, _, var, r)| (var, r.path))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    })))
}

/// Namespaces whose pods are never injected (vault-k8s refuses them too):
/// the cluster's own components must not depend on the injector.
pub const SYSTEM_NAMESPACES: &[&str] = &["kube-system", "kube-public"];

/// Paths of the agent containers that a copied mount must not shadow.
fn is_agent_path(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    [
        SECRETS_DIR,
        STATE_DIR,
        TOKEN_DIR,
        vaultk8s::EXTRA_SECRET_DIR,
    ]
    .iter()
    .any(|a| p == *a || p.starts_with(&format!("{a}/")) || a.starts_with(&format!("{p}/")))
}

/// vault-k8s `secret-volume-path-NAME`: each distinct path other than the
/// main mount gets a directory of the secrets volume, mounted there with
/// `subPath`; the secret's file moves into that directory. One volume keeps
/// one agent, one size limit and one memory budget for all of them.
fn secret_subdirs(
    secrets: &mut [annotations::SecretRequest],
    extras: &vaultk8s::VaultK8sExtras,
    main: &str,
) -> Vec<(String, String)> {
    let mut paths: Vec<&String> = extras
        .secret_volume_paths
        .values()
        .filter(|p| p.as_str() != main)
        .collect();
    paths.sort();
    paths.dedup();
    let mounts: Vec<(String, String)> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.to_string(), format!(".volume-path-{i}")))
        .collect();
    for s in secrets.iter_mut() {
        if let Some(p) = extras.secret_volume_paths.get(&s.name) {
            if let Some((_, dir)) = mounts.iter().find(|(m, _)| m == p) {
                s.file = format!("{dir}/{}", s.file);
            }
        }
    }
    mounts
}

/// Every `vault:PATH#KEY[#VERSION]` env value in the pod, validated:
/// (container name, is init, variable, reference).
fn env_references(
    spec: &k8s_openapi::api::core::v1::PodSpec,
) -> Result<Vec<(String, bool, String, bankvaults::EnvRef)>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let all = spec
        .containers
        .iter()
        .map(|c| (c, false))
        .chain(spec.init_containers.iter().flatten().map(|c| (c, true)));
    for (c, init) in all {
        for e in c.env.iter().flatten() {
            let Some(v) = e.value.as_deref().filter(|v| bankvaults::is_ref(v)) else {
                continue;
            };
            if out.len() + problems.len() >= bankvaults::MAX_REFS_PER_POD {
                return Err(Error::Pod(format!(
                    "the pod has more than {} vault: env values",
                    bankvaults::MAX_REFS_PER_POD
                )));
            }
            match bankvaults::parse_value(v) {
                Ok(pieces) => {
                    for p in pieces.into_iter().flatten() {
                        let bankvaults::Piece::Ref(r) = p else {
                            continue;
                        };
                        // The agent compiles the translation when it renders:
                        // it must be within minijinja's limits now.
                        if r.template {
                            let checked = crate::go::gotmpl::translate_bankvaults(&r.key)
                                .map_err(|e| e.to_string())
                                .and_then(|t| {
                                    annotations::check_template_within(
                                        &t.source,
                                        crate::go::gotmpl::MAX_OUTPUT_BYTES,
                                        "translated template",
                                    )
                                });
                            if let Err(m) = checked {
                                problems
                                    .push(format!("container {:?} env {}: {m}", c.name, e.name));
                                continue;
                            }
                        }
                        out.push((c.name.clone(), init, e.name.clone(), r));
                    }
                }
                Err(m) => problems.push(format!("container {:?} env {}: {m}", c.name, e.name)),
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Error::Pod(problems.join("; ")))
    }
}

/// Containers that need `vault-injector exec`: those with `vault:` env
/// values, and the targets when `env-VAR` annotations exist.
fn exec_targets(
    req: &InjectionRequest,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    targets: &[Target],
    env_refs: &[(String, bool, String, bankvaults::EnvRef)],
) -> Result<Vec<ExecTarget>> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let inits: &[Container] = spec.init_containers.as_deref().unwrap_or(&[]);
    let all = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (c, false, i))
        .chain(inits.iter().enumerate().map(|(i, c)| (c, true, i)))
        .filter(|(c, _, _)| !is_ours(&c.name));
    for (c, init, index) in all {
        let has_refs = env_refs
            .iter()
            .any(|(n, i, _, _)| n == &c.name && *i == init);
        let annotated = !req.env.is_empty()
            && targets
                .iter()
                .any(|t| t.name == c.name && t.init == init && t.index == index);
        if !has_refs && !annotated {
            continue;
        }
        let key = format!("{PREFIX}entrypoint-{}", c.name);
        let command = match (
            c.command.as_ref().filter(|c| !c.is_empty()),
            req.entrypoints.get(&c.name),
        ) {
            (Some(cmd), _) => cmd.clone(),
            (None, Some(ep)) => ep.clone(),
            (None, None) => {
                problems.push(Problem::new(
                    key,
                    format!(
                        "container {:?} gets Vault env vars through `vault-injector exec` but has \
                         no command, and the webhook does not read image entrypoints at \
                         admission: set this annotation to the image's entrypoint as a JSON \
                         array, e.g. [\"/app/server\"], or set the container's command",
                        c.name
                    ),
                ));
                continue;
            }
        };
        out.push(ExecTarget {
            name: c.name.clone(),
            init,
            index,
            command,
            has_env: c.env.is_some(),
        });
    }
    for name in req.entrypoints.keys() {
        if !spec.containers.iter().chain(inits).any(|c| &c.name == name) {
            problems.push(Problem::new(
                format!("{PREFIX}entrypoint-{name}"),
                format!("there is no container {name:?} in the pod"),
            ));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Error::Annotations(annotations::Error { problems }))
    }
}

impl Problem {
    fn into_plan(self) -> Error {
        Error::Annotations(self.into())
    }
}

fn is_own_pod(pod: &Pod, cfg: &WebhookConfig) -> bool {
    let want = &cfg.injector.self_labels;
    if want.is_empty() {
        return false;
    }
    let Some(labels) = &pod.metadata.labels else {
        return false;
    };
    want.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn is_ours(name: &str) -> bool {
    name == AGENT_CONTAINER || name == INIT_CONTAINER || name == COPY_CONTAINER
}

fn container_at<'a>(spec: &'a k8s_openapi::api::core::v1::PodSpec, t: &Target) -> &'a Container {
    if t.init {
        &spec
            .init_containers
            .as_ref()
            .expect("target index from spec")[t.index]
    } else {
        &spec.containers[t.index]
    }
}

/// Whether the pod holds something only an injection adds: one of our
/// containers or volumes.
fn carries_injection(spec: &PodSpec) -> bool {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| is_ours(&c.name))
        || spec
            .volumes
            .iter()
            .flatten()
            .any(|v| is_our_volume(&v.name))
}

fn is_our_volume(name: &str) -> bool {
    [
        SECRETS_VOLUME,
        STATE_VOLUME,
        TOKEN_VOLUME,
        BIN_VOLUME,
        EXTRA_VOLUME,
    ]
    .contains(&name)
        || name.starts_with(crate::profile::VOLUME_NAME_PREFIX)
}

/// Reinvocation: the API server runs the webhooks again after a later one
/// (or its own ServiceAccount step) changed the pod. What a target of the
/// first injection got and a container added since lacks is the secrets
/// mount (only when the pod has the secrets volume: env-only and
/// volumes-only pods have none) and the production volume mounts, read off
/// the containers that have them. `exec` wrapping is not extended: the env
/// vars were bound at injection to the containers named then, and rewriting
/// the command of another webhook's container would change what it runs. A
/// pod seen again unchanged gets no patch.
fn remount(
    req: &InjectionRequest,
    spec: &PodSpec,
    extras: &vaultk8s::VaultK8sExtras,
) -> Result<Planned> {
    let volumes: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    let theirs = || {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter(|c| !is_ours(&c.name))
            .flat_map(|c| c.volume_mounts.iter().flatten())
    };
    let mut wanted: Vec<VolumeMount> = Vec::new();
    if volumes.contains(&SECRETS_VOLUME) {
        // Every mount of the secrets volume a target got (the main one and
        // those of vault-k8s `secret-volume-path-NAME`, with their subPath).
        for m in theirs().filter(|m| m.name == SECRETS_VOLUME) {
            if !wanted.iter().any(|w| w.mount_path == m.mount_path) {
                wanted.push(VolumeMount {
                    read_only: Some(true),
                    ..m.clone()
                });
            }
        }
        if wanted.is_empty() {
            wanted.push(VolumeMount {
                name: SECRETS_VOLUME.into(),
                mount_path: extras
                    .secret_volume_path
                    .clone()
                    .unwrap_or_else(|| SECRETS_DIR.into()),
                read_only: Some(true),
                ..Default::default()
            });
        }
    }
    for v in volumes
        .iter()
        .filter(|v| v.starts_with(crate::profile::VOLUME_NAME_PREFIX))
    {
        if let Some(m) = theirs().find(|m| m.name == *v) {
            wanted.push(m.clone());
        }
    }
    let mut out = Vec::new();
    for t in targets(req, spec, true)? {
        let have = container_at(spec, &t)
            .volume_mounts
            .as_deref()
            .unwrap_or(&[]);
        // A mount path the container already uses for something else stays
        // its own: two mounts at one path make the pod invalid.
        let mounts: Vec<VolumeMount> = wanted
            .iter()
            .filter(|w| {
                !have
                    .iter()
                    .any(|m| m.name == w.name || m.mount_path == w.mount_path)
            })
            .cloned()
            .collect();
        if !mounts.is_empty() {
            out.push(Remount { target: t, mounts });
        }
    }
    Ok(if out.is_empty() {
        Planned::Skip("already injected".into())
    } else {
        Planned::Remount(out)
    })
}

/// Containers that get the secrets mount. Init containers that already exist
/// run after our agent's first render (we go first), so by default they are
/// targets too, except with `sidecar-only`, where nothing is rendered before
/// the app starts.
fn targets(
    req: &InjectionRequest,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    reinvoked: bool,
) -> Result<Vec<Target>> {
    let inits: &[Container] = spec.init_containers.as_deref().unwrap_or(&[]);
    let all = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (c, false, i))
        .chain(inits.iter().enumerate().map(|(i, c)| (c, true, i)))
        .filter(|(c, _, _)| !is_ours(&c.name));
    let sidecar_only = req.agent == Lifecycle::SidecarOnly;
    let Some(names) = &req.containers else {
        return Ok(all
            .filter(|(_, init, _)| !(*init && sidecar_only))
            .map(|(c, init, index)| Target {
                name: c.name.clone(),
                init,
                index,
            })
            .collect());
    };
    let key = format!("{PREFIX}containers");
    let mut out = Vec::with_capacity(names.len());
    let mut problems = Vec::new();
    let all: Vec<_> = all.collect();
    for name in names {
        match all.iter().find(|(c, _, _)| &c.name == name) {
            Some((_, true, _)) if sidecar_only => problems.push(Problem::new(
                &key,
                format!(
                    "init container {name:?} runs before a sidecar-only agent renders anything; \
                     use agent both or init-only, or leave it out"
                ),
            )),
            Some((c, init, index)) => out.push(Target {
                name: c.name.clone(),
                init: *init,
                index: *index,
            }),
            // A container removed by another webhook after injection is not
            // the user's mistake.
            None if reinvoked => {}
            None => {
                let known: Vec<&str> = all.iter().map(|(c, _, _)| c.name.as_str()).collect();
                problems.push(Problem::new(
                    &key,
                    format!(
                        "container {name:?} is not in the pod (its containers: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Error::Annotations(annotations::Error { problems }))
    }
}

/// Two mounts at one path make a pod the API server refuses: a container
/// that already mounts something where the injection would mount its own
/// volume is denied, naming both.
fn check_mount_paths(
    spec: &PodSpec,
    secret_targets: Option<&[Target]>,
    secrets_paths: &[&str],
    exec: &[ExecTarget],
    exec_token: bool,
) -> Result<()> {
    let mut problems = Vec::new();
    let mut check = |init: bool, index: usize, path: &str, what: &str| {
        let t = Target {
            name: String::new(),
            init,
            index,
        };
        let c = container_at(spec, &t);
        if let Some(m) = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path.trim_end_matches('/') == path.trim_end_matches('/'))
        {
            problems.push(format!(
                "container {:?} already mounts volume {:?} at {path}, where vault-injector \
                 mounts {what}{}",
                c.name,
                m.name,
                if what == "the secrets" {
                    " (remove that mount, or choose another path for the secrets: \
                     vault.hashicorp.com/secret-volume-path)"
                } else {
                    ""
                }
            ));
        }
    };
    for t in secret_targets.into_iter().flatten() {
        for path in secrets_paths {
            check(t.init, t.index, path, "the secrets");
        }
    }
    for e in exec {
        check(e.init, e.index, BIN_DIR, "its binary for `exec`");
        if exec_token {
            check(e.init, e.index, TOKEN_DIR, "the agent's token");
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Pod(problems.join("; ")))
    }
}

fn check_reserved_names(spec: &k8s_openapi::api::core::v1::PodSpec) -> Result<()> {
    let clash = |n: &str| {
        Error::Pod(format!(
            "the pod already has {n:?}, a name reserved for vault-injector; rename it"
        ))
    };
    for v in spec.volumes.iter().flatten() {
        if is_our_volume(&v.name) && !v.name.starts_with(crate::profile::VOLUME_NAME_PREFIX) {
            return Err(clash(&v.name));
        }
    }
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        if is_ours(&c.name) {
            return Err(clash(&c.name));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Test-only pod builders shared by `plan` and `patch` tests.
    use k8s_openapi::api::core::v1::Pod;

    /// A pod from JSON, so tests read like manifests.
    pub fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("test pod")
    }

    /// An opted-in pod with one secret and the given containers.
    pub fn simple(containers: &[&str]) -> Pod {
        pod(serde_json::json!({
            "metadata": {
                "name": "web",
                "annotations": {
                    "vault-injector.io/inject": "true",
                    "vault-injector.io/role": "web",
                    "vault-injector.io/secret-db": "secret/data/db",
                }
            },
            "spec": {
                "containers": containers.iter().map(|n| serde_json::json!({"name": n, "image": "busybox", "command": ["/bin/app"]})).collect::<Vec<_>>()
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use serde_json::json;

    fn ctx() -> RequestContext {
        RequestContext {
            namespace: "shop".into(),
        }
    }

    fn with_ann(mut pod: Pod, pairs: &[(&str, &str)]) -> Pod {
        let a = pod
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        for (k, v) in pairs {
            a.insert(format!("{PREFIX}{k}"), v.to_string());
        }
        pod
    }

    /// `plan` then `Plan::finish` with no policy, as admission runs them.
    fn planned(pod: &Pod, cfg: &WebhookConfig) -> Result<Planned> {
        match plan(pod, &ctx(), cfg)? {
            Planned::Inject(mut p) => {
                p.finish(&Default::default())?;
                Ok(Planned::Inject(p))
            }
            other => Ok(other),
        }
    }

    fn inject(pod: &Pod, cfg: &WebhookConfig) -> Plan {
        match planned(pod, cfg).unwrap() {
            Planned::Inject(p) => *p,
            other => panic!("expected injection, got {other:?}"),
        }
    }

    fn deny(pod: &Pod) -> String {
        planned(pod, &WebhookConfig::default())
            .expect_err("must be denied")
            .to_string()
    }

    #[test]
    fn skips() {
        let cfg = WebhookConfig::default();
        let mut own = simple(&["app"]);
        own.metadata.labels = Some(
            [(
                "app.kubernetes.io/name".to_string(),
                "vault-injector".to_string(),
            )]
            .into(),
        );
        let mut none = simple(&["app"]);
        none.metadata.annotations = None;
        let cases = [
            (none, "no vault-injector.io/inject"),
            (
                with_ann(simple(&["app"]), &[("inject", "false")]),
                "is false",
            ),
            // Broken annotations do not matter once injection is off.
            (
                with_ann(simple(&["app"]), &[("inject", "0"), ("mode-db", "9")]),
                "is false",
            ),
            (own, "own pod"),
        ];
        for (pod, want) in cases {
            match plan(&pod, &ctx(), &cfg).unwrap() {
                Planned::Skip(r) => assert!(r.contains(want), "{r}"),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn already_injected_is_skipped_unless_a_new_container_lacks_the_mount() {
        let cfg = WebhookConfig::default();
        let mut pod = with_ann(simple(&["app"]), &[("status", "injected")]);
        let spec = pod.spec.as_mut().unwrap();
        spec.volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
            name: SECRETS_VOLUME.into(),
            ..Default::default()
        }]);
        spec.containers[0].volume_mounts = Some(vec![VolumeMount {
            name: SECRETS_VOLUME.into(),
            mount_path: "/elsewhere".into(),
            read_only: Some(true),
            ..Default::default()
        }]);
        assert!(
            matches!(plan(&pod, &ctx(), &cfg).unwrap(), Planned::Skip(r) if r == "already injected")
        );
        pod.spec.as_mut().unwrap().init_containers = Some(vec![Container {
            name: "late-init".into(),
            ..Default::default()
        }]);
        match plan(&pod, &ctx(), &cfg).unwrap() {
            Planned::Remount(r) => assert_eq!(
                r,
                vec![Remount {
                    target: Target {
                        name: "late-init".into(),
                        init: true,
                        index: 0
                    },
                    // At the path the first injection chose.
                    mounts: vec![VolumeMount {
                        name: SECRETS_VOLUME.into(),
                        mount_path: "/elsewhere".into(),
                        read_only: Some(true),
                        ..Default::default()
                    }]
                }]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reinvoked_pod_without_a_secrets_volume_gets_no_secrets_mount() {
        let cfg = WebhookConfig::default();
        let mut pod = with_ann(
            simple(&["app"]),
            &[("status", "injected"), ("env-DB", "kv/db#pw")],
        );
        pod.metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove("vault-injector.io/secret-db");
        let spec = pod.spec.as_mut().unwrap();
        spec.volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
            name: BIN_VOLUME.into(),
            ..Default::default()
        }]);
        spec.containers.push(Container {
            name: "late".into(),
            ..Default::default()
        });
        assert!(
            matches!(plan(&pod, &ctx(), &cfg).unwrap(), Planned::Skip(r) if r == "already injected")
        );
    }

    #[test]
    fn a_mount_path_the_injection_needs_is_denied_when_taken() {
        let cfg = WebhookConfig::default();
        let mut pod = with_ann(simple(&["app"]), &[("env-DB", "kv/db#pw")]);
        let spec = pod.spec.as_mut().unwrap();
        spec.volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
            name: "mine".into(),
            ..Default::default()
        }]);
        spec.containers[0].volume_mounts = Some(vec![VolumeMount {
            name: "mine".into(),
            mount_path: "/vault/secrets/".into(),
            ..Default::default()
        }]);
        let err = plan(&pod, &ctx(), &cfg).unwrap_err().to_string();
        assert!(
            err.contains("\"app\" already mounts volume \"mine\" at /vault/secrets"),
            "{err}"
        );
        pod.spec.as_mut().unwrap().containers[0]
            .volume_mounts
            .as_mut()
            .unwrap()[0]
            .mount_path = BIN_DIR.into();
        let err = plan(&pod, &ctx(), &cfg).unwrap_err().to_string();
        assert!(err.contains("/vault/bin"), "{err}");
        assert!(err.contains("`exec`"), "{err}");
    }

    #[test]
    fn a_status_annotation_without_an_injection_is_denied() {
        let cfg = WebhookConfig::default();
        let pod = with_ann(simple(&["app"]), &[("status", "injected")]);
        let err = plan(&pod, &ctx(), &cfg).unwrap_err().to_string();
        assert!(err.contains("vault-injector.io/status"), "{err}");
        assert!(err.contains("none of the containers or volumes"), "{err}");
        // A vault-k8s status alone: another injector's pod, left to it.
        let mut vk = simple(&["app"]);
        let a = vk.metadata.annotations.as_mut().unwrap();
        a.clear();
        a.insert("vault.hashicorp.com/agent-inject".into(), "true".into());
        a.insert("vault.hashicorp.com/role".into(), "r".into());
        a.insert(
            "vault.hashicorp.com/agent-inject-status".into(),
            "injected".into(),
        );
        assert!(matches!(plan(&vk, &ctx(), &cfg).unwrap(), Planned::Skip(_)));
    }

    #[test]
    fn plan_fills_agent_config() {
        let mut cfg = WebhookConfig::default();
        cfg.vault.address = "https://bao.example:8200".into();
        cfg.auth.path = "auth/k8s".into();
        let mut pod = with_ann(
            simple(&["app", "worker"]),
            &[
                ("containers", "worker"),
                ("format-db", "env"),
                ("mode-db", "0440"),
                ("env-TOKEN", "kv/api#token"),
                ("volume-data", "nfs"),
            ],
        );
        pod.spec.as_mut().unwrap().service_account_name = Some("shop-sa".into());
        let p = inject(&pod, &cfg);
        assert_eq!(p.targets.len(), 1);
        assert_eq!(p.targets[0].name, "worker");
        assert_eq!(p.targets[0].index, 1);
        assert_eq!(p.agent.vault.address, "https://bao.example:8200");
        assert_eq!(p.agent.auth.mount, "k8s");
        assert_eq!(p.agent.auth.role, "web");
        assert_eq!(p.agent.auth.method, AuthMethod::Kubernetes);
        assert_eq!(p.agent.secrets.len(), 1);
        assert_eq!(p.agent.secrets[0].mode, 0o440);
        assert_eq!(p.agent.env[0].containers, vec!["worker".to_string()]);
        assert_eq!(p.agent.pod.namespace, "shop");
        assert_eq!(p.agent.pod.service_account, "shop-sa");
        assert_eq!(p.volumes[0].profile, "nfs");
        assert_eq!(p.run_as_user, 65532);
        assert!(p.needs_agent);
    }

    #[test]
    fn default_targets_include_init_containers_except_for_sidecar_only() {
        let cfg = WebhookConfig::default();
        let mut pod = simple(&["app"]);
        pod.spec.as_mut().unwrap().init_containers = Some(vec![Container {
            name: "migrate".into(),
            ..Default::default()
        }]);
        let names = |p: &Plan| p.targets.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&inject(&pod, &cfg)), ["app", "migrate"]);
        let side = with_ann(pod.clone(), &[("agent", "sidecar-only")]);
        assert_eq!(names(&inject(&side, &cfg)), ["app"]);
        let named = with_ann(side, &[("containers", "migrate")]);
        let err = deny(&named);
        assert!(err.contains("vault-injector.io/containers"), "{err}");
        assert!(err.contains("sidecar-only"), "{err}");
    }

    #[test]
    fn pod_user_is_inherited_by_the_agent() {
        let mut pod = simple(&["app"]);
        pod.spec.as_mut().unwrap().security_context =
            Some(serde_json::from_value(json!({"runAsUser": 1000, "runAsGroup": 0})).unwrap());
        let p = inject(&pod, &WebhookConfig::default());
        assert_eq!((p.run_as_user, p.run_as_group), (1000, 65532));
    }

    #[test]
    fn classic_sidecar_in_a_job_warns() {
        let mut classic = WebhookConfig::default();
        classic.agent.native_sidecar = false;
        let mut job = simple(&["app"]);
        job.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        let w = inject(&job, &classic).warnings;
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("vault-injector.io/agent") && w[0].contains("init-only"),
            "{w:?}"
        );
        assert!(inject(&job, &WebhookConfig::default()).warnings.is_empty());
        let init_only = with_ann(job, &[("agent", "init-only")]);
        assert!(inject(&init_only, &classic).warnings.is_empty());
    }

    #[test]
    fn pod_level_denials_name_the_annotation() {
        let mut no_role = simple(&["app"]);
        no_role
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove("vault-injector.io/role");
        let mut cfg_role = WebhookConfig::default();
        cfg_role.auth.role = Some("fallback".into());
        assert_eq!(inject(&no_role, &cfg_role).agent.auth.role, "fallback");
        let approle = with_ann(no_role.clone(), &[("auth-type", "approle")]);
        assert_eq!(
            inject(&approle, &WebhookConfig::default()).agent.auth.role,
            ""
        );

        let cases: Vec<(Pod, &str, &str)> = vec![
            (no_role, "vault-injector.io/role", "no Vault role"),
            (
                with_ann(simple(&["app"]), &[("containers", "app,ghost")]),
                "vault-injector.io/containers",
                "\"ghost\" is not in the pod",
            ),
            (
                with_ann(simple(&["app"]), &[("entrypoint-web", "[\"/w\"]")]),
                "vault-injector.io/entrypoint-web",
                "no container \"web\" in the pod",
            ),
            (
                with_ann(simple(&["app"]), &[("inject", "yes")]),
                "vault-injector.io/inject",
                "not a boolean",
            ),
            (
                with_ann(simple(&["app"]), &[("status", "pending")]),
                "vault-injector.io/status",
                "written by the webhook",
            ),
            (
                pod(
                    json!({"metadata": {"annotations": {"vault-injector.io/inject": "true"}},
                           "spec": {"containers": [{"name": "a"}]}}),
                ),
                "vault-injector.io/inject",
                "no vault-injector.io/secret-NAME",
            ),
        ];
        for (pod, key, needle) in cases {
            let err = deny(&pod);
            assert!(err.contains(key), "{err}");
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn reserved_names_are_refused() {
        let mut pod = simple(&["app"]);
        pod.spec.as_mut().unwrap().volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
            name: SECRETS_VOLUME.into(),
            ..Default::default()
        }]);
        assert!(deny(&pod).contains("reserved"));
        let pod = simple(&["app", AGENT_CONTAINER]);
        assert!(deny(&pod).contains("reserved"));
    }

    #[test]
    fn names_for_audit() {
        let p = pod(json!({"metadata": {"generateName": "web-7d9-"}, "spec": {"containers": []}}));
        assert_eq!(pod_display_name(&p), "web-7d9-*");
        assert_eq!(service_account(&p), "default");
    }
}
