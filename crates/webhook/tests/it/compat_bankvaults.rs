//! Bank-Vaults manifests (tests/compat/cases/047-059, public examples with
//! their sources) against a real OpenBao: admission with
//! `injector.bankVaultsWithoutOptIn` (no opt-in annotation, as Bank-Vaults
//! mutates them), then `vault-injector exec` run with each container's env
//! exactly as the pod spec holds it, compared with the environment the
//! source states. The forms we refuse are denied at admission, naming the
//! container, variable or annotation.

use crate::support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use support::agent::{self, AgentDirs};
use support::openbao::OpenBao;
use support::postgres::Postgres;

use vault_injector::admission::{self, Volumes};
use vault_injector::gate::Gate;
use vault_injector_core::audit::AdmissionAudit;
use vault_injector_core::config::WebhookConfig;

fn case(n: &str) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/compat/cases");
    let file = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(n))
        .unwrap_or_else(|| panic!("case {n}"));
    serde_yaml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

fn pod_of(c: &Value) -> Value {
    let m = &c["manifest"];
    if m["kind"] == "Pod" {
        m.clone()
    } else {
        m["spec"]["template"].clone()
    }
}

/// Admission of the case's pod as the webhook would judge it, with the
/// operator's Vault at the address the manifest names.
fn admit(c: &Value) -> Result<admission::Mutation, String> {
    admit_with(c, WebhookConfig::default())
}

fn admit_with(c: &Value, mut cfg: WebhookConfig) -> Result<admission::Mutation, String> {
    let pod_v = pod_of(c);
    cfg.injector.bank_vaults_without_opt_in = true;
    if let Some(addr) = pod_v["metadata"]["annotations"]
        .as_object()
        .and_then(|a| a.iter().find(|(k, _)| k.ends_with("/vault-addr")))
        .and_then(|(_, v)| v.as_str())
    {
        cfg.vault.address = addr.to_string();
    }
    let pod: Pod = serde_json::from_value(pod_v).unwrap();
    let gate = Gate::from_config(&cfg).unwrap();
    let mut audit = AdmissionAudit {
        namespace: "default".into(),
        ..Default::default()
    };
    futures::executor::block_on(admission::mutate_pod(
        &pod,
        &cfg,
        &gate,
        Volumes::Offline,
        &mut audit,
    ))
    .map_err(|e| e.to_string())
}

fn seed(bao: &OpenBao, c: &Value) {
    for kv in c["seed"]["kv"].as_array().into_iter().flatten() {
        let data = match kv["data_json"].as_str() {
            Some(body) => serde_json::from_str::<Value>(body).unwrap()["data"].clone(),
            None => kv["data"].clone(),
        };
        bao.kv_put(
            kv["mount"].as_str().unwrap(),
            kv["path"].as_str().unwrap(),
            &data,
        );
    }
}

/// Runs `exec` with `env` and returns the program's environment.
fn exec_env(
    bao: &OpenBao,
    dirs: &AgentDirs,
    env: &[(String, String)],
) -> Result<BTreeMap<String, String>, String> {
    let cfg = agent::config(bao, json!([]));
    let mut cmd = Command::new(support::bin());
    cmd.arg("exec")
        .arg("--token-file")
        .arg(&dirs.jwt)
        .args(["--", "/usr/bin/env"])
        .env_clear()
        .env("VAULT_INJECTOR_CONFIG", cfg.to_string())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        return Err(stderr);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// Each container's env as the pod spec holds it: (container, [(var, value)]).
fn containers(c: &Value) -> Vec<(String, Vec<(String, String)>)> {
    let spec = &pod_of(c)["spec"];
    spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(spec["initContainers"].as_array().into_iter().flatten())
        .map(|ct| {
            let env = ct["env"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap().to_string(),
                        e["value"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            (ct["name"].as_str().unwrap().to_string(), env)
        })
        .collect()
}

#[test]
fn bank_vaults_forms_resolve_to_the_stated_environment() {
    let Some(bao) = OpenBao::start() else { return };
    bao.configure();
    let dirs = AgentDirs::new(support::bin(), &bao);
    let mut checked = 0;
    for n in ["047", "048", "049", "050", "051", "052", "053"] {
        let c = case(n);
        // A fresh mount per case: cases reuse paths with different data.
        bao.bao(&["secrets", "disable", "secret"]);
        bao.bao(&["secrets", "enable", "-version=2", "-path=secret", "kv"]);
        seed(&bao, &c);
        let want: BTreeMap<String, String> = c["expected"]["env"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        for (container, env) in containers(&c) {
            if env.is_empty() {
                continue;
            }
            let got = exec_env(&bao, &dirs, &env)
                .unwrap_or_else(|e| panic!("case {n} container {container}: {e}"));
            for (var, _) in &env {
                let expected = want
                    .get(&format!("{container}.{var}"))
                    .or_else(|| want.get(var))
                    .unwrap_or_else(|| panic!("case {n}: no expected value for {var}"));
                assert_eq!(
                    got.get(var),
                    Some(expected),
                    "case {n} container {container} {var}"
                );
                checked += 1;
            }
        }
        // Admission: injected without an opt-in annotation, or denied for
        // what we do not do (a container without a command: Bank-Vaults
        // reads its image's entrypoint from the registry, the webhook does
        // not).
        match admit(&c) {
            Ok(m) => assert!(m.patch.is_some(), "case {n}: not injected"),
            Err(e) => {
                assert_eq!(n, "047", "case {n}: {e}");
                assert!(
                    e.contains("container \"redis\"") && e.contains("entrypoint-redis"),
                    "{e}"
                );
            }
        }
    }
    assert!(checked >= 12, "{checked}");
}

#[test]
fn bank_vaults_dynamic_pair_comes_from_one_lease() {
    let Some(bao) = OpenBao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.configure();
    bao.bao(&["secrets", "enable", "database"]);
    bao.bao_json(
        &["write", "database/config/postgres", "-"],
        &json!({
            "plugin_name": "postgresql-database-plugin",
            "allowed_roles": ["app"],
            "connection_url": pg.vault_connection_url(),
            "username": support::postgres::SUPERUSER,
            "password": pg.password,
        }),
    );
    bao.bao_json(
        &["write", "database/roles/app", "-"],
        &json!({
            "db_name": "postgres",
            "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"],
            "default_ttl": "1h",
            "max_ttl": "24h",
        }),
    );
    let c = case("054");
    // No vault-role annotation: the operator's default role, or a denial
    // naming Bank-Vaults' annotation.
    let e = admit(&c).unwrap_err();
    assert!(
        e.contains("vault.security.banzaicloud.io/vault-role: no Vault role"),
        "{e}"
    );
    let mut cfg = WebhookConfig::default();
    cfg.auth.role = Some("default".into());
    assert!(admit_with(&c, cfg).is_ok());
    let dirs = AgentDirs::new(support::bin(), &bao);
    let (_, env) = containers(&c).remove(0);
    let got = exec_env(&bao, &dirs, &env).unwrap();
    let (user, pass) = (&got["MYSQL_USERNAME"], &got["MYSQL_PASSWORD"]);
    assert!(user.starts_with("v-"), "{user}");
    assert_eq!(
        got["REDIS_URI"],
        format!("redis://{user}:{pass}@127.0.0.1:6739")
    );
    assert_eq!(
        pg.query(user, pass, "select current_user").unwrap().trim(),
        user.as_str()
    );
}

#[test]
fn refused_bank_vaults_forms_are_denied_at_admission_naming_them() {
    for (n, want) in [
        ("055", "vault:login is not supported"),
        ("056", "writing to Vault from an env value"),
        ("057", "vault.security.banzaicloud.io/vault-env-from-path"),
        ("059", "vault.security.banzaicloud.io/vault-agent-configmap"),
    ] {
        let e = admit(&case(n)).expect_err(n);
        assert!(e.contains(want), "case {n}: {e}");
    }
    // The setting is off by default: the same pods pass untouched.
    let c = case("048");
    let pod: Pod = serde_json::from_value(pod_of(&c)).unwrap();
    let cfg = WebhookConfig::default();
    let m = futures::executor::block_on(admission::mutate_pod(
        &pod,
        &cfg,
        &Gate::from_config(&cfg).unwrap(),
        Volumes::Offline,
        &mut AdmissionAudit::default(),
    ))
    .unwrap();
    assert!(m.patch.is_none());
}

#[test]
fn bank_vaults_role_path_and_warnings_reach_the_pod() {
    let c = case("048");
    let m = admit(&c).unwrap();
    let patch = serde_json::to_value(m.patch.unwrap()).unwrap();
    let text = patch.to_string();
    // The agent config of the exec wrapper names the role and auth path.
    assert!(text.contains(r#"\"role\":\"default\""#), "{text}");
    assert!(text.contains(r#"\"mount\":\"kubernetes\""#), "{text}");
    // vault-skip-verify: true is not honoured (the operator did not allow it).
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("vault-skip-verify") && w.contains("keeps verifying")),
        "{:?}",
        m.warnings
    );
}
