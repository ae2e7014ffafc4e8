//! A real PostgreSQL per test: `initdb` into a temp dir, `postgres` on a free
//! loopback port with its unix socket in the same dir, password auth.
//! PostgreSQL refuses to run as root, so under root (CI containers) both run
//! as the `postgres` user via `setpriv` (which execs, so the pid we hold is
//! the server's), with the temp dir handed over to that user.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUPERUSER: &str = "postgres";

pub struct Postgres {
    pub port: u16,
    pub password: String,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    psql: PathBuf,
}

fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// uid/gid of the `postgres` (or `nobody`) user, when we are root.
fn run_as() -> Option<(u32, u32)> {
    if id(&["-u"]) != Some(0) {
        return None;
    }
    ["postgres", "nobody"]
        .iter()
        .find_map(|u| Some((id(&["-u", u])?, id(&["-g", u])?)))
        .or_else(|| panic!("running as root needs a `postgres` or `nobody` user for PostgreSQL"))
}

fn command(program: &std::path::Path, who: Option<(u32, u32)>) -> Command {
    match who {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
                "--",
            ])
            .arg(program);
            c
        }
        None => Command::new(program),
    }
}

impl Postgres {
    /// `None` (skip) when the PostgreSQL tools are missing.
    pub fn start() -> Option<Self> {
        let initdb = super::require_tool("initdb")?;
        let postgres = super::require_tool("postgres")?;
        let psql = super::require_tool("psql")?;
        let who = run_as();
        let dir = tempfile::tempdir().expect("tempdir");
        let password = format!("pg-{}", super::free_port());
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, &password).unwrap();
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        std::fs::create_dir(&sock).unwrap();
        if let Some((uid, gid)) = who {
            for p in [dir.path(), &pwfile, &sock] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
            }
        }
        let out = command(&initdb, who)
            .args(["-D", data.to_str().unwrap(), "-U", SUPERUSER])
            .args(["--auth=scram-sha-256", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = super::free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).unwrap();
        let child = command(&postgres, who)
            .args(["-D", data.to_str().unwrap(), "-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("unix_socket_directories={}", sock.display())])
            .args(["-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn postgres");
        let pg = Self {
            port,
            password,
            dir,
            child: Some(child),
            psql,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while pg.query(SUPERUSER, &pg.password, "select 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(pg.dir.path().join("postgres.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(pg)
    }

    /// Runs one query as `user` over TCP with a password; returns its
    /// unaligned output, or psql's error.
    pub fn query(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(&self.psql)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U", user, "-d", "postgres", "-X", "-A", "-t", "-w", "-c", sql,
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Connection URL template for Vault's database engine.
    pub fn vault_connection_url(&self) -> String {
        format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGINT is PostgreSQL's fast shutdown.
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
