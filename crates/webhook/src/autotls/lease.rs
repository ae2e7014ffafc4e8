//! Leader election on a `coordination.k8s.io/v1` Lease: one replica writes
//! the TLS Secret and patches the webhook configuration; the others only read.
//!
//! Writes are optimistic (`resourceVersion` on replace, create-if-absent), so
//! two replicas racing for an expired lease cannot both win.
//!
//! Expiry is judged on this replica's monotonic clock, as client-go does: a
//! lease is expired when its record (holder, renewTime) has not changed for
//! longer than its duration *as observed here*, so clock skew between nodes
//! cannot make two replicas lead at once.

use std::time::{Duration, Instant};

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

/// `unchanged_for`: how long this replica has seen the lease record as it is
/// now (zero on first sight, so a new replica waits a full lease duration
/// before taking over from a holder that may still be alive).
pub fn decide_lease(lease: Option<&Lease>, me: &str, unchanged_for: Duration) -> LeaseDecision {
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
    let duration = Duration::from_secs(
        u64::try_from(spec.lease_duration_seconds.unwrap_or(15))
            .unwrap_or(15)
            .max(1),
    );
    if unchanged_for > duration {
        LeaseDecision::Acquire
    } else {
        LeaseDecision::Follow { holder }
    }
}

/// When this replica last saw the lease record change.
#[derive(Debug, Default)]
pub struct Observed {
    record: Option<String>,
    since: Option<Instant>,
}

impl Observed {
    /// Records what the lease looks like now; returns how long it has
    /// looked like this.
    fn see(&mut self, lease: Option<&Lease>, now: Instant) -> Duration {
        let record = lease.and_then(|l| l.spec.as_ref()).map(|s| {
            format!(
                "{:?}|{:?}|{:?}",
                s.holder_identity,
                s.renew_time.as_ref().map(|t| t.0),
                s.lease_transitions
            )
        });
        if record != self.record || self.since.is_none() {
            self.record = record;
            self.since = Some(now);
        }
        now.saturating_duration_since(self.since.unwrap_or(now))
    }
}

/// Runs one election round; `Ok(true)` when we lead until the next round.
pub async fn try_lead(
    api: &Api<Lease>,
    name: &str,
    me: &str,
    duration: Duration,
    now: DateTime<Utc>,
    observed: &mut Observed,
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
    let unchanged_for = observed.see(current.as_ref(), Instant::now());
    match decide_lease(current.as_ref(), me, unchanged_for) {
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
            // Renew and Acquire are only decided on an existing lease.
            let Some(mut lease) = current else {
                return Ok(false);
            };
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

    fn lease(holder: Option<&str>, renew_secs: i64) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(
                    DateTime::from_timestamp(1_700_000_000 + renew_secs, 0).unwrap(),
                )),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn decisions() {
        let s = Duration::from_secs;
        assert_eq!(decide_lease(None, "a", s(0)), LeaseDecision::Create);
        assert_eq!(
            decide_lease(Some(&lease(Some("a"), 0)), "a", s(100)),
            LeaseDecision::Renew
        );
        assert_eq!(
            decide_lease(Some(&lease(Some("b"), 0)), "a", s(5)),
            LeaseDecision::Follow { holder: "b".into() }
        );
        assert_eq!(
            decide_lease(Some(&lease(Some("b"), 0)), "a", s(16)),
            LeaseDecision::Acquire
        );
        assert_eq!(
            decide_lease(Some(&lease(None, 0)), "a", s(0)),
            LeaseDecision::Acquire
        );
    }

    #[test]
    fn expiry_follows_the_local_clock_not_the_holders_timestamps() {
        let t0 = Instant::now();
        let mut seen = Observed::default();
        // A renewTime far in the past (skewed holder clock) is not expiry by
        // itself: first sight starts the local timer.
        let stale = lease(Some("b"), -3600);
        assert_eq!(seen.see(Some(&stale), t0), Duration::ZERO);
        assert_eq!(
            seen.see(Some(&stale), t0 + Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        // The holder renews: the timer restarts.
        let renewed = lease(Some("b"), -3590);
        assert_eq!(
            seen.see(Some(&renewed), t0 + Duration::from_secs(12)),
            Duration::ZERO
        );
        assert_eq!(
            seen.see(Some(&renewed), t0 + Duration::from_secs(28)),
            Duration::from_secs(16)
        );
        assert_eq!(
            decide_lease(Some(&renewed), "a", Duration::from_secs(16)),
            LeaseDecision::Acquire
        );
    }
}
