//! vault-injector's webhook (`vault-injector`): the HTTPS admission server
//! and what it needs around the pure core ([`vault_injector_core`]): TLS,
//! the admin port and metrics, Kubernetes Events, auto-TLS, the policy
//! reloader, the volume-profile store, and the offline `mutate`, `lint` and
//! `certs` commands.

#![forbid(unsafe_code)]

mod admin;
pub mod admission;
mod audit_sink;
pub mod autotls;
pub mod certs;
mod check;
pub mod cli;
mod events;
pub mod gate;
mod lint;
mod logging;
mod manifests;
mod metrics;
pub mod policy_reload;
pub mod profile_store;
pub mod server;
mod tls;
