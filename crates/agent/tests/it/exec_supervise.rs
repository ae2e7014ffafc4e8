//! `exec` as a supervisor (`envRestart` in the config, from
//! `vault-injector.io/env-restart: on-change`) against a real OpenBao and
//! PostgreSQL: a rotated database credential reaches the app's environment
//! (the app logs in with it), a new KV version too, signals reach the app,
//! exit codes pass through, and no zombie is left. Without the option,
//! `exec` still replaces itself (same PID).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::agent::{assert_no_leaks, config, wait_for, AgentDirs};
use support::openbao::OpenBao;
use support::postgres::Postgres;

fn exec_cmd(cfg: &Value, dirs: &AgentDirs, env: &[(&str, &str)], script: &str) -> Option<Command> {
    let dash = support::require_tool("dash")?;
    let mut c = Command::new(&dirs.bin);
    c.args(["exec", "--token-file", dirs.jwt.to_str().unwrap(), "--"])
        .arg(dash)
        .arg("-c")
        .arg(script)
        .env("VAULT_INJECTOR_CONFIG", cfg.to_string())
        .env("D", dirs.dir.path())
        .env_remove("VAULT_ADDR")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    Some(c)
}

fn spawn(mut c: Command, dirs: &AgentDirs) -> (Child, PathBuf) {
    let err = dirs.dir.path().join("exec.stderr");
    let child = c
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    (child, err)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Zombie children of `pid` (state `Z` with that parent).
fn zombies_of(pid: u32) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut f = after.split(' ');
        let (state, ppid) = (f.next(), f.next());
        if state == Some("Z") && ppid == Some(&pid.to_string()) {
            n += 1;
        }
    }
    n
}

fn kill(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

fn wait_exit(child: &mut Child, err: &Path) -> std::process::ExitStatus {
    let mut status = None;
    let ok = wait_for(Duration::from_secs(30), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert!(ok, "supervisor did not exit:\n{}", read(err));
    status.unwrap()
}

#[test]
fn rotated_database_credentials_restart_the_app_which_logs_in_with_them() {
    let Some(bao) = OpenBao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    let Some(psql) = support::require_tool("psql") else {
        return;
    };
    bao.configure();
    bao.database_role(&pg, "3s", "6s");
    let dirs = AgentDirs::new(support::bin(), &bao);
    let mut cfg = config(&bao, json!([]));
    cfg["envRestart"] = json!({"signal": "SIGTERM", "graceSecs": 5});
    // The app: logs in with its env credentials, leaves an orphan behind
    // (reparented to the supervisor, which must reap it), counts SIGUSR1,
    // stops on SIGTERM, and exits 7 on its own when asked.
    let script = format!(
        r#"trap 'printf u >> "$D/usr1"' USR1
trap 'exit 0' TERM
printf '%s\n' "$DB_PASS" >> "$D/passwords"
if PGPASSWORD="$DB_PASS" '{psql}' -h 127.0.0.1 -p {port} -U "$DB_USER" -d postgres -X -A -t -w -c 'select 1' >/dev/null 2>&1
then printf '%s ok\n' "$DB_USER" >> "$D/logins"
else printf '%s fail\n' "$DB_USER" >> "$D/logins"
fi
(sleep 0.1 &)
while :; do [ -e "$D/quit" ] && exit 7; sleep 0.2 & wait $!; done"#,
        psql = psql.display(),
        port = pg.port,
    );
    let Some(cmd) = exec_cmd(
        &cfg,
        &dirs,
        &[
            ("DB_USER", "vault:database/creds/app#username"),
            ("DB_PASS", "vault:database/creds/app#password"),
        ],
        &script,
    ) else {
        return;
    };
    let (mut sup, err) = spawn(cmd, &dirs);
    let logins = dirs.dir.path().join("logins");
    let distinct_ok = || {
        let text = read(&logins);
        let mut users: Vec<&str> = text.lines().filter_map(|l| l.strip_suffix(" ok")).collect();
        users.dedup();
        users.len()
    };
    assert!(
        wait_for(Duration::from_secs(60), || distinct_ok() >= 2),
        "the app never logged in with rotated credentials:\nlogins: {}\n{}",
        read(&logins),
        read(&err)
    );
    assert!(!read(&logins).contains("fail"), "{}", read(&logins));

    // Signals reach the app.
    kill(&sup, nix::sys::signal::Signal::SIGUSR1);
    let usr1 = dirs.dir.path().join("usr1");
    assert!(
        wait_for(Duration::from_secs(20), || !read(&usr1).is_empty()),
        "SIGUSR1 not forwarded:\n{}",
        read(&err)
    );
    // Orphans were reaped (a missed one would stay a zombie for good).
    assert!(
        wait_for(Duration::from_secs(20), || zombies_of(sup.id()) == 0),
        "zombies left under the supervisor"
    );

    // The app's own exit status is ours.
    std::fs::write(dirs.dir.path().join("quit"), "").unwrap();
    let status = wait_exit(&mut sup, &err);
    assert_eq!(status.code(), Some(7), "{}", read(&err));

    let stderr = read(&err);
    let audit: Vec<Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(audit.iter().any(|a| a["event"] == "restart"), "{stderr}");
    let passwords = read(&dirs.dir.path().join("passwords"));
    let mut secrets: Vec<&str> = passwords.lines().filter(|l| !l.is_empty()).collect();
    assert!(secrets.len() >= 2);
    secrets.push(&pg.password);
    assert_no_leaks(&stderr, &secrets);
}

#[test]
fn a_new_kv_version_restarts_the_app_and_a_signal_death_passes_through() {
    let Some(bao) = OpenBao::start() else { return };
    bao.configure();
    bao.kv_put("secret", "api", &json!({"key": "api-key-first-1111"}));
    let dirs = AgentDirs::new(support::bin(), &bao);
    let mut cfg = config(&bao, json!([]));
    cfg["env"] = json!([{"var": "API_KEY", "path": "secret/api", "key": "key"}]);
    cfg["envRestart"] = json!({"signal": "SIGINT", "graceSecs": 2});
    // Ignores SIGINT (the configured stop signal): the grace period then
    // ends in SIGKILL. Dies of SIGKILL by its own hand when asked.
    let script = r#"trap '' INT
printf '%s\n' "$API_KEY" >> "$D/seen"
while :; do [ -e "$D/quit" ] && kill -KILL $$; sleep 0.2 & wait $!; done"#;
    let Some(cmd) = exec_cmd(&cfg, &dirs, &[], script) else {
        return;
    };
    let (mut sup, err) = spawn(cmd, &dirs);
    let seen = dirs.dir.path().join("seen");
    assert!(
        wait_for(Duration::from_secs(20), || read(&seen)
            == "api-key-first-1111\n"),
        "{}",
        read(&err)
    );
    // Re-read every second, unchanged: no restart.
    let reads = || read(&err).matches(r#""event":"read""#).count();
    assert!(
        wait_for(Duration::from_secs(30), || reads() >= 3),
        "{}",
        read(&err)
    );
    assert_eq!(read(&seen), "api-key-first-1111\n");
    bao.kv_put("secret", "api", &json!({"key": "api-key-second-2222"}));
    assert!(
        wait_for(Duration::from_secs(30), || read(&seen)
            == "api-key-first-1111\napi-key-second-2222\n"),
        "new version not delivered:\n{}\n{}",
        read(&seen),
        read(&err)
    );
    std::fs::write(dirs.dir.path().join("quit"), "").unwrap();
    let status = wait_exit(&mut sup, &err);
    assert_eq!(status.code(), Some(128 + 9), "{}", read(&err));
    assert_no_leaks(&read(&err), &["api-key-first", "api-key-second"]);
}

#[test]
fn without_env_restart_exec_replaces_itself() {
    let Some(bao) = OpenBao::start() else { return };
    bao.configure();
    bao.kv_put("secret", "api", &json!({"key": "api-key-exec-3333"}));
    let dirs = AgentDirs::new(support::bin(), &bao);
    let mut cfg = config(&bao, json!([]));
    cfg["env"] = json!([{"var": "API_KEY", "path": "secret/api", "key": "key"}]);
    let script =
        r#"printf '%s %s\n' "$$" "$API_KEY" > "$D/pid.tmp"; mv "$D/pid.tmp" "$D/pid"; exit 3"#;
    let Some(cmd) = exec_cmd(&cfg, &dirs, &[], script) else {
        return;
    };
    let (mut child, err) = spawn(cmd, &dirs);
    let status = wait_exit(&mut child, &err);
    assert_eq!(status.code(), Some(3));
    assert_eq!(
        read(&dirs.dir.path().join("pid")),
        format!("{} api-key-exec-3333\n", child.id())
    );
}
