//! The webhook's integration tests: one binary, one module per area, run
//! against the real `vault-injector` binary, OpenBao and PostgreSQL.

mod support;

mod chart;
mod compat_bankvaults;
mod compat_openbao;
mod compat_validation;
mod compat_vaultk8s;
mod differential;
mod e2e;
mod hostile_annotations;
mod lint;
mod mutation;
mod policy_attacks;
mod policy_gate;
mod policy_reload;
mod policy_rules;
mod properties;
mod reinvocation;
mod server_abuse;
mod volumes_jwt_openbao;
mod volumes_openbao;
mod webhook_server;
