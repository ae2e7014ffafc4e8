//! Migration paths against a real OpenBao: a pod written the way vault-k8s
//! users write it, mutated by the real binary and rendered by the real agent;
//! and `vault-injector exec` resolving Bank-Vaults style `vault:` env values.

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::agent::{self, AgentDirs};
use support::openbao::{OpenBao, NAMESPACE, ROLE, SERVICE_ACCOUNT};

const PASSWORD: &str = "pa55-w0rd-not-for-logs";

fn bao() -> Option<OpenBao> {
    let b = OpenBao::start()?;
    b.configure();
    b.kv_put(
        "secret",
        "web/db",
        &json!({"username": "app", "password": PASSWORD}),
    );
    Some(b)
}

/// Runs `vault-injector mutate` on `pod` with a webhook config pointing at
/// `bao`, and returns the agent config the webhook put in the pod.
fn mutate_to_agent_config(bao: &OpenBao, pod: &Value) -> (Value, Value) {
    let dir = tempfile::tempdir().unwrap();
    let pod_file = dir.path().join("pod.json");
    std::fs::write(&pod_file, pod.to_string()).unwrap();
    let cfg_file = dir.path().join("config.yaml");
    std::fs::write(
        &cfg_file,
        format!(
            "vault:\n  address: {}\nauth:\n  method: jwt\n  path: auth/jwt\n",
            bao.addr
        ),
    )
    .unwrap();
    let out = Command::new(support::bin())
        .args(["mutate", "-o", "json", "-f"])
        .arg(&pod_file)
        .arg("--config")
        .arg(&cfg_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mutate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mutated: Value = serde_json::from_slice(&out.stdout).unwrap();
    let init = &mutated["spec"]["initContainers"][0];
    let env = init["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "VAULT_INJECTOR_CONFIG")
        .expect("agent config env var");
    let cfg: Value = serde_json::from_str(env["value"].as_str().unwrap()).unwrap();
    (mutated, cfg)
}

#[test]
fn vault_k8s_pod_renders_files_where_vault_agent_would() {
    let Some(bao) = bao() else { return };
    let p = "vault.hashicorp.com/";
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "migrate-job", "namespace": NAMESPACE, "annotations": {
            format!("{p}agent-inject"): "true",
            format!("{p}role"): ROLE,
            format!("{p}auth-type"): "jwt",
            format!("{p}auth-path"): "auth/jwt",
            format!("{p}agent-pre-populate-only"): "true",
            // Default `map` template, file named after the lowercased NAME.
            format!("{p}agent-inject-secret-DB"): "secret/data/web/db",
            // Template + file + perms, as in vault-k8s docs.
            format!("{p}agent-inject-secret-conn"): "secret/data/web/db",
            format!("{p}agent-inject-template-conn"): "{{- with secret \"secret/data/web/db\" -}}\npostgresql://{{ .Data.data.username }}:{{ .Data.data.password }}@postgres:5432/app\n{{- end }}\n",
            format!("{p}agent-inject-file-conn"): "config/conn.txt",
            format!("{p}agent-inject-perms-conn"): "0440",
            // The common dotenv idiom.
            format!("{p}agent-inject-secret-env"): "secret/data/web/db",
            format!("{p}agent-inject-template-env"): "{{ with secret \"secret/data/web/db\" -}}\n{{ range $k, $v := .Data.data }}export {{ $k | toUpper }}=\"{{ $v }}\"\n{{ end }}{{- end }}",
        }},
        "spec": {"serviceAccountName": SERVICE_ACCOUNT, "restartPolicy": "Never",
                 "containers": [{"name": "job", "image": "busybox", "command": ["/job"]}]}
    });
    let (mutated, cfg) = mutate_to_agent_config(&bao, &pod);
    // pre-populate-only: a run-once init container, no sidecar.
    assert_eq!(
        mutated["spec"]["initContainers"].as_array().unwrap().len(),
        1
    );
    assert_eq!(mutated["spec"]["containers"].as_array().unwrap().len(), 1);
    assert_eq!(
        mutated["metadata"]["annotations"]["vault.hashicorp.com/agent-inject-status"],
        "injected"
    );

    let dirs = AgentDirs::new(support::bin(), &bao);
    let out = agent::run_init(&cfg, &dirs);
    let text = agent::text(&out);
    assert!(out.status.success(), "agent failed:\n{text}");
    agent::assert_no_leaks(&text, &[PASSWORD]);

    let db = dirs.read("db");
    assert!(
        db.starts_with(&format!(
            "data: map[password:{PASSWORD} username:app]\nmetadata: map["
        )),
        "{db}"
    );
    assert!(db.contains("version:1"), "{db}");
    assert_eq!(
        agent::file_mode(&dirs.secrets.join("db")),
        0o644,
        "Vault Agent's default"
    );

    let conn = dirs.read("config/conn.txt");
    assert_eq!(
        conn,
        format!("postgresql://app:{PASSWORD}@postgres:5432/app\n")
    );
    assert_eq!(
        agent::file_mode(&dirs.secrets.join("config/conn.txt")),
        0o440
    );

    assert_eq!(
        dirs.read("env"),
        format!("export PASSWORD=\"{PASSWORD}\"\nexport USERNAME=\"app\"\n")
    );
}

/// An `exec` command with the agent config the webhook would set.
fn exec(bao: &OpenBao, dirs: &AgentDirs, env: &[(&str, &str)], program: &[&str]) -> Command {
    let cfg = agent::config(bao, json!([]));
    let mut c = Command::new(support::bin());
    c.arg("exec")
        .arg("--token-file")
        .arg(&dirs.jwt)
        .arg("--")
        .args(program)
        .env("VAULT_INJECTOR_CONFIG", cfg.to_string())
        .env_remove("VAULT_ADDR")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

#[test]
fn exec_puts_secrets_in_the_programs_environment_only() {
    let Some(bao) = bao() else { return };
    let dirs = AgentDirs::new(support::bin(), &bao);
    let out = exec(
        &bao,
        &dirs,
        &[
            ("DB_PASSWORD", "vault:secret/data/web/db#password"),
            ("DB_USER", "vault:secret/web/db#username"),
            ("PLAIN", "kept"),
        ],
        &[
            "/bin/sh",
            "-c",
            // Compares inside the child so the value itself is never printed.
            &format!(
                "[ \"$DB_PASSWORD\" = '{PASSWORD}' ] && echo pw-ok; echo user=$DB_USER plain=$PLAIN \
                 cfg=${{VAULT_INJECTOR_CONFIG:-unset}} args=$1,$2; exit 7"
            ),
            "sh",
            "a1",
            "a 2",
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(7),
        "exit code passes through: {stderr}"
    );
    assert!(stdout.contains("pw-ok"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("user=app plain=kept cfg=unset args=a1,a 2"),
        "{stdout}"
    );
    agent::assert_no_leaks(&stderr, &[PASSWORD]);
    // Audit lines for the login and each read, on stderr.
    let events: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["audit"] == "agent")
        .collect();
    assert!(events.iter().any(|e| e["event"] == "login"), "{stderr}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "read" && e["secret"] == "DB_PASSWORD"),
        "{stderr}"
    );
}

#[test]
fn exec_reads_pinned_versions() {
    let Some(bao) = bao() else { return };
    bao.kv_put(
        "secret",
        "web/db",
        &json!({"username": "app", "password": "second"}),
    );
    let dirs = AgentDirs::new(support::bin(), &bao);
    let out = exec(
        &bao,
        &dirs,
        &[
            ("OLD", "vault:secret/data/web/db#password#1"),
            ("NEW", "vault:secret/data/web/db#password"),
        ],
        &[
            "/bin/sh",
            "-c",
            &format!("[ \"$OLD\" = '{PASSWORD}' ] && [ \"$NEW\" = second ] && echo versions-ok"),
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("versions-ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn exec_keeps_the_pid_and_the_program_gets_signals() {
    let Some(bao) = bao() else { return };
    let dirs = AgentDirs::new(support::bin(), &bao);
    let mut child = exec(
        &bao,
        &dirs,
        &[("DB_PASSWORD", "vault:secret/data/web/db#password")],
        &[
            "/bin/sh",
            "-c",
            "trap 'echo got-term; exit 42' TERM; echo pid=$$; while :; do sleep 0.05; done",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert_eq!(first, format!("pid={}", child.id()), "execve keeps the PID");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l == "got-term"), "{rest:?}");
    assert_eq!(status.code(), Some(42));
}

#[test]
fn exec_fails_before_the_program_starts_naming_what_is_wrong() {
    let Some(bao) = bao() else { return };
    let dirs = AgentDirs::new(support::bin(), &bao);
    let marker = dirs.dir.path().join("started");
    let program = format!("touch {}", marker.display());
    for (env, want) in [
        (
            "vault:secret/data/web/nope#password",
            "secret/data/web/nope",
        ),
        (
            "vault:secret/data/web/db#missing",
            "key \"missing\" not found",
        ),
        ("vault:secret/data/web/db", "missing key"),
        ("vault:sys/forbidden/x#k", "DB_PASSWORD"),
    ] {
        let out = exec(
            &bao,
            &dirs,
            &[("DB_PASSWORD", env)],
            &["/bin/sh", "-c", &program],
        )
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(70), "{env}: {stderr}");
        assert!(stderr.contains("DB_PASSWORD"), "{env}: {stderr}");
        assert!(stderr.contains(want), "{env}: {stderr} lacks {want}");
        assert!(!marker.exists(), "{env}: the program must not have started");
        agent::assert_no_leaks(&stderr, &[PASSWORD]);
    }
    // The program missing altogether: like a shell, 127.
    let out = exec(&bao, &dirs, &[], &["/nonexistent/program"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
}

/// Pods injected by older versions run `vault-injector copy-self` and then
/// `/vault/bin/vault-injector exec`: the alias keeps the webhook binary's
/// name for its copy.
#[test]
fn the_copy_self_alias_keeps_the_webhook_binary_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(support::bin())
        .arg("copy-self")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(dir.path().join("vault-injector").is_file());
    assert!(!dir.path().join("vault-injector-agent").exists());
}
