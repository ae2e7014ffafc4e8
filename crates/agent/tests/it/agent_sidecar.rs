//! `vault-injector agent --mode sidecar` against a real OpenBao and a real
//! PostgreSQL: refresh on change, reload signal, dynamic credentials renewed
//! and rotated at max TTL, OpenBao lost and back, clean stop with token
//! revocation. Every run's output is scanned for the seeded values.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::agent::{assert_no_leaks, audit_lines, config, wait_for, AgentDirs, Sidecar};
use support::openbao::OpenBao;
use support::postgres::Postgres;

fn events(sc: &Sidecar, event: &str) -> Vec<Value> {
    audit_lines(&sc.stdout())
        .into_iter()
        .filter(|a| a["event"] == event)
        .collect()
}

fn ready(sc: &mut Sidecar, dirs: &AgentDirs) {
    let ok = wait_for(Duration::from_secs(20), || {
        dirs.state.join("ready").is_file()
    });
    assert!(ok, "agent never became ready:\n{}", sc.output());
    assert!(sc.child.try_wait().unwrap().is_none(), "{}", sc.output());
}

/// The app to reload: a copy of `dash` under a name unique to this test (so
/// the signal cannot reach anything else on the machine) that counts the
/// SIGHUPs it gets in `hups` and keeps running, as a real app does. SIGHUP
/// is reset to its default before exec: a test run under `nohup` or a CI
/// runner that ignores SIGHUP would otherwise hand the app an ignored SIGHUP
/// (ignored signals survive exec, and a shell cannot trap those).
fn reload_target(
    dir: &std::path::Path,
) -> Option<(String, std::path::PathBuf, std::process::Child)> {
    use std::os::unix::process::CommandExt;
    let name = format!("vi-rl-{}", support::free_port());
    let exe = dir.join(&name);
    std::fs::copy(support::require_tool("dash")?, &exe).unwrap();
    let hups = dir.join("hups");
    let script = format!(
        "trap \"printf h >> '{0}'\" HUP; : > '{0}.ready'; while :; do sleep 1 & wait $!; done",
        hups.display()
    );
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("-c").arg(script);
    // SAFETY: sigaction is async-signal-safe; nothing else runs here.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGHUP,
                nix::sys::signal::SigHandler::SigDfl,
            )
            .map(|_| ())
            .map_err(std::io::Error::from)
        });
    }
    // A thread of this test binary that forks while the copy is open for
    // writing holds it open until its exec: ETXTBSY for a moment.
    let mut tries = 0;
    let child = loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            other => break other.unwrap(),
        }
    };
    let ready = dir.join("hups.ready");
    assert!(
        wait_for(Duration::from_secs(20), || ready.exists()),
        "reload target never started"
    );
    Some((name, hups, child))
}

fn hups(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).unwrap_or_default().len()
}

#[test]
fn kv_update_is_rerendered_and_the_reload_signal_reaches_the_app() {
    let Some(bao) = OpenBao::start() else { return };
    bao.configure();
    bao.kv_put("secret", "web", &json!({"api_key": "first-key-1111"}));
    let dirs = AgentDirs::new(support::bin(), &bao);
    let Some((name, hup_file, mut app)) = reload_target(dirs.dir.path()) else {
        return;
    };
    let mut cfg = config(
        &bao,
        json!([{"name": "web", "path": "secret/web", "file": "web.env", "format": "env"}]),
    );
    let marker = dirs.dir.path().join("command-ran");
    cfg["secrets"][0]["command"] = json!(format!("printf x >> '{}'", marker.display()));
    cfg["reload"] = json!({"signal": {"signal": "SIGHUP", "process": name}});
    let mut sc = Sidecar::spawn(&cfg, &dirs);
    ready(&mut sc, &dirs);
    assert_eq!(dirs.read("web.env"), "api_key='first-key-1111'\n");
    let inode = |d: &AgentDirs| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(d.secrets.join("web.env")).unwrap().ino()
    };
    let first_inode = inode(&dirs);

    // The per-secret command ran after the first render (as vault-k8s's
    // init container runs it); the pod-wide signal did not.
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "x");
    // Unchanged data: re-read every second, never rewritten, no reload.
    assert!(wait_for(Duration::from_secs(10), || events(&sc, "read")
        .len()
        >= 3));
    assert_eq!(inode(&dirs), first_inode, "unchanged secret was rewritten");
    assert_eq!(events(&sc, "reload").len(), 1, "only the first command");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "x");
    assert_eq!(hups(&hup_file), 0, "reload sent without a change");

    // Each change: rendered within the interval, then exactly one signal.
    for (n, key) in [(1, "second-key-2222"), (2, "third-key-3333")] {
        bao.kv_put("secret", "web", &json!({"api_key": key}));
        let updated = wait_for(Duration::from_secs(20), || {
            dirs.read("web.env") == format!("api_key='{key}'\n")
        });
        assert!(
            updated,
            "update not rendered within the interval:\n{}",
            sc.output()
        );
        assert!(
            wait_for(Duration::from_secs(20), || hups(&hup_file) >= n),
            "reload {n} did not reach the app:\n{}",
            sc.output()
        );
    }
    assert!(app.try_wait().unwrap().is_none(), "the app died on SIGHUP");
    // The app can see the signal before the agent has written its audit line.
    assert!(
        wait_for(Duration::from_secs(20), || events(&sc, "reload").len() >= 5),
        "{}",
        sc.output()
    );
    let reloads = events(&sc, "reload");
    assert_eq!(
        reloads.len(),
        5,
        "the first command, then per-secret command + signal, twice: {reloads:?}"
    );
    assert!(reloads.iter().all(|r| r["ok"] == true), "{reloads:?}");
    assert_eq!(reloads[0]["secret"], "web");
    // The per-secret command ran after the first render and once per change.
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "xxx");
    let changed: Vec<Value> = events(&sc, "render")
        .into_iter()
        .filter(|r| r["changed"] == true)
        .collect();
    assert_eq!(changed.len(), 3, "initial render + two changes");
    assert_eq!(changed[1]["version"], 2);
    assert_eq!(changed[2]["version"], 3);
    // No signal beyond one per change.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(hups(&hup_file), 2);

    assert_eq!(sc.terminate(), Some(0));
    let _ = app.kill();
    let _ = app.wait();
    assert!(!dirs.state.join("ready").exists());
    assert_no_leaks(&sc.output(), &["first-key", "second-key", "third-key"]);
}

#[test]
fn database_credentials_are_renewed_then_rotated_and_log_in() {
    let Some(bao) = OpenBao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.configure();
    bao.database_role(&pg, "4s", "12s");
    let dirs = AgentDirs::new(support::bin(), &bao);
    let cfg = config(
        &bao,
        json!([{"name": "db", "path": "database/creds/app", "file": "db.json"}]),
    );
    let mut sc = Sidecar::spawn(&cfg, &dirs);
    ready(&mut sc, &dirs);
    let creds = |d: &AgentDirs| -> (String, String) {
        let v: Value = serde_json::from_str(&d.read("db.json")).unwrap();
        (
            v["username"].as_str().unwrap().to_string(),
            v["password"].as_str().unwrap().to_string(),
        )
    };
    let (user1, pass1) = creds(&dirs);
    assert_eq!(
        pg.query(&user1, &pass1, "select current_user").unwrap(),
        user1
    );
    let read = events(&sc, "read");
    assert_eq!(read[0]["lease_duration_secs"], 4, "{read:?}");

    assert!(
        wait_for(Duration::from_secs(10), || !events(&sc, "renewal")
            .is_empty()),
        "lease never renewed:\n{}",
        sc.output()
    );
    assert_eq!(creds(&dirs).0, user1, "a renewal must not change the creds");

    let rotated = wait_for(Duration::from_secs(25), || creds(&dirs).0 != user1);
    assert!(rotated, "no new creds at max TTL:\n{}", sc.output());
    let (user2, pass2) = creds(&dirs);
    assert_eq!(
        pg.query(&user2, &pass2, "select current_user").unwrap(),
        user2
    );
    assert!(!events(&sc, "rotation").is_empty());
    // Rotated before the old lease's max TTL ran out, never after.
    let renewals = events(&sc, "renewal");
    assert!(renewals
        .iter()
        .all(|r| r["lease_duration_secs"].as_u64() <= Some(4)));

    assert_eq!(sc.terminate(), Some(0));
    assert_no_leaks(&sc.output(), &[&pass1, &pass2, &pg.password]);
}

#[test]
fn openbao_restart_keeps_last_good_files_and_recovers() {
    let Some(mut bao) = OpenBao::start() else {
        return;
    };
    bao.configure();
    bao.kv_put("secret", "svc", &json!({"password": "before-restart-7777"}));
    let dirs = AgentDirs::new(support::bin(), &bao);
    let cfg = config(
        &bao,
        json!([{"name": "svc", "path": "secret/data/svc", "file": "svc", "format": "raw", "key": "password"}]),
    );
    let mut sc = Sidecar::spawn(&cfg, &dirs);
    ready(&mut sc, &dirs);
    assert_eq!(dirs.read("svc"), "before-restart-7777");

    bao.stop();
    // Several refresh intervals and retries (retry-max is 500 ms) while down.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        sc.child.try_wait().unwrap().is_none(),
        "agent died:\n{}",
        sc.output()
    );
    assert_eq!(dirs.read("svc"), "before-restart-7777");
    assert!(
        dirs.state.join("ready").is_file(),
        "stays ready on last good files"
    );

    // A dev server comes back empty: seed it again, with a new value.
    bao.restart();
    bao.configure();
    bao.kv_put("secret", "svc", &json!({"password": "after-restart-8888"}));
    let refreshed = wait_for(Duration::from_secs(10), || {
        dirs.read("svc") == "after-restart-8888"
    });
    assert!(refreshed, "not refreshed after recovery:\n{}", sc.output());
    let _ = wait_for(Duration::from_secs(10), || {
        sc.output().contains("recovered")
    });

    let out = sc.output();
    let count = |needle: &str| out.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("degraded"), 1, "state change logged once:\n{out}");
    assert_eq!(count("recovered"), 1, "state change logged once:\n{out}");
    assert_eq!(
        count("\"level\":\"ERROR\""),
        0,
        "no error line per retry:\n{out}"
    );
    assert_eq!(
        events(&sc, "error").len(),
        1,
        "one error audit per outage, not per retry"
    );
    assert_eq!(events(&sc, "login").len(), 2, "re-login after the restart");
    assert_eq!(sc.terminate(), Some(0));
    assert_no_leaks(&sc.output(), &["before-restart", "after-restart"]);
}

#[test]
fn sigterm_stops_cleanly_and_revokes_the_token() {
    let Some(bao) = OpenBao::start() else { return };
    bao.configure();
    bao.kv_put("secret", "svc", &json!({"k": "value-revoke-5555"}));
    let dirs = AgentDirs::new(support::bin(), &bao);
    let mut cfg = config(
        &bao,
        json!([{"name": "svc", "path": "secret/svc", "file": "svc"}]),
    );
    cfg["revokeOnShutdown"] = json!(true);
    cfg["refreshIntervalSecs"] = json!(300);
    let mut sc = Sidecar::spawn(&cfg, &dirs);
    ready(&mut sc, &dirs);
    let token = support::open_state(&bao, &support::state_bytes(&dirs)).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(bao
        .cmd(&["token", "lookup", &token])
        .output()
        .unwrap()
        .status
        .success());
    assert_eq!(sc.terminate(), Some(0));
    let lookup = bao.cmd(&["token", "lookup", &token]).output().unwrap();
    assert!(!lookup.status.success(), "token still valid after shutdown");
    assert_eq!(events(&sc, "revoke").len(), 1);
    assert!(
        !dirs.state.join("state").exists(),
        "state of a revoked token kept"
    );
    assert_no_leaks(&sc.output(), &["value-revoke", token.trim()]);
}

#[test]
fn token_is_renewed_then_replaced_by_a_fresh_login_near_max_ttl() {
    let Some(bao) = OpenBao::start() else { return };
    bao.configure();
    bao.kv_put("secret", "svc", &json!({"k": "value-token-6666"}));
    bao.bao_json(
        &["write", "auth/jwt/role/short", "-"],
        &json!({
            "role_type": "jwt",
            "bound_audiences": [support::openbao::AUDIENCE],
            "user_claim": "sub",
            "token_policies": [support::openbao::ROLE],
            "token_ttl": "3s",
            "token_max_ttl": "7s",
        }),
    );
    let dirs = AgentDirs::new(support::bin(), &bao);
    let mut cfg = config(
        &bao,
        json!([{"name": "svc", "path": "secret/svc", "file": "svc"}]),
    );
    cfg["auth"]["role"] = json!("short");
    let mut sc = Sidecar::spawn(&cfg, &dirs);
    ready(&mut sc, &dirs);
    let relogged = wait_for(Duration::from_secs(15), || events(&sc, "login").len() >= 2);
    assert!(relogged, "no fresh login near max TTL:\n{}", sc.output());
    let renewals: Vec<Value> = events(&sc, "renewal")
        .into_iter()
        .filter(|r| r["path"] == "auth/token/renew-self")
        .collect();
    assert!(
        !renewals.is_empty(),
        "token never renewed:\n{}",
        sc.output()
    );
    // The agent never ran on an expired token: every read succeeded.
    assert!(events(&sc, "error").is_empty(), "{}", sc.output());
    assert_eq!(sc.terminate(), Some(0));
    assert_no_leaks(&sc.output(), &["value-token"]);
}
