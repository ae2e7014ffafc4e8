//! Turning a secret into file bytes (json, yaml, env, raw, template) and
//! writing them atomically.
//!
//! Rendering is a pure function of (spec, secret); writing is the only edge.
//! Errors name the secret, the key or the template line, never a value.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use std::collections::BTreeMap;

use serde_json::Value;

use vault_injector_core::contract::{Format, SecretSpec};
use vault_injector_vault::{Exact, Lease, Secret};

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
    #[error("secret {name}: key {key:?} holds a NUL byte, which a shell variable cannot hold (format env)")]
    EnvNul { name: String, key: String },
    #[error(
        "secret {name}: keys {first:?} and {second:?} both become the variable {var} (format env)"
    )]
    EnvCollision {
        name: String,
        first: String,
        second: String,
        var: String,
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
#[cfg(test)]
pub fn render(spec: &SecretSpec, secret: &Secret) -> Result<Vec<u8>> {
    render_reads(spec, &[secret])
}

/// Renders a file from what the agent fetched for it, in the order of
/// [`SecretSpec::fetches`] (one secret unless a Go template reads several).
pub fn render_reads(spec: &SecretSpec, secrets: &[&Secret]) -> Result<Vec<u8>> {
    let name = &spec.name;
    // Only a template may have nothing to read (literal text).
    let first = secrets.first().copied();
    let need = || {
        first.ok_or_else(|| Error::Template {
            name: name.clone(),
            message: "nothing was fetched for this file".into(),
        })
    };
    match spec.format {
        Format::Json => {
            let mut out = serde_json::to_vec_pretty(&need()?.data).map_err(|e| Error::Encode {
                name: name.clone(),
                format: "json",
                message: e.to_string(),
            })?;
            out.push(b'\n');
            Ok(out)
        }
        Format::Yaml => Ok(render_yaml(&need()?.data).into_bytes()),
        Format::Env => render_env(name, &need()?.data).map(String::into_bytes),
        Format::Raw => {
            let key = spec
                .key
                .as_deref()
                .ok_or_else(|| Error::RawNoKey { name: name.clone() })?;
            let v = need()?.data.get(key).ok_or_else(|| Error::MissingKey {
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
            let text = render_template(spec, src, secrets)?;
            // A Go string is bytes: what base64Decode produced is written
            // as those bytes, e.g. a PKCS#12 keystore.
            Ok(
                if vault_injector_core::go::govalue::may_produce_bytes(src) {
                    vault_injector_core::go::govalue::text_to_bytes(&text)
                } else {
                    text.into_bytes()
                },
            )
        }
    }
}

/// A value as text: strings as they are, anything else as compact JSON with
/// numbers as Vault sent them.
fn scalar(v: &Exact) -> String {
    match v {
        Exact::String(s) => s.clone(),
        other => serde_json::to_string(other).expect("exact values serialize"),
    }
}

/// Turns a Vault key into a shell variable name: letters, digits and `_`,
/// not starting with a digit. Keys that collide after this are refused.
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

fn render_env(name: &str, data: &BTreeMap<String, Exact>) -> Result<String> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut out = String::new();
    for (k, v) in data {
        let var = env_name(k);
        if let Some(first) = seen.insert(var.clone(), k) {
            // Keeping one would hand the app another key's value under the
            // name it asked for.
            return Err(Error::EnvCollision {
                name: name.into(),
                first: first.into(),
                second: k.clone(),
                var,
            });
        }
        let value = scalar(v);
        // Shells cannot hold a NUL in a variable and drop it silently.
        if value.contains('\0') {
            return Err(Error::EnvNul {
                name: name.into(),
                key: k.clone(),
            });
        }
        out.push_str(&var);
        out.push('=');
        out.push_str(&shell_quote(&value));
        out.push('\n');
    }
    Ok(out)
}

/// Quoted keys longer than this are written as explicit `? key` entries:
/// YAML readers take an implicit key only within 1024 characters.
const YAML_IMPLICIT_KEY_MAX: usize = 1000;

/// YAML that every YAML 1.1 and 1.2 reader reads back as the same data:
/// every key and string double-quoted (nothing is left to implicit typing:
/// `yes`, `1_000`, `<<`, `2001-12-14`, `~` stay strings), everything but
/// printable ASCII escaped, numbers in a spelling both versions read as
/// numbers. The top level is a block mapping, nested values flow style.
fn render_yaml(data: &BTreeMap<String, Exact>) -> String {
    if data.is_empty() {
        return "{}\n".into();
    }
    let mut out = String::new();
    for (k, v) in data {
        let key = yaml_str(k);
        if key.len() > YAML_IMPLICIT_KEY_MAX {
            out.push_str("? ");
            out.push_str(&key);
            out.push_str("\n: ");
        } else {
            out.push_str(&key);
            out.push_str(": ");
        }
        yaml_flow(&mut out, v);
        out.push('\n');
    }
    out
}

fn yaml_flow(out: &mut String, v: &Exact) {
    match v {
        Exact::Null => out.push_str("null"),
        Exact::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Exact::Number(n) => out.push_str(&yaml_number(n)),
        Exact::String(s) => out.push_str(&yaml_str(s)),
        Exact::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                yaml_flow(out, item);
            }
            out.push(']');
        }
        Exact::Object(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let key = yaml_str(k);
                if key.len() > YAML_IMPLICIT_KEY_MAX {
                    out.push_str("? ");
                }
                out.push_str(&key);
                out.push_str(": ");
                yaml_flow(out, item);
            }
            out.push('}');
        }
    }
}

/// A JSON number as YAML: integers and plain decimals are already numbers
/// in both versions; YAML 1.1 reads an exponent only after a `.` and with a
/// sign (`1e5` would be a string), so those get `.0` and `+`. The value is
/// the same.
fn yaml_number(n: &str) -> String {
    let Some(i) = n.find(['e', 'E']) else {
        return n.to_string();
    };
    let (mantissa, exp) = (&n[..i], &n[i + 1..]);
    let dot = if mantissa.contains('.') { "" } else { ".0" };
    let sign = if exp.starts_with(['+', '-']) { "" } else { "+" };
    format!("{mantissa}{dot}e{sign}{exp}")
}

/// A double-quoted YAML scalar. Only printable ASCII is written as is:
/// escapes avoid every reader difference about line breaks (NEL, U+2028),
/// BOMs and non-printable characters.
fn yaml_str(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xFF => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c if (c as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
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

fn render_template(spec: &SecretSpec, src: &str, secrets: &[&Secret]) -> Result<String> {
    let secret = secrets.first().copied();
    let terr = |e: minijinja::Error| Error::Template {
        name: spec.name.clone(),
        message: template_message(&e, secrets),
    };
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(if spec.error_on_missing_key {
        minijinja::UndefinedBehavior::Strict
    } else {
        minijinja::UndefinedBehavior::Lenient
    });
    env.set_keep_trailing_newline(true);
    vault_injector_core::go::gotmpl::register_filters(&mut env);
    if spec.go_template {
        vault_injector_core::go::gotmpl::register(&mut env);
    }
    env.add_template("template", src).map_err(terr)?;
    // Go templates see Vault's numbers as json.Number (printed as sent).
    let value = |v: &Exact| {
        if spec.go_template {
            go_value(v)
        } else {
            template_value(v)
        }
    };
    let meta = |m: &Value| {
        if spec.go_template {
            go_json_value(m)
        } else {
            minijinja::Value::from_serialize(m)
        }
    };
    // `.Data` as consul-template sees it: for KV v2 the `{data, metadata}`
    // envelope, otherwise the key/values.
    let go_data = |s: &Secret| {
        let data = value(&Exact::Object(s.data.clone()));
        match s.engine {
            vault_injector_vault::Engine::KvV2 => {
                minijinja::Value::from_iter([("data", data), ("metadata", meta(&s.metadata))])
            }
            _ => data,
        }
    };
    // consul-template's Secret struct, one per `secret` call of the template.
    let reads: Vec<minijinja::Value> = secrets
        .iter()
        .map(|s| {
            let (id, secs, renewable) = match &s.lease {
                Some(l) => (l.id.clone(), l.duration_secs, l.renewable),
                None => (String::new(), 0, false),
            };
            minijinja::Value::from_iter([
                ("Data", go_data(s)),
                ("LeaseID", minijinja::Value::from(id)),
                ("LeaseDuration", minijinja::Value::from(secs)),
                ("Renewable", minijinja::Value::from(renewable)),
            ])
        })
        .collect();
    let data = secret.map(|s| value(&Exact::Object(s.data.clone())));
    let ctx = minijinja::context! {
        reads => reads,
        secret => secret.map(go_data),
        data => data,
        metadata => secret.map(|s| &s.metadata),
        lease => lease_value(secret.and_then(|s| s.lease.as_ref())),
        path => &spec.path,
        name => &spec.name,
    };
    env.get_template("template")
        .and_then(|t| t.render(ctx))
        .map_err(terr)
}

/// A value as a Go template sees it: numbers are json.Number.
fn go_value(v: &Exact) -> minijinja::Value {
    use minijinja::Value as V;
    match v {
        Exact::Null => V::from(()),
        Exact::Bool(b) => V::from(*b),
        Exact::Number(n) => vault_injector_core::go::govalue::number(n),
        Exact::String(s) => V::from(s.as_str()),
        Exact::Array(a) => a.iter().map(go_value).collect(),
        Exact::Object(m) => m.iter().map(|(k, v)| (k.as_str(), go_value(v))).collect(),
    }
}

/// [`go_value`] for the KV v2 metadata (a serde_json value).
fn go_json_value(v: &Value) -> minijinja::Value {
    use minijinja::Value as V;
    match v {
        Value::Null => V::from(()),
        Value::Bool(b) => V::from(*b),
        Value::Number(n) => vault_injector_core::go::govalue::number(&n.to_string()),
        Value::String(s) => V::from(s.as_str()),
        Value::Array(a) => a.iter().map(go_json_value).collect(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.as_str(), go_json_value(v)))
            .collect(),
    }
}

/// A template value with integers exact up to 128 bits (serde_json's own
/// values would have made `2^64` a float); other numbers are floats.
pub(crate) fn template_value(v: &Exact) -> minijinja::Value {
    use minijinja::Value as V;
    match v {
        Exact::Null => V::from(()),
        Exact::Bool(b) => V::from(*b),
        Exact::Number(n) => n
            .parse::<i64>()
            .map(V::from)
            .or_else(|_| n.parse::<u64>().map(V::from))
            .or_else(|_| n.parse::<i128>().map(V::from))
            .or_else(|_| n.parse::<u128>().map(V::from))
            .unwrap_or_else(|_| V::from(n.parse::<f64>().unwrap_or(f64::NAN))),
        Exact::String(s) => V::from(s.as_str()),
        Exact::Array(a) => a.iter().map(template_value).collect(),
        Exact::Object(m) => m
            .iter()
            .map(|(k, v)| (k.as_str(), template_value(v)))
            .collect(),
    }
}

/// The kind and line of a template error, without the debug dump of the
/// context (which would hold the secret's values). Its detail is dropped
/// where it can carry data: a template name (`{% include data.KEY %}` looks
/// up the value as a name; there is no loader, so every include, import and
/// extends fails) or any text equal to one of the secret's values.
pub(crate) fn template_message(e: &minijinja::Error, secrets: &[&Secret]) -> String {
    if e.kind() == minijinja::ErrorKind::TemplateNotFound {
        let mut m =
            String::from("include, import, from and extends are not available in secret templates");
        if let Some(line) = e.line() {
            m.push_str(&format!(" (line {line})"));
        }
        return m;
    }
    let mut m = e.kind().to_string();
    if let Some(detail) = e.detail() {
        m.push_str(": ");
        if secrets.iter().any(|s| quotes_a_value(detail, &s.data)) {
            m.push_str("detail withheld, it would quote the secret");
        } else {
            m.push_str(detail);
        }
    }
    if let Some(line) = e.line() {
        m.push_str(&format!(" (line {line})"));
    }
    m
}

/// Does `text` contain any string or number of `data`, at any depth?
fn quotes_a_value(text: &str, data: &BTreeMap<String, Exact>) -> bool {
    fn walk(text: &str, v: &Exact) -> bool {
        match v {
            Exact::String(s) | Exact::Number(s) => !s.is_empty() && text.contains(s.as_str()),
            Exact::Array(a) => a.iter().any(|v| walk(text, v)),
            Exact::Object(m) => m.values().any(|v| walk(text, v)),
            Exact::Null | Exact::Bool(_) => false,
        }
    }
    data.values().any(|v| walk(text, v))
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
    use vault_injector_vault::Engine;

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
            reads: vec![],
        }
    }

    fn secret_from(raw: &str) -> Secret {
        let Exact::Object(exact) = Exact::from_json(raw).unwrap() else {
            unreachable!()
        };
        Secret {
            data: exact,
            metadata: serde_json::json!({"version": 3, "created_time": "2026-01-01T00:00:00Z"}),
            lease: None,
            engine: Engine::KvV2,
        }
    }

    /// A translated vault-k8s template over `secrets`.
    fn go(tpl: &str, secrets: &[&Secret]) -> Vec<u8> {
        let t = vault_injector_core::go::gotmpl::translate(tpl).unwrap();
        let mut spec = spec(Format::Template);
        spec.template = Some(t.source);
        spec.reads = t.reads;
        spec.go_template = true;
        render_reads(&spec, secrets).unwrap()
    }

    #[test]
    fn the_default_template_prints_go_values() {
        let mut s = secret_from(
            r#"{"on": true, "n": 1.50, "none": null, "l": [1, "a", false], "m": {"b": {}, "a": "x"}}"#,
        );
        s.metadata = serde_json::json!({"created_time": "t", "custom_metadata": null,
                                        "deletion_time": "", "destroyed": false, "version": 2});
        let out = go(
            "{{ with secret \"secret/data/x\" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n{{ end }}{{ end }}",
            &[&s],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "data: map[l:[1 a false] m:map[a:x b:map[]] n:1.50 none:<nil> on:true]\n\
             metadata: map[created_time:t custom_metadata:<nil> deletion_time: destroyed:false version:2]\n"
        );
    }

    #[test]
    fn a_template_only_secret_without_reads_renders_its_text() {
        // vault-k8s: agent-inject-template-NAME alone, reading no path.
        let t = vault_injector_core::go::gotmpl::translate("static {{ \"text\" }}\n").unwrap();
        let mut spec = spec(Format::Template);
        spec.path = String::new();
        spec.template = Some(t.source);
        spec.go_template = true;
        assert!(spec.fetches().is_empty(), "nothing to read");
        assert_eq!(render_reads(&spec, &[]).unwrap(), b"static text\n");
        // Every other format needs data.
        let mut json = spec.clone();
        json.format = Format::Json;
        assert!(render_reads(&json, &[]).is_err());
    }

    #[test]
    fn base64_decode_writes_bytes_that_are_not_text() {
        let bytes: Vec<u8> = vec![0x30, 0x82, 0xff, 0x00, 0xc3, 0x28, b'\n', 0xe9];
        // base64 of `bytes`, wrapped as GNU base64 wraps lines: Go's decoder
        // skips the breaks.
        let s = secret_from(r#"{"ks": "MIL/\r\nAMMoCuk="}"#);
        let out = go(
            "{{ with secret \"secret/data/x\" }}{{ .Data.data.ks | base64Decode }}{{ end }}",
            &[&s],
        );
        assert_eq!(out, bytes);
    }

    #[test]
    fn a_template_reads_several_secrets_in_order() {
        let kv = secret_from(r#"{"k": "v"}"#);
        let mut db = secret_from(r#"{"username": "u"}"#);
        db.engine = Engine::Logical;
        db.lease = Some(Lease {
            id: "database/creds/r/1".into(),
            duration_secs: 60,
            renewable: true,
        });
        let out = go(
            "{{ with secret \"secret/x\" }}{{ .Data.data.k }}{{ end }} \
             {{ with secret \"database/creds/r\" }}{{ .Data.username }} {{ .LeaseID }} {{ .LeaseDuration }}{{ end }} \
             {{ with secret \"secret/x\" }}{{ printf \"%q\" .Data.data.k }}{{ end }}",
            &[&kv, &db],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "v u database/creds/r/1 60 \"v\""
        );
    }

    fn secret() -> Secret {
        secret_from(r#"{"user": "app", "pass": "it's $secret", "port": 5432, "1st-key": "x"}"#)
    }

    fn text(spec: &SecretSpec) -> String {
        String::from_utf8(render(spec, &secret()).unwrap()).unwrap()
    }

    #[test]
    fn json_and_yaml_round_trip_the_data() {
        let v: Value = serde_json::from_str(&text(&spec(Format::Json))).unwrap();
        assert_eq!(v, serde_json::to_value(&secret().data).unwrap());
        let y: Value = serde_yaml::from_str(&text(&spec(Format::Yaml))).unwrap();
        assert_eq!(y, serde_json::to_value(&secret().data).unwrap());
    }

    #[test]
    fn json_and_yaml_keep_numbers_as_vault_sent_them() {
        let s = secret_from(
            r#"{"big": 18446744073709551616, "neg": -18446744073709551617, "tenth": 0.1,
                "huge": 1e400, "negzero": -0, "e": 1E5, "deep": [{"x": 2.5e-7}]}"#,
        );
        let json = String::from_utf8(render(&spec(Format::Json), &s).unwrap()).unwrap();
        for n in [
            "18446744073709551616",
            "-18446744073709551617",
            "0.1",
            "1e400",
            "-0",
            "1E5",
            "2.5e-7",
        ] {
            assert!(json.contains(&format!(": {n}")), "{n} in {json}");
        }
        let yaml = String::from_utf8(render(&spec(Format::Yaml), &s).unwrap()).unwrap();
        assert_eq!(
            yaml,
            "\"big\": 18446744073709551616\n\"deep\": [{\"x\": 2.5e-7}]\n\"e\": 1.0e+5\n\
             \"huge\": 1.0e+400\n\"neg\": -18446744073709551617\n\"negzero\": -0\n\"tenth\": 0.1\n"
        );
        let mut raw = spec(Format::Raw);
        raw.key = Some("big".into());
        assert_eq!(text_of(&raw, &s), "18446744073709551616");
        assert_eq!(
            text_of(&spec(Format::Env), &secret_from(r#"{"n": 1e400}"#)),
            "n='1e400'\n"
        );
    }

    fn text_of(spec: &SecretSpec, s: &Secret) -> String {
        String::from_utf8(render(spec, s).unwrap()).unwrap()
    }

    #[test]
    fn yaml_quotes_every_key_and_string() {
        let s = secret_from(
            r##"{"<<": "=", "yes": "no", "k": "1_000", "d": "2001-12-14", "t": "~",
                "sp": " a\tb\n", "u": "\u00e9\u0085\u2028\ud83d\ude00\u0000\"\\", "": "",
                "l": [null, true, "off"], "m": {"#": "? - : "}}"##,
        );
        let yaml = text_of(&spec(Format::Yaml), &s);
        assert_eq!(
            yaml,
            concat!(
                "\"\": \"\"\n",
                "\"<<\": \"=\"\n",
                "\"d\": \"2001-12-14\"\n",
                "\"k\": \"1_000\"\n",
                "\"l\": [null, true, \"off\"]\n",
                "\"m\": {\"#\": \"? - : \"}\n",
                "\"sp\": \" a\\tb\\n\"\n",
                "\"t\": \"~\"\n",
                "\"u\": \"\\xE9\\x85\\u2028\\U0001F600\\0\\\"\\\\\"\n",
                "\"yes\": \"no\"\n",
            )
        );
        let back: Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back, serde_json::to_value(&s.data).unwrap());
        assert_eq!(text_of(&spec(Format::Yaml), &secret_from("{}")), "{}\n");
        let long = "k".repeat(2000);
        let s = secret_from(&format!(r#"{{"{long}": "v"}}"#));
        assert_eq!(
            text_of(&spec(Format::Yaml), &s),
            format!("? \"{long}\"\n: \"v\"\n")
        );
    }

    #[test]
    fn env_refuses_nul_bytes_and_colliding_names_without_the_value() {
        let err = render(
            &spec(Format::Env),
            &secret_from(r#"{"ok": "x", "token": "s3cr3t\u0000tail"}"#),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"token\"") && err.contains("NUL"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        let err = render(
            &spec(Format::Env),
            &secret_from(r#"{"a-b": "one-value", "a.b": "two-value"}"#),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("\"a-b\"") && err.contains("\"a.b\"") && err.contains("a_b"),
            "{err}"
        );
        assert!(!err.contains("value"), "{err}");
    }

    #[test]
    fn template_lookups_and_filter_errors_do_not_quote_values() {
        let s = secret_from(r#"{"pass": "hunter2-secret", "n": "12"}"#);
        let mut t = spec(Format::Template);
        for src in [
            "{% include data.pass %}",
            "{% include [data.pass, data.n] %}",
            "{% import data.pass as m %}",
            "{% from data.pass import m %}",
            "{% extends data.pass %}",
            "{{ data.pass | int(strict=true) }}",
            "{{ data.pass + 1 }}",
            "{{ data.pass | batch(data.pass) }}",
        ] {
            t.template = Some(src.into());
            let err = render(&t, &s).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{src}: {err}");
        }
        t.template = Some("x\n{% include data.pass %}".into());
        let err = render(&t, &s).unwrap_err().to_string();
        assert!(err.contains("include") && err.contains("line 2"), "{err}");
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
    fn templates_see_integers_beyond_64_bits_exactly() {
        let s = secret_from(r#"{"big": 18446744073709551616, "f": 0.5, "i": -3}"#);
        let mut t = spec(Format::Template);
        t.template = Some("{{ data.big }} {{ data.big + 1 }} {{ data.f }} {{ data.i }}".into());
        assert_eq!(
            text_of(&t, &s),
            "18446744073709551616 18446744073709551617 0.5 -3"
        );
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
