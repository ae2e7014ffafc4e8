//! Follows the cluster policy file: polls its content (which also sees
//! Kubernetes' `..data` symlink swap) and swaps the policy in when it
//! changes. The policy itself is pure ([`vault_injector_core::policy`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vault_injector_core::policy::PolicyHandle;

/// Polls the file every `interval` until `stop` is cancelled.
pub fn spawn(
    handle: Arc<PolicyHandle>,
    interval: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            match handle.reload() {
                Ok(true) => {
                    failing = false;
                    tracing::info!(file = ?handle.file(), "policy reloaded");
                }
                Ok(false) => failing = false,
                // Logged once per failure streak: a broken ConfigMap
                // should not flood the log every few seconds.
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(error = %e, "policy reload failed; keeping the previous policy");
                }
                Err(_) => {}
            }
        }
    })
}
