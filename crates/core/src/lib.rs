//! The pure core of vault-injector: what a pod asked for (annotations of
//! every dialect), what the webhook will do about it (plan, policy, volume
//! profiles) and how (the JSON patch), plus the contract the webhook hands to
//! the in-pod agent. No I/O runtime, HTTP server, Kubernetes client or Vault
//! client: `cargo tree -p vault-injector-core -e normal` shows it, and
//! `make test` checks it (scripts/check-deps.sh).
//!
//! Without the `k8s` feature only what the agent needs is built: the
//! contract, the audit records and the template and env-reference dialects.

#![forbid(unsafe_code)]

pub mod audit;
pub mod compat;
pub mod contract;
pub mod go;
#[cfg(feature = "k8s")]
pub mod yaml;

#[cfg(feature = "k8s")]
pub mod annotations;
#[cfg(feature = "k8s")]
pub mod config;
#[cfg(feature = "k8s")]
pub mod patch;
#[cfg(feature = "k8s")]
pub mod plan;
#[cfg(feature = "k8s")]
pub mod policy;
#[cfg(feature = "k8s")]
pub mod profile;

/// Serializes `value` as JSON into a buffer of `capacity` bytes up front:
/// what the admission path writes per request (patch, agent config, audit
/// line) has a known typical size, and one allocation beats a chain of
/// regrowths there.
pub fn json_sized<T: serde::Serialize + ?Sized>(value: &T, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    // Writing into a Vec cannot fail; these types have string keys only.
    serde_json::to_writer(&mut out, value).expect("serializes to JSON");
    out
}

/// [`json_sized`] as a `String`.
pub fn json_string_sized<T: serde::Serialize + ?Sized>(value: &T, capacity: usize) -> String {
    String::from_utf8(json_sized(value, capacity)).expect("serde_json writes UTF-8")
}
