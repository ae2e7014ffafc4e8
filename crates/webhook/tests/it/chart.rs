//! The Helm chart against the binary's own contracts, with the real `helm`:
//! the ConfigMap it renders must load as `WebhookConfig` (deny_unknown_fields),
//! and the Deployment's args must parse as the webhook's flags plus the
//! auto-TLS flags. scripts/test-chart.sh covers lint and Kubernetes schemas.

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{Args, FromArgMatches};
use vault_injector::autotls::AutoTlsArgs;
use vault_injector::server::WebhookArgs;
use vault_injector_core::config::WebhookConfig;
use vault_injector_core::contract::{AuthMethod, LogFormat, SA_TOKEN_PATH};
use vault_injector_core::policy::Policy;

fn root() -> PathBuf {
    support::root()
}

/// Renders the chart; `None` when helm is missing outside CI.
fn render(values: &[&str]) -> Option<Vec<serde_yaml::Value>> {
    let helm = support::require_tool("helm")?;
    let mut cmd = Command::new(helm);
    cmd.args(["template", "rel"])
        .arg(root().join("charts/vault-injector"))
        .args(["--namespace", "vault-injector"]);
    for v in values {
        cmd.arg("-f").arg(root().join("tests/chart").join(v));
    }
    let out = cmd.output().expect("run helm");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .filter(|v: &serde_yaml::Value| !v.is_null())
            .collect(),
    )
}

fn object<'a>(objects: &'a [serde_yaml::Value], kind: &str) -> &'a serde_yaml::Value {
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// Every `good-*.yaml` value set; a new one is covered without editing here.
fn good_value_sets() -> Vec<String> {
    let mut sets: Vec<String> = std::fs::read_dir(root().join("tests/chart"))
        .expect("tests/chart")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("good-") && n.ends_with(".yaml"))
        .collect();
    sets.sort();
    assert!(sets.len() >= 10, "value sets went missing: {sets:?}");
    sets
}

fn objects_of<'a>(
    objects: &'a [serde_yaml::Value],
    kind: &'a str,
) -> impl Iterator<Item = &'a serde_yaml::Value> + 'a {
    objects
        .iter()
        .filter(move |o| o["kind"].as_str() == Some(kind))
}

fn config_of(objects: &[serde_yaml::Value]) -> WebhookConfig {
    // The chart may render a second ConfigMap (the policy): pick by key.
    let text = objects_of(objects, "ConfigMap")
        .find_map(|o| o["data"]["config.yaml"].as_str())
        .expect("config.yaml in a ConfigMap");
    WebhookConfig::from_yaml(text, Path::new("chart ConfigMap"))
        .unwrap_or_else(|e| panic!("the chart's config does not load: {e}\n{text}"))
}

/// The webhook subcommand's flags: the server's plus the auto-TLS ones,
/// whether `WebhookArgs` already flattens `AutoTlsArgs` or not yet.
struct WebhookCommand {
    server: WebhookArgs,
    tls: AutoTlsArgs,
}

impl WebhookCommand {
    fn try_parse_from(args: &[String]) -> Result<Self, clap::Error> {
        let mut cmd = WebhookArgs::augment_args(clap::Command::new("webhook"));
        let flattened = cmd
            .get_arguments()
            .any(|a| a.get_long() == Some("auto-tls"));
        if !flattened {
            cmd = AutoTlsArgs::augment_args(cmd);
        }
        let matches = cmd.try_get_matches_from(args)?;
        Ok(Self {
            server: WebhookArgs::from_arg_matches(&matches)?,
            tls: AutoTlsArgs::from_arg_matches(&matches)?,
        })
    }
}

fn args_of(objects: &[serde_yaml::Value]) -> Vec<String> {
    let container = &object(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn default_config_loads_and_matches_the_binary_defaults() {
    let Some(objects) = render(&[]) else { return };
    let cfg = config_of(&objects);
    // The chart's defaults are the binary's defaults, so values.yaml and
    // src/config.rs cannot drift apart silently.
    assert_eq!(cfg, WebhookConfig::default());
}

#[test]
fn every_value_set_renders_a_config_the_webhook_accepts() {
    for set in good_value_sets() {
        let Some(objects) = render(&[&set]) else {
            return;
        };
        config_of(&objects);
    }
    let Some(objects) = render(&["good-full.yaml"]) else {
        return;
    };
    let cfg = config_of(&objects);
    assert_eq!(cfg.vault.address, "https://vault.example.com:8200");
    assert_eq!(cfg.vault.namespace.as_deref(), Some("team-a"));
    assert!(cfg
        .vault
        .ca_pem
        .as_deref()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert_eq!(cfg.auth.method, AuthMethod::Jwt);
    assert_eq!(cfg.auth.path, "auth/jwt-prod");
    assert_eq!(cfg.auth.role.as_deref(), Some("default-app"));
    assert_eq!(
        cfg.agent.image,
        "registry.example.com/vault-injector-agent:0.1.0"
    );
    assert_eq!(cfg.agent.image_pull_policy, "Always");
    assert!(!cfg.agent.native_sidecar);
    assert!(cfg.agent.revoke_on_shutdown);
    assert_eq!(cfg.agent.refresh_interval, "2m30s");
    assert_eq!(cfg.agent.log_format, LogFormat::Plain);
    assert_eq!(cfg.injector.max_body_bytes, 1_048_576);
    assert_eq!(cfg.injector.log_format, LogFormat::Plain);
    assert_eq!(
        cfg.injector
            .self_labels
            .get("app.kubernetes.io/name")
            .map(String::as_str),
        Some("vault-injector")
    );
    let limits = cfg.agent.resources.limits.unwrap();
    assert_eq!(limits["memory"].0, "32Mi");
}

#[test]
fn deployment_args_parse_as_webhook_and_auto_tls_flags() {
    let Some(objects) = render(&[]) else { return };
    let args = args_of(&objects);
    assert_eq!(args[0], "webhook");
    let parsed = WebhookCommand::try_parse_from(&args)
        .unwrap_or_else(|e| panic!("chart args {args:?} do not parse: {e}"));
    assert!(parsed.tls.auto_tls);
    assert_eq!(parsed.server.listen.port(), 8443);
    assert_eq!(parsed.server.admin_listen.port(), 9090);
    // The server loads exactly the files the controller writes.
    assert_eq!(
        (
            parsed.server.tls_cert.clone(),
            parsed.server.tls_key.clone()
        ),
        parsed.tls.cert_paths()
    );
    assert_eq!(parsed.tls.tls_secret_name, "rel-vault-injector-tls");
    assert_eq!(parsed.tls.service_name, "rel-vault-injector");
    assert_eq!(
        parsed.tls.webhook_config_name,
        "rel-vault-injector-vault-injector"
    );
    let mwc = object(&objects, "MutatingWebhookConfiguration");
    assert_eq!(
        mwc["metadata"]["name"].as_str(),
        Some(parsed.tls.webhook_config_name.as_str())
    );
    let svc = object(&objects, "Service");
    assert_eq!(
        svc["metadata"]["name"].as_str(),
        Some(parsed.tls.service_name.as_str())
    );

    let Some(objects) = render(&["good-secret.yaml"]) else {
        return;
    };
    let args = args_of(&objects);
    let parsed = WebhookCommand::try_parse_from(&args).unwrap();
    assert!(!parsed.tls.auto_tls, "secret mode does not run auto-TLS");
}

/// The webhook pod's spec.
fn pod_spec(objects: &[serde_yaml::Value]) -> &serde_yaml::Value {
    &object(objects, "Deployment")["spec"]["template"]["spec"]
}

/// The volume a file in the webhook container lives on: the mount whose
/// path is the longest prefix of `file`, and the volume it names.
fn volume_holding<'a>(
    objects: &'a [serde_yaml::Value],
    file: &Path,
) -> Option<(&'a serde_yaml::Value, &'a serde_yaml::Value)> {
    let spec = pod_spec(objects);
    let mount = spec["containers"][0]["volumeMounts"]
        .as_sequence()?
        .iter()
        .filter(|m| file.starts_with(m["mountPath"].as_str().unwrap()))
        .max_by_key(|m| m["mountPath"].as_str().unwrap().len())?;
    let name = mount["name"].as_str()?;
    let volume = spec["volumes"]
        .as_sequence()?
        .iter()
        .find(|v| v["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("mount {name} has no volume"));
    Some((mount, volume))
}

/// The file name a volume projects at `file` (relative to its mount), and
/// the source key it comes from, for configMap/secret volumes with items.
fn projected_key(mount: &serde_yaml::Value, volume: &serde_yaml::Value, file: &Path) -> String {
    let rel = file
        .strip_prefix(mount["mountPath"].as_str().unwrap())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let source = if volume["configMap"].is_mapping() {
        &volume["configMap"]
    } else {
        &volume["secret"]
    };
    let items = source["items"]
        .as_sequence()
        .unwrap_or_else(|| panic!("volume {volume:?} should project named items"));
    items
        .iter()
        .find(|i| i["path"].as_str() == Some(rel.as_str()))
        .unwrap_or_else(|| panic!("volume {volume:?} does not project {rel}"))["key"]
        .as_str()
        .unwrap()
        .to_string()
}

/// What the chart's RBAC grants the webhook's service account, as
/// (apiGroup, resource, verb) triples over every bound (Cluster)Role.
fn granted(objects: &[serde_yaml::Value]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for kind in ["Role", "ClusterRole"] {
        for role in objects_of(objects, kind) {
            let name = role["metadata"]["name"].as_str().unwrap();
            let bound = objects.iter().any(|b| {
                b["kind"].as_str() == Some(&format!("{kind}Binding"))
                    && b["roleRef"]["name"].as_str() == Some(name)
            });
            assert!(bound, "{kind} {name} is not bound");
            for rule in role["rules"].as_sequence().unwrap() {
                let list = |k: &str| -> Vec<String> {
                    rule[k]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_string())
                        .collect()
                };
                for g in list("apiGroups") {
                    for r in list("resources") {
                        for v in list("verbs") {
                            out.insert((g.clone(), r.clone(), v));
                        }
                    }
                }
            }
        }
    }
    out
}

/// Every file the rendered config names exists in the rendered pod: the
/// policy comes from a read-only ConfigMap directory mount (the chart's own
/// ConfigMap holds a policy the webhook accepts), AppRole credentials from a
/// read-only Secret, the login JWT from the service-account token or a
/// projected token, and $TMPDIR is writable. Events come with their RBAC.
#[test]
fn every_file_the_config_names_is_mounted_in_the_webhook_pod() {
    for set in good_value_sets() {
        let Some(objects) = render(&[&set]) else {
            return;
        };
        let cfg = config_of(&objects);
        let spec = pod_spec(&objects);
        let automount = spec["automountServiceAccountToken"].as_bool().unwrap();

        if let Some(file) = &cfg.policy.file {
            let (mount, volume) = volume_holding(&objects, file)
                .unwrap_or_else(|| panic!("{set}: policy file {file:?} is not mounted"));
            assert_eq!(mount["readOnly"].as_bool(), Some(true), "{set}");
            assert!(
                mount["subPath"].is_null(),
                "{set}: a subPath mount never sees ConfigMap updates"
            );
            let key = projected_key(mount, volume, file);
            let cm_name = volume["configMap"]["name"].as_str().unwrap();
            if let Some(cm) = objects_of(&objects, "ConfigMap")
                .find(|o| o["metadata"]["name"].as_str() == Some(cm_name))
            {
                let text = cm["data"][key.as_str()]
                    .as_str()
                    .unwrap_or_else(|| panic!("{set}: ConfigMap {cm_name} lacks key {key}"));
                let policy = Policy::from_yaml(text, Path::new(cm_name))
                    .unwrap_or_else(|e| panic!("{set}: the chart's policy does not load: {e}"));
                assert!(!policy.rules.is_empty(), "{set}");
            }
        }

        match cfg.webhook_auth.method {
            AuthMethod::Approle => {
                for file in [
                    cfg.webhook_auth.role_id_path.as_ref().unwrap(),
                    cfg.webhook_auth.secret_id_path.as_ref().unwrap(),
                ] {
                    let (mount, volume) = volume_holding(&objects, file)
                        .unwrap_or_else(|| panic!("{set}: {file:?} is not mounted"));
                    assert_eq!(mount["readOnly"].as_bool(), Some(true), "{set}");
                    assert!(volume["secret"]["secretName"].is_string(), "{set}");
                    projected_key(mount, volume, file);
                }
            }
            AuthMethod::Kubernetes | AuthMethod::Jwt if cfg.webhook_auth.role.is_some() => {
                let token = &cfg.webhook_auth.token_path;
                if token == Path::new(SA_TOKEN_PATH) {
                    assert!(automount, "{set}: the webhook logs in with its SA token");
                } else {
                    let (mount, volume) = volume_holding(&objects, token)
                        .unwrap_or_else(|| panic!("{set}: tokenPath {token:?} is not mounted"));
                    assert_eq!(mount["readOnly"].as_bool(), Some(true), "{set}");
                    let source = &volume["projected"]["sources"][0]["serviceAccountToken"];
                    assert_eq!(
                        Path::new(mount["mountPath"].as_str().unwrap())
                            .join(source["path"].as_str().unwrap()),
                        *token,
                        "{set}"
                    );
                    assert!(
                        source["audience"].as_str().is_some_and(|a| !a.is_empty()),
                        "{set}: a projected token needs its own audience"
                    );
                }
            }
            _ => {}
        }

        // Distinct and not nested: a mount point inside another (read-only)
        // mount cannot be created by the container runtime.
        let mounts: Vec<&str> = spec["containers"][0]["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap())
            .collect();
        for (i, a) in mounts.iter().enumerate() {
            for b in &mounts[i + 1..] {
                assert!(
                    !Path::new(a).starts_with(b) && !Path::new(b).starts_with(a),
                    "{set}: mounts {a} and {b} overlap"
                );
            }
        }

        // vaultrs takes the CA only as a file, written under $TMPDIR.
        let tmp = volume_holding(&objects, Path::new("/tmp/vault-injector-ca"))
            .unwrap_or_else(|| panic!("{set}: /tmp is not writable"));
        assert!(tmp.1["emptyDir"].is_mapping(), "{set}");
        assert!(tmp.0["readOnly"].as_bool() != Some(true), "{set}");

        let rbac = granted(&objects);
        let events =
            |verb: &str| rbac.contains(&("events.k8s.io".into(), "events".into(), verb.into()));
        let values: serde_yaml::Value = serde_yaml::from_str(
            &std::fs::read_to_string(root().join("tests/chart").join(&set)).unwrap(),
        )
        .unwrap();
        let rbac_create = values["rbac"]["create"].as_bool().unwrap_or(true);
        if cfg.events.enabled && rbac_create {
            assert!(events("create") && events("patch"), "{set}: {rbac:?}");
            assert!(automount, "{set}: Events need the API server");
        } else {
            assert!(!events("create") && !events("patch"), "{set}: {rbac:?}");
        }
        // kube's Recorder uses events.k8s.io/v1 only.
        assert!(
            !rbac.iter().any(|(g, r, _)| g.is_empty() && r == "events"),
            "{set}: core/v1 events are never written: {rbac:?}"
        );
    }
}

#[test]
fn new_sections_reach_the_config() {
    let Some(objects) = render(&["good-volumes-kubernetes.yaml"]) else {
        return;
    };
    let cfg = config_of(&objects);
    assert_eq!(cfg.volumes.kv_mount, "kv-prod");
    assert_eq!(cfg.volumes.prefix, "platform/volume-profiles");
    assert_eq!(cfg.volumes.cache_ttl().as_secs(), 120);
    assert_eq!(cfg.volumes.request_timeout().as_millis(), 1500);
    assert!(cfg.volumes.allow_host_path);
    assert_eq!(cfg.webhook_auth.method, AuthMethod::Kubernetes);
    assert_eq!(cfg.webhook_auth.path, "auth/k8s-prod");
    assert_eq!(
        cfg.webhook_auth.role.as_deref(),
        Some("vault-injector-webhook")
    );
    assert!(cfg.policy.file.is_none());

    let Some(objects) = render(&["good-webhookauth-approle.yaml"]) else {
        return;
    };
    let cfg = config_of(&objects);
    assert_eq!(cfg.webhook_auth.method, AuthMethod::Approle);
    assert_eq!(cfg.webhook_auth.path, "auth/approle-webhook");
    assert_eq!(
        cfg.webhook_auth.role_id_path.as_deref(),
        Some(Path::new("/etc/vault-injector-approle/role_id"))
    );

    let Some(objects) = render(&["good-overrides-events.yaml"]) else {
        return;
    };
    let cfg = config_of(&objects);
    assert_eq!(
        cfg.agent_overrides.allow_address,
        [
            "https://vault-dr.vault.svc:8200",
            "http://openbao.lab.svc:8200"
        ]
    );
    assert!(cfg.agent_overrides.allow_tls_skip_verify);
    assert!(cfg.agent_overrides.allow_ca_cert);
    assert!(cfg.events.enabled);

    let Some(objects) = render(&["good-policy-inline.yaml"]) else {
        return;
    };
    let cfg = config_of(&objects);
    assert_eq!(
        cfg.policy.file.as_deref(),
        Some(Path::new("/etc/vault-injector-policy/policy.yaml"))
    );
    assert_eq!(cfg.policy.reload_interval, "30s");
}
