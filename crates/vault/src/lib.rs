//! Vault/OpenBao client edge for the agent: log in with the pod's identity,
//! read secrets (KV v1, KV v2, dynamic engines with leases), renew the token
//! and leases, revoke the token.
//!
//! Logins and token calls go through vaultrs. Secret reads and lease renewals
//! need fields vaultrs does not return (lease id, duration, KV v2 metadata), so
//! they use vaultrs' own HTTP client (same TLS settings, same namespace)
//! with a small typed layer here.
//!
//! Errors name the operation and the path and carry Vault's error strings,
//! which never echo secret values.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use vault_injector_core::contract::{AgentAuth, AuthMethod, VaultConnection};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid Vault address {0:?}: expected http://HOST[:PORT] or https://HOST[:PORT]")]
    Address(String),
    #[error("reading {what} {path}: {source}")]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("building the Vault client: {0}")]
    Client(String),
    #[error("cannot reach Vault at {addr} ({op}): {message}")]
    Unreachable {
        addr: String,
        op: String,
        message: String,
    },
    #[error("Vault refused {op} (HTTP {status}): {errors}")]
    Api {
        op: String,
        status: u16,
        errors: String,
    },
    #[error("no secret at {path} (HTTP 404)")]
    NotFound { path: String },
    #[error("unexpected response from Vault for {op}: {message}")]
    Response { op: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Vault could not be reached, or answered with a server-side failure:
    /// worth retrying without changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Api { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// The token was refused (expired, revoked, or Vault lost its state):
    /// logging in again may help.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Error::Api { status: 403, .. })
    }
}

/// A lease attached to a dynamic secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: String,
    pub duration_secs: u64,
    pub renewable: bool,
}

/// Which engine answered a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    KvV1,
    KvV2,
    /// Anything else read through the logical API (database, aws, pki...).
    Logical,
}

/// A JSON value with every number kept as the text Vault sent
/// (`18446744073709551616`, `1e400`, `-0`, `0.1`). `serde_json::Value`
/// without its `arbitrary_precision` feature rounds such numbers to an f64,
/// and that feature is not an option here: it would change number handling
/// for every crate in the graph (kube, k8s-openapi, the webhook's hot path).
#[derive(Debug, Clone, PartialEq)]
pub enum Exact {
    Null,
    Bool(bool),
    /// The number's JSON text, exactly as received.
    Number(String),
    String(String),
    Array(Vec<Exact>),
    Object(BTreeMap<String, Exact>),
}

impl Exact {
    /// Parses one JSON value, keeping numbers as text. Each level is captured
    /// as a raw slice first, so serde_json's depth limit still applies.
    pub fn from_json(text: &str) -> serde_json::Result<Exact> {
        let t = text.trim();
        Ok(match t.as_bytes().first() {
            Some(b'{') => Exact::Object(serde_json::from_str(t)?),
            Some(b'[') => Exact::Array(serde_json::from_str(t)?),
            Some(b'"') => Exact::String(serde_json::from_str(t)?),
            Some(b't' | b'f') => Exact::Bool(serde_json::from_str(t)?),
            Some(b'n') => {
                serde_json::from_str::<()>(t)?;
                Exact::Null
            }
            _ => {
                serde_json::from_str::<serde::de::IgnoredAny>(t)?;
                Exact::Number(t.to_string())
            }
        })
    }
}

impl<'de> serde::Deserialize<'de> for Exact {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = <&serde_json::value::RawValue>::deserialize(d)?;
        Exact::from_json(raw.get()).map_err(serde::de::Error::custom)
    }
}

/// Writes numbers back verbatim through serde_json (its raw-value hook);
/// meant for serde_json serializers only.
impl serde::Serialize for Exact {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Exact::Null => s.serialize_unit(),
            Exact::Bool(b) => s.serialize_bool(*b),
            Exact::Number(n) => serde_json::value::RawValue::from_string(n.clone())
                .map_err(serde::ser::Error::custom)?
                .serialize(s),
            Exact::String(v) => s.serialize_str(v),
            Exact::Array(a) => a.serialize(s),
            Exact::Object(m) => m.serialize(s),
        }
    }
}

/// One secret as Vault returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct Secret {
    /// The key/values (for KV v2 the inner `data.data`), numbers exactly as
    /// Vault sent them.
    pub data: BTreeMap<String, Exact>,
    /// KV v2 metadata (`version`, `created_time`, ...); `Null` otherwise.
    pub metadata: Value,
    pub lease: Option<Lease>,
    pub engine: Engine,
}

impl Secret {
    /// KV v2 version, for audit lines.
    pub fn version(&self) -> Option<u64> {
        self.metadata.get("version").and_then(Value::as_u64)
    }
}

/// The token the agent holds, as far as renewal is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenInfo {
    /// 0 for tokens that never expire.
    pub ttl_secs: u64,
    pub renewable: bool,
}

/// What `auth/token/lookup-self` says about the agent's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLookup {
    pub ttl_secs: u64,
    pub renewable: bool,
    /// Not a credential: it can only look the token up or revoke it, with a
    /// policy that allows that.
    pub accessor: String,
}

/// A response-wrapping token. Its `Debug` hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Wrapped {
    pub token: String,
    pub ttl_secs: u64,
}

impl std::fmt::Debug for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wrapped")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

/// Where a path lives: the mount and its engine.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// With trailing slash, e.g. `secret/`.
    path: String,
    engine: Engine,
}

/// The agent's Vault session.
pub struct Vault {
    client: VaultClient,
    addr: String,
    namespace: Option<String>,
    mounts: HashMap<String, Mount>,
    /// Accessor of the current token (empty before login).
    accessor: String,
}

impl std::fmt::Debug for Vault {
    // The client holds the token; never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("addr", &self.addr).finish()
    }
}

fn validate_address(addr: &str) -> Result<()> {
    let uri: http::Uri = addr.parse().map_err(|_| Error::Address(addr.into()))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err(Error::Address(addr.into())),
    }
}

/// `a: b: c` from an error and its sources (reqwest hides the useful part,
/// e.g. "Connection refused", in the chain).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn join_errors(errors: &[String]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .flat_map(|e| e.lines())
        .map(|l| l.trim().trim_start_matches("* ").trim())
        .filter(|l| {
            !l.is_empty() && !l.ends_with("error occurred:") && !l.ends_with("errors occurred:")
        })
        .map(str::to_string)
        .collect();
    if parts.is_empty() {
        "no error message".into()
    } else {
        parts.join("; ")
    }
}

/// The object at `at` in a response body, numbers as sent; `None` if there
/// is no object there.
fn exact_data(text: &str, at: &[&str], op: &str) -> Result<Option<BTreeMap<String, Exact>>> {
    let bad = |message: String| Error::Response {
        op: op.into(),
        message,
    };
    // The category and place only: serde_json's message can quote input.
    let mut cur = Exact::from_json(text).map_err(|e| {
        bad(format!(
            "body: {:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    for key in at {
        cur = match cur {
            Exact::Object(mut m) => m.remove(*key).unwrap_or(Exact::Null),
            _ => Exact::Null,
        };
    }
    match cur {
        Exact::Object(m) => Ok(Some(m)),
        _ => Ok(None),
    }
}

impl Vault {
    /// Builds a client. An inline CA bundle (`vault.caPem`) stays in memory:
    /// `exec` runs in application containers that may have nowhere to write
    /// (a scratch image without /tmp, a read-only root filesystem).
    pub fn new(conn: &VaultConnection) -> Result<Self> {
        validate_address(&conn.address)?;
        let timeout = Duration::from_secs(15);
        let mut b = VaultClientSettingsBuilder::default();
        b.address(&conn.address)
            .token(String::new())
            .ca_certs(Vec::new())
            .verify(!conn.tls_skip_verify)
            .timeout(Some(timeout))
            .namespace(conn.namespace.clone().filter(|n| !n.is_empty()));
        let settings = b.build().map_err(|e| Error::Client(e.to_string()))?;
        let mut client = VaultClient::new(settings).map_err(|e| Error::Client(chain(&e)))?;
        if let Some(pem) = conn.ca_pem.as_deref().filter(|p| !p.trim().is_empty()) {
            // vaultrs reads CA bundles only from files (and only the first
            // certificate of each): the same HTTP client, built here with
            // every certificate of the bundle from memory.
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| Error::Client(format!("vault.caPem: {}", chain(&e))))?;
            if certs.is_empty() {
                return Err(Error::Client("vault.caPem holds no PEM certificate".into()));
            }
            let mut http = reqwest::Client::builder()
                .use_rustls_tls()
                .timeout(timeout)
                .danger_accept_invalid_certs(conn.tls_skip_verify);
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
            let http = http.build().map_err(|e| Error::Client(chain(&e)))?;
            client.http =
                rustify::clients::reqwest::Client::new(client.settings.address.as_str(), http);
        }
        Ok(Self {
            client,
            addr: conn.address.trim_end_matches('/').to_string(),
            namespace: conn.namespace.clone().filter(|n| !n.is_empty()),
            mounts: HashMap::new(),
            accessor: String::new(),
        })
    }

    /// The current token (to persist in the agent-only state dir).
    pub fn token(&self) -> &str {
        &self.client.settings.token
    }

    fn map_client_err(&self, op: &str, e: ClientError) -> Error {
        match e {
            ClientError::APIError { code, errors } => Error::Api {
                op: op.into(),
                status: code,
                errors: join_errors(&errors),
            },
            ClientError::RestClientError { source } => Error::Unreachable {
                addr: self.addr.clone(),
                op: op.into(),
                message: chain(&source),
            },
            other => Error::Response {
                op: op.into(),
                message: chain(&other),
            },
        }
    }

    /// Logs in with the configured method; the token is kept in the client.
    pub async fn login(&mut self, auth: &AgentAuth, jwt_file: &Path) -> Result<TokenInfo> {
        let mount = vault_injector_core::contract::auth_mount(&auth.mount);
        let op = format!("login to auth/{mount} as role {:?}", auth.role);
        let res = match auth.method {
            AuthMethod::Kubernetes => {
                let jwt = read_trimmed("service-account token", jwt_file)?;
                vaultrs::auth::kubernetes::login(&self.client, &mount, &auth.role, &jwt).await
            }
            AuthMethod::Jwt => {
                let jwt = read_trimmed("service-account token", jwt_file)?;
                let role = Some(auth.role.clone()).filter(|r| !r.is_empty());
                vaultrs::auth::oidc::login(&self.client, &mount, &jwt, role).await
            }
            AuthMethod::Approle => {
                let role_id_path = auth.role_id_path.as_deref().ok_or_else(|| {
                    Error::Client("approle auth needs auth.roleIdPath in the agent config".into())
                })?;
                let role_id = read_trimmed("AppRole role id", Path::new(role_id_path))?;
                let secret_id = match auth.secret_id_path.as_deref() {
                    Some(p) => read_trimmed("AppRole secret id", Path::new(p))?,
                    None => String::new(),
                };
                vaultrs::auth::approle::login(&self.client, &mount, &role_id, &secret_id).await
            }
        };
        let info = res.map_err(|e| self.map_client_err(&op, e))?;
        self.client.set_token(&info.client_token);
        self.accessor = info.accessor.clone();
        Ok(TokenInfo {
            ttl_secs: info.lease_duration,
            renewable: info.renewable,
        })
    }

    /// Renews the agent's own token.
    pub async fn renew_token(&self) -> Result<TokenInfo> {
        let info = vaultrs::token::renew_self(&self.client, None)
            .await
            .map_err(|e| self.map_client_err("token renewal", e))?;
        Ok(TokenInfo {
            ttl_secs: info.lease_duration,
            renewable: info.renewable,
        })
    }

    /// Whether Vault still knows the agent's token. Tells a dead token (log
    /// in again) from a policy that denies a path (do not).
    pub async fn token_valid(&self) -> Result<bool> {
        match vaultrs::token::lookup_self(&self.client).await {
            Ok(_) => Ok(true),
            Err(ClientError::APIError { code: 403, .. }) => Ok(false),
            Err(e) => Err(self.map_client_err("token lookup", e)),
        }
    }

    /// Revokes the agent's own token (on shutdown, when configured).
    pub async fn revoke_token(&self) -> Result<()> {
        vaultrs::token::revoke_self(&self.client)
            .await
            .map_err(|e| self.map_client_err("token revocation", e))
    }

    /// Uses a token saved by an earlier run (agent state) instead of
    /// logging in.
    pub fn set_token(&mut self, token: &str, accessor: &str) {
        self.client.set_token(token);
        self.accessor = accessor.to_string();
    }

    /// The current token's accessor.
    pub fn accessor(&self) -> &str {
        &self.accessor
    }

    /// Looks up the agent's own token: its remaining TTL, whether it is
    /// renewable, and its accessor. `Ok(None)` when Vault no longer knows it.
    pub async fn lookup_self(&self) -> Result<Option<TokenLookup>> {
        match self
            .call(
                http::Method::GET,
                "auth/token/lookup-self",
                None,
                "token lookup",
            )
            .await
        {
            Ok(Some(v)) => {
                let d = v.get("data").cloned().unwrap_or(Value::Null);
                Ok(Some(TokenLookup {
                    ttl_secs: d.get("ttl").and_then(Value::as_u64).unwrap_or(0),
                    renewable: d.get("renewable").and_then(Value::as_bool).unwrap_or(false),
                    accessor: d
                        .get("accessor")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                }))
            }
            Ok(None) => Err(Error::Response {
                op: "token lookup".into(),
                message: "empty response".into(),
            }),
            Err(e) if e.is_forbidden() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Revokes another token by its accessor (needs `update` on
    /// `auth/token/revoke-accessor`, which roles rarely grant).
    pub async fn revoke_accessor(&self, accessor: &str) -> Result<()> {
        let body = serde_json::json!({ "accessor": accessor });
        self.call(
            http::Method::POST,
            "auth/token/revoke-accessor",
            Some(&body),
            "token revocation by accessor",
        )
        .await
        .map(|_| ())
    }

    /// Response-wraps `data` with the agent's token (`sys/wrapping/wrap`):
    /// Vault keeps it and returns a single-use wrapping token valid for
    /// `ttl_secs`.
    pub async fn wrap(&self, data: &Value, ttl_secs: u64) -> Result<Wrapped> {
        let op = "response wrapping";
        let (v, _) = self
            .call_as(
                http::Method::POST,
                "sys/wrapping/wrap",
                Some(data),
                op,
                self.token(),
                Some(ttl_secs),
            )
            .await?
            .ok_or_else(|| Error::Response {
                op: op.into(),
                message: "empty response".into(),
            })?;
        let info = v.get("wrap_info").cloned().unwrap_or(Value::Null);
        let token = info.get("token").and_then(Value::as_str).unwrap_or("");
        if token.is_empty() {
            return Err(Error::Response {
                op: op.into(),
                message: "no wrap_info.token in the response".into(),
            });
        }
        Ok(Wrapped {
            token: token.to_string(),
            ttl_secs: info.get("ttl").and_then(Value::as_u64).unwrap_or(ttl_secs),
        })
    }

    /// Unwraps a wrapping token (which Vault then forgets). `Ok(None)` when
    /// Vault does not know the token: already unwrapped, revoked, expired,
    /// or never issued by this Vault.
    pub async fn unwrap(&self, wrapping_token: &str) -> Result<Option<Value>> {
        let op = "unwrap";
        match self
            .call_as(
                http::Method::POST,
                "sys/wrapping/unwrap",
                None,
                op,
                wrapping_token,
                None,
            )
            .await
        {
            Ok(Some((v, _))) => Ok(Some(v.get("data").cloned().unwrap_or(Value::Null))),
            Ok(None) => Err(Error::Response {
                op: op.into(),
                message: "empty response".into(),
            }),
            Err(Error::Api {
                status: 400 | 403, ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Looks a lease up (`sys/leases/lookup`): its remaining TTL, or
    /// `Ok(None)` when Vault no longer has it (revoked or expired).
    pub async fn lookup_lease(&self, lease_id: &str) -> Result<Option<u64>> {
        let body = serde_json::json!({ "lease_id": lease_id });
        match self
            .call(
                http::Method::PUT,
                "sys/leases/lookup",
                Some(&body),
                "lease lookup",
            )
            .await
        {
            Ok(Some(v)) => Ok(v
                .get("data")
                .and_then(|d| d.get("ttl"))
                .and_then(Value::as_u64)),
            Ok(None) => Ok(None),
            Err(Error::Api {
                status: 400 | 403, ..
            })
            | Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Renews a lease; returns the new duration, which Vault caps at the
    /// lease's max TTL.
    pub async fn renew_lease(&self, lease: &Lease) -> Result<u64> {
        let body = serde_json::json!({
            "lease_id": lease.id,
            "increment": lease.duration_secs,
        });
        let op = "lease renewal";
        let v = self
            .call(http::Method::PUT, "sys/leases/renew", Some(&body), op)
            .await?
            .ok_or_else(|| Error::Response {
                op: op.into(),
                message: "empty response".into(),
            })?;
        v.get("lease_duration")
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::Response {
                op: op.into(),
                message: "no lease_duration in the response".into(),
            })
    }

    /// Reads a secret. KV v2 paths may be written with or without the
    /// `data/` segment; the engine is found the way Vault's CLI does it.
    pub async fn read(&mut self, path: &str) -> Result<Secret> {
        self.read_version(path, None).await
    }

    /// Reads a secret, pinned to a KV v2 version when `version` is set
    /// (`vault:PATH#KEY#VERSION` references).
    pub async fn read_version(&mut self, path: &str, version: Option<u64>) -> Result<Secret> {
        self.resolve(path).await?;
        self.read_resolved_version(path, version).await
    }

    /// Finds (and caches) the mount serving `path`, so that reads of many
    /// paths can then run concurrently through [`Vault::read_resolved`].
    pub async fn resolve(&mut self, path: &str) -> Result<()> {
        self.mount_of(path.trim_matches('/')).await.map(|_| ())
    }

    /// Reads a secret whose mount was looked up by [`Vault::resolve`] (an
    /// unknown mount reads as a plain logical path).
    pub async fn read_resolved(&self, path: &str) -> Result<Secret> {
        self.read_resolved_version(path, None).await
    }

    /// [`Vault::read_resolved`] pinned to a KV v2 version. A version on any
    /// other engine is an error rather than being silently ignored.
    pub async fn read_resolved_version(&self, path: &str, version: Option<u64>) -> Result<Secret> {
        let path = path.trim_matches('/');
        let mount = self.cached_mount(path).unwrap_or(Mount {
            path: String::new(),
            engine: Engine::Logical,
        });
        let op = format!("read of {path}");
        if version.is_some() && mount.engine != Engine::KvV2 {
            return Err(Error::Response {
                op,
                message: "a version was requested but the path is not on a KV v2 engine".into(),
            });
        }
        match mount.engine {
            Engine::KvV2 => {
                let rel = path.strip_prefix(mount.path.as_str()).unwrap_or(path);
                let rel = rel.strip_prefix("data/").unwrap_or(rel);
                let api_path = match version {
                    Some(v) => format!("{}data/{rel}?version={v}", mount.path),
                    None => format!("{}data/{rel}", mount.path),
                };
                let (v, text) = self
                    .call_text(http::Method::GET, &api_path, None, &op)
                    .await?
                    .ok_or_else(|| Error::NotFound { path: path.into() })?;
                let inner = v.get("data").cloned().unwrap_or(Value::Null);
                // A deleted or destroyed version reads as `data: null`.
                let data = exact_data(&text, &["data", "data"], &op)?
                    .ok_or_else(|| Error::NotFound { path: path.into() })?;
                Ok(Secret {
                    data,
                    metadata: inner.get("metadata").cloned().unwrap_or(Value::Null),
                    lease: None,
                    engine: Engine::KvV2,
                })
            }
            engine => {
                let (v, text) = self
                    .call_text(http::Method::GET, path, None, &op)
                    .await?
                    .ok_or_else(|| Error::NotFound { path: path.into() })?;
                logical_secret(&v, &text, op, engine)
            }
        }
    }

    /// A write whose response is the secret, as consul-template's `secret
    /// "PATH" "k=v"` makes it (e.g. `pki/issue/ROLE` with `common_name`):
    /// each call returns new data (a new certificate).
    pub async fn write(&self, path: &str, params: &BTreeMap<String, String>) -> Result<Secret> {
        let path = path.trim_matches('/');
        let op = format!("write to {path}");
        let body = serde_json::to_value(params).expect("a string map serializes");
        let (v, text) = self
            .call_text(http::Method::PUT, path, Some(&body), &op)
            .await?
            .ok_or_else(|| Error::Response {
                op: op.clone(),
                message: "the write returned no secret (HTTP 204)".into(),
            })?;
        logical_secret(&v, &text, op, Engine::Logical)
    }

    /// Finds the mount serving `path` (cached). A token that may not ask
    /// (older servers, restrictive policies) falls back to a plain read.
    async fn mount_of(&mut self, path: &str) -> Result<Mount> {
        if let Some(m) = self.cached_mount(path) {
            return Ok(m);
        }
        let op = format!("mount lookup for {path}");
        let found = match self
            .call(
                http::Method::GET,
                &format!("sys/internal/ui/mounts/{path}"),
                None,
                &op,
            )
            .await
        {
            Ok(Some(v)) => {
                let d = v.get("data").cloned().unwrap_or(Value::Null);
                let mpath = d
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let kind = d.get("type").and_then(Value::as_str).unwrap_or("");
                let version = d
                    .get("options")
                    .and_then(|o| o.get("version"))
                    .and_then(Value::as_str)
                    .unwrap_or("1");
                let engine = match (kind, version) {
                    ("kv" | "generic", "2") => Engine::KvV2,
                    ("kv" | "generic", _) => Engine::KvV1,
                    _ => Engine::Logical,
                };
                Mount {
                    path: mpath,
                    engine,
                }
            }
            Err(e) if e.is_transient() => return Err(e),
            Err(e) if e.is_forbidden() => {
                // Either no capability on the lookup (fall back) or a dead
                // token; the read that follows tells which, so do not cache.
                return Ok(Mount {
                    path: String::new(),
                    engine: Engine::Logical,
                });
            }
            Ok(None) | Err(_) => Mount {
                path: String::new(),
                engine: Engine::Logical,
            },
        };
        if !found.path.is_empty() {
            self.mounts.insert(found.path.clone(), found.clone());
        }
        Ok(found)
    }

    /// Vault refuses mounts nested in other mounts, so the cached mount whose
    /// path prefixes `path` is the one serving it.
    fn cached_mount(&self, path: &str) -> Option<Mount> {
        let with_slash = format!("{path}/");
        self.mounts
            .values()
            .find(|m| with_slash.starts_with(&m.path))
            .cloned()
    }

    /// One raw API call through vaultrs' HTTP client. `Ok(None)` for 204.
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
        op: &str,
    ) -> Result<Option<Value>> {
        Ok(self
            .call_text(method, path, body, op)
            .await?
            .map(|(v, _)| v))
    }

    /// [`Vault::call`] that also returns the body's text, for readers that
    /// need numbers exactly as sent.
    async fn call_text(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
        op: &str,
    ) -> Result<Option<(Value, String)>> {
        self.call_as(method, path, body, op, self.token(), None)
            .await
    }

    /// [`Vault::call_text`] with another token (a wrapping token) and an
    /// optional response-wrapping TTL.
    async fn call_as(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
        op: &str,
        token: &str,
        wrap_ttl_secs: Option<u64>,
    ) -> Result<Option<(Value, String)>> {
        let url = format!(
            "{}/v1/{}",
            self.client.http.base.trim_end_matches('/'),
            path
        );
        let mut req = self
            .client
            .http
            .http
            .request(method, url)
            .header("X-Vault-Request", "true");
        if !token.is_empty() {
            req = req.header("X-Vault-Token", token);
        }
        if let Some(ttl) = wrap_ttl_secs {
            req = req.header("X-Vault-Wrap-TTL", format!("{ttl}s"));
        }
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns.as_str());
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(b).expect("JSON value serializes"));
        }
        let unreachable = |e: &dyn std::error::Error| Error::Unreachable {
            addr: self.addr.clone(),
            op: op.into(),
            message: chain(e),
        };
        let resp = req.send().await.map_err(|e| unreachable(&e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| unreachable(&e))?;
        if status == 204 {
            return Ok(None);
        }
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        if (200..300).contains(&status) {
            return parsed
                .map(|v| Some((v, text)))
                .ok_or_else(|| Error::Response {
                    op: op.into(),
                    message: format!("HTTP {status} with a body that is not JSON"),
                });
        }
        let errors: Vec<String> = parsed
            .as_ref()
            .and_then(|v| v.get("errors"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if status == 404 && errors.is_empty() {
            return Err(Error::NotFound {
                path: path.to_string(),
            });
        }
        Err(Error::Api {
            op: op.into(),
            status,
            errors: join_errors(&errors),
        })
    }
}

/// A read or write response of a non-KV engine: its `data` (numbers kept
/// exact) and its lease, if it has one.
fn logical_secret(v: &Value, text: &str, op: String, engine: Engine) -> Result<Secret> {
    let Some(data) = exact_data(text, &["data"], &op)? else {
        return Err(Error::Response {
            op,
            message: "the response has no data object".into(),
        });
    };
    let lease_id = v.get("lease_id").and_then(Value::as_str).unwrap_or("");
    let lease = (!lease_id.is_empty()).then(|| Lease {
        id: lease_id.to_string(),
        duration_secs: v.get("lease_duration").and_then(Value::as_u64).unwrap_or(0),
        renewable: v.get("renewable").and_then(Value::as_bool).unwrap_or(false),
    });
    Ok(Secret {
        data,
        metadata: Value::Null,
        lease,
        engine,
    })
}

fn read_trimmed(what: &'static str, path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| Error::File {
            what,
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_validated_before_vaultrs_sees_them() {
        assert!(validate_address("http://127.0.0.1:8200").is_ok());
        assert!(validate_address("https://vault.vault.svc:8200/").is_ok());
        for bad in ["vault:8200", "127.0.0.1:8200", "", "ftp://x", "http://"] {
            assert!(validate_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vault_error_lists_are_flattened() {
        let e = join_errors(&["1 error occurred:\n\t* permission denied\n\n".into()]);
        assert_eq!(e, "permission denied");
        assert_eq!(join_errors(&[]), "no error message");
        assert_eq!(
            join_errors(&["role \"x\" not found".into(), "b".into()]),
            "role \"x\" not found; b"
        );
    }

    #[test]
    fn transient_and_forbidden_are_told_apart() {
        let api = |status| Error::Api {
            op: "x".into(),
            status,
            errors: String::new(),
        };
        assert!(api(503).is_transient());
        assert!(api(429).is_transient());
        assert!(!api(403).is_transient());
        assert!(api(403).is_forbidden());
        assert!(!Error::NotFound { path: "p".into() }.is_transient());
    }
}
