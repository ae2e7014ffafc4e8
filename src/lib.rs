//! vault-injector: a Kubernetes mutating admission webhook and an in-pod agent
//! that deliver secrets from Vault/OpenBao into pods at deploy time.
//!
//! Pure core, thin edges: `annotations` -> `plan` -> `patch` are pure functions
//! of (pod, config); `server`, `vault` and the Kubernetes client are edges.

pub mod admin;
pub mod admission;
pub mod agent;
pub mod annotations;
pub mod audit;
pub mod autotls;
pub mod certs;
pub mod cli;
pub mod compat;
pub mod config;
pub mod events;
pub mod exec;
pub mod lint;
pub mod logging;
pub mod manifests;
pub mod metrics;
pub mod patch;
pub mod plan;
pub mod policy;
pub mod probe;
pub mod render;
pub mod server;
pub mod tls;
pub mod vault;
pub mod volumes;

/// Serializes `value` as JSON into a buffer of `capacity` bytes up front:
/// what the admission path writes per request (patch, agent config, audit
/// line) has a known typical size, and one allocation beats a chain of
/// regrowths there.
pub(crate) fn json_sized<T: serde::Serialize + ?Sized>(value: &T, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    // Writing into a Vec cannot fail; these types have string keys only.
    serde_json::to_writer(&mut out, value).expect("serializes to JSON");
    out
}

/// [`json_sized`] as a `String`.
pub(crate) fn json_string_sized<T: serde::Serialize + ?Sized>(
    value: &T,
    capacity: usize,
) -> String {
    String::from_utf8(json_sized(value, capacity)).expect("serde_json writes UTF-8")
}
