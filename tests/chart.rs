//! The Helm chart against the binary's own contracts, with the real `helm`:
//! the ConfigMap it renders must load as `WebhookConfig` (deny_unknown_fields),
//! and the Deployment's args must parse as the webhook's flags plus the
//! auto-TLS flags. scripts/test-chart.sh covers lint and Kubernetes schemas.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{Args, FromArgMatches};
use vault_injector::autotls::AutoTlsArgs;
use vault_injector::config::{AuthMethod, LogFormat, WebhookConfig};
use vault_injector::server::WebhookArgs;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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

fn config_of(objects: &[serde_yaml::Value]) -> WebhookConfig {
    let text = object(objects, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml in the ConfigMap");
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
    for set in [
        "good-full.yaml",
        "good-minimal.yaml",
        "good-secret.yaml",
        "good-certmanager-issuer.yaml",
    ] {
        let Some(objects) = render(&[set]) else {
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
