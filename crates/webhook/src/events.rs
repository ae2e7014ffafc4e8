//! Kubernetes Events for admission decisions (optional, off by default).
//!
//! At CREATE time the pod has no uid and often no name yet, so the event is
//! attached to the pod's controlling owner (a ReplicaSet, Job...) when there
//! is one, else to its Namespace; either way it lands in the pod's namespace,
//! where `kubectl get events` shows it to the team. Events carry the audit
//! reason (annotation names, paths, profiles), never secret values.
//! Dry-run admissions emit nothing: the webhook declares `sideEffects: None`.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use vault_injector_core::audit::{AdmissionAudit, Decision};

/// Most a note may hold (the Events API limit is 1 kB).
const NOTE_MAX: usize = 1000;

/// One decision worth an event.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionEvent {
    pub namespace: String,
    pub pod: String,
    pub owner: Option<OwnerReference>,
    pub decision: Decision,
    /// Already free of secret values (it is the audit reason).
    pub reason: String,
}

impl AdmissionEvent {
    /// The event for an audit record, or None when there is nothing to tell
    /// (skipped pods) or telling would be a side effect (dry run).
    pub fn from_audit(audit: &AdmissionAudit, owners: &[OwnerReference]) -> Option<Self> {
        if audit.dry_run || audit.decision == Decision::Skipped || audit.namespace.is_empty() {
            return None;
        }
        Some(Self {
            namespace: audit.namespace.clone(),
            pod: audit.pod.clone(),
            owner: owners
                .iter()
                .find(|o| o.controller == Some(true))
                .or(owners.first())
                .cloned(),
            decision: audit.decision,
            reason: audit.reason.clone(),
        })
    }

    /// The object the event is about.
    pub fn regarding(&self) -> ObjectReference {
        match &self.owner {
            Some(o) => ObjectReference {
                api_version: Some(o.api_version.clone()),
                kind: Some(o.kind.clone()),
                name: Some(o.name.clone()),
                namespace: Some(self.namespace.clone()),
                uid: Some(o.uid.clone()),
                ..Default::default()
            },
            None => ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Namespace".into()),
                name: Some(self.namespace.clone()),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
        }
    }

    pub fn to_event(&self) -> Event {
        let (type_, reason) = match self.decision {
            Decision::Injected => (EventType::Normal, "VaultInjected"),
            Decision::Denied => (EventType::Warning, "VaultInjectionDenied"),
            Decision::Error | Decision::Skipped => (EventType::Warning, "VaultInjectionFailed"),
        };
        let mut note = format!("pod {}: {}", self.pod, self.reason);
        if note.len() > NOTE_MAX {
            let mut cut = NOTE_MAX;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Admit".into(),
            secondary: None,
        }
    }
}

/// Publishes admission events. Cheap to clone.
#[derive(Clone)]
pub struct EventSink {
    recorder: Recorder,
}

impl EventSink {
    /// `instance` is the webhook pod's name (for `reportingInstance`).
    pub fn new(client: kube::Client, instance: Option<String>) -> Self {
        Self {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "vault-injector".into(),
                    instance,
                },
            ),
        }
    }

    pub async fn publish(&self, ev: &AdmissionEvent) -> Result<(), kube::Error> {
        self.recorder.publish(&ev.to_event(), &ev.regarding()).await
    }

    /// Publishes in the background, so the admission answer never waits on
    /// the API server; a failure is logged, not returned.
    pub fn spawn(&self, ev: AdmissionEvent) {
        let sink = self.clone();
        tokio::spawn(async move {
            if let Err(e) = sink.publish(&ev).await {
                tracing::warn!(error = %e, namespace = %ev.namespace, "cannot publish admission event");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    fn audit(decision: Decision) -> AdmissionAudit {
        AdmissionAudit {
            namespace: "team-a".into(),
            pod: "web-7d9f*".into(),
            decision,
            reason: "policy: namespace \"team-a\" service account \"web\" may not use role \"admin\" (rule \"team-a\" allows: web)".into(),
            ..Default::default()
        }
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web-7d9f".into(),
            uid: "rs-uid".into(),
            controller: Some(true),
            ..Default::default()
        }
    }

    #[test]
    fn skipped_and_dry_run_make_no_event() {
        assert!(AdmissionEvent::from_audit(&audit(Decision::Skipped), &[]).is_none());
        let mut a = audit(Decision::Denied);
        a.dry_run = true;
        assert!(AdmissionEvent::from_audit(&a, &[]).is_none());
    }

    #[test]
    fn namespace_is_the_fallback_object() {
        let ev = AdmissionEvent::from_audit(&audit(Decision::Injected), &[]).unwrap();
        let r = ev.regarding();
        assert_eq!(r.kind.as_deref(), Some("Namespace"));
        assert_eq!(r.name.as_deref(), Some("team-a"));
        assert_eq!(ev.to_event().type_, EventType::Normal);
    }

    #[test]
    fn long_reasons_are_cut_at_a_char_boundary() {
        let mut a = audit(Decision::Denied);
        a.reason = "é".repeat(2000);
        let ev = AdmissionEvent::from_audit(&a, &[]).unwrap().to_event();
        assert!(ev.note.unwrap().len() <= NOTE_MAX);
    }

    #[tokio::test]
    async fn a_denial_is_posted_on_the_owner_in_the_pod_namespace() {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(svc, "default");
        let server = tokio::spawn(async move {
            let mut handle = std::pin::pin!(handle);
            let (req, send) = handle.next_request().await.expect("an API call");
            assert_eq!(req.method(), http::Method::POST);
            assert_eq!(
                req.uri().path(),
                "/apis/events.k8s.io/v1/namespaces/team-a/events"
            );
            let body = req.into_body().collect_bytes().await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            send.send_response(
                Response::builder()
                    .status(201)
                    .body(Body::from(body.to_vec()))
                    .unwrap(),
            );
            v
        });
        let ev = AdmissionEvent::from_audit(&audit(Decision::Denied), &[owner()]).unwrap();
        EventSink::new(client, Some("webhook-0".into()))
            .publish(&ev)
            .await
            .unwrap();
        let v = server.await.unwrap();
        assert_eq!(v["type"], "Warning");
        assert_eq!(v["reason"], "VaultInjectionDenied");
        assert_eq!(v["regarding"]["kind"], "ReplicaSet");
        assert_eq!(v["regarding"]["name"], "web-7d9f");
        assert_eq!(v["reportingController"], "vault-injector");
        assert_eq!(v["reportingInstance"], "webhook-0");
        let note = v["note"].as_str().unwrap();
        assert!(note.contains("may not use role \"admin\""), "{note}");
        assert!(note.starts_with("pod web-7d9f*"), "{note}");
    }
}
