//! Leader election on a `coordination.k8s.io/v1` Lease: one replica writes
//! the TLS Secret and patches the webhook configuration; the others only read.
//!
//! Writes are optimistic (`resourceVersion` on replace, create-if-absent), so
//! two replicas racing for an expired lease cannot both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::{Api, ObjectMeta, PostParams};

use super::{Error, Result};

/// What to do with the lease as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No lease object: create it with us as holder.
    Create,
    /// We hold it: renew.
    Renew,
    /// Unheld or expired: take it over.
    Acquire,
    /// Someone else holds a live lease.
    Follow { holder: String },
}

pub fn decide_lease(lease: Option<&Lease>, me: &str, now: DateTime<Utc>) -> LeaseDecision {
    let Some(lease) = lease else {
        return LeaseDecision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == me {
        return LeaseDecision::Renew;
    }
    if holder.is_empty() {
        return LeaseDecision::Acquire;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15).max(1));
    let expired = match spec.renew_time.or(spec.acquire_time) {
        Some(MicroTime(t)) => now - t > k8s_openapi::chrono::Duration::seconds(duration),
        None => true,
    };
    if expired {
        LeaseDecision::Acquire
    } else {
        LeaseDecision::Follow { holder }
    }
}

/// Runs one election round; `Ok(true)` when we lead until the next round.
pub async fn try_lead(
    api: &Api<Lease>,
    name: &str,
    me: &str,
    duration: Duration,
    now: DateTime<Utc>,
) -> Result<bool> {
    let err = |action: &'static str| {
        let name = name.to_string();
        move |source| Error::Kube {
            action,
            name,
            source: Box::new(source),
        }
    };
    let current = api
        .get_opt(name)
        .await
        .map_err(err("reading leader-election Lease"))?;
    let seconds = i32::try_from(duration.as_secs()).unwrap_or(i32::MAX).max(1);
    match decide_lease(current.as_ref(), me, now) {
        LeaseDecision::Follow { .. } => Ok(false),
        LeaseDecision::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.to_string()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(err("creating leader-election Lease")(e)),
            }
        }
        decision @ (LeaseDecision::Renew | LeaseDecision::Acquire) => {
            let mut lease = current.expect("decided on an existing lease");
            let spec = lease.spec.get_or_insert_with(Default::default);
            if decision == LeaseDecision::Acquire {
                spec.holder_identity = Some(me.to_string());
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(seconds);
            // `lease` still carries the resourceVersion we read: a replica
            // that wrote in between makes this a 409 and we stay follower.
            match api.replace(name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(err("updating leader-election Lease")(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: i64, now: DateTime<Utc>) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(
                    now - k8s_openapi::chrono::Duration::seconds(renewed_secs_ago),
                )),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn decisions() {
        let now = Utc::now();
        assert_eq!(decide_lease(None, "a", now), LeaseDecision::Create);
        assert_eq!(
            decide_lease(Some(&lease(Some("a"), 100, now)), "a", now),
            LeaseDecision::Renew
        );
        assert_eq!(
            decide_lease(Some(&lease(Some("b"), 5, now)), "a", now),
            LeaseDecision::Follow { holder: "b".into() }
        );
        assert_eq!(
            decide_lease(Some(&lease(Some("b"), 16, now)), "a", now),
            LeaseDecision::Acquire
        );
        assert_eq!(
            decide_lease(Some(&lease(None, 0, now)), "a", now),
            LeaseDecision::Acquire
        );
    }
}
