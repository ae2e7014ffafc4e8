//! `vault-injector certs`: a CA and a serving certificate for local use.
//!
//! For a laptop, the demo and tests. In a cluster, use cert-manager, a given
//! Secret, or the chart's self-managed certificates.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rcgen::{Issuer, KeyPair, KeyUsagePurpose};

use crate::autotls::pki;

#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Output directory (created if missing).
    #[arg(long, env = "VAULT_INJECTOR_CERTS_OUT")]
    pub out: PathBuf,
    /// DNS name or IP the serving certificate is for (repeatable).
    #[arg(
        long = "host",
        required = true,
        env = "VAULT_INJECTOR_CERTS_HOST",
        value_delimiter = ','
    )]
    pub hosts: Vec<String>,
    /// Overwrite existing files in the output directory.
    #[arg(long, env = "VAULT_INJECTOR_CERTS_FORCE")]
    pub force: bool,
    /// Validity of both certificates, in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650), env = "VAULT_INJECTOR_CERTS_DAYS")]
    pub days: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--host {host:?} is neither an IP address nor a valid DNS name")]
    BadHost { host: String },
    #[error("at least one --host is required")]
    NoHost,
    #[error("{path} already exists (pass --force to overwrite)")]
    Exists { path: PathBuf },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A CA and a serving certificate it signed, all PEM.
pub struct Bundle {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

/// The files `certs` writes, and whether each holds a private key.
pub const FILES: [(&str, bool); 4] = [
    ("ca.crt", false),
    ("ca.key", true),
    ("tls.crt", false),
    ("tls.key", true),
];

fn check_host(host: &str) -> Result<()> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let name = host.strip_prefix("*.").unwrap_or(host);
    if host.len() <= 253 && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(Error::BadHost {
            host: host.to_owned(),
        })
    }
}

/// Generates a fresh CA (ECDSA P-256) and a serving certificate for `hosts`
/// (DNS names and IP addresses), valid for `days`.
pub fn generate(hosts: &[String], days: u32) -> Result<Bundle> {
    if hosts.is_empty() {
        return Err(Error::NoHost);
    }
    for h in hosts {
        check_host(h)?;
    }
    let now = time::OffsetDateTime::now_utc();
    // A little backdating absorbs clock skew between laptop and cluster.
    let not_before = now - time::Duration::minutes(5);
    let not_after = now + time::Duration::days(i64::from(days));

    let ca_key = KeyPair::generate()?;
    let ca = pki::ca_params("vault-injector local CA", not_before, not_after);
    let ca_cert = ca.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let leaf = pki::serving_params(
        hosts,
        vec![KeyUsagePurpose::DigitalSignature],
        not_before,
        not_after,
    )?;
    let ca_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);
    let cert = leaf.signed_by(&key, &issuer)?;

    Ok(Bundle {
        ca_cert: ca_cert.pem(),
        ca_key: ca_pem,
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn write_file(path: &Path, contents: &str, private: bool, force: bool) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(if private { 0o600 } else { 0o644 });
    if force {
        opts.create(true).truncate(true);
    } else {
        // create_new: no window between "does it exist" and "write it".
        opts.create_new(true);
    }
    let mut f = opts.open(path).map_err(err)?;
    if private {
        // `mode` only applies to new files; an overwritten key file may have
        // been readable by others.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    f.write_all(contents.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Writes a bundle into `out` (created if needed).
pub fn write(out: &Path, bundle: &Bundle, force: bool) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|source| Error::Write {
        path: out.to_owned(),
        source,
    })?;
    if !force {
        // Refuse before writing anything, so a refusal leaves no half set.
        for (name, _) in FILES {
            let path = out.join(name);
            if path.exists() {
                return Err(Error::Exists { path });
            }
        }
    }
    let contents = [&bundle.ca_cert, &bundle.ca_key, &bundle.cert, &bundle.key];
    for ((name, private), text) in FILES.into_iter().zip(contents) {
        write_file(&out.join(name), text, private, force)?;
    }
    Ok(())
}

pub fn run(args: CertsArgs) -> anyhow::Result<ExitCode> {
    let CertsArgs {
        out,
        hosts,
        force,
        days,
    } = args;
    let bundle = generate(&hosts, days)?;
    write(&out, &bundle, force)?;
    eprintln!(
        "wrote {dir}/ca.crt, ca.key, tls.crt, tls.key for {hosts} (valid {days} days)",
        dir = out.display(),
        hosts = hosts.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_a_chain_that_verifies_for_dns_and_ip_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["webhook.ns.svc".to_string(), "127.0.0.1".to_string()];
        write(dir.path(), &generate(&hosts, 30).unwrap(), false).unwrap();

        for (name, private) in FILES {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, if private { 0o600 } else { 0o644 }, "{name}");
        }

        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime};
        let ca = CertificateDer::from_pem_file(dir.path().join("ca.crt")).unwrap();
        let leaf = CertificateDer::from_pem_file(dir.path().join("tls.crt")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let verify = |name: &str| {
            verifier.verify_server_cert(
                &leaf,
                &[],
                &ServerName::try_from(name.to_string()).unwrap(),
                &[],
                UnixTime::now(),
            )
        };
        verify("webhook.ns.svc").unwrap();
        verify("127.0.0.1").unwrap();
        assert!(verify("other.example").is_err());
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["localhost".to_string()];
        write(dir.path(), &generate(&hosts, 1).unwrap(), false).unwrap();
        let before = std::fs::read(dir.path().join("tls.key")).unwrap();
        let err = write(dir.path(), &generate(&hosts, 1).unwrap(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ca.crt") && err.contains("--force"), "{err}");
        assert_eq!(std::fs::read(dir.path().join("tls.key")).unwrap(), before);
        write(dir.path(), &generate(&hosts, 1).unwrap(), true).unwrap();
        assert_ne!(std::fs::read(dir.path().join("tls.key")).unwrap(), before);
    }

    #[test]
    fn bad_hosts_are_named() {
        for bad in ["", "a..b", "-x.example", "sp ace", "x_y.example"] {
            let err = generate(&[bad.to_string()], 1)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("--host"), "{bad:?}: {err}");
        }
        assert!(generate(&["::1".into(), "*.svc.local".into()], 1).is_ok());
    }
}
