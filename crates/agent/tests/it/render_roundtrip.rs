//! Rendered files read back exactly as OpenBao holds the secret: hostile
//! values are seeded over the HTTP API (so numbers keep their text), the
//! real agent renders them in init mode, and other languages' readers load
//! the files: Python's json, PyYAML (YAML 1.1), ruamel.yaml (YAML 1.2), and
//! `sh`, `bash` and `dash` sourcing the env file. What each reader gets is
//! compared, type for type, with OpenBao's own JSON as Python reads it.

use crate::support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use support::agent::{assert_no_leaks, config, run_init, text, AgentDirs};
use support::openbao::{OpenBao, ROOT_TOKEN};

/// One HTTP/1.0 exchange with the dev server (1.0: the reply is never
/// chunked). Returns the status and the body.
fn http(bao: &OpenBao, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", bao.port)).unwrap();
    write!(
        s,
        "{method} /v1/{path} HTTP/1.0\r\nX-Vault-Token: {ROOT_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Writes KV v2 data given as JSON text, so numbers reach OpenBao as typed.
fn kv_put_text(bao: &OpenBao, path: &str, data_json: &str) {
    let (status, body) = http(
        bao,
        "PUT",
        &format!("secret/data/{path}"),
        &format!(r#"{{"data": {data_json}}}"#),
    );
    assert_eq!(status, 200, "{body}");
}

/// Strings a YAML 1.1 or 1.2 reader may take for something else, or refuse.
const HOSTILE_STRINGS: &[&str] = &[
    "=",
    "<<",
    "1_000",
    "2001-12-14",
    "2001-12-14 21:59:43.10 -5",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "Y",
    "NO",
    "~",
    "null",
    "Null",
    "true",
    "False",
    "1e-7",
    "1e5",
    "0o17",
    "017",
    "0x1F",
    "0b101",
    ".inf",
    "-.Inf",
    ".nan",
    "+1",
    "1:20",
    "190:20:30.15",
    "1,000",
    " lead",
    "trail ",
    "  ",
    "-",
    "?",
    ": ",
    "a: b",
    "- x",
    "? k",
    "#",
    "a #b",
    "&anchor",
    "*alias",
    "!tag",
    "!!str x",
    "%YAML 1.2",
    "---",
    "...",
    "|",
    ">",
    "@",
    "`",
    "{a: 1}",
    "[1, 2]",
    "'single'",
    "\"double\"",
    "back\\slash \\n",
    "a\nb",
    "trailing newline\n",
    "\n\nlead lines",
    "cr\r\nlf",
    "\t",
    "tab\tinside",
    "nul\u{0}byte",
    "bell\u{7}del\u{7f}",
    "c1\u{85}nel\u{a0}nbsp",
    "ls\u{2028}ps\u{2029}",
    "bom\u{feff}",
    "noncharacter\u{fffe}\u{ffff}",
    "é ü ß пароль 密码",
    "emoji 😀",
    "",
];

/// The hostile secret as JSON text: every hostile string as a value and as
/// a key, numbers JSON's 64-bit readers would round, and nesting.
fn hostile_json() -> String {
    let mut parts = Vec::new();
    for (i, s) in HOSTILE_STRINGS.iter().enumerate() {
        let q = serde_json::to_string(s).unwrap();
        parts.push(format!(r#""v{i:02}": {q}"#));
        parts.push(format!(r#"{q}: "key{i:02}""#));
    }
    let long_key = serde_json::to_string(&"k".repeat(1500)).unwrap();
    parts.push(format!(r#"{long_key}: "long key""#));
    for (k, n) in [
        ("n_u64_over", "18446744073709551616"),
        ("n_i64_under", "-9223372036854775809"),
        ("n_big", "123456789012345678901234567890"),
        ("n_tenth", "0.1"),
        ("n_huge", "1e300"),
        ("n_max", "1.7976931348623157e308"),
        ("n_tiny", "1e-7"),
        ("n_upper_exp", "2.5E+3"),
        ("n_negzero_int", "-0"),
        ("n_negzero", "-0.0"),
        ("n_int", "42"),
        ("n_float_exact", "3.141592653589793"),
        ("n_precise", "0.10000000000000000000000001"),
    ] {
        parts.push(format!(r#""{k}": {n}"#));
    }
    parts.push(r#""b_true": true, "b_false": false, "null": null"#.into());
    let strings = serde_json::to_string(HOSTILE_STRINGS).unwrap();
    parts.push(format!(
        r#""nested": {{"list": {strings}, "map": {{"<<": {{"yes": [1e300, -0, 18446744073709551616, {{}}, []]}}, "": null}}}}"#
    ));
    format!("{{{}}}", parts.join(", "))
}

fn python() -> Option<PathBuf> {
    let py = support::require_tool("python-yaml")?;
    let ok = Command::new(&py)
        .args(["-c", "import yaml, ruamel.yaml"])
        .status()
        .unwrap();
    assert!(
        ok.success(),
        "{} lacks PyYAML or ruamel.yaml; run scripts/install-tools.sh",
        py.display()
    );
    Some(py)
}

/// Loads `vault.json` (OpenBao's reply) and each rendered file with every
/// reader; prints the mismatches and exits 1 if any.
const CHECK: &str = r#"
import json, math, sys
import yaml
from ruamel.yaml import YAML

def canon(v):
    # Type-strict: True != 1, 1 != 1.0, -0.0 != 0.0.
    if isinstance(v, bool): return ("bool", v)
    if isinstance(v, int): return ("int", v)
    if isinstance(v, float): return ("float", repr(v), math.copysign(1, v))
    if isinstance(v, str): return ("str", v)
    if v is None: return ("null",)
    if isinstance(v, (list, tuple)): return ("list", [canon(x) for x in v])
    if isinstance(v, dict):
        return ("map", sorted(((canon(k), canon(x)) for k, x in v.items()), key=repr))
    return ("other", type(v).__name__, repr(v))

d = sys.argv[1]
truth = json.load(open(d + "/vault.json", encoding="utf-8"))["data"]["data"]
readers = {
    "json": lambda: json.load(open(d + "/secrets/h.json", encoding="utf-8")),
    "PyYAML": lambda: yaml.safe_load(open(d + "/secrets/h.yaml", "rb")),
    "ruamel.yaml": lambda: YAML(typ="safe", pure=True).load(open(d + "/secrets/h.yaml", "rb")),
}
bad = 0
for name, load in readers.items():
    try:
        got = load()
    except Exception as e:
        print(f"{name}: cannot read the file: {e}")
        bad += 1
        continue
    if not isinstance(got, dict):
        print(f"{name}: not a mapping: {type(got).__name__}")
        bad += 1
        continue
    for k in sorted(set(truth) | set(got), key=repr):
        want, have = truth.get(k, "<absent>"), got.get(k, "<absent>")
        if canon(want) != canon(have):
            print(f"{name}: key {k!r}: OpenBao holds {want!r}, read back {have!r}")
            bad += 1
print(f"checked {len(truth)} keys with {len(readers)} readers, {bad} mismatches")
sys.exit(1 if bad else 0)
"#;

#[test]
fn json_and_yaml_read_back_as_openbao_holds_them_in_yaml_1_1_and_1_2() {
    let Some(bao) = OpenBao::start() else { return };
    let Some(py) = python() else { return };
    bao.configure();
    kv_put_text(&bao, "hostile", &hostile_json());
    let dirs = AgentDirs::new(support::bin(), &bao);
    let cfg = config(
        &bao,
        json!([
            {"name": "json", "path": "secret/data/hostile", "file": "h.json"},
            {"name": "yaml", "path": "secret/data/hostile", "file": "h.yaml", "format": "yaml"},
        ]),
    );
    let out = run_init(&cfg, &dirs);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let (status, truth) = http(&bao, "GET", "secret/data/hostile", "");
    assert_eq!(status, 200, "{truth}");
    // KV stores numbers as float64 and writes them in Go's spelling: 2^64
    // comes back as the integer text 18446744073709552000, which a float64
    // reader (serde_json::Value included) prints as 1.8446744073709552e19.
    // That text is what the files must carry.
    assert!(
        truth.contains(r#""n_u64_over":18446744073709552000"#) && truth.contains("1e+300"),
        "{truth}"
    );
    std::fs::write(dirs.dir.path().join("vault.json"), &truth).unwrap();
    let check = Command::new(&py)
        .args(["-c", CHECK])
        .arg(dirs.dir.path())
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{report}");
    assert!(report.contains("0 mismatches"), "{report}");
}

/// Values a shell must get back byte for byte from `. file`.
const SHELL_VALUES: &[(&str, &str)] = &[
    ("newline", "line one\nline two"),
    ("trailing_newlines", "x\n\n"),
    ("leading_newline", "\nx"),
    ("single_quotes", "it's 'quoted' ''"),
    ("double_quotes", "say \"hi\""),
    ("backslashes", "a\\b\\\\c \\n \\'"),
    ("dollar", "$HOME ${PATH} $(touch pwned) `touch pwned`"),
    ("glob", "* ? [a-z] ~"),
    ("spaces", "  lead and trail  "),
    ("tab_cr", "\tcr\r\n"),
    ("unicode", "пароль 密码 😀"),
    ("control", "\u{1}\u{7}\u{1b}[0m"),
    ("semicolon", "a; exit 3"),
    ("empty", ""),
    ("only_quote", "'"),
    ("hash", "#not a comment"),
];

fn shell_reads(shell: &Path, file: &Path, vars: &[&str]) -> Vec<u8> {
    let script = format!(
        ". '{}' && printf '%s\\0' {}",
        file.display(),
        vars.iter()
            .map(|v| format!("\"${v}\""))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = Command::new(shell).arg("-c").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        shell.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn env_files_read_back_in_sh_bash_and_dash_and_nul_is_refused_by_key() {
    let Some(bao) = OpenBao::start() else { return };
    let shells: Vec<PathBuf> = ["sh", "bash", "dash"]
        .iter()
        .filter_map(|s| support::require_tool(s))
        .collect();
    if shells.len() < 3 {
        return;
    }
    bao.configure();
    let data: serde_json::Map<String, serde_json::Value> = SHELL_VALUES
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    bao.kv_put("secret", "shell", &serde_json::Value::Object(data));
    bao.kv_put(
        "secret",
        "nul",
        &json!({"fine": "ok", "token": "before-nul\u{0}after-nul"}),
    );
    bao.kv_put(
        "secret",
        "collide",
        &json!({"db-user": "first-collide", "db.user": "second-collide"}),
    );
    let dirs = AgentDirs::new(support::bin(), &bao);
    let cfg = config(
        &bao,
        json!([{"name": "shell", "path": "secret/data/shell", "file": "s.env", "format": "env"}]),
    );
    let out = run_init(&cfg, &dirs);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let file = dirs.secrets.join("s.env");
    let vars: Vec<&str> = SHELL_VALUES.iter().map(|(k, _)| *k).collect();
    let mut want = Vec::new();
    for (_, v) in SHELL_VALUES {
        want.extend_from_slice(v.as_bytes());
        want.push(0);
    }
    for shell in &shells {
        let got = shell_reads(shell, &file, &vars);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{} read the env file differently",
            shell.display()
        );
    }
    assert!(!dirs.secrets.join("pwned").exists());

    for (path, needle, values) in [
        (
            "secret/data/nul",
            r#"key "token" holds a NUL byte"#,
            &["before-nul", "after-nul"][..],
        ),
        (
            "secret/data/collide",
            r#"keys "db-user" and "db.user" both become the variable db_user"#,
            &["first-collide", "second-collide"][..],
        ),
    ] {
        let dirs = AgentDirs::new(support::bin(), &bao);
        let cfg = config(
            &bao,
            json!([{"name": "bad", "path": path, "file": "bad.env", "format": "env"}]),
        );
        let out = run_init(&cfg, &dirs);
        let all = text(&out);
        assert_ne!(out.status.code(), Some(0), "{all}");
        assert!(all.contains(needle), "{all}");
        assert!(!dirs.secrets.join("bad.env").exists());
        assert_no_leaks(&all, values);
    }
}
