//! Auto-TLS: the webhook issues and rotates its own serving certificate.
//!
//! - One writer: replicas elect a leader with a `coordination.k8s.io` Lease.
//! - The leader keeps a CA and a serving certificate for the Service's DNS
//!   names in one Secret (`ca.crt`, `ca.key`, `tls.crt`, `tls.key`), renews
//!   the serving certificate before it expires, and rotates the CA before it
//!   expires, keeping the old CA in the bundle while certificates it signed
//!   may still be served.
//! - The leader sets `caBundle` on every entry of the
//!   MutatingWebhookConfiguration, before writing new material to the Secret
//!   (so the API server trusts a new CA before anyone serves from it), and
//!   watches the configuration to re-patch when someone else changes it
//!   (e.g. a GitOps sync or `helm upgrade`).
//! - Every replica copies the key pair from the Secret into `--cert-dir`
//!   atomically; the server's TLS reloader serves it.
//!
//! Decisions are pure functions (`pki::plan`, `pki::needs_renewal`,
//! `pki::ca_bundle_for`, `webhook::patch_for_webhooks`,
//! `lease::decide_lease`); this file is the loop around them.

pub mod files;
pub mod lease;
pub mod pki;
pub mod webhook;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use time::OffsetDateTime;

pub use lease::{decide_lease, LeaseDecision};
pub use pki::{ca_bundle_for, needs_renewal, Plan, Policy, TlsMaterial};
pub use webhook::patch_for_webhooks;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {name}: {source}")]
    Kube {
        action: &'static str,
        name: String,
        source: Box<kube::Error>,
    },
    #[error("another replica changed Secret {0} concurrently; retrying on the next round")]
    Conflict(String),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("reading PEM: {0}")]
    Pem(String),
    #[error("auto-TLS settings: {0}")]
    Policy(String),
    #[error("{what} cert dir {dir}: {source}")]
    CertDir {
        what: &'static str,
        dir: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Flags of the auto-TLS controller; `#[command(flatten)]` them into the
/// webhook's args.
#[derive(Debug, Clone, clap::Args)]
pub struct AutoTlsArgs {
    /// Issue and rotate the serving certificate in-cluster (Helm `tls.mode=auto`).
    #[arg(long, env = "VAULT_INJECTOR_AUTO_TLS")]
    pub auto_tls: bool,
    /// Secret (in --namespace) that holds the CA and the serving key pair.
    #[arg(
        long,
        env = "VAULT_INJECTOR_TLS_SECRET_NAME",
        default_value = "vault-injector-tls"
    )]
    pub tls_secret_name: String,
    /// MutatingWebhookConfiguration whose entries get the caBundle.
    #[arg(
        long,
        env = "VAULT_INJECTOR_WEBHOOK_CONFIG_NAME",
        default_value = "vault-injector"
    )]
    pub webhook_config_name: String,
    /// Service the API server calls; the certificate covers its DNS names.
    #[arg(
        long,
        env = "VAULT_INJECTOR_SERVICE_NAME",
        default_value = "vault-injector"
    )]
    pub service_name: String,
    /// Namespace of the Service, Secret and Lease (the pod's own).
    #[arg(long, env = "VAULT_INJECTOR_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Directory the key pair is written to (tls.crt, tls.key); point
    /// --tls-cert/--tls-key at it.
    #[arg(long, env = "VAULT_INJECTOR_CERT_DIR", default_value = "/tls")]
    pub cert_dir: PathBuf,
    /// Lease used for leader election.
    #[arg(
        long,
        env = "VAULT_INJECTOR_LEASE_NAME",
        default_value = "vault-injector-tls-leader"
    )]
    pub lease_name: String,
    /// This replica's identity in the Lease (defaults to the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Renew the serving certificate this long before it expires.
    #[arg(long, env = "VAULT_INJECTOR_RENEW_BEFORE", default_value = "720h", value_parser = humantime::parse_duration)]
    pub renew_before: Duration,
    /// Lifetime of serving certificates.
    #[arg(long, env = "VAULT_INJECTOR_CERT_VALIDITY", default_value = "8760h", value_parser = humantime::parse_duration)]
    pub cert_validity: Duration,
    /// Lifetime of the CA.
    #[arg(long, env = "VAULT_INJECTOR_CA_VALIDITY", default_value = "43800h", value_parser = humantime::parse_duration)]
    pub ca_validity: Duration,
    /// How often leadership is renewed and the Secret re-read. The Lease
    /// lasts three rounds.
    #[arg(long, env = "VAULT_INJECTOR_AUTO_TLS_RESYNC", default_value = "5s", value_parser = humantime::parse_duration)]
    pub resync: Duration,
}

impl AutoTlsArgs {
    pub fn policy(&self) -> Policy {
        Policy {
            ca_validity: self.ca_validity,
            cert_validity: self.cert_validity,
            renew_before: self.renew_before,
        }
    }

    /// The files the server must load (`--tls-cert`, `--tls-key`).
    pub fn cert_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.cert_dir.join(pki::TLS_CERT_KEY),
            self.cert_dir.join(pki::TLS_KEY_KEY),
        )
    }
}

/// The API handles and settings of one replica's controller.
pub struct Controller {
    secrets: Api<Secret>,
    leases: Api<Lease>,
    webhooks: Api<MutatingWebhookConfiguration>,
    secret_name: String,
    webhook_name: String,
    lease_name: String,
    identity: String,
    dns_names: Vec<String>,
    policy: Policy,
    cert_dir: PathBuf,
    lease_duration: Duration,
}

/// What one replica remembers between rounds.
#[derive(Debug, Default)]
pub struct State {
    pub leading: bool,
    pub material: Option<TlsMaterial>,
    lease: lease::Observed,
}

impl Controller {
    pub fn new(args: &AutoTlsArgs, client: kube::Client) -> Result<Self> {
        let AutoTlsArgs {
            auto_tls: _,
            tls_secret_name,
            webhook_config_name,
            service_name,
            namespace,
            cert_dir,
            lease_name,
            identity,
            renew_before: _,
            cert_validity: _,
            ca_validity: _,
            resync,
        } = args;
        let policy = args.policy();
        policy.validate()?;
        let identity = identity
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("vault-injector-{}", std::process::id()));
        Ok(Self {
            secrets: Api::namespaced(client.clone(), namespace),
            leases: Api::namespaced(client.clone(), namespace),
            webhooks: Api::all(client),
            secret_name: tls_secret_name.clone(),
            webhook_name: webhook_config_name.clone(),
            lease_name: lease_name.clone(),
            identity,
            dns_names: pki::service_dns_names(service_name, namespace),
            policy,
            cert_dir: cert_dir.clone(),
            lease_duration: *resync * 3,
        })
    }

    fn kube_err(&self, action: &'static str) -> impl FnOnce(kube::Error) -> Error + '_ {
        move |source| Error::Kube {
            action,
            name: self.secret_name.clone(),
            source: Box::new(source),
        }
    }

    /// Reads the Secret's material, if the Secret exists and is complete.
    pub async fn read_secret(&self) -> Result<Option<TlsMaterial>> {
        let secret = self
            .secrets
            .get_opt(&self.secret_name)
            .await
            .map_err(self.kube_err("reading TLS Secret"))?;
        Ok(secret.as_ref().and_then(material_of))
    }

    /// The leader's job: make the Secret hold valid material (create, renew,
    /// rotate) and return it. Writes nothing when it is already valid.
    pub async fn leader_reconcile(&self, now: OffsetDateTime) -> Result<TlsMaterial> {
        let secret = self
            .secrets
            .get_opt(&self.secret_name)
            .await
            .map_err(self.kube_err("reading TLS Secret"))?;
        let current = secret.as_ref().and_then(material_of);
        let plan = pki::plan(current.as_ref(), &self.dns_names, &self.policy, now);
        let reason = match (&plan, &current) {
            (Plan::Keep, Some(valid)) => return Ok(valid.clone()),
            (
                Plan::Create { reason } | Plan::RenewCert { reason } | Plan::RotateCa { reason },
                _,
            ) => reason.as_str(),
            (Plan::Keep, None) => "no material",
        };
        tracing::info!(secret = %self.secret_name, plan = plan_name(&plan), %reason, "auto-TLS: issuing");
        let fresh = pki::issue(current.as_ref(), &plan, &self.dns_names, &self.policy, now)?;

        // Trust first, serve second: the API server gets the new bundle
        // before any replica can pick up a certificate signed by a new CA.
        let bundle = ca_bundle_for(&fresh, now);
        webhook::get_and_sync_webhook(&self.webhooks, &self.webhook_name, bundle.as_bytes())
            .await?;

        let data = fresh
            .to_secret_data()
            .into_iter()
            .map(|(k, v)| (k, ByteString(v)))
            .collect();
        let result = match secret {
            None => {
                let new = Secret {
                    metadata: ObjectMeta {
                        name: Some(self.secret_name.clone()),
                        labels: Some(
                            [(
                                "app.kubernetes.io/managed-by".to_string(),
                                "vault-injector".to_string(),
                            )]
                            .into(),
                        ),
                        ..Default::default()
                    },
                    type_: Some("kubernetes.io/tls".into()),
                    data: Some(data),
                    ..Default::default()
                };
                self.secrets.create(&PostParams::default(), &new).await
            }
            Some(mut existing) => {
                // resourceVersion from our read makes this optimistic.
                existing.data = Some(data);
                existing.string_data = None;
                self.secrets
                    .replace(&self.secret_name, &PostParams::default(), &existing)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(fresh),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                Err(Error::Conflict(self.secret_name.clone()))
            }
            Err(e) => Err(self.kube_err("writing TLS Secret")(e)),
        }
    }

    /// Re-patches a configuration the watch delivered, if its bundle is not
    /// the one `material` calls for.
    pub async fn on_webhook_change(
        &self,
        config: &MutatingWebhookConfiguration,
        material: &TlsMaterial,
        now: OffsetDateTime,
    ) -> Result<usize> {
        let bundle = ca_bundle_for(material, now);
        let changed = webhook::sync_webhook(&self.webhooks, config, bundle.as_bytes()).await?;
        if changed > 0 {
            tracing::info!(config = %self.webhook_name, entries = changed, "auto-TLS: caBundle re-patched");
        }
        Ok(changed)
    }

    /// One round: elect, reconcile (leader) or read (follower), publish the
    /// key pair to the cert dir.
    pub async fn round(&self, state: &mut State) -> Result<()> {
        let now = OffsetDateTime::now_utc();
        let chrono_now =
            k8s_openapi::chrono::DateTime::from_timestamp(now.unix_timestamp(), now.nanosecond())
                .unwrap_or_default();
        let leading = match lease::try_lead(
            &self.leases,
            &self.lease_name,
            &self.identity,
            self.lease_duration,
            chrono_now,
            &mut state.lease,
        )
        .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "auto-TLS: leader election failed; acting as follower");
                false
            }
        };
        if leading != state.leading {
            tracing::info!(identity = %self.identity, leading, "auto-TLS: leadership changed");
        }
        state.leading = leading;
        let material = if leading {
            Some(self.leader_reconcile(now).await?)
        } else {
            self.read_secret().await?
        };
        if let Some(m) = &material {
            if files::publish(&self.cert_dir, &m.cert_pem, &m.key_pem)? {
                tracing::info!(dir = %self.cert_dir.display(), "auto-TLS: serving certificate written");
            }
        }
        if material.is_some() {
            state.material = material;
        }
        Ok(())
    }

    fn watch_webhook(
        &self,
    ) -> impl Stream<Item = Result<watcher::Event<MutatingWebhookConfiguration>, watcher::Error>>
           + Send
           + 'static {
        let config =
            watcher::Config::default().fields(&format!("metadata.name={}", self.webhook_name));
        watcher(self.webhooks.clone(), config).default_backoff()
    }

    /// Gives the lease up so another replica takes over without waiting for
    /// it to expire.
    async fn release(&self) {
        if let Ok(Some(mut l)) = self.leases.get_opt(&self.lease_name).await {
            let spec = l.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() == Some(self.identity.as_str()) {
                spec.holder_identity = None;
                let _ = self
                    .leases
                    .replace(&self.lease_name, &PostParams::default(), &l)
                    .await;
            }
        }
    }
}

fn plan_name(plan: &Plan) -> &'static str {
    match plan {
        Plan::Keep => "keep",
        Plan::RenewCert { .. } => "renew-cert",
        Plan::RotateCa { .. } => "rotate-ca",
        Plan::Create { .. } => "create",
    }
}

fn material_of(secret: &Secret) -> Option<TlsMaterial> {
    let data = secret
        .data
        .as_ref()?
        .iter()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    TlsMaterial::from_secret_data(&data)
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    args: AutoTlsArgs,
    client: kube::Client,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let ctl = Controller::new(&args, client)?;
    let mut state = State::default();
    let mut ticks = tokio::time::interval(args.resync);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch: Option<std::pin::Pin<Box<dyn Stream<Item = _> + Send>>> = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticks.tick() => {
                if let Err(e) = ctl.round(&mut state).await {
                    tracing::warn!(error = %e, "auto-TLS: round failed; retrying");
                }
                match (state.leading, watch.is_some()) {
                    (true, false) => watch = Some(Box::pin(ctl.watch_webhook())),
                    (false, true) => watch = None,
                    _ => {}
                }
            }
            event = async {
                match watch.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            } => match event {
                Some(Ok(watcher::Event::Apply(config) | watcher::Event::InitApply(config))) => {
                    if let Some(m) = &state.material {
                        if let Err(e) = ctl.on_webhook_change(&config, m, OffsetDateTime::now_utc()).await {
                            tracing::warn!(error = %e, "auto-TLS: re-patching caBundle failed");
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "auto-TLS: watching the webhook configuration"),
                None => watch = None,
            }
        }
    }
    if state.leading {
        ctl.release().await;
    }
    Ok(())
}

/// Starts [`run`] in the background and returns once the key pair is in the
/// cert dir, so the server can load it before binding. Fails if the
/// controller stops first or nothing arrives within `timeout`.
pub async fn spawn(
    args: AutoTlsArgs,
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
    timeout: Duration,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let (cert, key) = args.cert_paths();
    let dir = args.cert_dir.clone();
    let mut handle = tokio::spawn(run(args, client, shutdown));
    let deadline = tokio::time::Instant::now() + timeout;
    while !(cert.exists() && key.exists()) {
        if handle.is_finished() {
            return match (&mut handle).await {
                Ok(Ok(())) => Err(anyhow::anyhow!(
                    "auto-TLS stopped before writing a certificate"
                )),
                Ok(Err(e)) => Err(e.context("auto-TLS")),
                Err(e) => Err(anyhow::anyhow!("auto-TLS task failed: {e}")),
            };
        }
        if tokio::time::Instant::now() >= deadline {
            handle.abort();
            anyhow::bail!(
                "auto-TLS: no certificate in {} after {}; check the Secret, Lease and RBAC",
                dir.display(),
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(handle)
}
