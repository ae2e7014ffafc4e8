//! The agent's encrypted state: what lets a restarted agent (a native
//! sidecar after `kill -9`, or the classic sidecar after the init
//! container) keep its token and leases instead of logging in and fetching
//! new dynamic credentials.
//!
//! File layout (`state` in the agent-only memory volume), version 2 (version
//! 1 kept one lease per file, before files shared sources):
//!
//! ```text
//! "VIS" 0x01 | header length (u32 BE) | header JSON | nonce (12) | AES-256-GCM ciphertext
//! ```
//!
//! The header is plaintext but authenticated (it is part of the associated
//! data, with the file version and this pod's UID): it holds the pod UID,
//! the wrapping token that unwraps the key, and that token's expiry. The
//! key is random per write and never stored here: Vault holds it behind a
//! single-use wrapping token (docs/security.md has the threat model).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use vault_injector_core::contract::ReadSpec;

/// The file's name in the state dir.
pub(crate) const STATE_FILE: &str = "state";
/// Magic and format version: bumping the version makes older files
/// "unsupported", never misread.
const MAGIC: &[u8; 3] = b"VIS";
pub(crate) const VERSION: u8 = 2;
const NONCE_LEN: usize = 12;
/// Far above any real state (a few hundred bytes per secret); a larger
/// file is not ours.
pub(crate) const MAX_FILE_BYTES: u64 = 1024 * 1024;
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The plaintext (authenticated) part of the file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Header {
    pub pod_uid: String,
    /// Single-use token that unwraps this file's key.
    pub wrap_token: String,
    /// Unix seconds after which Vault has forgotten the wrapping token.
    pub wrap_expires: u64,
    /// Accessor of the saved Vault token: lets the agent revoke it (where
    /// its policy allows) when the state turns out to be stolen, without
    /// being able to read it.
    pub accessor: String,
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Header")
            .field("pod_uid", &self.pod_uid)
            .field("wrap_expires", &self.wrap_expires)
            .finish_non_exhaustive()
    }
}

/// The encrypted part: the token, every source's lease and every file's
/// hash. Never secret values: a resumed source has no data until fetched.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Saved {
    pub token: String,
    pub accessor: String,
    /// TTL the login granted (tells a renewal capped by the max TTL).
    pub login_ttl: u64,
    pub sources: Vec<SavedSource>,
    pub files: Vec<SavedFile>,
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("sources", &self.sources.len())
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

/// One source: a Vault call shared by the files that use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedSource {
    /// The call (path, `?version=`, write parameters): a source of the
    /// restarted agent resumes from the saved one making the same call.
    pub read: ReadSpec,
    /// KV v2 version of its last data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// sha256 (hex) of its last data: a re-read that matches it changes
    /// no file. Absent: unknown (the next data counts as new).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<SavedLease>,
    /// Unix seconds when its next renewal or fetch is due (a certificate
    /// issued without a lease is re-issued then).
    pub due: u64,
}

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedFile {
    pub name: String,
    /// sha256 of the file's spec: a changed spec means a new render.
    pub spec: String,
    /// sha256 of the rendered bytes.
    pub hash: String,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedLease {
    pub id: String,
    pub duration_secs: u64,
    pub renewable: bool,
    /// Vault granted less than asked at the last renewal: new credentials
    /// are due before the max TTL.
    #[serde(default)]
    pub last: bool,
}

/// Why a state file was not used. Each becomes one audit line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Discard {
    #[error("not a vault-injector state file")]
    Malformed,
    #[error("unsupported state format version {0}")]
    Version(u8),
    #[error("state belongs to another pod")]
    Foreign,
    #[error("state expired (its wrapping token has expired)")]
    Expired,
    #[error(
        "the state's wrapping token was already used or revoked: this state is a replayed \
         old copy or was stolen (possible theft)"
    )]
    WrapUsed,
    #[error("state failed authentication (tampered, or encrypted for another pod)")]
    Tampered,
    #[error("the saved Vault token is no longer valid")]
    TokenInvalid,
}

/// Splits a file into header and the encrypted rest; checks magic,
/// version and sizes, not the authentication.
pub(crate) fn parse(bytes: &[u8]) -> Result<(Header, &[u8], &[u8]), Discard> {
    let rest = bytes.strip_prefix(MAGIC).ok_or(Discard::Malformed)?;
    let (&version, rest) = rest.split_first().ok_or(Discard::Malformed)?;
    if version != VERSION {
        return Err(Discard::Version(version));
    }
    if rest.len() < 4 {
        return Err(Discard::Malformed);
    }
    let (len, rest) = rest.split_at(4);
    let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
    if len > MAX_HEADER_BYTES || rest.len() < len + NONCE_LEN + 16 {
        return Err(Discard::Malformed);
    }
    let (raw_header, rest) = rest.split_at(len);
    let header: Header = serde_json::from_slice(raw_header).map_err(|_| Discard::Malformed)?;
    Ok((header, raw_header, rest))
}

fn aad(pod_uid: &str, raw_header: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + pod_uid.len() + raw_header.len());
    aad.extend_from_slice(b"vault-injector-state");
    aad.push(VERSION);
    aad.extend_from_slice(&(pod_uid.len() as u32).to_be_bytes());
    aad.extend_from_slice(pod_uid.as_bytes());
    aad.extend_from_slice(raw_header);
    aad
}

/// Decrypts a file with `key`; `pod_uid` is this pod's (a file made for
/// another pod fails here even if its header was rewritten).
pub(crate) fn open(key: &[u8; 32], pod_uid: &str, bytes: &[u8]) -> Result<Saved, Discard> {
    let (_, raw_header, rest) = parse(bytes)?;
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new(key.into());
    let plain = cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: &aad(pod_uid, raw_header),
            },
        )
        .map_err(|_| Discard::Tampered)?;
    serde_json::from_slice(&plain).map_err(|_| Discard::Malformed)
}

/// Encrypts `saved` under `key` with a fresh random nonce.
pub(crate) fn seal(key: &[u8; 32], header: &Header, saved: &Saved) -> Vec<u8> {
    let raw_header = serde_json::to_vec(header).expect("header serializes");
    let plain = serde_json::to_vec(saved).expect("state serializes");
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new(key.into());
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &aad(&header.pod_uid, &raw_header),
            },
        )
        .expect("AES-GCM encryption of a small buffer cannot fail");
    let mut out = Vec::with_capacity(8 + raw_header.len() + NONCE_LEN + ct.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(raw_header.len() as u32).to_be_bytes());
    out.extend_from_slice(&raw_header);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// A fresh random key.
pub(crate) fn new_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

/// The key as it goes into Vault's wrapping (hex in a JSON object).
pub(crate) fn key_payload(key: &[u8; 32]) -> serde_json::Value {
    serde_json::json!({ "state_key": hex::encode(key) })
}

/// The key back from an unwrapped payload.
pub(crate) fn key_from_payload(v: &serde_json::Value) -> Option<[u8; 32]> {
    let text = v.get("state_key")?.as_str()?;
    hex::decode(text).ok()?.try_into().ok()
}

/// sha256 (hex) of anything serializable: spec digests.
pub(crate) fn digest<T: Serialize>(v: &T) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(serde_json::to_vec(v).expect("serializes")))
}

/// Seconds since the epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Header, Saved) {
        (
            Header {
                pod_uid: "uid-1".into(),
                wrap_token: "hvs.wrap".into(),
                wrap_expires: 100,
                accessor: "acc".into(),
            },
            Saved {
                token: "hvs.secret-token".into(),
                accessor: "acc".into(),
                login_ttl: 3600,
                sources: vec![SavedSource {
                    read: ReadSpec {
                        path: "database/creds/app".into(),
                        version: None,
                        params: Default::default(),
                    },
                    version: None,
                    digest: Some("d".into()),
                    lease: Some(SavedLease {
                        id: "database/creds/app/x".into(),
                        duration_secs: 60,
                        renewable: true,
                        last: false,
                    }),
                    due: 40,
                }],
                files: vec![SavedFile {
                    name: "db".into(),
                    spec: "s".into(),
                    hash: "h".into(),
                    mode: 0o644,
                }],
            },
        )
    }

    #[test]
    fn round_trip_and_fresh_nonce_per_write() {
        let key = new_key();
        let (h, s) = sample();
        let a = seal(&key, &h, &s);
        let b = seal(&key, &h, &s);
        assert_ne!(a, b, "same nonce twice");
        assert_eq!(open(&key, "uid-1", &a).unwrap(), s);
        assert_eq!(open(&key, "uid-1", &b).unwrap(), s);
        let text = String::from_utf8_lossy(&a);
        assert!(!text.contains("secret-token"), "token in plaintext");
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let key = new_key();
        let (h, s) = sample();
        let good = seal(&key, &h, &s);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(open(&key, "uid-1", &bad).is_err(), "byte {i} not covered");
        }
        assert!(open(&key, "uid-1", &good[..good.len() - 1]).is_err());
    }

    #[test]
    fn other_pod_other_key_other_version_are_refused() {
        let key = new_key();
        let (h, s) = sample();
        let good = seal(&key, &h, &s);
        assert_eq!(open(&key, "uid-2", &good), Err(Discard::Tampered));
        assert_eq!(open(&new_key(), "uid-1", &good), Err(Discard::Tampered));
        // Version 1 (one lease per file) and any later version.
        for v in [1, VERSION + 1] {
            let mut other = good.clone();
            other[3] = v;
            assert_eq!(open(&key, "uid-1", &other), Err(Discard::Version(v)));
        }
        assert_eq!(open(&key, "uid-1", b"junk"), Err(Discard::Malformed));
        // A header rewritten to name this pod still fails authentication.
        let mut h2 = h.clone();
        h2.pod_uid = "uid-2".into();
        let foreign = seal(&key, &h2, &s);
        assert_eq!(parse(&foreign).unwrap().0.pod_uid, "uid-2");
        assert_eq!(open(&key, "uid-1", &foreign), Err(Discard::Tampered));
    }

    #[test]
    fn key_survives_the_wrapping_payload() {
        let key = new_key();
        assert_eq!(key_from_payload(&key_payload(&key)), Some(key));
        assert_eq!(
            key_from_payload(&serde_json::json!({"state_key": "00"})),
            None
        );
    }

    #[test]
    fn debug_output_hides_tokens() {
        let (h, s) = sample();
        let text = format!("{h:?} {s:?}");
        assert!(!text.contains("hvs."), "{text}");
    }
}
