//! A real OpenBao dev server on a free loopback port, for tests of the
//! webhook's own Vault identity (volume profiles). Started per test, killed
//! on drop. Configuration goes through the HTTP API with the root token.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const ROOT_TOKEN: &str = "root-token-for-tests";

pub struct BaoDev {
    pub addr: String,
    /// The dev CA (PEM) when started with TLS.
    pub ca_pem: Option<String>,
    child: Option<Child>,
    http: reqwest::Client,
    /// Holds the dev server's HOME (it writes a token helper file there).
    _home: tempfile::TempDir,
}

impl BaoDev {
    /// Starts `bao server -dev`; None when the tool is missing outside CI.
    pub async fn start() -> Option<Self> {
        Self::start_with(false).await
    }

    /// Starts `bao server -dev -dev-tls` (HTTPS with a generated CA).
    pub async fn start_tls() -> Option<Self> {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> Option<Self> {
        let bao = super::require_tool("bao")?;
        let port = super::free_port();
        let home = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(home.path().join("bao.log")).expect("log file");
        let mut args = vec![
            "server".to_string(),
            "-dev".into(),
            "-dev-no-store-token".into(),
            format!("-dev-listen-address=127.0.0.1:{port}"),
            format!("-dev-root-token-id={ROOT_TOKEN}"),
        ];
        if tls {
            args.push("-dev-tls".into());
            args.push(format!("-dev-tls-cert-dir={}", home.path().display()));
        }
        let child = Command::new(bao)
            .args(&args)
            .env("HOME", home.path())
            .env_remove("BAO_ADDR")
            .env_remove("VAULT_ADDR")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn bao server -dev");
        let scheme = if tls { "https" } else { "http" };
        let mut dev = Self {
            addr: format!("{scheme}://127.0.0.1:{port}"),
            ca_pem: None,
            child: Some(child),
            http: reqwest::Client::new(),
            _home: home,
        };
        if tls {
            let ca = dev._home.path().join("vault-ca.pem");
            let deadline = Instant::now() + Duration::from_secs(30);
            while !ca.exists() {
                assert!(Instant::now() < deadline, "OpenBao wrote no dev CA");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // The file appears before it is fully written.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let pem = std::fs::read_to_string(&ca).expect("read dev CA");
            dev.http = reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA"))
                .build()
                .expect("https client");
            dev.ca_pem = Some(pem);
        }
        dev.wait_ready().await;
        Some(dev)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .http
                .get(format!("{}/v1/sys/health", self.addr))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "OpenBao dev server did not become ready; log: {}",
                std::fs::read_to_string(self._home.path().join("bao.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One API call with the root token; panics on an HTTP error status.
    pub async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", ROOT_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("OpenBao request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: {status}: {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("OpenBao JSON")
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.api(reqwest::Method::POST, path, Some(body)).await
    }

    /// Writes a KV v2 secret at `mount/path` (the dev server mounts KV v2
    /// at `secret/`).
    pub async fn kv_put(&self, mount: &str, path: &str, data: Value) {
        self.post(&format!("{mount}/data/{path}"), json!({ "data": data }))
            .await;
    }

    /// Enables AppRole at `approle/`, creates `role` with a policy holding
    /// `policy_hcl`, and writes its role id and a secret id into `dir`.
    /// Returns (role_id_path, secret_id_path).
    pub async fn approle(&self, role: &str, policy_hcl: &str, dir: &Path) -> (PathBuf, PathBuf) {
        let mounts = self.api(reqwest::Method::GET, "sys/auth", None).await;
        if mounts["data"].get("approle/").is_none() && mounts.get("approle/").is_none() {
            self.post("sys/auth/approle", json!({"type": "approle"}))
                .await;
        }
        self.post(
            &format!("sys/policies/acl/{role}"),
            json!({ "policy": policy_hcl }),
        )
        .await;
        self.post(
            &format!("auth/approle/role/{role}"),
            json!({ "token_policies": [role], "token_ttl": "1h" }),
        )
        .await;
        let role_id = self
            .api(
                reqwest::Method::GET,
                &format!("auth/approle/role/{role}/role-id"),
                None,
            )
            .await["data"]["role_id"]
            .as_str()
            .expect("role_id")
            .to_string();
        let secret_id = self
            .post(&format!("auth/approle/role/{role}/secret-id"), json!({}))
            .await["data"]["secret_id"]
            .as_str()
            .expect("secret_id")
            .to_string();
        let rp = dir.join(format!("{role}-role-id"));
        let sp = dir.join(format!("{role}-secret-id"));
        std::fs::write(&rp, role_id).expect("write role id");
        std::fs::write(&sp, secret_id).expect("write secret id");
        (rp, sp)
    }

    /// Kills the server (to test behaviour while Vault is down).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for BaoDev {
    fn drop(&mut self) {
        self.stop();
    }
}
