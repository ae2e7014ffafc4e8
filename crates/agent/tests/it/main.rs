//! The agent's integration tests: one binary, one module per area, run
//! against the real `vault-injector-agent` binary, OpenBao and PostgreSQL.

mod support;

mod agent_errors;
mod agent_init;
mod agent_reads;
mod agent_sidecar;
mod copy_self;
mod render_roundtrip;
