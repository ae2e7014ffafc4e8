//! Go's view of a secret inside a translated consul-template template, and
//! the functions that print it: `fmt`'s `%v` and `printf`, `encoding/json`
//! (`toJSON*`) and `gopkg.in/yaml.v2` (`toYAML`), byte for byte as Vault
//! Agent writes them (pinned by the differential suite against `bao agent`).
//!
//! Two Go types need their own representation in minijinja:
//! - `json.Number`: Vault's numbers reach a template as the literal text the
//!   server sent, and print as that text ([`GoNumber`]).
//! - binary strings: Go strings are bytes, so `base64Decode` of a keystore
//!   yields bytes that are not UTF-8. minijinja strings are UTF-8, so each
//!   byte of an invalid sequence is carried as one private-use character
//!   ([`bytes_to_text`]) and turned back into that byte when the file is
//!   written ([`text_to_bytes`]).

use std::fmt::Write as _;
use std::sync::Arc;

use minijinja::value::{Object, ObjectRepr, Value, ValueKind};
use minijinja::{Error as JinjaError, ErrorKind};

/// A `json.Number`: its literal text, e.g. `1.50` or `12345678901234567000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoNumber(pub String);

impl Object for GoNumber {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result
    where
        Self: Sized + 'static,
    {
        f.write_str(&self.0)
    }

    fn is_true(self: &Arc<Self>) -> bool {
        // A json.Number is a Go string: true when not empty, even "0".
        !self.0.is_empty()
    }
}

/// A json.Number value.
pub fn number(literal: &str) -> Value {
    Value::from_object(GoNumber(literal.to_string()))
}

fn as_number(v: &Value) -> Option<&str> {
    v.downcast_object_ref::<GoNumber>().map(|n| n.0.as_str())
}

/// Bytes 0x80-0xFF that are not part of valid UTF-8 travel as these
/// characters (Supplementary Private Use Area-B, never produced by Vault's
/// JSON for real text in practice).
const BYTE_BASE: u32 = 0x10_FF00;

/// Go bytes as a minijinja string: valid UTF-8 stays, every other byte
/// becomes one private-use character.
pub fn bytes_to_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push(char::from_u32(BYTE_BASE + u32::from(*b)).expect("in range"));
        }
    }
    out
}

/// The inverse of [`bytes_to_text`]: the bytes a Go template would write.
pub fn text_to_bytes(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let u = c as u32;
        if (BYTE_BASE + 0x80..=BYTE_BASE + 0xFF).contains(&u) {
            out.push((u - BYTE_BASE) as u8);
        } else {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

/// Whether a template's source uses a function that can produce bytes, so
/// its output must go through [`text_to_bytes`].
pub fn may_produce_bytes(source: &str) -> bool {
    source.contains("base64decode") || source.contains("base64urldecode")
}

/// Go's `%v` of a value inside a container or passed to `fmt` (a nil is
/// `<nil>` there; the template printer says `<no value>` for a top-level nil).
pub fn format_v(v: &Value) -> String {
    let mut s = String::new();
    write_v(&mut s, v);
    s
}

fn sorted_keys(v: &Value) -> Vec<Value> {
    let mut keys: Vec<Value> = v.try_iter().map(|i| i.collect()).unwrap_or_default();
    keys.sort_by_key(key_text);
    keys
}

fn key_text(k: &Value) -> String {
    match k.as_str() {
        Some(s) => s.to_string(),
        None => format_v(k),
    }
}

fn write_v(out: &mut String, v: &Value) {
    if let Some(n) = as_number(v) {
        out.push_str(n);
        return;
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("<nil>"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::String => out.push_str(v.as_str().unwrap_or_default()),
        ValueKind::Number => out.push_str(&number_v(v)),
        ValueKind::Map => {
            out.push_str("map[");
            for (i, k) in sorted_keys(v).iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_v(out, k);
                out.push(':');
                write_v(out, &v.get_item(k).unwrap_or_default());
            }
            out.push(']');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(it) = v.try_iter() {
                for (i, x) in it.enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    write_v(out, &x);
                }
            }
            out.push(']');
        }
        ValueKind::Bytes => out.push_str(&bytes_to_text(v.as_bytes().unwrap_or_default())),
        _ => out.push_str(&v.to_string()),
    }
}

/// An integer as Go prints it, or a float as `%v` does.
fn number_v(v: &Value) -> String {
    if let Some(f) = float_of(v) {
        go_float_g(f)
    } else {
        v.to_string()
    }
}

fn float_of(v: &Value) -> Option<f64> {
    if v.is_integer() {
        return None;
    }
    f64::try_from(v.clone()).ok()
}

/// `strconv.FormatFloat(f, 'g', -1, 64)`, which is also `%v`: the shortest
/// digits, in exponent form when the exponent is below -4 or at least 6.
pub fn go_float_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let (mantissa, exp) = sci_parts(f);
    if !(-4..6).contains(&exp) {
        format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    } else {
        format!("{f}")
    }
}

/// Shortest round-trip digits as `d.ddd` and the decimal exponent.
fn sci_parts(f: f64) -> (String, i32) {
    let s = format!("{f:e}");
    let (m, e) = s.split_once('e').expect("exponent form");
    (m.to_string(), e.parse().expect("exponent"))
}

/// encoding/json's float text: `'f'` form unless the magnitude is below
/// 1e-6 or at least 1e21.
fn go_json_float(f: f64) -> String {
    let a = f.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        let (m, e) = sci_parts(f);
        format!("{m}e{}{}", if e < 0 { '-' } else { '+' }, e.abs())
    } else {
        format!("{f}")
    }
}

// ---------------------------------------------------------------------------
// encoding/json
// ---------------------------------------------------------------------------

/// `json.Marshal` (`indent` false) or `json.MarshalIndent(v, "", "  ")`,
/// with or without HTML escaping, as consul-template's `toJSON`,
/// `toJSONPretty`, `toUnescapedJSON` and `toUnescapedJSONPretty` call them
/// (their result is trimmed of surrounding white space, which a Marshal
/// never has).
pub fn to_json(v: &Value, indent: bool, escape_html: bool) -> Result<String, JinjaError> {
    let mut out = String::new();
    write_json(&mut out, v, indent, escape_html, 0)?;
    Ok(out)
}

fn newline_indent(out: &mut String, level: usize) {
    out.push('\n');
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn write_json(
    out: &mut String,
    v: &Value,
    indent: bool,
    html: bool,
    level: usize,
) -> Result<(), JinjaError> {
    if let Some(n) = as_number(v) {
        out.push_str(n);
        return Ok(());
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::String => json_str(out, v.as_str().unwrap_or_default(), html),
        ValueKind::Bytes => {
            // Go marshals []byte as base64; templates only meet strings.
            json_str(out, &bytes_to_text(v.as_bytes().unwrap_or_default()), html)
        }
        ValueKind::Number => match float_of(v) {
            Some(f) if !f.is_finite() => {
                return Err(JinjaError::new(
                    ErrorKind::InvalidOperation,
                    "toJSON: unsupported value: a non-finite number",
                ))
            }
            Some(f) => out.push_str(&go_json_float(f)),
            None => out.push_str(&v.to_string()),
        },
        ValueKind::Map => {
            let keys = sorted_keys(v);
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if indent {
                    newline_indent(out, level + 1);
                }
                json_str(out, &key_text(k), html);
                out.push(':');
                if indent {
                    out.push(' ');
                }
                write_json(
                    out,
                    &v.get_item(k).unwrap_or_default(),
                    indent,
                    html,
                    level + 1,
                )?;
            }
            if indent {
                newline_indent(out, level);
            }
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter().map(|i| i.collect()).unwrap_or_default();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if indent {
                    newline_indent(out, level + 1);
                }
                write_json(out, x, indent, html, level + 1)?;
            }
            if indent {
                newline_indent(out, level);
            }
            out.push(']');
        }
        _ => json_str(out, &v.to_string(), html),
    }
    Ok(())
}

/// encoding/json's string escaping; bytes that are not UTF-8 become U+FFFD.
fn json_str(out: &mut String, s: &str, html: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if html => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (BYTE_BASE + 0x80..=BYTE_BASE + 0xFF).contains(&(c as u32)) => {
                out.push_str("\\ufffd")
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `parseJSON`: encoding/json into `interface{}`, so numbers are float64.
pub fn parse_json(text: &str) -> Result<Value, JinjaError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        // The category and place only: serde's message can quote input.
        JinjaError::new(
            ErrorKind::InvalidOperation,
            format!(
                "parseJSON: {:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })?;
    fn conv(v: serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::from(()),
            serde_json::Value::Bool(b) => Value::from(b),
            serde_json::Value::Number(n) => Value::from(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::from(s),
            serde_json::Value::Array(a) => a.into_iter().map(conv).collect(),
            serde_json::Value::Object(m) => m.into_iter().map(|(k, v)| (k, conv(v))).collect(),
        }
    }
    Ok(conv(v))
}

// ---------------------------------------------------------------------------
// gopkg.in/yaml.v2
// ---------------------------------------------------------------------------

/// `yaml.Marshal` of a map (consul-template's `toYAML`), trimmed.
pub fn to_yaml(v: &Value) -> Result<String, JinjaError> {
    if v.kind() != ValueKind::Map {
        return Err(JinjaError::new(
            ErrorKind::InvalidOperation,
            "toYAML: the value is not a map",
        ));
    }
    let mut out = String::new();
    yaml_block(&mut out, v, 0);
    Ok(out.trim().to_string())
}

/// One scalar as yaml.v2 writes it, or `None` for a container.
fn yaml_scalar(v: &Value) -> Option<String> {
    if let Some(n) = as_number(v) {
        // yaml.v2 turns a json.Number into an int64, else a float64, else
        // keeps the string.
        if let Ok(i) = n.parse::<i64>() {
            return Some(i.to_string());
        }
        if let Ok(f) = n.parse::<f64>() {
            return Some(yaml_float(f));
        }
        return Some(yaml_string(n, 0, false));
    }
    Some(match v.kind() {
        ValueKind::Undefined | ValueKind::None => "null".into(),
        ValueKind::Bool => if v.is_true() { "true" } else { "false" }.into(),
        ValueKind::Number => match float_of(v) {
            Some(f) => yaml_float(f),
            None => v.to_string(),
        },
        ValueKind::String => return None,
        ValueKind::Map if v.len() == Some(0) => "{}".into(),
        ValueKind::Seq if v.len() == Some(0) => "[]".into(),
        ValueKind::Map | ValueKind::Seq | ValueKind::Iterable => return None,
        _ => yaml_string(&v.to_string(), 0, false),
    })
}

fn yaml_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf" } else { "-.inf" }.into()
    } else {
        go_float_g(f)
    }
}

fn pad(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

/// A block mapping at `indent`, each entry on its own line.
fn yaml_block(out: &mut String, v: &Value, indent: usize) {
    for (i, k) in sorted_keys(v).iter().enumerate() {
        if i > 0 {
            pad(out, indent);
        }
        out.push_str(&yaml_string(&key_text(k), indent, true));
        out.push(':');
        yaml_value(out, &v.get_item(k).unwrap_or_default(), indent, true);
    }
}

/// Writes a value after `key:` (`in_map`) or `- `, ending with a newline.
fn yaml_value(out: &mut String, v: &Value, indent: usize, in_map: bool) {
    if let Some(s) = yaml_scalar(v) {
        if in_map {
            out.push(' ');
        }
        out.push_str(&s);
        out.push('\n');
        return;
    }
    match v.kind() {
        ValueKind::String => {
            if in_map {
                out.push(' ');
            }
            out.push_str(&yaml_string(
                v.as_str().unwrap_or_default(),
                indent + 2,
                false,
            ));
            out.push('\n');
        }
        ValueKind::Map => {
            if in_map {
                out.push('\n');
                pad(out, indent + 2);
            }
            yaml_block(out, v, indent + 2);
        }
        _ => {
            // yaml.v2 does not indent a sequence inside a mapping.
            let items: Vec<Value> = v.try_iter().map(|i| i.collect()).unwrap_or_default();
            let at = if in_map { indent } else { indent + 2 };
            if in_map {
                out.push('\n');
            }
            for (i, x) in items.iter().enumerate() {
                if i > 0 || in_map {
                    pad(out, at);
                }
                out.push_str("- ");
                match x.kind() {
                    ValueKind::Map if x.len() != Some(0) => yaml_block(out, x, at + 2),
                    _ => yaml_value(out, x, at, false),
                }
            }
        }
    }
}

/// Would yaml.v2 read `s`, unquoted, as something other than a string?
fn yaml_resolves_to_non_string(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE",
        "on", "On", "ON", "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off",
        "OFF", ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
        "-.Inf", "-.INF", "<<",
    ];
    if SPECIAL.contains(&s) {
        return true;
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.')) {
        return false;
    }
    let plain = s.replace('_', "");
    let unsigned = plain.trim_start_matches(['+', '-']);
    let int = |t: &str| -> bool {
        if let Some(h) = t.strip_prefix("0x") {
            !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit())
        } else if let Some(b) = t.strip_prefix("0b") {
            !b.is_empty() && b.chars().all(|c| c == '0' || c == '1')
        } else if let Some(o) = t.strip_prefix("0o") {
            !o.is_empty() && o.chars().all(|c| ('0'..='7').contains(&c))
        } else {
            !t.is_empty() && t.chars().all(|c| c.is_ascii_digit())
        }
    };
    if int(unsigned) {
        return true;
    }
    // yaml.v2's float pattern: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
    let (mant, exp) = match plain.find(['e', 'E']) {
        Some(i) => (&plain[..i], Some(&plain[i + 1..])),
        None => (plain.as_str(), None),
    };
    let mant = mant.trim_start_matches(['+', '-']);
    let mant_ok = match mant.split_once('.') {
        Some(("", frac)) => !frac.is_empty() && frac.chars().all(|c| c.is_ascii_digit()),
        Some((int_part, frac)) => {
            !int_part.is_empty()
                && int_part.chars().all(|c| c.is_ascii_digit())
                && frac.chars().all(|c| c.is_ascii_digit())
        }
        None => !mant.is_empty() && mant.chars().all(|c| c.is_ascii_digit()),
    };
    let exp_ok = exp.is_none_or(|e| {
        let e = e.trim_start_matches(['+', '-']);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    if mant_ok && exp_ok && plain.len() == s.replace('_', "").len() {
        return true;
    }
    // Timestamps (`2006-1-2`, with a time) and base-60 numbers (`1:20`).
    let date = {
        let parts: Vec<&str> = s
            .split(['T', 't', ' '])
            .next()
            .unwrap_or("")
            .split('-')
            .collect();
        parts.len() == 3
            && parts[0].len() == 4
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit()))
    };
    let base60 = s.contains(':')
        && s.trim_start_matches(['+', '-'])
            .split(':')
            .enumerate()
            .all(|(i, p)| {
                let p = if i > 0 {
                    p.split('.').next().unwrap_or("")
                } else {
                    p
                };
                !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '_')
            });
    date || base60
}

/// Can yaml.v2's emitter write `s` as a plain scalar in block context?
fn yaml_plain_allowed(s: &str, key: bool) -> bool {
    if s.is_empty() || s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    let chars: Vec<char> = s.chars().collect();
    if chars[0] == ' ' || chars[chars.len() - 1] == ' ' {
        return false;
    }
    let blank_at = |i: usize| chars.get(i).is_none_or(|c| *c == ' ' || *c == '\t');
    for (i, &c) in chars.iter().enumerate() {
        let printable = matches!(c, '\t' | ' '..='~')
            || (c as u32 >= 0xA0 && c != '\u{FEFF}' && !(0xD800..=0xDFFF).contains(&(c as u32)));
        if !printable || c == '\n' || c == '\r' {
            return false;
        }
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => return false,
                '?' | ':' | '-' if blank_at(1) => return false,
                _ => {}
            }
        } else {
            match c {
                ':' if blank_at(i + 1) => return false,
                '#' if chars[i - 1] == ' ' || chars[i - 1] == '\t' => return false,
                _ => {}
            }
        }
        if c == '\t' && (i == 0 || i == chars.len() - 1) {
            return false;
        }
    }
    let _ = key;
    true
}

/// A string as yaml.v2 writes it: plain when it reads back as the same
/// string, else single-quoted, double-quoted when it cannot be, a literal
/// block for text with line breaks. `col` is the indentation of a block.
fn yaml_string(s: &str, col: usize, key: bool) -> String {
    let bytes = text_to_bytes(s);
    if std::str::from_utf8(&bytes).is_err() {
        // yaml.v2 writes a string that is not UTF-8 as base64.
        use base64::Engine as _;
        return format!(
            "!!binary {}",
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        );
    }
    if s.contains('\n') && !key {
        return yaml_literal(s, col);
    }
    let plain = !yaml_resolves_to_non_string(s) && yaml_plain_allowed(s, key);
    if plain {
        return s.to_string();
    }
    if yaml_resolves_to_non_string(s) {
        return yaml_double(s);
    }
    let single_ok = !s
        .chars()
        .any(|c| !(matches!(c, ' '..='~') || (c as u32 >= 0xA0 && c != '\u{FEFF}')))
        && !s.starts_with(' ')
        && !s.ends_with(' ');
    if single_ok {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        yaml_double(s)
    }
}

fn yaml_literal(s: &str, col: usize) -> String {
    let chomp = if !s.ends_with('\n') {
        "-"
    } else if s.ends_with("\n\n") {
        "+"
    } else {
        ""
    };
    let lead = if s.starts_with(' ') || s.starts_with('\n') {
        "2"
    } else {
        ""
    };
    let mut out = format!("|{lead}{chomp}");
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            pad(&mut out, col);
            out.push_str(line);
        }
    }
    out
}

fn yaml_double(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\x1b' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{a0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------
// fmt.Sprintf
// ---------------------------------------------------------------------------

/// Go's type name for `%!verb(type=value)` messages.
fn go_type(v: &Value) -> &'static str {
    if as_number(v).is_some() {
        return "json.Number";
    }
    match v.kind() {
        ValueKind::Bool => "bool",
        ValueKind::String => "string",
        ValueKind::Number if v.is_integer() => "int",
        ValueKind::Number => "float64",
        ValueKind::Map => "map[string]interface {}",
        ValueKind::Seq => "[]interface {}",
        _ => "interface {}",
    }
}

fn is_stringish(v: &Value) -> bool {
    as_number(v).is_some() || v.kind() == ValueKind::String
}

fn stringish(v: &Value) -> String {
    match as_number(v) {
        Some(n) => n.to_string(),
        None => v.as_str().unwrap_or_default().to_string(),
    }
}

/// `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (BYTE_BASE + 0x80..=BYTE_BASE + 0xFF).contains(&(c as u32)) => {
                let _ = write!(out, "\\x{:02x}", c as u32 - BYTE_BASE);
            }
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                if (c as u32) <= 0xFFFF {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn pad_to(s: String, spec: &Spec, numeric: bool) -> String {
    let Some(w) = spec.width else { return s };
    let n = s.chars().count();
    if n >= w {
        return s;
    }
    let fill = w - n;
    if spec.minus {
        format!("{s}{}", " ".repeat(fill))
    } else if spec.zero && numeric {
        let (sign, digits) = match s.strip_prefix('-') {
            Some(d) => ("-", d.to_string()),
            None => ("", s.clone()),
        };
        format!("{sign}{}{digits}", "0".repeat(fill))
    } else {
        format!("{}{s}", " ".repeat(fill))
    }
}

fn bad_verb(verb: char, v: &Value) -> String {
    if matches!(v.kind(), ValueKind::None | ValueKind::Undefined) {
        return format!("%!{verb}(<nil>)");
    }
    format!("%!{verb}({}={})", go_type(v), format_v(v))
}

fn format_one(verb: char, spec: &Spec, v: &Value) -> String {
    let int = (v.kind() == ValueKind::Number && v.is_integer()).then(|| v.to_string());
    match verb {
        'v' => pad_to(format_v(v), spec, false),
        's' => {
            if is_stringish(v) {
                let mut s = stringish(v);
                if let Some(p) = spec.prec {
                    s = s.chars().take(p).collect();
                }
                pad_to(s, spec, false)
            } else if matches!(v.kind(), ValueKind::Map | ValueKind::Seq) {
                // fmt applies %s to each element; for JSON-shaped data
                // that is what %v prints.
                pad_to(format_v(v), spec, false)
            } else {
                bad_verb(verb, v)
            }
        }
        'q' if is_stringish(v) => pad_to(go_quote(&stringish(v)), spec, false),
        'd' => match int {
            Some(mut s) => {
                if spec.plus && !s.starts_with('-') {
                    s.insert(0, '+');
                }
                pad_to(s, spec, true)
            }
            None => bad_verb(verb, v),
        },
        't' if v.kind() == ValueKind::Bool => pad_to(format_v(v), spec, false),
        'x' | 'X' if is_stringish(v) => {
            let hex: String = text_to_bytes(&stringish(v))
                .iter()
                .map(|b| {
                    if verb == 'x' {
                        format!("{b:02x}")
                    } else {
                        format!("{b:02X}")
                    }
                })
                .collect();
            pad_to(hex, spec, false)
        }
        'x' | 'X' if int.is_some() => {
            let n: i128 = int.unwrap_or_default().parse().unwrap_or(0);
            let s = if verb == 'x' {
                format!("{n:x}")
            } else {
                format!("{n:X}")
            };
            pad_to(s, spec, true)
        }
        'f' | 'F' | 'e' | 'g' if v.kind() == ValueKind::Number => {
            let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
            let s = match verb {
                'f' | 'F' => format!("{:.*}", spec.prec.unwrap_or(6), f),
                'e' => {
                    let s = format!("{:.*e}", spec.prec.unwrap_or(6), f);
                    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
                    let e: i32 = e.parse().unwrap_or(0);
                    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
                }
                _ => go_float_g(f),
            };
            pad_to(s, spec, true)
        }
        _ => bad_verb(verb, v),
    }
}

/// `fmt.Sprintf` for the verbs templates use (`%v %s %q %d %t %x %X %f %e
/// %g %%`, flags `-+0`, width and precision).
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next = 0usize;
    let chars: Vec<char> = format.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '%' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let mut spec = Spec {
            minus: false,
            plus: false,
            zero: false,
            width: None,
            prec: None,
        };
        while let Some(&f) = chars.get(i) {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '0' => spec.zero = true,
                ' ' | '#' => {}
                _ => break,
            }
            i += 1;
        }
        let num = |i: &mut usize| -> Option<usize> {
            let start = *i;
            while chars.get(*i).is_some_and(|c| c.is_ascii_digit()) {
                *i += 1;
            }
            (start < *i).then(|| {
                chars[start..*i]
                    .iter()
                    .collect::<String>()
                    .parse::<usize>()
                    .unwrap_or(0)
                    .min(4096)
            })
        };
        spec.width = num(&mut i);
        if chars.get(i) == Some(&'.') {
            i += 1;
            spec.prec = Some(num(&mut i).unwrap_or(0));
        }
        let Some(&verb) = chars.get(i) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            Some(v) => out.push_str(&format_one(verb, &spec, v)),
            None => {
                let _ = write!(out, "%!{verb}(MISSING)");
            }
        }
        next += 1;
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|v| format!("{}={}", go_type(v), format_v(v)))
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

/// Go's `eq`/`ne` for template values: strings and json.Numbers compare
/// as text (both are Go strings), the rest as minijinja compares them.
pub fn equal(a: &Value, b: &Value) -> bool {
    if is_stringish(a) && is_stringish(b) {
        return stringish(a) == stringish(b);
    }
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(j: serde_json::Value) -> Value {
        fn conv(j: serde_json::Value) -> Value {
            match j {
                serde_json::Value::Number(n) => number(&n.to_string()),
                serde_json::Value::Array(a) => a.into_iter().map(conv).collect(),
                serde_json::Value::Object(m) => m.into_iter().map(|(k, v)| (k, conv(v))).collect(),
                other => Value::from_serialize(&other),
            }
        }
        conv(j)
    }

    #[test]
    fn percent_v_prints_like_go() {
        let d = v(
            json!({"b": true, "n": null, "l": [1, "two", false], "m": {"y": 2, "x": {}}, "e": []}),
        );
        assert_eq!(
            format_v(&d),
            "map[b:true e:[] l:[1 two false] m:map[x:map[] y:2] n:<nil>]"
        );
        assert_eq!(format_v(&number("1.50")), "1.50");
    }

    #[test]
    fn floats_print_like_strconv_g() {
        for (f, want) in [
            (3.0, "3"),
            (1e6, "1e+06"),
            (100000.0, "100000"),
            (0.00001, "1e-05"),
            (0.0001, "0.0001"),
            (12345678901234567890.0, "1.2345678901234567e+19"),
            (1234567.5, "1.2345675e+06"),
            (0.5, "0.5"),
        ] {
            assert_eq!(go_float_g(f), want, "{f}");
        }
        assert_eq!(go_json_float(1e21), "1e+21");
        assert_eq!(go_json_float(1e-7), "1e-7");
        assert_eq!(go_json_float(123456.5), "123456.5");
    }

    #[test]
    fn json_escapes_html_and_sorts_keys() {
        let d = v(json!({"b": "<a&b>'q", "a": [1, {"z": null}], "c": {}}));
        assert_eq!(
            to_json(&d, false, true).unwrap(),
            r#"{"a":[1,{"z":null}],"b":"\u003ca\u0026b\u003e'q","c":{}}"#
        );
        assert_eq!(
            to_json(&d, false, false).unwrap(),
            r#"{"a":[1,{"z":null}],"b":"<a&b>'q","c":{}}"#
        );
        assert_eq!(
            to_json(&v(json!({"a": [1], "b": {"c": "d"}})), true, true).unwrap(),
            "{\n  \"a\": [\n    1\n  ],\n  \"b\": {\n    \"c\": \"d\"\n  }\n}"
        );
    }

    #[test]
    fn yaml_quotes_what_would_change_type() {
        let d = v(
            json!({"price": "1.50", "y": 2, "html": "<a&b>'q", "nothing": null,
                        "list": [1, "two", false], "nested": {"a": "s", "b": {"x": 1}},
                        "big": 12345678901234567000u64, "empty": "", "colon": "a: b",
                        "multi": "l1\nl2\n"}),
        );
        assert_eq!(
            to_yaml(&d).unwrap(),
            "big: 1.2345678901234567e+19\ncolon: 'a: b'\nempty: \"\"\nhtml: <a&b>'q\nlist:\n- 1\n- two\n- false\nmulti: |\n  l1\n  l2\nnested:\n  a: s\n  b:\n    x: 1\nnothing: null\nprice: \"1.50\"\n\"y\": 2"
        );
    }

    #[test]
    fn sprintf_follows_fmt() {
        let args = [
            Value::from("a"),
            Value::from(42),
            Value::from("x\"y"),
            v(json!({"b": {"y": 2}, "a": "s"})),
            Value::from("b"),
            Value::from("c"),
        ];
        assert_eq!(
            sprintf("%s|%d|%q|%v|%5s|%-4s|", &args),
            "a|42|\"x\\\"y\"|map[a:s b:map[y:2]]|    b|c   |"
        );
        assert_eq!(sprintf("%s", &[number("3")]), "3");
        assert_eq!(
            sprintf("%d %s", &[Value::from("x")]),
            "%!d(string=x) %!s(MISSING)"
        );
        assert_eq!(sprintf("%v", &[Value::from(())]), "<nil>");
        assert_eq!(sprintf("x", &[Value::from(1)]), "x%!(EXTRA int=1)");
    }

    #[test]
    fn bytes_survive_the_text_round_trip() {
        let all: Vec<u8> = (0..=255u8).chain("é中🦀".bytes()).collect();
        assert_eq!(text_to_bytes(&bytes_to_text(&all)), all);
        assert_eq!(bytes_to_text("plain é".as_bytes()), "plain é");
    }
}
