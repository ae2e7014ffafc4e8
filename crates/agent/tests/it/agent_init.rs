//! `vault-injector agent --mode init` against a real OpenBao: every format,
//! file modes, every auth method we can run without a cluster, and the
//! failures a platform engineer will meet, each with its exit code.

use crate::support;

use serde_json::json;
use support::agent::{assert_no_leaks, audit_lines, config, file_mode, run_init, text, AgentDirs};
use support::openbao::OpenBao;

const PASSWORD: &str = "pa55-'quoted' $HOME `x`";
const API_KEY: &str = "legacy-api-key-93f1";

fn seeded() -> Option<OpenBao> {
    let bao = OpenBao::start()?;
    bao.configure();
    bao.kv_put(
        "secret",
        "app/db",
        &json!({"username": "app", "password": PASSWORD, "port": "5432"}),
    );
    bao.bao(&[
        "kv",
        "put",
        "-mount=kv",
        "legacy",
        &format!("api_key={API_KEY}"),
    ]);
    bao.kv_put("private", "payroll", &json!({"token": "never-readable"}));
    Some(bao)
}

const VALUES: &[&str] = &[PASSWORD, "pa55-", API_KEY, "never-readable"];

#[test]
fn init_renders_every_format_with_modes_and_audit() {
    let Some(bao) = seeded() else { return };
    let dirs = AgentDirs::new(support::bin(), &bao);
    let cfg = config(
        &bao,
        json!([
            {"name": "json", "path": "secret/data/app/db", "file": "db.json"},
            {"name": "yaml", "path": "secret/app/db", "file": "db.yaml", "format": "yaml"},
            {"name": "env", "path": "secret/data/app/db", "file": "db.env", "format": "env", "mode": 0o440},
            {"name": "raw", "path": "secret/app/db", "file": "password", "format": "raw", "key": "password"},
            {"name": "tmpl", "path": "secret/data/app/db", "file": "conf/db.conf", "format": "template",
             "template": "user={{ data.username }} port={{ data.port }} v={{ metadata.version }} path={{ path }}\n",
             "errorOnMissingKey": true},
            {"name": "legacy", "path": "kv/legacy", "file": "legacy.json"},
        ]),
    );
    let out = run_init(&cfg, &dirs);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");

    let j: serde_json::Value = serde_json::from_str(&dirs.read("db.json")).unwrap();
    assert_eq!(
        j,
        json!({"username": "app", "password": PASSWORD, "port": "5432"})
    );
    let y: serde_json::Value = serde_yaml::from_str(&dirs.read("db.yaml")).unwrap();
    assert_eq!(y, j, "KV v2 path without data/ reads the same secret");
    assert_eq!(
        dirs.read("db.env"),
        "password='pa55-'\\''quoted'\\'' $HOME `x`'\nport='5432'\nusername='app'\n"
    );
    // The env file is safe to source: the shell gets the exact value back.
    let sourced = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            ". '{}' && printf %s \"$password\"",
            dirs.secrets.join("db.env").display()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&sourced.stdout), PASSWORD);
    assert_eq!(dirs.read("password"), PASSWORD);
    assert_eq!(
        dirs.read("conf/db.conf"),
        "user=app port=5432 v=1 path=secret/data/app/db\n"
    );
    let legacy: serde_json::Value = serde_json::from_str(&dirs.read("legacy.json")).unwrap();
    assert_eq!(legacy, json!({"api_key": API_KEY}));

    assert_eq!(file_mode(&dirs.secrets.join("db.json")), 0o400);
    assert_eq!(file_mode(&dirs.secrets.join("db.env")), 0o440);
    // The Vault token lives in the agent-only dir, never with the secrets.
    assert_eq!(file_mode(&dirs.state.join("token")), 0o600);
    let token = std::fs::read_to_string(dirs.state.join("token")).unwrap();
    assert!(token.len() > 10);
    for entry in walk(&dirs.secrets) {
        let body = std::fs::read_to_string(&entry).unwrap();
        assert!(!body.contains(&token), "token found in {}", entry.display());
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "temp file left behind: {name}");
    }
    assert!(dirs.state.join("ready").is_file());

    let audit = audit_lines(&String::from_utf8_lossy(&out.stdout));
    let events: Vec<&str> = audit.iter().map(|a| a["event"].as_str().unwrap()).collect();
    assert_eq!(
        events.iter().filter(|e| **e == "login").count(),
        1,
        "{events:?}"
    );
    // Identical calls are made once, as consul-template makes them: three
    // distinct paths for six files.
    assert_eq!(
        events.iter().filter(|e| **e == "read").count(),
        3,
        "{events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| **e == "render").count(),
        6,
        "{events:?}"
    );
    let read_json = audit
        .iter()
        .find(|a| a["event"] == "read" && a["secret"] == "json")
        .unwrap();
    assert_eq!(read_json["path"], "secret/data/app/db");
    assert_eq!(read_json["version"], 1);
    assert_eq!(read_json["namespace"], "shop");
    assert_eq!(read_json["service_account"], "checkout");
    assert_no_leaks(&all, VALUES);
    assert_no_leaks(&all, &[&token]);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn approle_login_renders() {
    let Some(bao) = seeded() else { return };
    let dirs = AgentDirs::new(support::bin(), &bao);
    let (role_id, secret_id) = bao.approle_files(dirs.dir.path());
    let mut cfg = config(
        &bao,
        json!([{"name": "db", "path": "secret/app/db", "file": "db", "format": "raw", "key": "username"}]),
    );
    cfg["auth"] = json!({
        "method": "approle",
        "mount": "auth/approle",
        "roleIdPath": role_id,
        "secretIdPath": secret_id,
    });
    // VAULT_ADDR (or --vault-addr) overrides the address in the config.
    cfg["vault"]["address"] = json!(format!("http://127.0.0.1:{}", support::free_port()));
    let out = support::agent::command(&cfg, &dirs, "init")
        .env("VAULT_ADDR", &bao.addr)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(dirs.read("db"), "app");
    // A second run (a classic-layout sidecar after its init container)
    // finds the same bytes and leaves the file alone.
    let audit = audit_lines(&String::from_utf8_lossy(&out.stdout));
    assert!(audit
        .iter()
        .any(|a| a["event"] == "render" && a["changed"] == true));
    let out = support::agent::command(&cfg, &dirs, "init")
        .env("VAULT_ADDR", &bao.addr)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let audit = audit_lines(&String::from_utf8_lossy(&out.stdout));
    assert!(audit
        .iter()
        .any(|a| a["event"] == "render" && a["changed"] == false));
    let secret_id = std::fs::read_to_string(dirs.dir.path().join("secret-id")).unwrap();
    assert_no_leaks(&text(&out), &[secret_id.trim()]);
}

/// Runs init with one secret and expects failure with `code` and every
/// `needle` in its stderr.
fn expect_failure(
    bao: &OpenBao,
    cfg: serde_json::Value,
    code: i32,
    needles: &[&str],
) -> Vec<serde_json::Value> {
    let dirs = AgentDirs::new(support::bin(), bao);
    let out = run_init(&cfg, &dirs);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(code), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(stderr.contains(n), "stderr should name {n:?}:\n{stderr}");
    }
    assert!(!dirs.state.join("ready").exists());
    // Every failure is also an audit line.
    let audit = audit_lines(&String::from_utf8_lossy(&out.stdout));
    assert!(
        audit
            .iter()
            .any(|a| a["event"] == "error" && a["ok"] == false),
        "{all}"
    );
    assert_no_leaks(&all, VALUES);
    audit
}

#[test]
fn failures_are_named_with_distinct_exit_codes() {
    let Some(bao) = seeded() else { return };
    let one = |path: &str| json!([{"name": "db", "path": path, "file": "db"}]);

    let mut wrong_role = config(&bao, one("secret/app/db"));
    wrong_role["auth"]["role"] = json!("nope");
    expect_failure(&bao, wrong_role, 3, &["login failed", "nope"]);

    expect_failure(
        &bao,
        config(&bao, one("secret/data/app/missing")),
        4,
        &["secret db", "secret/data/app/missing", "404"],
    );
    let audit = expect_failure(
        &bao,
        config(&bao, one("private/data/payroll")),
        4,
        &["secret db", "private/data/payroll", "permission denied"],
    );
    // A policy denial is not a dead token: no extra login per attempt.
    let logins = audit.iter().filter(|a| a["event"] == "login").count();
    assert_eq!(logins, 1, "{audit:?}");

    let mut raw = config(
        &bao,
        json!([{"name": "db", "path": "secret/app/db", "file": "db", "format": "raw", "key": "pasword"}]),
    );
    expect_failure(&bao, raw.clone(), 5, &["secret db", "\"pasword\""]);
    raw["secrets"][0]["format"] = json!("template");
    raw["secrets"][0]["template"] = json!("{{ data.pasword }}");
    raw["secrets"][0]["errorOnMissingKey"] = json!(true);
    expect_failure(&bao, raw, 5, &["secret db", "template", "undefined"]);

    let mut down = config(&bao, one("secret/app/db"));
    down["vault"]["address"] = json!(format!("http://127.0.0.1:{}", support::free_port()));
    expect_failure(&bao, down, 6, &["cannot reach Vault", "Connection refused"]);

    let mut escape = config(&bao, one("secret/app/db"));
    escape["secrets"][0]["file"] = json!("../outside");
    let dirs = AgentDirs::new(support::bin(), &bao);
    let out = run_init(&escape, &dirs);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("../outside"));
}

#[test]
fn bad_config_exits_2_naming_the_problem() {
    let Some(bao) = OpenBao::start() else { return };
    let dirs = AgentDirs::new(support::bin(), &bao);
    let out = support::agent::command(&json!({"vault": {"address": "x"}}), &dirs, "init")
        .env("VAULT_INJECTOR_CONFIG", "{\"vault\":{}}")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("VAULT_INJECTOR_CONFIG"),
        "{}",
        text(&out)
    );
    let mut cfg = config(&bao, json!([]));
    cfg["vault"]["address"] = json!("vault:8200");
    let out = run_init(&cfg, &dirs);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("vault:8200"), "{}", text(&out));
}

#[test]
fn failed_render_keeps_the_last_good_file_and_probe_follows_readiness() {
    let Some(bao) = seeded() else { return };
    let dirs = AgentDirs::new(support::bin(), &bao);
    let probe = |dirs: &AgentDirs| {
        std::process::Command::new(support::bin())
            .args(["probe", "--state-dir", dirs.state.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let p = probe(&dirs);
    assert_eq!(p.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&p.stderr).contains("not ready"));

    let good = json!([{"name": "db", "path": "secret/app/db", "file": "db", "format": "raw", "key": "username"}]);
    let out = run_init(&config(&bao, good), &dirs);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(probe(&dirs).status.code(), Some(0));

    let bad = json!([{"name": "db", "path": "secret/app/db", "file": "db", "format": "raw", "key": "gone"}]);
    let out = run_init(&config(&bao, bad), &dirs);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert_eq!(
        dirs.read("db"),
        "app",
        "the old file must survive a failed render"
    );
    assert_eq!(
        probe(&dirs).status.code(),
        Some(1),
        "a failed start is not ready"
    );
}

#[test]
fn https_with_the_configured_ca_and_a_clear_error_without_it() {
    let Some(bao) = OpenBao::start_tls() else {
        return;
    };
    bao.configure();
    bao.kv_put("secret", "tls", &json!({"k": "over-tls-4242"}));
    let spec =
        json!([{"name": "tls", "path": "secret/tls", "file": "tls", "format": "raw", "key": "k"}]);

    let mut cfg = config(&bao, spec.clone());
    cfg["vault"]["caPem"] = json!(bao.ca_pem());
    let dirs = AgentDirs::new(support::bin(), &bao);
    let out = run_init(&cfg, &dirs);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(dirs.read("tls"), "over-tls-4242");
    assert_no_leaks(&text(&out), &["over-tls"]);

    // No CA: the server's certificate is not trusted; the error says so.
    let dirs = AgentDirs::new(support::bin(), &bao);
    let out = run_init(&config(&bao, spec.clone()), &dirs);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(stderr.contains("certificate"), "{stderr}");

    // tlsSkipVerify (labs only) connects anyway, and says so.
    let mut cfg = config(&bao, spec);
    cfg["vault"]["tlsSkipVerify"] = json!(true);
    let dirs = AgentDirs::new(support::bin(), &bao);
    let out = run_init(&cfg, &dirs);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("TLS verification of Vault is disabled"));
}
