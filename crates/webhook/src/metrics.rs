//! Prometheus metrics of the webhook, served on the admin port.
//!
//! Label values are bounded: `decision` has four values, `namespace` is
//! bounded by the cluster's namespaces, `result` has two.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use vault_injector_core::audit::Decision;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdmissionLabels {
    decision: &'static str,
    namespace: String,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReloadResult {
    Success,
    Error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    reason: &'static str,
}

/// Why the server closed a connection or refused a request on its own.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ConnClosed {
    /// No request within `--request-timeout` (first) or `--idle-timeout`.
    Idle,
    /// Closed to make room for a new connection at `--max-connections`.
    Shed,
    /// Refused at `--max-connections` with every connection busy.
    Refused,
    /// TLS handshake not done within `--request-timeout`.
    Handshake,
    /// A request body not complete within `--body-timeout` (answered 408).
    BodyTimeout,
}

impl ConnClosed {
    fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Shed => "shed",
            Self::Refused => "refused",
            Self::Handshake => "handshake",
            Self::BodyTimeout => "body_timeout",
        }
    }
}

/// Every metric the webhook exports, plus the registry that renders them.
pub struct Metrics {
    registry: Registry,
    admissions: Family<AdmissionLabels, Counter>,
    duration: Histogram,
    in_flight: Gauge,
    tls_reloads: Family<ReloadLabels, Counter>,
    tls_not_after: Gauge,
    connections_open: Gauge,
    connections_closed: Family<ClosedLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let admissions = Family::<AdmissionLabels, Counter>::default();
        // `_total` is appended by the encoder.
        registry.register(
            "vault_injector_admissions",
            "Admission reviews answered, by decision and namespace",
            admissions.clone(),
        );
        // 100 us .. ~3.3 s: admissions are sub-millisecond when healthy; the
        // API server's timeout is at most 30 s.
        let duration = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "vault_injector_admission_duration_seconds",
            "Time from request received to response ready, for /mutate",
            duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "vault_injector_admissions_in_flight",
            "Requests to /mutate being handled right now",
            in_flight.clone(),
        );
        let tls_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "vault_injector_tls_reloads",
            "Serving certificate reloads after the files changed, by result",
            tls_reloads.clone(),
        );
        let tls_not_after = Gauge::default();
        registry.register(
            "vault_injector_tls_cert_not_after_timestamp_seconds",
            "Expiry (Unix time) of the serving certificate in use",
            tls_not_after.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "vault_injector_connections_open",
            "Webhook TCP connections open (handshaking, idle or busy)",
            connections_open.clone(),
        );
        let connections_closed = Family::<ClosedLabels, Counter>::default();
        registry.register(
            "vault_injector_connections_closed",
            "Connections closed or requests cut by a server limit, by reason",
            connections_closed.clone(),
        );
        Self {
            connections_open,
            connections_closed,
            tls_not_after,
            registry,
            admissions,
            duration,
            in_flight,
            tls_reloads,
        }
    }

    pub fn admission(&self, decision: Decision, namespace: &str, seconds: f64) {
        self.admissions
            .get_or_create(&AdmissionLabels {
                decision: decision.as_str(),
                namespace: namespace.to_owned(),
            })
            .inc();
        self.duration.observe(seconds);
    }

    /// Counts a request as in flight until the guard is dropped, so an early
    /// return or a cancelled request cannot leave the gauge high.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    pub fn tls_reload(&self, result: ReloadResult) {
        self.tls_reloads
            .get_or_create(&ReloadLabels {
                result: match result {
                    ReloadResult::Success => "success",
                    ReloadResult::Error => "error",
                },
            })
            .inc();
    }

    pub fn tls_not_after(&self, unix_seconds: i64) {
        self.tls_not_after.set(unix_seconds);
    }

    pub fn connections_open(&self, open: usize) {
        self.connections_open
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    pub fn connection_closed(&self, reason: ConnClosed) {
        self.connections_closed
            .get_or_create(&ClosedLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition (Prometheus scrapes it as is).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_names() {
        let m = Metrics::new();
        m.admission(Decision::Injected, "team-a", 0.0004);
        m.tls_reload(ReloadResult::Error);
        m.tls_not_after(1_800_000_000);
        m.connections_open(3);
        m.connection_closed(ConnClosed::Shed);
        let guard = m.in_flight();
        let text = m.render();
        assert!(text.contains("vault_injector_connections_open 3"), "{text}");
        assert!(
            text.contains(r#"vault_injector_connections_closed_total{reason="shed"} 1"#),
            "{text}"
        );
        drop(guard);
        assert!(
            text.contains(
                r#"vault_injector_admissions_total{decision="injected",namespace="team-a"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("vault_injector_admission_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("vault_injector_admissions_in_flight 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"vault_injector_tls_reloads_total{result="error"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("vault_injector_tls_cert_not_after_timestamp_seconds 1800000000"),
            "{text}"
        );
        assert!(m.render().contains("vault_injector_admissions_in_flight 0"));
    }
}
