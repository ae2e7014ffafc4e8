//! `vault-injector lint`: check every injector annotation in a tree of
//! manifests, in CI, with the same parser and planner the webhook uses, so a
//! lint message is the webhook's denial message.
//!
//! Output: one `file:object:annotation: message` line per problem; problems
//! that concern the pod rather than one annotation print `file:object: message`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::admission::{self, Volumes};
use crate::gate::Gate;
use crate::manifests;
use vault_injector_core::annotations::{self, PREFIX};
use vault_injector_core::audit::AdmissionAudit;
use vault_injector_core::compat::{bankvaults, vaultk8s};
use vault_injector_core::config::WebhookConfig;
use vault_injector_core::plan;

#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// Files or directories (searched for *.yaml, *.yml, *.json), or `-` for
    /// stdin (e.g. `helm template . | vault-injector lint -`).
    #[arg(
        required = true,
        env = "VAULT_INJECTOR_LINT_PATHS",
        value_delimiter = ','
    )]
    pub paths: Vec<PathBuf>,
    /// Webhook config file: its defaults (e.g. `auth.role`) decide whether a
    /// pod without a role annotation is valid, as in the cluster.
    #[arg(long, env = "VAULT_INJECTOR_CONFIG_FILE")]
    pub config: Option<PathBuf>,
}

pub fn run(args: LintArgs) -> anyhow::Result<ExitCode> {
    let LintArgs { paths, config } = args;
    let cfg = match config {
        Some(path) => WebhookConfig::load(&path)?,
        None => WebhookConfig::default(),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let problems = lint_paths(&paths, &cfg, &mut out)?;
    out.flush()?;
    if problems > 0 {
        eprintln!("vault-injector lint: {problems} problem(s)");
        Ok(ExitCode::FAILURE)
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// Lints every manifest under `paths`; returns how many problems were
/// printed.
pub fn lint_paths(
    paths: &[PathBuf],
    cfg: &WebhookConfig,
    out: &mut impl Write,
) -> std::io::Result<usize> {
    // The policy file (if any) is loaded once: lint judges pods as the
    // webhook would, offline.
    let gate = match Gate::from_config(cfg) {
        Ok(g) => g,
        Err(e) => {
            writeln!(out, "config: {e}")?;
            return Ok(1);
        }
    };
    let mut files = Vec::new();
    for p in paths {
        collect(p, true, &mut files);
    }
    let mut count = 0;
    for file in files {
        let file = match file {
            Ok(f) => f,
            Err(line) => {
                writeln!(out, "{line}")?;
                count += 1;
                continue;
            }
        };
        let (origin, text) = match manifests::read_input(&file) {
            Ok(x) => x,
            Err(e) => {
                writeln!(out, "{}: {e}", file.display())?;
                count += 1;
                continue;
            }
        };
        let docs = match manifests::parse_documents(&origin, &text) {
            Ok(d) => d,
            Err(e) => {
                writeln!(out, "{e}")?;
                count += 1;
                continue;
            }
        };
        for (i, doc) in docs.iter().enumerate() {
            let (problems, warnings) = lint_document_with_warnings(doc, i + 1, cfg, &gate);
            for line in problems {
                writeln!(out, "{origin}:{line}")?;
                count += 1;
            }
            // Warnings are what the webhook returns as admission warnings:
            // printed, never counted (the pod would be admitted).
            for line in warnings {
                writeln!(out, "{origin}:{line}")?;
            }
        }
    }
    Ok(count)
}

/// Expands directories (sorted, so output is stable); a path named on the
/// command line is linted whatever its extension.
fn collect(path: &Path, explicit: bool, out: &mut Vec<Result<PathBuf, String>>) {
    if path == Path::new("-") {
        out.push(Ok(path.to_owned()));
        return;
    }
    if path.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            Err(e) => {
                out.push(Err(format!("{}: {e}", path.display())));
                return;
            }
        };
        let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        for c in children {
            let hidden = c
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if !hidden {
                collect(&c, false, out);
            }
        }
    } else if explicit
        || matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        )
    {
        out.push(Ok(path.to_owned()));
    }
}

/// Problems of one document, as `object:annotation: message` (or
/// `object: message`).
#[cfg(test)]
pub fn lint_document(doc: &Value, index: usize, cfg: &WebhookConfig, gate: &Gate) -> Vec<String> {
    lint_document_with_warnings(doc, index, cfg, gate).0
}

/// Problems and warnings of one document; a warning line is
/// `object: warning: message`, the message the webhook's admission
/// warning carries.
pub fn lint_document_with_warnings(
    doc: &Value,
    index: usize,
    cfg: &WebhookConfig,
    gate: &Gate,
) -> (Vec<String>, Vec<String>) {
    let Some(path) = manifests::template_path(doc) else {
        return (Vec::new(), Vec::new());
    };
    let object = object_name(doc, index);
    let mut warnings = Vec::new();
    let problems = lint_object(doc, path, &object, cfg, gate, &mut warnings);
    let mut seen = std::collections::BTreeSet::new();
    let warnings = warnings
        .into_iter()
        .filter(|w| seen.insert(w.clone()))
        .map(|w| format!("{object}: warning: {w}"))
        .collect();
    (problems, warnings)
}

fn object_name(doc: &Value, index: usize) -> String {
    let kind = doc["kind"].as_str().unwrap_or_default();
    match doc.pointer("/metadata/name").and_then(Value::as_str) {
        Some(name) => format!("{kind}/{name}"),
        None => format!("{kind}#{index}"),
    }
}

fn lint_object(
    doc: &Value,
    path: &[&str],
    object: &str,
    cfg: &WebhookConfig,
    gate: &Gate,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let object = object.to_string();
    let mut template = doc;
    for token in path {
        match template.get(*token) {
            Some(t) => template = t,
            None => return vec![format!("{object}: has no {}", path.join("."))],
        }
    }
    let metadata: ObjectMeta = match template.get("metadata") {
        Some(m) => match serde_json::from_value(m.clone()) {
            Ok(m) => m,
            Err(e) => return vec![format!("{object}: pod metadata: {e}")],
        },
        None => return Vec::new(),
    };
    let spec: PodSpec = match template.get("spec") {
        Some(s) => match serde_json::from_value(s.clone()) {
            Ok(s) => s,
            Err(e) => return vec![format!("{object}: pod spec: {e}")],
        },
        None => PodSpec::default(),
    };
    let empty = Default::default();
    let annotations = metadata.annotations.as_ref().unwrap_or(&empty);
    let ours = annotations.keys().any(|k| k.starts_with(PREFIX));
    let theirs = annotations.keys().any(|k| k.starts_with(vaultk8s::PREFIX));
    let env_refs: Vec<(String, String, String)> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| {
            c.env.iter().flatten().filter_map(|e| {
                let v = e.value.as_deref().filter(|v| bankvaults::is_ref(v))?;
                Some((c.name.clone(), e.name.clone(), v.to_string()))
            })
        })
        .collect();
    if !ours && !theirs && env_refs.is_empty() {
        return Vec::new();
    }
    // Syntax is checked even when injection is off, so a pod cannot carry a
    // broken configuration that fails the day it is enabled.
    let mut lines = Vec::new();
    if ours {
        if let Err(e) = annotations::from_annotations(annotations) {
            lines.extend(problem_lines(&object, e));
        }
    }
    if theirs {
        match vaultk8s::from_annotations(annotations) {
            Err(e) => lines.extend(problem_lines(&object, e)),
            Ok(Some((_, extras))) => warnings.extend(extras.warnings),
            Ok(None) => {}
        }
    }
    for (container, var, value) in &env_refs {
        if let Err(m) = bankvaults::parse_value(value) {
            lines.push(format!(
                "{object}:spec.containers[{container}].env[{var}]: {m}"
            ));
        }
    }
    if !lines.is_empty() {
        return lines;
    }
    let namespace = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let pod = Pod {
        metadata,
        spec: Some(spec),
        status: None,
    };
    // Then the webhook's own path, offline: what it would deny, lint denies.
    let mut audit = AdmissionAudit {
        namespace,
        ..Default::default()
    };
    let result = futures::executor::block_on(admission::mutate_pod(
        &pod,
        cfg,
        gate,
        Volumes::Offline,
        &mut audit,
    ));
    match result {
        Ok(m) => {
            warnings.extend(m.warnings);
            Vec::new()
        }
        Err(admission::Error::Plan(plan::Error::Annotations(e))) => problem_lines(&object, e),
        Err(admission::Error::Gate(crate::gate::GateDenial::Override(d))) => {
            vec![format!("{object}:{}: {}", d.annotation, d.message)]
        }
        Err(e) => vec![format!("{object}: {e}")],
    }
}

fn problem_lines(object: &str, e: annotations::Error) -> Vec<String> {
    e.problems
        .into_iter()
        .map(|p| format!("{object}:{}: {}", p.annotation, p.message))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(annotations: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"metadata": {"annotations": annotations},
                     "spec": {"containers": [{"name": "app", "image": "x"}]}}}
        })
    }

    fn lint_document(doc: &Value, index: usize, cfg: &WebhookConfig) -> Vec<String> {
        super::lint_document(doc, index, cfg, &Gate::from_config(cfg).unwrap())
    }

    #[test]
    fn other_dialects_and_env_references() {
        let cfg = WebhookConfig::default();
        let k8s = deploy(json!({"vault.hashicorp.com/agent-inject": "yes"}));
        let lines = lint_document(&k8s, 1, &cfg);
        assert!(
            lines[0].starts_with("Deployment/web:vault.hashicorp.com/agent-inject: "),
            "{lines:?}"
        );
        let mut env = deploy(json!({}));
        env["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "DB", "value": "vault:secret/db"}]);
        let lines = lint_document(&env, 1, &cfg);
        assert_eq!(
            lines,
            vec!["Deployment/web:spec.containers[app].env[DB]: \"vault:secret/db\": missing key after '#' (expected vault:PATH#KEY)"]
        );
        let redirect = deploy(json!({"vault-injector.io/inject": "true",
            "vault-injector.io/role": "r", "vault-injector.io/secret-db": "kv/db",
            "vault-injector.io/vault-address": "https://evil.example"}));
        let lines = lint_document(&redirect, 1, &cfg);
        assert!(
            lines[0].starts_with("Deployment/web:vault-injector.io/vault-address: "),
            "{lines:?}"
        );
    }

    #[test]
    fn ignored_vault_k8s_keys_are_warnings_not_problems() {
        let cfg = WebhookConfig::default();
        let gate = Gate::from_config(&cfg).unwrap();
        let doc = deploy(json!({"vault.hashicorp.com/agent-inject": "true",
            "vault.hashicorp.com/role": "r",
            "vault.hashicorp.com/agent-inject-secret-db": "kv/db",
            "vault.hashicorp.com/agent-inject-templat-db": "typo"}));
        let (problems, warnings) = lint_document_with_warnings(&doc, 1, &cfg, &gate);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with(
                "Deployment/web: warning: vault.hashicorp.com/agent-inject-templat-db: not a vault-k8s annotation"
            ),
            "{warnings:?}"
        );
        // The same text the webhook returns as an admission warning.
        let pod = Pod {
            metadata: serde_json::from_value(doc["spec"]["template"]["metadata"].clone()).unwrap(),
            spec: serde_json::from_value(doc["spec"]["template"]["spec"].clone()).unwrap(),
            status: None,
        };
        let m = futures::executor::block_on(admission::mutate_pod(
            &pod,
            &cfg,
            &gate,
            Volumes::Offline,
            &mut AdmissionAudit::default(),
        ))
        .unwrap();
        assert_eq!(
            m.warnings
                .iter()
                .map(|w| format!("Deployment/web: warning: {w}"))
                .collect::<Vec<_>>(),
            warnings
        );
    }

    #[test]
    fn documents() {
        let cfg = WebhookConfig::default();
        let good = deploy(json!({"vault-injector.io/inject": "true",
            "vault-injector.io/role": "r", "vault-injector.io/secret-db": "kv/db"}));
        assert!(lint_document(&good, 1, &cfg).is_empty());
        let bad = deploy(json!({"vault-injector.io/inject": "false",
            "vault-injector.io/secret-db": "kv/db", "vault-injector.io/mode-db": "0999"}));
        let lines = lint_document(&bad, 1, &cfg);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("Deployment/web:vault-injector.io/mode-db: "),
            "{lines:?}"
        );
        let ghost = deploy(json!({"vault-injector.io/inject": "true",
            "vault-injector.io/role": "r", "vault-injector.io/secret-db": "kv/db",
            "vault-injector.io/containers": "ghost"}));
        let lines = lint_document(&ghost, 1, &cfg);
        assert!(
            lines[0].contains("vault-injector.io/containers: container \"ghost\""),
            "{lines:?}"
        );
        let no_role = deploy(json!({"vault-injector.io/inject": "true",
            "vault-injector.io/secret-db": "kv/db"}));
        assert!(lint_document(&no_role, 1, &cfg)[0].contains("vault-injector.io/role"));
        let mut with_role = cfg.clone();
        with_role.auth.role = Some("default".into());
        assert!(lint_document(&no_role, 1, &with_role).is_empty());
        let svc = json!({"kind": "Service", "metadata": {"name": "s",
            "annotations": {"vault-injector.io/bogus": "1"}}});
        assert!(lint_document(&svc, 1, &cfg).is_empty());
    }

    #[test]
    fn tree_walk_is_sorted_and_skips_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let bad =
            serde_json::to_string(&deploy(json!({"vault-injector.io/inject": "yes"}))).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.yaml"), &bad).unwrap();
        std::fs::write(dir.path().join("a.json"), &bad).unwrap();
        std::fs::write(
            dir.path().join("notes.txt"),
            "vault-injector.io/inject: nope",
        )
        .unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), &bad).unwrap();
        let mut out = Vec::new();
        let n = lint_paths(
            &[dir.path().to_owned()],
            &WebhookConfig::default(),
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(n, 2, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("a.json:Deployment/web:vault-injector.io/inject: "),
            "{text}"
        );
        assert!(
            lines[1].contains("sub/b.yaml:Deployment/web:vault-injector.io/inject: "),
            "{text}"
        );
        let mut out = Vec::new();
        let n = lint_paths(
            &[dir.path().join("missing.yaml")],
            &WebhookConfig::default(),
            &mut out,
        )
        .unwrap();
        assert_eq!(n, 1);
        assert!(String::from_utf8(out).unwrap().contains("missing.yaml"));
    }
}
