//! AdmissionReview in, AdmissionReview out: the one place where a business
//! error becomes a denial. The HTTP server (`server`) and the `mutate` command
//! both go through here.
//!
//! STUB: the interface below is the contract with `server`; the core helper
//! fills in annotation parsing, planning and patching.

use std::sync::Arc;

use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;

use crate::audit::{AdmissionAudit, Decision};
use crate::config::WebhookConfig;

/// A body that is not a usable AdmissionReview. The server answers 400 with
/// the message; nothing else happens.
#[derive(Debug, thiserror::Error)]
pub enum BadReview {
    #[error("body is not a valid AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    #[error("AdmissionReview has no request")]
    NoRequest,
}

/// The serialized response review plus its audit record (the server fills in
/// `latency_ms` and emits it).
pub struct Reviewed {
    pub body: Vec<u8>,
    pub audit: AdmissionAudit,
}

#[derive(Clone)]
pub struct Injector {
    config: Arc<WebhookConfig>,
}

impl Injector {
    pub fn new(config: Arc<WebhookConfig>) -> Self {
        Self { config }
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// Handles one AdmissionReview body.
    pub async fn review(&self, body: &[u8]) -> Result<Reviewed, BadReview> {
        let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)?;
        let req: AdmissionRequest<DynamicObject> =
            review.try_into().map_err(|_| BadReview::NoRequest)?;
        let resp = AdmissionResponse::from(&req);
        let audit = AdmissionAudit {
            uid: req.uid.clone(),
            decision: Decision::Skipped,
            reason: "not implemented".into(),
            ..Default::default()
        };
        let body = serde_json::to_vec(&resp.into_review())?;
        Ok(Reviewed { body, audit })
    }
}
