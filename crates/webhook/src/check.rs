//! `vault-injector check-webhook`: what `helm test` runs, from the project's
//! own image (no shell, no curl): a harmless dry-run AdmissionReview through
//! the Service, over the chain of trust the API server uses, and optionally
//! the admin port's `/readyz`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The webhook's `/mutate` URL, e.g. `https://rel-vault-injector.ns.svc:443/mutate`.
    #[arg(long, env = "VAULT_INJECTOR_CHECK_URL")]
    pub url: String,
    /// PEM CA bundle to trust (e.g. the TLS Secret's `ca.crt`). Skipped when
    /// missing or empty, so the chart can mount an optional Secret item.
    #[arg(long, env = "VAULT_INJECTOR_CHECK_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Base64 of a PEM CA bundle (the chart's `tls.secret.caBundle`), used
    /// when `--ca-file` gives none.
    #[arg(long, env = "VAULT_INJECTOR_CHECK_CA_BUNDLE")]
    pub ca_bundle: Option<String>,
    /// Plain-HTTP readiness URL to check first, e.g. `http://host:9090/readyz`.
    #[arg(long, env = "VAULT_INJECTOR_CHECK_READYZ")]
    pub readyz: Option<String>,
    /// Timeout of each request.
    #[arg(long, default_value = "10s", env = "VAULT_INJECTOR_CHECK_TIMEOUT")]
    pub timeout: humantime::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading --ca-file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--ca-bundle is not base64: {0}")]
    CaBase64(base64::DecodeError),
    #[error("CA bundle holds no PEM certificate: {0}")]
    CaPem(reqwest::Error),
    #[error("{url}: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("{url}: HTTP {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("{url}: the answer is not an AdmissionReview for our request: {detail}")]
    Answer { url: String, detail: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

const UID: &str = "vault-injector-check";

/// A pod without the inject annotation, as dry run: the webhook must allow
/// it unchanged and write nothing anywhere.
fn review() -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "vault-injector-check"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "vault-injector-check", "namespace": "default"},
                "spec": {"containers": [{"name": "app", "image": "app"}]}
            },
            "dryRun": true
        }
    })
}

fn ca_pem(args: &CheckArgs) -> Result<Option<Vec<u8>>> {
    if let Some(path) = &args.ca_file {
        match std::fs::read(path) {
            Ok(pem) if !pem.iter().all(u8::is_ascii_whitespace) => return Ok(Some(pem)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::CaFile {
                    path: path.clone(),
                    source,
                })
            }
        }
    }
    match args.ca_bundle.as_deref().map(str::trim) {
        Some(b64) if !b64.is_empty() => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Some)
            .map_err(Error::CaBase64),
        _ => Ok(None),
    }
}

async fn check(args: &CheckArgs) -> Result<()> {
    let timeout: Duration = args.timeout.into();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout);
    if let Some(pem) = ca_pem(args)? {
        builder = builder.tls_built_in_root_certs(false);
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(Error::CaPem)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    let client = builder.build().map_err(|source| Error::Request {
        url: args.url.clone(),
        source,
    })?;
    if let Some(url) = &args.readyz {
        let res = client
            .get(url)
            .send()
            .await
            .map_err(|source| Error::Request {
                url: url.clone(),
                source,
            })?;
        if !res.status().is_success() {
            return Err(Error::Status {
                url: url.clone(),
                status: res.status(),
            });
        }
        eprintln!("{url}: ready");
    }
    let url = &args.url;
    let request = |source| Error::Request {
        url: url.clone(),
        source,
    };
    let res = client
        .post(url)
        .json(&review())
        .send()
        .await
        .map_err(request)?;
    if !res.status().is_success() {
        return Err(Error::Status {
            url: url.clone(),
            status: res.status(),
        });
    }
    let answer: Value = res.json().await.map_err(request)?;
    let response = &answer["response"];
    let detail = if response["uid"] != UID {
        Some(format!("uid {} instead of {UID:?}", response["uid"]))
    } else if response["allowed"] != true {
        Some(format!("not allowed: {}", response["status"]))
    } else if response.get("patch").is_some() {
        Some("a pod without the inject annotation was patched".into())
    } else {
        None
    };
    if let Some(detail) = detail {
        return Err(Error::Answer {
            url: url.clone(),
            detail,
        });
    }
    eprintln!("{url}: dry-run AdmissionReview allowed, unchanged");
    Ok(())
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let rt = vault_injector_agent::cli::current_thread()?;
    rt.block_on(check(&args))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(ca_file: Option<PathBuf>, ca_bundle: Option<&str>) -> CheckArgs {
        CheckArgs {
            url: "https://webhook.test/mutate".into(),
            ca_file,
            ca_bundle: ca_bundle.map(str::to_string),
            readyz: None,
            timeout: Duration::from_secs(1).into(),
        }
    }

    #[test]
    fn the_ca_comes_from_the_file_then_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.crt");
        let b64 = base64::engine::general_purpose::STANDARD.encode("BUNDLE");

        std::fs::write(&file, "FILE").unwrap();
        let got = ca_pem(&args(Some(file.clone()), Some(&b64))).unwrap();
        assert_eq!(got.as_deref(), Some(&b"FILE"[..]));

        // The chart mounts an optional Secret item: missing or blank falls
        // back to the caBundle value.
        std::fs::write(&file, " \n").unwrap();
        let got = ca_pem(&args(Some(file.clone()), Some(&b64))).unwrap();
        assert_eq!(got.as_deref(), Some(&b"BUNDLE"[..]));
        let missing = dir.path().join("none");
        let got = ca_pem(&args(Some(missing.clone()), Some(&b64))).unwrap();
        assert_eq!(got.as_deref(), Some(&b"BUNDLE"[..]));

        assert_eq!(ca_pem(&args(Some(missing), Some(""))).unwrap(), None);
        assert!(matches!(
            ca_pem(&args(None, Some("not base64!"))),
            Err(Error::CaBase64(_))
        ));
    }

    #[test]
    fn the_review_is_a_harmless_dry_run() {
        let r = review();
        assert_eq!(r["request"]["uid"], UID);
        assert_eq!(r["request"]["dryRun"], true);
        assert!(r["request"]["object"]["metadata"]
            .get("annotations")
            .is_none());
    }
}
