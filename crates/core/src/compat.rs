//! Compatibility with the annotations teams already use, so they can migrate
//! without touching manifests: hashicorp/vault-k8s (`vault.hashicorp.com/*`)
//! and Bank-Vaults (`vault:PATH#KEY` env values).

pub mod bankvaults;
#[cfg(feature = "k8s")]
pub mod vaultk8s;
