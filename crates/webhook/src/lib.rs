//! vault-injector's webhook (`vault-injector`): the HTTPS admission server
//! and what it needs around the pure core ([`vault_injector_core`]): TLS,
//! the admin port and metrics, Kubernetes Events, auto-TLS, the policy
//! reloader, the volume-profile store, and the offline `mutate`, `lint` and
//! `certs` commands.

#![forbid(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod audit_sink;
pub mod autotls;
pub mod certs;
pub mod cli;
pub mod events;
pub mod gate;
pub mod lint;
pub mod logging;
pub mod manifests;
pub mod metrics;
pub mod policy_reload;
pub mod profile_store;
pub mod server;
pub mod tls;
