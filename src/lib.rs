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
