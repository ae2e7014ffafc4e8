//! Turning a secret into file bytes (json, yaml, env, raw, template) and
//! writing them atomically.
//!
//! Rendering is a pure function of (spec, secret); writing is the only edge.
//! Errors name the secret, the key or the template line, never a value.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use crate::config::{Format, SecretSpec};
use crate::vault::{Lease, Secret};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("secret {name}: format raw needs a key (key-{name})")]
    RawNoKey { name: String },
    #[error("secret {name}: key {key:?} is not in the secret at {path}")]
    MissingKey {
        name: String,
        key: String,
        path: String,
    },
    #[error("secret {name}: format template needs a template (template-{name})")]
    NoTemplate { name: String },
    #[error("secret {name}: template: {message}")]
    Template { name: String, message: String },
    #[error("secret {name}: cannot encode as {format}: {message}")]
    Encode {
        name: String,
        format: &'static str,
        message: String,
    },
    #[error("secret {name}: file {file:?} must be a relative path without `..`")]
    BadFile { name: String, file: String },
    #[error("secret {name}: writing {path}: {source}")]
    Write {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Renders one secret to the bytes of its file.
pub fn render(spec: &SecretSpec, secret: &Secret) -> Result<Vec<u8>> {
    let name = &spec.name;
    match spec.format {
        Format::Json => {
            let mut out = serde_json::to_vec_pretty(&secret.data).map_err(|e| Error::Encode {
                name: name.clone(),
                format: "json",
                message: e.to_string(),
            })?;
            out.push(b'\n');
            Ok(out)
        }
        Format::Yaml => serde_yaml::to_string(&secret.data)
            .map(String::into_bytes)
            .map_err(|e| Error::Encode {
                name: name.clone(),
                format: "yaml",
                message: e.to_string(),
            }),
        Format::Env => Ok(render_env(&secret.data).into_bytes()),
        Format::Raw => {
            let key = spec
                .key
                .as_deref()
                .ok_or_else(|| Error::RawNoKey { name: name.clone() })?;
            let v = secret.data.get(key).ok_or_else(|| Error::MissingKey {
                name: name.clone(),
                key: key.into(),
                path: spec.path.clone(),
            })?;
            Ok(scalar(v).into_bytes())
        }
        Format::Template => {
            let src = spec
                .template
                .as_deref()
                .ok_or_else(|| Error::NoTemplate { name: name.clone() })?;
            render_template(spec, src, secret).map(String::into_bytes)
        }
    }
}

/// A value as text: strings as they are, anything else as JSON.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Turns a Vault key into a shell variable name: letters, digits and `_`,
/// not starting with a digit. Keys that collide after this keep the first.
pub fn env_name(key: &str) -> String {
    let mut s: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

/// Single-quotes a value for POSIX shells: nothing inside single quotes is
/// special except the quote itself, written as `'\''`.
pub fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

fn render_env(data: &Map<String, Value>) -> String {
    let mut seen = std::collections::BTreeSet::new();
    let mut keys: Vec<&String> = data.keys().collect();
    keys.sort();
    let mut out = String::new();
    for k in keys {
        let name = env_name(k);
        if !seen.insert(name.clone()) {
            continue;
        }
        out.push_str(&name);
        out.push('=');
        out.push_str(&shell_quote(&scalar(&data[k])));
        out.push('\n');
    }
    out
}

fn lease_value(lease: Option<&Lease>) -> Value {
    match lease {
        Some(l) => serde_json::json!({
            "id": l.id,
            "duration": l.duration_secs,
            "renewable": l.renewable,
        }),
        None => Value::Null,
    }
}

fn render_template(spec: &SecretSpec, src: &str, secret: &Secret) -> Result<String> {
    let terr = |e: minijinja::Error| Error::Template {
        name: spec.name.clone(),
        message: template_message(&e),
    };
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(if spec.error_on_missing_key {
        minijinja::UndefinedBehavior::Strict
    } else {
        minijinja::UndefinedBehavior::Lenient
    });
    env.set_keep_trailing_newline(true);
    crate::compat::gotmpl::register_filters(&mut env);
    if spec.go_template {
        crate::compat::gotmpl::register(&mut env);
    }
    env.add_template("template", src).map_err(terr)?;
    // `secret` is the Vault response's data as consul-template's `.Data` sees
    // it: for KV v2 the `{data, metadata}` envelope, otherwise the key/values.
    let go_data = match secret.engine {
        crate::vault::Engine::KvV2 => serde_json::json!({
            "data": &secret.data,
            "metadata": &secret.metadata,
        }),
        _ => Value::Object(secret.data.clone()),
    };
    let ctx = minijinja::context! {
        secret => go_data,
        data => &secret.data,
        metadata => &secret.metadata,
        lease => lease_value(secret.lease.as_ref()),
        path => &spec.path,
        name => &spec.name,
    };
    env.get_template("template")
        .and_then(|t| t.render(ctx))
        .map_err(terr)
}

/// The kind and line of a template error, without the debug dump of the
/// context (which would hold the secret's values).
fn template_message(e: &minijinja::Error) -> String {
    let mut m = e.kind().to_string();
    if let Some(detail) = e.detail() {
        m.push_str(": ");
        m.push_str(detail);
    }
    if let Some(line) = e.line() {
        m.push_str(&format!(" (line {line})"));
    }
    m
}

/// The target of a spec's file under `dir`, refusing anything that could
/// leave it.
pub fn target_path(dir: &Path, spec: &SecretSpec) -> Result<PathBuf> {
    let rel = Path::new(&spec.file);
    let ok = !spec.file.is_empty()
        && rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !ok {
        return Err(Error::BadFile {
            name: spec.name.clone(),
            file: spec.file.clone(),
        });
    }
    Ok(dir.join(rel))
}

/// Writes `bytes` to `path` so readers see the old file or the new one,
/// never a mix: temp file in the same directory, write, fsync, chmod,
/// rename, fsync the directory. Parent directories are created.
pub fn write_atomic(name: &str, path: &Path, mode: u32, bytes: &[u8]) -> Result<()> {
    let werr = |p: &Path| {
        let name = name.to_string();
        let p = p.to_owned();
        move |source| Error::Write {
            name,
            path: p,
            source,
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(werr(dir))?;
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(werr(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::Engine;

    fn spec(format: Format) -> SecretSpec {
        SecretSpec {
            name: "db".into(),
            path: "secret/data/db".into(),
            file: "db".into(),
            mode: 0o400,
            format,
            key: None,
            template: None,
            error_on_missing_key: false,
            command: None,
            go_template: false,
        }
    }

    fn secret() -> Secret {
        let serde_json::Value::Object(data) = serde_json::json!({
            "user": "app",
            "pass": "it's $secret",
            "port": 5432,
            "1st-key": "x",
        }) else {
            unreachable!()
        };
        Secret {
            data,
            metadata: serde_json::json!({"version": 3, "created_time": "2026-01-01T00:00:00Z"}),
            lease: None,
            engine: Engine::KvV2,
        }
    }

    fn text(spec: &SecretSpec) -> String {
        String::from_utf8(render(spec, &secret()).unwrap()).unwrap()
    }

    #[test]
    fn json_and_yaml_round_trip_the_data() {
        let v: Value = serde_json::from_str(&text(&spec(Format::Json))).unwrap();
        assert_eq!(v, Value::Object(secret().data));
        let y: Value = serde_yaml::from_str(&text(&spec(Format::Yaml))).unwrap();
        assert_eq!(y, Value::Object(secret().data));
    }

    #[test]
    fn env_quotes_for_the_shell_and_sanitises_names() {
        let out = text(&spec(Format::Env));
        assert_eq!(
            out,
            "_1st_key='x'\npass='it'\\''s $secret'\nport='5432'\nuser='app'\n"
        );
    }

    #[test]
    fn raw_names_the_missing_key() {
        let mut s = spec(Format::Raw);
        s.key = Some("user".into());
        assert_eq!(text(&s), "app");
        s.key = Some("nope".into());
        let err = render(&s, &secret()).unwrap_err().to_string();
        assert!(
            err.contains("\"nope\"") && err.contains("secret/data/db"),
            "{err}"
        );
        s.key = None;
        assert!(matches!(render(&s, &secret()), Err(Error::RawNoKey { .. })));
    }

    #[test]
    fn template_sees_data_metadata_and_path() {
        let mut s = spec(Format::Template);
        s.template =
            Some("{{ data.user }}@{{ path }} v{{ metadata.version }} {% if lease %}leased{% else %}static{% endif %}\n".into());
        assert_eq!(text(&s), "app@secret/data/db v3 static\n");
    }

    #[test]
    fn strict_templates_fail_on_missing_keys_without_leaking_values() {
        let mut s = spec(Format::Template);
        s.template = Some("{{ data.pass }} {{ data.missing }}".into());
        assert_eq!(text(&s), "it's $secret ");
        s.error_on_missing_key = true;
        let err = render(&s, &secret()).unwrap_err().to_string();
        assert!(err.contains("undefined"), "{err}");
        assert!(!err.contains("$secret"), "{err}");
    }

    #[test]
    fn file_paths_stay_under_the_dir() {
        let dir = Path::new("/s");
        let mut s = spec(Format::Json);
        s.file = "sub/db.json".into();
        assert_eq!(target_path(dir, &s).unwrap(), Path::new("/s/sub/db.json"));
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            s.file = bad.into();
            assert!(target_path(dir, &s).is_err(), "{bad}");
        }
    }

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/f");
        write_atomic("f", &p, 0o440, b"one").unwrap();
        write_atomic("f", &p, 0o440, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o440);
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }
}
