//! Compatibility with the annotations teams already use, so they can migrate
//! without touching manifests: hashicorp/vault-k8s (`vault.hashicorp.com/*`)
//! and Bank-Vaults (`vault:PATH#KEY` env values).

pub mod bankvaults;
pub mod goparse;
pub mod gotmpl;
pub mod govalue;
#[cfg(feature = "k8s")]
pub mod vaultk8s;
