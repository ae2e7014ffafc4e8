//! Keeping `caBundle` right in every entry of our MutatingWebhookConfiguration.

use json_patch::{AddOperation, Patch, PatchOperation, TestOperation};
use jsonptr::PointerBuf;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Api, PatchParams};

use super::{Error, Result};

/// The JSON patch that sets `caBundle` (PEM bytes) on every webhook entry
/// whose bundle differs, or `None` when all are already right.
///
/// Each change is guarded by a `test` of the entry's name at that index, so
/// a concurrent edit that reorders the entries makes the patch fail (and the
/// next reconcile retry) rather than set the bundle on the wrong entry.
pub fn patch_for_webhooks(config: &MutatingWebhookConfiguration, bundle: &[u8]) -> Option<Patch> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
    let mut ops = Vec::new();
    for (i, webhook) in config.webhooks.iter().flatten().enumerate() {
        let current = webhook
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| b.0.as_slice());
        if current == Some(bundle) {
            continue;
        }
        let index = i.to_string();
        ops.push(PatchOperation::Test(TestOperation {
            path: PointerBuf::from_tokens(["webhooks", index.as_str(), "name"]),
            value: serde_json::Value::String(webhook.name.clone()),
        }));
        ops.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["webhooks", index.as_str(), "clientConfig", "caBundle"]),
            value: serde_json::Value::String(encoded.clone()),
        }));
    }
    (!ops.is_empty()).then_some(Patch(ops))
}

/// Patches `config` (as last seen) if any entry's bundle differs. Returns
/// how many entries were changed.
pub async fn sync_webhook(
    api: &Api<MutatingWebhookConfiguration>,
    config: &MutatingWebhookConfiguration,
    bundle: &[u8],
) -> Result<usize> {
    let Some(patch) = patch_for_webhooks(config, bundle) else {
        return Ok(0);
    };
    let changed = patch.0.len() / 2;
    let name = config.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::default(),
        &kube::api::Patch::Json::<()>(patch),
    )
    .await
    .map_err(|source| Error::Kube {
        action: "patching caBundle of MutatingWebhookConfiguration",
        name: name.clone(),
        source: Box::new(source),
    })?;
    Ok(changed)
}

/// Reads the configuration by name and patches it if needed. A missing
/// configuration is not an error: Helm creates it, possibly after us.
pub async fn get_and_sync_webhook(
    api: &Api<MutatingWebhookConfiguration>,
    name: &str,
    bundle: &[u8],
) -> Result<Option<usize>> {
    let config = api.get_opt(name).await.map_err(|source| Error::Kube {
        action: "reading MutatingWebhookConfiguration",
        name: name.to_string(),
        source: Box::new(source),
    })?;
    match config {
        Some(c) => sync_webhook(api, &c, bundle).await.map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, WebhookClientConfig};
    use k8s_openapi::ByteString;

    pub(crate) fn config(bundles: &[Option<&[u8]>]) -> MutatingWebhookConfiguration {
        MutatingWebhookConfiguration {
            metadata: kube::api::ObjectMeta {
                name: Some("vi".into()),
                ..Default::default()
            },
            webhooks: Some(
                bundles
                    .iter()
                    .enumerate()
                    .map(|(i, b)| MutatingWebhook {
                        name: format!("w{i}.vault-injector.io"),
                        admission_review_versions: vec!["v1".into()],
                        side_effects: "None".into(),
                        client_config: WebhookClientConfig {
                            ca_bundle: b.map(|b| ByteString(b.to_vec())),
                            ..Default::default()
                        },
                        ..Default::default()
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn every_differing_entry_is_patched_and_guarded_by_name() {
        let cfg = config(&[None, Some(b"old"), Some(b"new")]);
        let patch = patch_for_webhooks(&cfg, b"new").expect("a patch");
        let json = serde_json::to_value(&patch).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"op": "test", "path": "/webhooks/0/name", "value": "w0.vault-injector.io"},
                {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "bmV3"},
                {"op": "test", "path": "/webhooks/1/name", "value": "w1.vault-injector.io"},
                {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": "bmV3"},
            ])
        );
    }

    #[test]
    fn nothing_to_patch_when_all_match_or_there_are_no_entries() {
        assert!(patch_for_webhooks(&config(&[Some(b"x"), Some(b"x")]), b"x").is_none());
        assert!(patch_for_webhooks(&config(&[]), b"x").is_none());
    }

    #[test]
    fn the_patch_applies_to_the_object_as_json() {
        let cfg = config(&[Some(b"a"), None]);
        let patch = patch_for_webhooks(&cfg, b"bundle").unwrap();
        let mut doc = serde_json::to_value(&cfg).unwrap();
        json_patch::patch(&mut doc, &patch.0).unwrap();
        let back: MutatingWebhookConfiguration = serde_json::from_value(doc).unwrap();
        assert!(patch_for_webhooks(&back, b"bundle").is_none());
    }
}
