//! The shared test kit, and the agent binary the tests run.

use std::path::PathBuf;

pub use vault_injector_testkit::*;

/// The built `vault-injector-agent` binary (the tests run the real one).
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vault-injector-agent"))
}

/// The state file's header and encrypted rest (format v2: "VIS" 2,
/// header length, header JSON, nonce, ciphertext).
pub fn state_parts(bytes: &[u8]) -> (serde_json::Value, Vec<u8>, Vec<u8>) {
    assert_eq!(&bytes[..4], b"VIS\x02", "magic and version");
    let len = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let raw = bytes[8..8 + len].to_vec();
    let header = serde_json::from_slice(&raw).unwrap();
    (header, raw, bytes[8 + len..].to_vec())
}

/// Opens a state file the way a thief holding a copy would: unwraps its
/// key (which spends the wrapping token) and decrypts it. `None` when the
/// wrapping token no longer unwraps.
pub fn open_state(bao: &openbao::OpenBao, bytes: &[u8]) -> Option<serde_json::Value> {
    let (header, _, _) = state_parts(bytes);
    let wrap = header["wrap_token"].as_str().unwrap();
    let out = bao.cmd(&["unwrap", "-format=json", wrap]).output().unwrap();
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(decrypt_state(
        v["data"]["state_key"].as_str().unwrap(),
        bytes,
    ))
}

/// Decrypts a state file with its key (hex), as the format documents it:
/// AES-256-GCM, associated data = label, version, pod UID, header.
pub fn decrypt_state(key_hex: &str, bytes: &[u8]) -> serde_json::Value {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let (header, raw, rest) = state_parts(bytes);
    let uid = header["pod_uid"].as_str().unwrap();
    let mut aad = b"vault-injector-state".to_vec();
    aad.push(2);
    aad.extend_from_slice(&(uid.len() as u32).to_be_bytes());
    aad.extend_from_slice(uid.as_bytes());
    aad.extend_from_slice(&raw);
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&hex::decode(key_hex).unwrap()).unwrap();
    let (nonce, ct) = rest.split_at(12);
    let plain = cipher
        .decrypt(
            aes_gcm::Nonce::from_slice(nonce),
            Payload { msg: ct, aad: &aad },
        )
        .expect("state decrypts with its unwrapped key");
    serde_json::from_slice(&plain).unwrap()
}

/// Reads the agent's state file in `dirs`.
pub fn state_bytes(dirs: &agent::AgentDirs) -> Vec<u8> {
    std::fs::read(dirs.state.join("state")).expect("agent state file")
}
