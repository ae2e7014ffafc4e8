//! Errors name the secret, the key or the variable, never a value: template
//! lookups by a computed name (`{% include data.KEY %}`) and filter errors in
//! `agent --mode init`, and the values `exec` cannot put in an environment
//! (NUL bytes, over-long entries, E2BIG), against a real OpenBao. The whole
//! output of every run is scanned for the seeded values.

use crate::support;

use std::process::{Command, Stdio};

use serde_json::json;
use support::agent::{assert_no_leaks, config, run_init, text, AgentDirs};
use support::openbao::OpenBao;

const PASSWORD: &str = "hunter2-LEAKCHECK";
const NUL_HEAD: &str = "before-NULVAL";
const LONG_UNIT: &str = "LONGVAL-";

fn seeded() -> Option<OpenBao> {
    let bao = OpenBao::start()?;
    bao.configure();
    bao.kv_put(
        "secret",
        "app/db",
        &json!({
            "password": PASSWORD,
            "list": [PASSWORD, "x"],
            "nul": format!("{NUL_HEAD}\u{0}after"),
            "long": LONG_UNIT.repeat(20_000),
        }),
    );
    Some(bao)
}

#[test]
fn template_errors_never_quote_the_secret() {
    let Some(bao) = seeded() else { return };
    for (i, template) in [
        "{% include data.password %}",
        "{% include [data.password, 'x'] %}",
        "{% include data.list %}",
        "{% import data.password as m %}{{ m.x }}",
        "{% from data.password import x %}{{ x }}",
        "{% extends data.password %}",
        "{% include data.password ~ '.tmpl' ignore missing %}{{ data.password + 1 }}",
        "{{ data.password | int(strict=true) }}",
        "{{ data.password | batch(data.password) }}",
        "{{ data.password.missing.deeper }}",
        "{{ data.password() }}",
        "{{ data.password | nosuchfilter }}",
    ]
    .iter()
    .enumerate()
    {
        let dirs = AgentDirs::new(support::bin(), &bao);
        let cfg = config(
            &bao,
            json!([{"name": "tmpl", "path": "secret/data/app/db", "file": "out",
                    "format": "template", "template": template, "errorOnMissingKey": true}]),
        );
        let out = run_init(&cfg, &dirs);
        let all = text(&out);
        assert_ne!(out.status.code(), Some(0), "{template}: {all}");
        assert!(
            all.contains("secret tmpl: template"),
            "{i} {template}: {all}"
        );
        assert_no_leaks(&all, &[PASSWORD, "hunter2"]);
        assert!(!dirs.secrets.join("out").exists(), "{template}");
    }
}

fn exec(bao: &OpenBao, dirs: &AgentDirs, env: &[(String, String)]) -> std::process::Output {
    let cfg = config(bao, json!([]));
    let mut c = Command::new(support::bin());
    c.arg("exec")
        .arg("--token-file")
        .arg(&dirs.jwt)
        .args(["--", "/bin/true"])
        .env("VAULT_INJECTOR_CONFIG", cfg.to_string())
        .env_remove("VAULT_ADDR")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn exec_names_the_variable_a_value_cannot_go_into() {
    let Some(bao) = seeded() else { return };
    let dirs = AgentDirs::new(support::bin(), &bao);
    let values = [PASSWORD, NUL_HEAD, "after", &LONG_UNIT.repeat(4)];
    for (key, want) in [
        (
            "nul",
            r#"env var DB_TOKEN: key "nul" in secret/data/app/db holds a NUL byte"#,
        ),
        (
            "long",
            r#"env var DB_TOKEN: key "long" in secret/data/app/db is 160010 bytes"#,
        ),
    ] {
        let out = exec(
            &bao,
            &dirs,
            &[("DB_TOKEN".into(), format!("vault:secret/data/app/db#{key}"))],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(70), "{stderr}");
        assert!(stderr.contains(want), "{stderr}");
        assert_no_leaks(&stderr, &values);
    }

    // Each entry under the per-string limit, together over ARG_MAX (a
    // quarter of the stack limit, at most 6 MiB): execve says E2BIG.
    let unit = "E2BIGVAL".repeat(15_000);
    let data: serde_json::Map<String, serde_json::Value> = (0..64)
        .map(|i| (format!("k{i:02}"), json!(format!("{unit}{i:02}"))))
        .collect();
    bao.kv_put("secret", "app/many", &serde_json::Value::Object(data));
    let env: Vec<(String, String)> = (0..64)
        .map(|i| {
            (
                format!("BIG_{i:02}"),
                format!("vault:secret/data/app/many#k{i:02}"),
            )
        })
        .collect();
    let out = exec(&bao, &dirs, &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(
        stderr.contains("E2BIG") && stderr.contains("the largest injected variable is BIG_"),
        "{stderr}"
    );
    assert_no_leaks(&stderr, &["E2BIGVAL"]);
}
