//! Audit trail: one JSON line per admission decision (webhook) and per agent
//! event (login, read, renewal, rotation, reload), written to stdout.
//!
//! Operational logs go to stderr through `tracing`; stdout carries only audit
//! lines, so a log pipeline can route them separately. Records hold names,
//! paths and digests, never secret values: the types below have no field that
//! could carry one.

use serde::Serialize;

/// What the webhook decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Injected,
    #[default]
    Skipped,
    Denied,
    Error,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Injected => "injected",
            Decision::Skipped => "skipped",
            Decision::Denied => "denied",
            Decision::Error => "error",
        }
    }
}

/// One admission decision.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct AdmissionAudit {
    pub uid: String,
    pub namespace: String,
    /// Pod name, or `generateName` + `*` when the name is not yet set.
    pub pod: String,
    pub service_account: String,
    /// The user that made the request (`userInfo.username`).
    pub user: String,
    pub operation: String,
    pub dry_run: bool,
    pub decision: Decision,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `NAME -> PATH` for each rendered secret.
    pub secrets: Vec<AuditSecret>,
    pub env_vars: Vec<String>,
    pub volume_profiles: Vec<String>,
    pub containers: Vec<String>,
    /// sha256 of the JSON patch (hex), when a patch was returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_digest: Option<String>,
    pub latency_ms: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditSecret {
    pub name: String,
    pub path: String,
}

/// What the agent did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentEvent {
    Login,
    Read,
    Render,
    Renewal,
    Rotation,
    Reload,
    Revoke,
    Error,
    /// The agent picked up its token or a lease from its saved state.
    Resume,
    /// Saved state was refused (tampered, foreign, expired, replayed,
    /// stolen); `error` says why.
    #[serde(rename = "state_discarded")]
    StateDiscarded,
    /// `exec --supervise` restarted the app with a new environment.
    Restart,
}

/// One agent event. `ok == false` events carry the error text, which must
/// already be free of secret values (Vault errors never echo them).
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct AgentAudit {
    pub namespace: String,
    pub pod: String,
    pub service_account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_duration_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    ts: String,
    audit: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<AgentEvent>,
    #[serde(flatten)]
    record: &'a T,
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Serializes an admission record as one line (without the newline).
pub fn admission_line(record: &AdmissionAudit) -> String {
    crate::json_string_sized(
        &Line {
            ts: now_rfc3339(),
            audit: "admission",
            event: None,
            record,
        },
        1024,
    )
}

/// Serializes an agent record as one line (without the newline).
pub fn agent_line(event: AgentEvent, record: &AgentAudit) -> String {
    serde_json::to_string(&Line {
        ts: now_rfc3339(),
        audit: "agent",
        event: Some(event),
        record,
    })
    .expect("audit record serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_line_has_the_spec_fields() {
        let rec = AdmissionAudit {
            uid: "u1".into(),
            namespace: "ns".into(),
            pod: "p".into(),
            decision: Decision::Denied,
            reason: "bad".into(),
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_str(&admission_line(&rec)).unwrap();
        assert_eq!(v["audit"], "admission");
        assert_eq!(v["decision"], "denied");
        for k in [
            "ts",
            "uid",
            "namespace",
            "pod",
            "service_account",
            "user",
            "operation",
            "dry_run",
            "reason",
            "secrets",
            "env_vars",
            "volume_profiles",
            "containers",
            "latency_ms",
        ] {
            assert!(v.get(k).is_some(), "missing {k} in {v}");
        }
    }

    #[test]
    fn agent_line_names_event() {
        let v: serde_json::Value = serde_json::from_str(&agent_line(
            AgentEvent::Renewal,
            &AgentAudit {
                secret: Some("db".into()),
                lease_duration_secs: Some(60),
                ok: true,
                ..Default::default()
            },
        ))
        .unwrap();
        assert_eq!(v["audit"], "agent");
        assert_eq!(v["event"], "renewal");
        assert_eq!(v["lease_duration_secs"], 60);
    }
}
