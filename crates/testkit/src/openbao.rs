//! A real OpenBao dev server per test, configured through the `bao` CLI:
//! KV v2 at `secret/` (dev default), KV v1 at `kv/`, a second KV v2 at
//! `private/` that the agent's policy does not cover, JWT auth with a test
//! signing key (tokens shaped like projected service-account tokens) and
//! AppRole. The dev server keeps its data in memory: `restart` comes back
//! empty and the test re-seeds, which is what the agent must survive.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rcgen::SigningKey as _;

pub const ROOT_TOKEN: &str = "root";
pub const ROLE: &str = "app";
pub const NAMESPACE: &str = "shop";
pub const SERVICE_ACCOUNT: &str = "checkout";
pub const AUDIENCE: &str = "vault";
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

pub struct OpenBao {
    bao: PathBuf,
    pub port: u16,
    pub addr: String,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    key: rcgen::KeyPair,
    tls: bool,
}

const POLICY: &str = r#"
path "secret/data/*" { capabilities = ["read"] }
path "secret/metadata/*" { capabilities = ["read"] }
path "kv/*" { capabilities = ["read"] }
path "database/creds/*" { capabilities = ["read"] }
"#;

impl OpenBao {
    /// Starts a dev server on a free port; `None` (skip) without `bao`.
    pub fn start() -> Option<Self> {
        Self::start_with(false)
    }

    /// The same over HTTPS, with a CA the dev server generates
    /// (`-dev-tls`); see [`OpenBao::ca_pem`].
    pub fn start_tls() -> Option<Self> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Option<Self> {
        let bao = super::require_tool("bao")?;
        let port = super::free_port();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("generate a JWT signing key");
        let mut me = Self {
            bao,
            port,
            addr: format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" }),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            key,
            tls,
        };
        me.spawn();
        Some(me)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("bao.log"))
            .expect("bao log");
        let certs = self.certs_dir();
        std::fs::create_dir_all(&certs).unwrap();
        let mut args = vec![
            "server".to_string(),
            "-dev".into(),
            format!("-dev-root-token-id={ROOT_TOKEN}"),
            format!("-dev-listen-address=127.0.0.1:{}", self.port),
        ];
        if self.tls {
            args.push("-dev-tls".into());
            args.push(format!("-dev-tls-cert-dir={}", certs.display()));
        }
        let child = Command::new(&self.bao)
            .args(&args)
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn bao server -dev");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .cmd(&["status", "-format=json"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "OpenBao did not become healthy: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// The CA of a [`OpenBao::start_tls`] server.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.certs_dir().join("vault-ca.pem")).expect("dev TLS CA")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bao.log")).unwrap_or_default()
    }

    /// Stops the server (SIGKILL: as abrupt as a crashed pod).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty (dev mode).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bao);
        c.args(args)
            .env("BAO_ADDR", &self.addr)
            .env("VAULT_ADDR", &self.addr)
            .env("BAO_TOKEN", ROOT_TOKEN)
            .env("VAULT_TOKEN", ROOT_TOKEN)
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        if self.tls {
            let ca = self.certs_dir().join("vault-ca.pem");
            c.env("BAO_CACERT", &ca).env("VAULT_CACERT", &ca);
        }
        c
    }

    /// Runs `bao ARGS` and returns stdout; panics with stderr on failure.
    pub fn bao(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run bao");
        assert!(
            out.status.success(),
            "bao {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The database secrets engine at `database/` on `pg` (connection `pg`),
    /// with role `app`: a PostgreSQL login per lease, living `default_ttl`
    /// and at most `max_ttl` (Vault durations such as `4s` or `1h`).
    pub fn database_role(&self, pg: &crate::postgres::Postgres, default_ttl: &str, max_ttl: &str) {
        self.bao(&["secrets", "enable", "database"]);
        self.bao_json(
            &["write", "database/config/pg", "-"],
            &serde_json::json!({
                "plugin_name": "postgresql-database-plugin",
                "allowed_roles": ["app"],
                "connection_url": pg.vault_connection_url(),
                "username": crate::postgres::SUPERUSER,
                "password": pg.password,
                "verify_connection": true,
            }),
        );
        self.bao_json(
            &["write", "database/roles/app", "-"],
            &serde_json::json!({
                "db_name": "pg",
                "creation_statements": [
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
                ],
                "default_ttl": default_ttl,
                "max_ttl": max_ttl,
            }),
        );
    }

    /// `bao ARGS` with a JSON body from stdin (`-` argument).
    pub fn bao_json(&self, args: &[&str], body: &serde_json::Value) -> String {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run bao");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "bao {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn kv_put(&self, mount: &str, path: &str, data: &serde_json::Value) {
        self.bao_json(&["kv", "put", &format!("-mount={mount}"), path, "-"], data);
    }

    /// Engines, auth methods and the agent's policy. Idempotent per server
    /// lifetime (call again after `restart`).
    pub fn configure(&self) {
        self.bao(&["secrets", "enable", "-version=1", "-path=kv", "kv"]);
        self.bao(&["secrets", "enable", "-version=2", "-path=private", "kv"]);
        self.write_file("policy.hcl", POLICY);
        let policy_file = self.dir.path().join("policy.hcl");
        self.bao(&["policy", "write", ROLE, policy_file.to_str().unwrap()]);

        self.bao(&["auth", "enable", "jwt"]);
        self.bao_json(
            &["write", "auth/jwt/config", "-"],
            &serde_json::json!({
                "jwt_validation_pubkeys": [self.key.public_key_pem()],
                "bound_issuer": ISSUER,
            }),
        );
        self.bao_json(
            &["write", &format!("auth/jwt/role/{ROLE}"), "-"],
            &serde_json::json!({
                "role_type": "jwt",
                "bound_audiences": [AUDIENCE],
                "user_claim": "sub",
                "bound_subject": format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"),
                "token_policies": [ROLE],
                "token_ttl": "1h",
            }),
        );

        self.bao(&["auth", "enable", "approle"]);
        self.bao_json(
            &["write", &format!("auth/approle/role/{ROLE}"), "-"],
            &serde_json::json!({"token_policies": [ROLE], "token_ttl": "1h"}),
        );
    }

    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Writes role-id and secret-id files for the AppRole role.
    pub fn approle_files(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let role_id = self.bao(&[
            "read",
            "-field=role_id",
            &format!("auth/approle/role/{ROLE}/role-id"),
        ]);
        let secret_id = self.bao(&[
            "write",
            "-f",
            "-field=secret_id",
            &format!("auth/approle/role/{ROLE}/secret-id"),
        ]);
        let r = dir.join("role-id");
        let s = dir.join("secret-id");
        std::fs::write(&r, role_id.trim()).unwrap();
        std::fs::write(&s, secret_id.trim()).unwrap();
        (r, s)
    }

    /// A token shaped like a projected service-account token, signed with
    /// the key the JWT mount trusts.
    pub fn mint_sa_token(&self, namespace: &str, sa: &str) -> String {
        mint_jwt(&self.key, namespace, sa)
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}

/// ES256 JWT with Kubernetes' claims.
pub fn mint_jwt(key: &rcgen::KeyPair, namespace: &str, sa: &str) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "test"});
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": format!("system:serviceaccount:{namespace}:{sa}"),
        "aud": [AUDIENCE],
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "kubernetes.io": {
            "namespace": namespace,
            "pod": {"name": "checkout-7d9f", "uid": "0b8e7c1a-0000-4000-8000-000000000001"},
            "serviceaccount": {"name": sa, "uid": "0b8e7c1a-0000-4000-8000-000000000002"},
        },
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let der = key.sign(signing_input.as_bytes()).expect("sign JWT");
    format!("{signing_input}.{}", b64(&der_to_jose(&der)))
}

/// ring signs ECDSA as an ASN.1 SEQUENCE of two INTEGERs; JWS wants the two
/// 32-byte big-endian numbers concatenated.
fn der_to_jose(der: &[u8]) -> Vec<u8> {
    fn int(b: &[u8]) -> (&[u8], &[u8]) {
        assert_eq!(b[0], 0x02, "INTEGER");
        let len = b[1] as usize;
        (&b[2..2 + len], &b[2 + len..])
    }
    assert_eq!(der[0], 0x30, "SEQUENCE");
    let body = &der[2..];
    let (r, rest) = int(body);
    let (s, _) = int(rest);
    let mut out = Vec::with_capacity(64);
    for n in [r, s] {
        let n = &n[n.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0u8, 32 - n.len()));
        out.extend_from_slice(n);
    }
    out
}
