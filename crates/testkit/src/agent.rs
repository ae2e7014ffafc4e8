//! Running the real `vault-injector agent` binary against a test OpenBao:
//! config JSON (the webhook/agent contract), temp dirs, output capture, and
//! the check that no secret value ever reaches the agent's output.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::openbao::{OpenBao, NAMESPACE, ROLE, SERVICE_ACCOUNT};

/// The pod UID the agent binds its state to (the one in the test JWTs).
pub const POD_UID: &str = "0b8e7c1a-0000-4000-8000-000000000001";

pub struct AgentDirs {
    /// The binary that runs the agent's commands.
    pub bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub secrets: PathBuf,
    pub state: PathBuf,
    pub jwt: PathBuf,
}

impl AgentDirs {
    pub fn new(bin: PathBuf, bao: &OpenBao) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let jwt = dir.path().join("sa-token");
        std::fs::write(&jwt, bao.mint_sa_token(NAMESPACE, SERVICE_ACCOUNT)).unwrap();
        Self {
            bin,
            secrets: dir.path().join("secrets"),
            state: dir.path().join("state"),
            jwt,
            dir,
        }
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.secrets.join(file))
            .unwrap_or_else(|e| panic!("reading rendered {file}: {e}"))
    }
}

/// An agent config with JWT auth at `auth/jwt` as role `app`.
pub fn config(bao: &OpenBao, secrets: Value) -> Value {
    json!({
        "vault": {"address": bao.addr},
        "auth": {"method": "jwt", "mount": "jwt", "role": ROLE},
        "secrets": secrets,
        "refreshIntervalSecs": 1,
        "logFormat": "json",
        "pod": {"namespace": NAMESPACE, "name": "checkout-7d9f", "serviceAccount": SERVICE_ACCOUNT},
    })
}

pub fn command(cfg: &Value, dirs: &AgentDirs, mode: &str) -> Command {
    let mut c = Command::new(&dirs.bin);
    c.args([
        "agent",
        "--mode",
        mode,
        "--secrets-dir",
        dirs.secrets.to_str().unwrap(),
        "--state-dir",
        dirs.state.to_str().unwrap(),
        "--token-file",
        dirs.jwt.to_str().unwrap(),
        "--retry-attempts",
        "2",
        "--retry-initial",
        "100ms",
        "--retry-max",
        "500ms",
    ])
    .env("VAULT_INJECTOR_CONFIG", cfg.to_string())
    .env("VAULT_INJECTOR_POD_UID", POD_UID)
    .env_remove("VAULT_ADDR")
    .env_remove("RUST_LOG")
    .stdin(Stdio::null());
    c
}

/// Runs `agent --mode init` to completion.
pub fn run_init(cfg: &Value, dirs: &AgentDirs) -> Output {
    command(cfg, dirs, "init").output().expect("run agent")
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Audit lines (stdout) as JSON.
pub fn audit_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line {l:?}: {e}")))
        .collect()
}

/// Fails if any line contains any of `values`.
pub fn assert_no_leaks(output: &str, values: &[&str]) {
    for line in output.lines() {
        for v in values {
            assert!(
                !line.contains(v),
                "secret value leaked into agent output: {line}"
            );
        }
    }
}

/// A sidecar agent running in the background, its output in files.
pub struct Sidecar {
    pub child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Sidecar {
    pub fn spawn(cfg: &Value, dirs: &AgentDirs) -> Self {
        Self::spawn_cmd(command(cfg, dirs, "sidecar"), dirs, "agent")
    }

    /// Runs `cmd` in the background, its output in `NAME.stdout` and
    /// `NAME.stderr` of the test dir (a new name per run keeps each run's
    /// output apart).
    pub fn spawn_cmd(mut cmd: Command, dirs: &AgentDirs, name: &str) -> Self {
        let out = dirs.dir.path().join(format!("{name}.stdout"));
        let err = dirs.dir.path().join(format!("{name}.stderr"));
        let child = cmd
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn agent");
        Self { child, out, err }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn output(&self) -> String {
        format!(
            "{}{}",
            self.stdout(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    /// SIGTERM, then wait; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("agent did not stop on SIGTERM:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` until true or `timeout`; returns whether it became true.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

pub fn file_mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}
