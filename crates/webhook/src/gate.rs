//! The one call the admission path makes for issue 6: connection overrides,
//! cluster policy, then volume profiles, in that order, so a pod the pure
//! checks refuse never makes the webhook contact Vault.
//!
//! Wiring: build one [`Gate`] at startup with [`Gate::from_config`] (a
//! configured but unreadable policy is a startup error) and start
//! [`Gate::spawn_policy_reloader`]. Per admission, once the annotations have
//! been validated into a plan, fill a [`PolicyRequest`] from the plan (the
//! role and auth path only when the pod named them; env paths without
//! `#KEY`; the service account defaulting to `default`; the namespace from
//! the AdmissionRequest) and call [`Gate::admit`] with the pod's annotations.
//! `Err(d)`: deny with `d.to_string()`, audit `d.decision()`. `Ok(a)`: fill
//! the role and agent resources/image from `a.defaults` where the pod set
//! none, `a.connection.apply(&mut agent_config.vault)`, add each of
//! `a.volumes` (`volume` to the pod, `mount` to the target containers).
//! The offline `mutate` command can call [`Gate::check`] alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::profile_store::ProfileStore;
use vault_injector_core::audit::Decision;
use vault_injector_core::config::{AgentOverrideSettings, VaultSettings, WebhookConfig};
use vault_injector_core::policy::overrides::{
    connection_overrides, ConnectionOverride, OverrideDenial,
};
use vault_injector_core::policy::{Defaults, Denial, PolicyHandle, PolicyRequest};
use vault_injector_core::profile::{ResolvedVolume, VolumeError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Policy(#[from] vault_injector_core::policy::Error),
}

/// Why a pod is refused. The message is what the pod author sees and what
/// the audit line records as the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GateDenial {
    #[error(transparent)]
    Override(#[from] OverrideDenial),
    #[error(transparent)]
    Policy(#[from] Denial),
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

impl GateDenial {
    /// `error` when Vault could not be asked (the pod was not judged),
    /// `denied` otherwise. Either way the pod is refused.
    pub fn decision(&self) -> Decision {
        match self {
            GateDenial::Volume(VolumeError::VaultUnavailable { .. }) => Decision::Error,
            _ => Decision::Denied,
        }
    }
}

/// What the pod gets once admitted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Admitted {
    /// Fill-ins from the matching policy rule (role, agent resources, image).
    pub defaults: Defaults,
    /// Apply to the agent's `VaultConnection` with `ConnectionOverride::apply`.
    pub connection: ConnectionOverride,
    /// Add each `volume` to the pod and each `mount` to the target containers.
    pub volumes: Vec<ResolvedVolume>,
}

/// Policy, profile store and the operator's override allowlist. One per
/// webhook process; cheap to clone.
#[derive(Clone, Debug)]
pub struct Gate {
    policy: Arc<PolicyHandle>,
    profiles: Arc<ProfileStore>,
    vault: VaultSettings,
    overrides: AgentOverrideSettings,
}

impl Gate {
    /// Loads the policy file (an error if configured but unreadable) and
    /// prepares the profile store. No network traffic.
    pub fn from_config(config: &WebhookConfig) -> Result<Self, Error> {
        Ok(Self {
            policy: Arc::new(PolicyHandle::from_settings(&config.policy)?),
            profiles: Arc::new(ProfileStore::new(config)),
            vault: config.vault.clone(),
            overrides: config.agent_overrides.clone(),
        })
    }

    /// Starts polling the policy file; abort the handle on shutdown. None
    /// when no policy file is configured.
    pub fn spawn_policy_reloader(
        &self,
        settings: &vault_injector_core::config::PolicySettings,
        stop: tokio_util::sync::CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let interval = settings.reload_interval().ok()?;
        settings.file.as_ref()?;
        Some(crate::policy_reload::spawn(
            self.policy.clone(),
            interval,
            stop,
        ))
    }

    pub fn profiles(&self) -> &Arc<ProfileStore> {
        &self.profiles
    }

    /// The pure part: connection overrides and cluster policy. `mutate`
    /// (offline) can use this alone.
    pub fn check(
        &self,
        annotations: &BTreeMap<String, String>,
        req: &PolicyRequest,
    ) -> Result<(ConnectionOverride, Defaults), GateDenial> {
        let connection = connection_overrides(annotations, &self.vault, &self.overrides)?;
        let defaults = self.policy.check(req)?;
        Ok((connection, defaults))
    }

    /// Everything: [`Gate::check`], then each `(NAME, PROFILE)` of
    /// `req.volume_profiles` resolved from Vault.
    pub async fn admit(
        &self,
        annotations: &BTreeMap<String, String>,
        req: &PolicyRequest,
    ) -> Result<Admitted, GateDenial> {
        let (connection, defaults) = self.check(annotations, req)?;
        let mut volumes = Vec::with_capacity(req.volume_profiles.len());
        for (name, profile) in &req.volume_profiles {
            volumes.push(
                self.profiles
                    .resolve(name, profile, &req.namespace, &req.service_account)
                    .await?,
            );
        }
        Ok(Admitted {
            defaults,
            connection,
            volumes,
        })
    }
}
