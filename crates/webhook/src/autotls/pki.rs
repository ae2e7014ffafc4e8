//! The certificate authority and serving certificate the webhook manages for
//! itself: what is in the Secret, when to renew, how to issue. Pure functions
//! of (material, policy, now); no I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::OffsetDateTime;
use x509_parser::pem::Pem;

use super::{Error, Result};

/// Keys of the Secret (and, for the last two, the files in the cert dir).
pub const CA_CERT_KEY: &str = "ca.crt";
pub const CA_KEY_KEY: &str = "ca.key";
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";

/// Lifetimes and margins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub ca_validity: Duration,
    pub cert_validity: Duration,
    /// Renew the serving certificate when less than this is left.
    pub renew_before: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Self {
            ca_validity: Duration::from_secs(5 * 365 * DAY),
            cert_validity: Duration::from_secs(365 * DAY),
            renew_before: Duration::from_secs(30 * DAY),
        }
    }
}

impl Policy {
    /// The CA is rotated when less than this is left, so every serving
    /// certificate it signed (at most `cert_validity` long) expires before it
    /// does, and the old CA stays trusted for as long as it is needed.
    pub fn ca_renew_before(&self) -> Duration {
        self.cert_validity + self.renew_before
    }

    pub fn validate(&self) -> Result<()> {
        if self.renew_before >= self.cert_validity {
            return Err(Error::Policy(format!(
                "renew-before ({}) must be shorter than the certificate validity ({})",
                humantime::format_duration(self.renew_before),
                humantime::format_duration(self.cert_validity)
            )));
        }
        if self.ca_renew_before() >= self.ca_validity {
            return Err(Error::Policy(format!(
                "CA validity ({}) must exceed certificate validity plus renew-before ({})",
                humantime::format_duration(self.ca_validity),
                humantime::format_duration(self.ca_renew_before())
            )));
        }
        Ok(())
    }
}

/// What the Secret holds. `ca_pem` is a bundle: the current CA (whose key is
/// `ca_key_pem`) first, then older CAs kept while certificates they signed
/// may still be served.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    pub ca_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for TlsMaterial {
    // Private keys never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Reads the four keys of a Secret's data; `None` if any is missing.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Option<Self> {
        let get = |k: &str| {
            data.get(k)
                .and_then(|v| String::from_utf8(v.clone()).ok())
                .filter(|s| !s.trim().is_empty())
        };
        Some(Self {
            ca_pem: get(CA_CERT_KEY)?,
            ca_key_pem: get(CA_KEY_KEY)?,
            cert_pem: get(TLS_CERT_KEY)?,
            key_pem: get(TLS_KEY_KEY)?,
        })
    }

    pub fn to_secret_data(&self) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([
            (CA_CERT_KEY.to_string(), self.ca_pem.clone().into_bytes()),
            (CA_KEY_KEY.to_string(), self.ca_key_pem.clone().into_bytes()),
            (TLS_CERT_KEY.to_string(), self.cert_pem.clone().into_bytes()),
            (TLS_KEY_KEY.to_string(), self.key_pem.clone().into_bytes()),
        ])
    }
}

/// What the leader must do with the Secret's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Valid: no write.
    Keep,
    /// Issue a new serving certificate with the current CA.
    RenewCert { reason: String },
    /// New CA (old one kept in the bundle) and a serving certificate from it.
    RotateCa { reason: String },
    /// Nothing usable: a new CA and serving certificate.
    Create { reason: String },
}

/// The facts about one certificate that decisions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_after: OffsetDateTime,
    pub subject_raw: Vec<u8>,
    pub issuer_raw: Vec<u8>,
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    pub spki: Vec<u8>,
}

/// Parses every certificate of a PEM bundle, in order.
pub fn parse_pem_bundle(pem: &str) -> Result<Vec<CertInfo>> {
    let mut out = Vec::new();
    for item in Pem::iter_from_buffer(pem.as_bytes()) {
        let item = item.map_err(|e| Error::Pem(e.to_string()))?;
        if item.label != "CERTIFICATE" {
            continue;
        }
        let cert = item.parse_x509().map_err(|e| Error::Pem(e.to_string()))?;
        let dns_names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(CertInfo {
            not_after: cert.validity().not_after.to_datetime(),
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_string),
            dns_names,
            spki: cert.public_key().raw.to_vec(),
        });
    }
    if out.is_empty() {
        return Err(Error::Pem("no certificate in PEM data".into()));
    }
    Ok(out)
}

/// True when a certificate expiring at `not_after` must be replaced now.
pub fn needs_renewal(
    not_after: OffsetDateTime,
    now: OffsetDateTime,
    renew_before: Duration,
) -> bool {
    not_after - now <= renew_before
}

/// DNS names the serving certificate must cover: how the API server reaches
/// a Service, in every form.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Decides what the leader does with the Secret's current content.
pub fn plan(
    material: Option<&TlsMaterial>,
    dns_names: &[String],
    policy: &Policy,
    now: OffsetDateTime,
) -> Plan {
    let Some(m) = material else {
        return Plan::Create {
            reason: "no TLS Secret yet".into(),
        };
    };
    let cas = match parse_pem_bundle(&m.ca_pem) {
        Ok(c) => c,
        Err(e) => {
            return Plan::Create {
                reason: format!("{CA_CERT_KEY} unreadable: {e}"),
            }
        }
    };
    let ca = &cas[0];
    match KeyPair::from_pem(&m.ca_key_pem) {
        Ok(k) if rcgen::PublicKeyData::subject_public_key_info(&k) == ca.spki => {}
        _ => {
            return Plan::Create {
                reason: format!("{CA_KEY_KEY} is unreadable or does not match {CA_CERT_KEY}"),
            }
        }
    }
    if needs_renewal(ca.not_after, now, policy.ca_renew_before()) {
        return Plan::RotateCa {
            reason: format!("CA expires at {}", ca.not_after),
        };
    }
    let cert = match parse_pem_bundle(&m.cert_pem).map(|c| c.into_iter().next()) {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Plan::RenewCert {
                reason: format!("{TLS_CERT_KEY} holds no certificate"),
            }
        }
        Err(e) => {
            return Plan::RenewCert {
                reason: format!("{TLS_CERT_KEY} unreadable: {e}"),
            }
        }
    };
    match KeyPair::from_pem(&m.key_pem) {
        Ok(k) if rcgen::PublicKeyData::subject_public_key_info(&k) == cert.spki => {}
        _ => {
            return Plan::RenewCert {
                reason: format!("{TLS_KEY_KEY} is unreadable or does not match {TLS_CERT_KEY}"),
            }
        }
    }
    if needs_renewal(cert.not_after, now, policy.renew_before) {
        return Plan::RenewCert {
            reason: format!("serving certificate expires at {}", cert.not_after),
        };
    }
    if let Err(reason) = verify_chain(&m.ca_pem, &m.cert_pem, dns_names, now) {
        return Plan::RenewCert { reason };
    }
    Plan::Keep
}

/// Checks, as a TLS client would, that the serving certificate chains to the
/// CURRENT CA (first in the bundle) for every name the Service answers to.
fn verify_chain(
    ca_pem: &str,
    cert_pem: &str,
    dns_names: &[String],
    now: OffsetDateTime,
) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let first_der = |pem: &str| {
        Pem::iter_from_buffer(pem.as_bytes())
            .flatten()
            .find(|p| p.label == "CERTIFICATE")
            .map(|p| CertificateDer::from(p.contents))
    };
    let (Some(ca), Some(leaf)) = (first_der(ca_pem), first_der(cert_pem)) else {
        return Err("no certificate to verify".into());
    };
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca)
        .map_err(|e| format!("current CA is unusable: {e}"))?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| format!("building a verifier: {e}"))?;
    let at = UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(now.unix_timestamp()).unwrap_or_default(),
    ));
    for name in dns_names {
        let server = ServerName::try_from(name.clone())
            .map_err(|e| format!("service name {name} is not a DNS name: {e}"))?;
        verifier
            .verify_server_cert(&leaf, &[], &server, &[], at)
            .map_err(|e| {
                format!("serving certificate is not valid for {name} under the current CA: {e}")
            })?;
    }
    Ok(())
}

/// The caBundle the API server must trust: every CA of the bundle that has
/// not expired (current first). Expired CAs drop out here, which ends a
/// rotation.
pub fn ca_bundle_for(material: &TlsMaterial, now: OffsetDateTime) -> String {
    let mut out = String::new();
    for item in Pem::iter_from_buffer(material.ca_pem.as_bytes()).flatten() {
        let Ok(cert) = item.parse_x509() else {
            continue;
        };
        if cert.validity().not_after.to_datetime() > now {
            out.push_str(&pem_encode("CERTIFICATE", &item.contents));
        }
    }
    out
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Carries out a plan: returns the new Secret content (or the old one for
/// `Keep`).
pub fn issue(
    current: Option<&TlsMaterial>,
    plan: &Plan,
    dns_names: &[String],
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<TlsMaterial> {
    match (plan, current) {
        (Plan::Keep, Some(m)) => Ok(m.clone()),
        (Plan::RenewCert { .. }, Some(m)) => {
            let ca_key = KeyPair::from_pem(&m.ca_key_pem)?;
            let ca = parse_pem_bundle(&m.ca_pem)?.remove(0);
            let cn = ca
                .common_name
                .ok_or_else(|| Error::Pem("CA certificate has no common name".into()))?;
            let issuer = Issuer::new(rotating_ca_params(&cn, now, policy), ca_key);
            let (cert_pem, key_pem) = serving_cert(&issuer, dns_names, policy, now)?;
            Ok(TlsMaterial {
                ca_pem: keep_unexpired(&m.ca_pem, now),
                ca_key_pem: m.ca_key_pem.clone(),
                cert_pem,
                key_pem,
            })
        }
        (Plan::RotateCa { .. }, Some(m)) => {
            let fresh = new_ca_and_cert(dns_names, policy, now)?;
            // The old CA stays trusted until it expires: replicas that have
            // not yet picked up the new serving certificate still present
            // one it signed.
            Ok(TlsMaterial {
                ca_pem: format!("{}{}", fresh.ca_pem, keep_unexpired(&m.ca_pem, now)),
                ..fresh
            })
        }
        _ => new_ca_and_cert(dns_names, policy, now),
    }
}

fn keep_unexpired(bundle: &str, now: OffsetDateTime) -> String {
    ca_bundle_for(
        &TlsMaterial {
            ca_pem: bundle.to_string(),
            ca_key_pem: String::new(),
            cert_pem: String::new(),
            key_pem: String::new(),
        },
        now,
    )
}

/// A CA that signs serving certificates only (path length 0): what
/// auto-TLS rotates and what `certs` writes for local use.
pub(crate) fn ca_params(
    common_name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

/// Auto-TLS's CA: backdated an hour for clock skew, valid per the policy.
fn rotating_ca_params(
    common_name: &str,
    now: OffsetDateTime,
    policy: &Policy,
) -> CertificateParams {
    ca_params(
        common_name,
        now - Duration::from_secs(3600),
        now + policy.ca_validity,
    )
}

/// A TLS server certificate for `hosts` (DNS names or IP addresses; the
/// first is the subject's common name).
pub(crate) fn serving_params(
    hosts: &[String],
    key_usages: Vec<KeyUsagePurpose>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(hosts.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        hosts
            .first()
            .map(String::as_str)
            .unwrap_or("vault-injector"),
    );
    params.distinguished_name = dn;
    params.key_usages = key_usages;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    Ok(params)
}

fn new_ca_and_cert(
    dns_names: &[String],
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<TlsMaterial> {
    let ca_key = KeyPair::generate()?;
    // The timestamp tells CAs of successive rotations apart by subject, so
    // chain building never confuses an old CA with the new one.
    let cn = format!(
        "vault-injector-ca@{}-{:08x}",
        now.unix_timestamp(),
        rand::random::<u32>()
    );
    let params = rotating_ca_params(&cn, now, policy);
    let ca_cert = params.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(params, ca_key);
    let (cert_pem, key_pem) = serving_cert(&issuer, dns_names, policy, now)?;
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        ca_key_pem,
        cert_pem,
        key_pem,
    })
}

fn serving_cert(
    issuer: &Issuer<'_, KeyPair>,
    dns_names: &[String],
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let params = serving_params(
        dns_names,
        vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ],
        now - Duration::from_secs(3600),
        now + policy.cert_validity,
    )?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn names() -> Vec<String> {
        service_dns_names("vi", "ns")
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    /// Material created `age` ago under `policy`.
    fn created_ago(age: Duration, policy: &Policy) -> TlsMaterial {
        let past = now() - age;
        issue(
            None,
            &plan(None, &names(), policy, past),
            &names(),
            policy,
            past,
        )
        .unwrap()
    }

    /// `m` with its serving certificate re-issued `age` ago.
    pub(crate) fn renewed_ago(
        m: TlsMaterial,
        age: Duration,
        names: &[String],
        policy: &Policy,
    ) -> TlsMaterial {
        let then = now() - age;
        let renew = Plan::RenewCert {
            reason: String::new(),
        };
        issue(Some(&m), &renew, names, policy, then).unwrap()
    }

    #[test]
    fn fresh_material_is_kept_and_trusted_by_webpki() {
        let policy = Policy::default();
        let m = created_ago(Duration::ZERO, &policy);
        assert_eq!(plan(Some(&m), &names(), &policy, now()), Plan::Keep);
        let ca = parse_pem_bundle(&m.ca_pem).unwrap();
        assert_eq!(ca.len(), 1);
        let leaf = &parse_pem_bundle(&m.cert_pem).unwrap()[0];
        assert_eq!(leaf.issuer_raw, ca[0].subject_raw);
        assert_eq!(leaf.dns_names, names());
        super::super::tests::assert_chain_valid(&m.ca_pem, &m.cert_pem, "vi.ns.svc");
    }

    #[test]
    fn needs_renewal_is_inclusive_at_the_margin() {
        let t = now();
        assert!(needs_renewal(t + 30 * DAY, t, 30 * DAY));
        assert!(!needs_renewal(t + 31 * DAY, t, 30 * DAY));
        assert!(needs_renewal(t - DAY, t, 30 * DAY));
    }

    #[test]
    fn expiring_serving_cert_is_renewed_with_the_same_ca() {
        let policy = Policy::default();
        let m = created_ago(340 * DAY, &policy);
        let p = plan(Some(&m), &names(), &policy, now());
        assert!(matches!(p, Plan::RenewCert { .. }), "{p:?}");
        let renewed = issue(Some(&m), &p, &names(), &policy, now()).unwrap();
        assert_eq!(renewed.ca_pem, m.ca_pem);
        assert_eq!(renewed.ca_key_pem, m.ca_key_pem);
        assert_ne!(renewed.cert_pem, m.cert_pem);
        assert_eq!(plan(Some(&renewed), &names(), &policy, now()), Plan::Keep);
        super::super::tests::assert_chain_valid(&m.ca_pem, &renewed.cert_pem, "vi.ns.svc");
    }

    #[test]
    fn expiring_ca_is_rotated_and_the_old_one_kept() {
        let policy = Policy::default();
        // 5y CA, rotated when less than 1y + 30d is left; its serving
        // certificate was renewed recently, as the controller does.
        let m = renewed_ago(
            created_ago(4 * 365 * DAY - 20 * DAY, &policy),
            10 * DAY,
            &names(),
            &policy,
        );
        let p = plan(Some(&m), &names(), &policy, now());
        assert!(matches!(p, Plan::RotateCa { .. }), "{p:?}");
        let rotated = issue(Some(&m), &p, &names(), &policy, now()).unwrap();
        let cas = parse_pem_bundle(&rotated.ca_pem).unwrap();
        let old = parse_pem_bundle(&m.ca_pem).unwrap().remove(0);
        assert_eq!(cas.len(), 2);
        assert_eq!(cas[1], old, "old CA kept after the new one");
        assert_ne!(cas[0].subject_raw, old.subject_raw);
        assert_ne!(rotated.ca_key_pem, m.ca_key_pem);
        assert_eq!(plan(Some(&rotated), &names(), &policy, now()), Plan::Keep);
        // Both the old serving certificate and the new one verify against the
        // bundle the API server gets.
        let bundle = ca_bundle_for(&rotated, now());
        super::super::tests::assert_chain_valid(&bundle, &m.cert_pem, "vi.ns.svc");
        super::super::tests::assert_chain_valid(&bundle, &rotated.cert_pem, "vi.ns.svc");
    }

    #[test]
    fn expired_cas_leave_the_bundle() {
        let policy = Policy {
            ca_validity: 400 * DAY,
            cert_validity: 100 * DAY,
            renew_before: 10 * DAY,
        };
        let old = created_ago(300 * DAY, &policy);
        let p = plan(Some(&old), &names(), &policy, now());
        assert!(matches!(p, Plan::RotateCa { .. }), "{p:?}");
        let rotated = issue(Some(&old), &p, &names(), &policy, now()).unwrap();
        assert_eq!(
            parse_pem_bundle(&ca_bundle_for(&rotated, now()))
                .unwrap()
                .len(),
            2
        );
        let later = now() + 150 * DAY;
        assert_eq!(
            parse_pem_bundle(&ca_bundle_for(&rotated, later))
                .unwrap()
                .len(),
            1
        );
        // A renewal after the old CA expired also drops it from the Secret.
        let renewed = issue(
            Some(&rotated),
            &Plan::RenewCert {
                reason: String::new(),
            },
            &names(),
            &policy,
            later,
        )
        .unwrap();
        assert_eq!(parse_pem_bundle(&renewed.ca_pem).unwrap().len(), 1);
    }

    #[test]
    fn broken_or_foreign_material_is_replaced() {
        let policy = Policy::default();
        let good = created_ago(Duration::ZERO, &policy);
        let other = created_ago(Duration::ZERO, &policy);

        let garbage = TlsMaterial {
            ca_pem: "not pem".into(),
            ..good.clone()
        };
        assert!(matches!(
            plan(Some(&garbage), &names(), &policy, now()),
            Plan::Create { .. }
        ));
        let wrong_ca_key = TlsMaterial {
            ca_key_pem: other.ca_key_pem.clone(),
            ..good.clone()
        };
        assert!(matches!(
            plan(Some(&wrong_ca_key), &names(), &policy, now()),
            Plan::Create { .. }
        ));
        let wrong_key = TlsMaterial {
            key_pem: other.key_pem.clone(),
            ..good.clone()
        };
        assert!(matches!(
            plan(Some(&wrong_key), &names(), &policy, now()),
            Plan::RenewCert { .. }
        ));
        let foreign_leaf = TlsMaterial {
            cert_pem: other.cert_pem.clone(),
            key_pem: other.key_pem.clone(),
            ..good.clone()
        };
        assert!(matches!(
            plan(Some(&foreign_leaf), &names(), &policy, now()),
            Plan::RenewCert { .. }
        ));
        let renamed = service_dns_names("renamed", "ns");
        assert!(matches!(
            plan(Some(&good), &renamed, &policy, now()),
            Plan::RenewCert { .. }
        ));
    }

    #[test]
    fn policy_rejects_margins_that_would_loop() {
        assert!(Policy::default().validate().is_ok());
        let p = Policy {
            renew_before: 400 * DAY,
            ..Policy::default()
        };
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("renew-before"));
        let p = Policy {
            ca_validity: 300 * DAY,
            ..Policy::default()
        };
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("CA validity"));
    }

    #[test]
    fn debug_output_hides_private_keys() {
        let m = created_ago(Duration::ZERO, &Policy::default());
        let dbg = format!("{m:?}");
        assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
    }
}
