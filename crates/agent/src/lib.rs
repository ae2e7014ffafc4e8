//! The in-pod agent (`vault-injector-agent`): logs in to Vault with the pod's
//! identity, renders the secrets the webhook's [`AgentConfig`] names, renews
//! and re-renders them, and runs the `exec` wrapper, the startup probe and
//! `copy-self`. It links no Kubernetes types and no HTTP server.
//!
//! [`AgentConfig`]: vault_injector_core::contract::AgentConfig

// The tests need `pre_exec` to start a child that ignores a signal.
#![cfg_attr(not(test), forbid(unsafe_code))]

mod agent;
pub mod cli;
mod exec;
mod logging;
mod probe;
mod render;
