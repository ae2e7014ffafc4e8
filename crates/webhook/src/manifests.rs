//! `vault-injector mutate`: read manifests and print them as the webhook would
//! rewrite them, through the same code path, with no network.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;

use vault_injector_core::audit::AdmissionAudit;
use vault_injector_core::config::WebhookConfig;

#[derive(Debug, clap::Args)]
pub struct MutateArgs {
    /// Manifest file (YAML or JSON, multi-document), or `-` for stdin.
    #[arg(short = 'f', long = "filename", env = "VAULT_INJECTOR_MUTATE_FILE")]
    pub file: PathBuf,
    /// Output format.
    #[arg(
        short = 'o',
        long,
        default_value = "yaml",
        env = "VAULT_INJECTOR_OUTPUT"
    )]
    pub output: OutputFormat,
    /// Webhook config file (same as `webhook --config`).
    #[arg(long, env = "VAULT_INJECTOR_CONFIG_FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

/// Workload kinds whose pod template gets rewritten, and where it lives.
const TEMPLATES: [(&str, &[&str]); 7] = [
    ("Pod", &[]),
    ("Deployment", &["spec", "template"]),
    ("StatefulSet", &["spec", "template"]),
    ("DaemonSet", &["spec", "template"]),
    ("ReplicaSet", &["spec", "template"]),
    ("Job", &["spec", "template"]),
    ("CronJob", &["spec", "jobTemplate", "spec", "template"]),
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: document {index} is not valid YAML or JSON: {message}")]
    Parse {
        path: String,
        index: usize,
        message: String,
    },
    #[error("{path}: document {index} ({kind} {name}): {message}")]
    Document {
        path: String,
        index: usize,
        kind: String,
        name: String,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub fn run_mutate(args: MutateArgs) -> anyhow::Result<ExitCode> {
    let MutateArgs {
        file,
        output,
        config,
    } = args;
    let cfg = match config {
        Some(path) => WebhookConfig::load(&path)?,
        None => WebhookConfig::default(),
    };
    let (origin, text) = read_input(&file)?;
    let docs = parse_documents(&origin, &text)?;
    let gate = crate::gate::Gate::from_config(&cfg)?;
    let mut out = Vec::with_capacity(docs.len());
    for (i, doc) in docs.into_iter().enumerate() {
        out.push(mutate_document(&origin, i + 1, doc, &cfg, &gate)?);
    }
    // Printed only after every document passed, so a denial never leaves
    // half a manifest set on stdout for a pipe to apply.
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    write_documents(&mut w, &out, output)?;
    w.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Reads FILE, or stdin for `-`; returns a name for messages and the text.
pub fn read_input(file: &Path) -> Result<(String, String)> {
    if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|source| Error::Read {
                path: "<stdin>".into(),
                source,
            })?;
        return Ok(("<stdin>".into(), s));
    }
    let origin = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
        path: origin.clone(),
        source,
    })?;
    Ok((origin, text))
}

/// Splits YAML (`---`-separated) or a JSON stream into objects. Empty
/// documents are dropped and `kind: List` is flattened into its items.
pub fn parse_documents(origin: &str, text: &str) -> Result<Vec<Value>> {
    let mut raw = Vec::new();
    if text.trim_start().starts_with('{') || text.trim_start().starts_with('[') {
        for (i, doc) in serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .enumerate()
        {
            raw.push(doc.map_err(|e| Error::Parse {
                path: origin.into(),
                index: i + 1,
                message: e.to_string(),
            })?);
        }
    } else {
        for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let doc = Value::deserialize(de).map_err(|e| Error::Parse {
                path: origin.into(),
                index: i + 1,
                message: e.to_string(),
            })?;
            raw.push(doc);
        }
    }
    let mut docs = Vec::with_capacity(raw.len());
    for doc in raw {
        match doc {
            Value::Null => {}
            Value::Array(items) => docs.extend(items),
            Value::Object(mut m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                if let Some(Value::Array(items)) = m.remove("items") {
                    docs.extend(items);
                }
            }
            other => docs.push(other),
        }
    }
    Ok(docs)
}

/// Where the pod template of `doc` is, if it has one we rewrite.
pub fn template_path(doc: &Value) -> Option<&'static [&'static str]> {
    let kind = doc.get("kind")?.as_str()?;
    TEMPLATES
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, path)| *path)
}

fn mutate_document(
    origin: &str,
    index: usize,
    mut doc: Value,
    cfg: &WebhookConfig,
    gate: &crate::gate::Gate,
) -> Result<Value> {
    let Some(path) = template_path(&doc) else {
        return Ok(doc);
    };
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
        .to_string();
    let namespace = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let fail = |message: String| Error::Document {
        path: origin.into(),
        index,
        kind: kind.clone(),
        name: name.clone(),
        message,
    };
    let mut template = &mut doc;
    for token in path {
        template = template
            .get_mut(*token)
            .ok_or_else(|| fail(format!("has no {}", path.join("."))))?;
    }
    let mut pod = Pod {
        metadata: match template.get("metadata") {
            Some(m) => serde_json::from_value::<ObjectMeta>(m.clone())
                .map_err(|e| fail(format!("pod metadata: {e}")))?,
            None => ObjectMeta::default(),
        },
        spec: match template.get("spec") {
            Some(s) => Some(
                serde_json::from_value::<PodSpec>(s.clone())
                    .map_err(|e| fail(format!("pod spec: {e}")))?,
            ),
            None => None,
        },
        status: None,
    };
    // The webhook sees template pods with a generated name; mirror that.
    if kind != "Pod" && pod.metadata.name.is_none() && pod.metadata.generate_name.is_none() {
        pod.metadata.generate_name = Some(format!("{name}-"));
    }
    let mut audit = AdmissionAudit {
        namespace,
        ..Default::default()
    };
    // Offline: the gate's pure checks (policy, overrides) run, volume
    // profiles are not read from Vault.
    let mutation = futures::executor::block_on(crate::admission::mutate_pod(
        &pod,
        cfg,
        gate,
        crate::admission::Volumes::Offline,
        &mut audit,
    ))
    .map_err(|e| fail(e.to_string()))?;
    for w in &mutation.warnings {
        eprintln!("vault-injector: warning: {origin}: document {index} ({kind} {name}): {w}");
    }
    if mutation.patch.is_some() && !audit.volume_profiles.is_empty() {
        eprintln!(
            "vault-injector: note: {origin}: document {index} ({kind} {name}): volume profile(s) \
             {} are resolved from Vault by the webhook at admission; this offline output leaves \
             them out",
            audit.volume_profiles.join(", ")
        );
    }
    if let Some(patch) = mutation.patch {
        // The patch addresses /metadata and /spec, which the template has in
        // the same shape as a pod; applying it to the raw template keeps
        // fields this build's Kubernetes types do not know.
        json_patch::patch(template, &patch.to_json_patch())
            .map_err(|e| fail(format!("applying the patch: {e}")))?;
    }
    Ok(doc)
}

pub fn write_documents(
    w: &mut impl Write,
    docs: &[Value],
    output: OutputFormat,
) -> std::io::Result<()> {
    for (i, doc) in docs.iter().enumerate() {
        match output {
            OutputFormat::Yaml => {
                if i > 0 {
                    w.write_all(b"---\n")?;
                }
                let text = serde_yaml::to_string(doc).map_err(std::io::Error::other)?;
                w.write_all(text.as_bytes())?;
            }
            OutputFormat::Json => {
                serde_json::to_writer_pretty(&mut *w, doc)?;
                w.write_all(b"\n")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gate(cfg: &WebhookConfig) -> crate::gate::Gate {
        crate::gate::Gate::from_config(cfg).unwrap()
    }

    #[test]
    fn documents_split_and_lists_flatten() {
        let docs = parse_documents(
            "t",
            "---\na: 1\n---\n---\nkind: List\nitems:\n- b: 2\n- c: 3\n",
        )
        .unwrap();
        assert_eq!(
            docs,
            vec![json!({"a": 1}), json!({"b": 2}), json!({"c": 3})]
        );
        let docs = parse_documents("t", "{\"a\":1}\n{\"b\":2}").unwrap();
        assert_eq!(docs.len(), 2);
        let err = parse_documents("f.yaml", "a: 1\n---\n: : [\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("f.yaml") && err.contains("document 2"),
            "{err}"
        );
    }

    #[test]
    fn template_paths() {
        assert_eq!(template_path(&json!({"kind": "Pod"})), Some(&[][..]));
        assert_eq!(
            template_path(&json!({"kind": "CronJob"})),
            Some(&["spec", "jobTemplate", "spec", "template"][..])
        );
        assert_eq!(template_path(&json!({"kind": "Service"})), None);
        assert_eq!(template_path(&json!({"no": "kind"})), None);
    }

    #[test]
    fn bad_documents_are_named() {
        let cfg = WebhookConfig::default();
        let doc = json!({"kind": "Deployment", "metadata": {"name": "w"}, "spec": {}});
        let err = mutate_document("f", 3, doc, &cfg, &gate(&cfg))
            .unwrap_err()
            .to_string();
        assert!(err.contains("document 3 (Deployment w)"), "{err}");
        assert!(err.contains("spec.template"), "{err}");
        let doc = json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": 5}});
        let err = mutate_document("f", 1, doc, &cfg, &gate(&cfg))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pod spec"), "{err}");
        let plain = json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [], "x-unknown": 1}});
        assert_eq!(
            mutate_document("f", 1, plain.clone(), &cfg, &gate(&cfg)).unwrap(),
            plain
        );
    }
}
