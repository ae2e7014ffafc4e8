//! Serving certificate: loading, validation and hot reload.
//!
//! Kubernetes updates a mounted Secret by writing a new timestamped directory
//! and atomically repointing the `..data` symlink; `tls.crt` and `tls.key`
//! are symlinks through `..data`. Watching the mtime of `tls.crt` itself
//! misses that swap (the symlink never changes), so the reloader re-reads both
//! files on an interval and compares a digest of their contents. A new pair
//! that does not parse, or whose key does not match the certificate, is
//! logged and counted, and the previous pair keeps serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::metrics::{Metrics, ReloadResult};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not a valid PEM certificate chain: {message}")]
    BadCertificate { path: PathBuf, message: String },
    #[error("{path} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {message}")]
    BadKey { path: PathBuf, message: String },
    #[error("private key {key} does not belong to certificate {cert}: {message}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("building the TLS server configuration: {0}")]
    Config(#[from] rustls::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the pair lives on disk.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    digest: [u8; 32],
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

fn digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((cert.len() as u64).to_be_bytes());
    h.update(cert);
    h.update(key);
    h.finalize().into()
}

/// Parses and checks a certificate chain and its key.
fn parse(
    paths: &TlsPaths,
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::BadCertificate {
            path: paths.cert.clone(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(Error::NoCertificate {
            path: paths.cert.clone(),
        });
    }
    // The key error never includes the key bytes, only what kind of problem.
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Error::BadKey {
        path: paths.key.clone(),
        message: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| Error::Mismatch {
        cert: paths.cert.clone(),
        key: paths.key.clone(),
        message: e.to_string(),
    })
}

/// The current serving certificate, shared by the TLS acceptor (readers on
/// every handshake) and the reloader (a rare writer).
pub struct CertStore {
    paths: TlsPaths,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    sessions: Arc<Sessions>,
    /// Digest of the last pair looked at, good or bad, so a bad pair is
    /// reported once rather than on every poll.
    seen: RwLock<[u8; 32]>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads and validates the pair; fails if it is unusable, so the server
    /// refuses to start (and bind) with bad material.
    pub fn load(paths: TlsPaths) -> Result<Arc<Self>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = Self::read_pair(&paths, &provider)?;
        Ok(Arc::new(Self {
            paths,
            provider,
            current: RwLock::new(loaded.key),
            sessions: Arc::new(Sessions::new()),
            seen: RwLock::new(loaded.digest),
        }))
    }

    fn read_pair(paths: &TlsPaths, provider: &CryptoProvider) -> Result<Loaded> {
        let cert = read(&paths.cert)?;
        let key = read(&paths.key)?;
        let digest = digest(&cert, &key);
        let key = Arc::new(parse(paths, &cert, &key, provider)?);
        Ok(Loaded { key, digest })
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// When the served leaf certificate expires (Unix seconds), for the
    /// expiry metric. `None` if it cannot be parsed as X.509 (rustls
    /// accepted it, so this does not happen in practice).
    pub fn not_after(&self) -> Option<i64> {
        let current = self.current();
        let leaf = current.cert.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
        Some(cert.validity().not_after.timestamp())
    }

    /// Re-reads the files. `Ok(false)`: unchanged; `Ok(true)`: a new pair is
    /// now served; `Err`: the files changed but the new pair is unusable
    /// (the old one stays).
    pub fn reload(&self) -> Result<bool> {
        let cert = read(&self.paths.cert)?;
        let key = read(&self.paths.key)?;
        let d = digest(&cert, &key);
        {
            let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
            if *seen == d {
                return Ok(false);
            }
            *seen = d;
        }
        let new = Arc::new(parse(&self.paths, &cert, &key, &self.provider)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = new;
        self.sessions.clear();
        Ok(true)
    }

    /// A rustls server config that serves whatever pair is current, over
    /// HTTP/2 or HTTP/1.1.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        cfg.session_storage = self.sessions.clone();
        Ok(cfg)
    }

    /// Polls the files every `interval` until the task is dropped. Reads
    /// are tiny, so they are done inline rather than on the blocking pool.
    pub async fn watch(
        self: Arc<Self>,
        interval: Duration,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut unreadable = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            let result = self.reload();
            if unreadable && !matches!(result, Err(Error::Read { .. })) {
                unreadable = false;
                tracing::info!("certificate files readable again");
            }
            match result {
                Ok(false) => {}
                Ok(true) => {
                    metrics.tls_reload(ReloadResult::Success);
                    if let Some(t) = self.not_after() {
                        metrics.tls_not_after(t);
                    }
                    tracing::info!(
                        cert = %self.paths.cert.display(),
                        "serving certificate reloaded"
                    );
                }
                Err(e @ Error::Read { .. }) => {
                    // Reported once per outage, not at every poll.
                    if !unreadable {
                        unreadable = true;
                        tracing::warn!(
                            error = %e,
                            "certificate files not readable; still serving the previous pair"
                        );
                    }
                }
                Err(e) => {
                    metrics.tls_reload(ReloadResult::Error);
                    tracing::warn!(
                        error = %e,
                        "new certificate rejected; still serving the previous one"
                    );
                }
            }
        }
    }
}

/// Session resumption cache that is emptied when the certificate changes.
/// A resumed session skips the certificate, so without this a client could
/// keep "connecting" to the old certificate after a rotation (for example one
/// rotated because its CA was replaced) for as long as its tickets live.
struct Sessions(RwLock<Arc<ServerSessionMemoryCache>>);

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Sessions").finish()
    }
}

impl Sessions {
    const SIZE: usize = 1024;

    fn new() -> Self {
        Self(RwLock::new(ServerSessionMemoryCache::new(Self::SIZE)))
    }

    fn cache(&self) -> Arc<ServerSessionMemoryCache> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn clear(&self) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) =
            ServerSessionMemoryCache::new(Self::SIZE);
    }
}

impl StoresServerSessions for Sessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.cache().put(key, value)
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.cache().get(key)
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.cache().take(key)
    }
    fn can_cache(&self) -> bool {
        true
    }
}

struct Resolver(Arc<CertStore>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Resolver").finish()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(host: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(dir: &Path, cert: &str, key: &str) -> TlsPaths {
        let paths = TlsPaths {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        std::fs::write(&paths.cert, cert).unwrap();
        std::fs::write(&paths.key, key).unwrap();
        paths
    }

    #[test]
    fn bad_material_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair("a.example");
        let (_, other_key) = pair("b.example");

        let paths = write(dir.path(), "not pem", &key);
        let err = CertStore::load(paths).unwrap_err().to_string();
        assert!(err.contains("tls.crt") && err.contains("no PEM"), "{err}");

        let paths = write(dir.path(), &cert, "garbage");
        let err = CertStore::load(paths).unwrap_err().to_string();
        assert!(err.contains("tls.key"), "{err}");

        let paths = write(dir.path(), &cert, &other_key);
        let err = CertStore::load(paths).unwrap_err().to_string();
        assert!(err.contains("does not belong"), "{err}");

        let err = CertStore::load(TlsPaths {
            cert: dir.path().join("missing.crt"),
            key: dir.path().join("tls.key"),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("missing.crt"), "{err}");
    }

    #[test]
    fn reload_swaps_good_pairs_and_keeps_the_old_one_on_bad_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = pair("a.example");
        let paths = write(dir.path(), &c1, &k1);
        let store = CertStore::load(paths.clone()).unwrap();
        let first = store.current().cert[0].clone();
        assert!(!store.reload().unwrap(), "unchanged files are not a reload");

        let (c2, k2) = pair("a.example");
        write(dir.path(), &c2, &k1);
        assert!(store.reload().is_err(), "mismatched pair must be rejected");
        assert_eq!(store.current().cert[0], first);
        assert!(!store.reload().unwrap(), "a rejected pair is reported once");

        write(dir.path(), &c2, &k2);
        assert!(store.reload().unwrap());
        assert_ne!(store.current().cert[0], first);
        let not_after = store.not_after().unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(not_after > now, "{not_after} <= {now}");
    }
}
