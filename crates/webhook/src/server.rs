//! The HTTPS admission server and its lifecycle (bind, serve, drain).
//!
//! [`Webhook`] is the HTTP handling of `/mutate` as a `tower::Service`,
//! independent of any socket, so tests drive it in-process. [`run`] wires it
//! to a TLS listener, the admin port, the certificate reloader and the
//! signals.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;
use tracing::Instrument;

use crate::admin::{self, AdminState};
use crate::admission::Injector;
use crate::audit_sink::AuditSink;
use crate::metrics::{ConnClosed, Metrics};
use crate::tls::{CertStore, TlsPaths};
use vault_injector_core::config::WebhookConfig;
use vault_injector_core::contract::LogFormat;

#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    /// HTTPS listen address for `/mutate`.
    #[arg(long, default_value = "0.0.0.0:8443", env = "VAULT_INJECTOR_LISTEN")]
    pub listen: SocketAddr,
    /// PEM certificate chain (re-read when it changes).
    #[arg(long, env = "VAULT_INJECTOR_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// PEM private key (re-read when it changes).
    #[arg(long, env = "VAULT_INJECTOR_TLS_KEY")]
    pub tls_key: PathBuf,
    /// Plain-HTTP admin address (`/healthz`, `/readyz`, `/metrics`).
    #[arg(
        long,
        default_value = "0.0.0.0:9090",
        env = "VAULT_INJECTOR_ADMIN_LISTEN"
    )]
    pub admin_listen: SocketAddr,
    /// Operator config file (YAML). Defaults apply when omitted.
    #[arg(long, env = "VAULT_INJECTOR_CONFIG_FILE")]
    pub config: Option<PathBuf>,
    /// Log format; overrides the config file.
    #[arg(long, env = "VAULT_INJECTOR_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// How long SIGTERM waits for in-flight requests before exiting anyway.
    #[arg(
        long,
        default_value = "25s",
        value_parser = humantime::parse_duration,
        env = "VAULT_INJECTOR_DRAIN_TIMEOUT"
    )]
    pub drain_timeout: Duration,
    /// Admission requests handled at once; more wait for a slot.
    #[arg(
        long,
        default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..),
        env = "VAULT_INJECTOR_MAX_CONCURRENCY"
    )]
    pub max_concurrency: u32,
    /// How often the certificate files are checked for a new pair.
    #[arg(
        long,
        default_value = "2s",
        value_parser = humantime::parse_duration,
        env = "VAULT_INJECTOR_TLS_RELOAD_INTERVAL"
    )]
    pub tls_reload_interval: Duration,
    /// Time a new connection has for its TLS handshake and the headers of
    /// its first request; also the limit on any request's headers.
    #[arg(
        long,
        default_value = "5s",
        value_parser = humantime::parse_duration,
        env = "VAULT_INJECTOR_REQUEST_TIMEOUT"
    )]
    pub request_timeout: Duration,
    /// Time a request's whole body has to arrive once its headers are in;
    /// past it the request is answered 408.
    #[arg(
        long,
        default_value = "5s",
        value_parser = humantime::parse_duration,
        env = "VAULT_INJECTOR_BODY_TIMEOUT"
    )]
    pub body_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed.
    #[arg(
        long,
        default_value = "60s",
        value_parser = humantime::parse_duration,
        env = "VAULT_INJECTOR_IDLE_TIMEOUT"
    )]
    pub idle_timeout: Duration,
    /// Open connections (handshaking included). At the cap a new one
    /// closes the longest-idle connection, or is refused when all are busy.
    #[arg(
        long,
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..),
        env = "VAULT_INJECTOR_MAX_CONNECTIONS"
    )]
    pub max_connections: u32,
    /// Bytes of request bodies held in memory at once, over all
    /// connections; raised to `injector.maxBodyBytes` when lower.
    #[arg(
        long,
        default_value_t = 64 * 1024 * 1024,
        value_parser = clap::value_parser!(u64).range(1024..),
        env = "VAULT_INJECTOR_MAX_BODY_MEMORY"
    )]
    pub max_body_memory: u64,
    /// In-cluster certificate management (Helm `tls.mode=auto`).
    #[command(flatten)]
    pub auto_tls: crate::autotls::AutoTlsArgs,
}

/// Default of `--body-timeout` for callers without flags (tests).
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of `--max-body-memory` for callers without flags.
const DEFAULT_BODY_MEMORY: usize = 64 * 1024 * 1024;
/// HTTP/2 streams per connection: hyper's default, set here so an upgrade
/// cannot loosen it. Each stream still needs a body budget and a slot.
const H2_MAX_CONCURRENT_STREAMS: u32 = 200;
/// HTTP/2 header block limit (hyper's default, explicit for the same
/// reason): bounds what a CONTINUATION flood can make us buffer.
const H2_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
/// How long a connection told to close (idle, shed, drain) may take to
/// finish on its own before it is dropped, once no request is in flight.
/// Lets hyper write a last response and HTTP/2 send its GOAWAY.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// While a request is in flight its own deadlines bound it; the connection
/// looks again this often.
const BUSY_RECHECK: Duration = Duration::from_secs(1);

pub type HttpResponse = Response<Full<Bytes>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------
// The webhook as a service
// ---------------------------------------------------------------------------

struct Inner {
    injector: Injector,
    metrics: Arc<Metrics>,
    audit: AuditSink,
    limit: Semaphore,
    max_body: usize,
    body_timeout: Duration,
    /// Body bytes buffered at once, over all requests (one permit a byte).
    body_budget: Arc<Semaphore>,
    /// Kubernetes Events for decisions (`events.enabled`); off by default.
    events: Option<crate::events::EventSink>,
}

/// `POST /mutate`: content checks, bounded body read, the admission core,
/// audit and metrics. Cheap to clone.
#[derive(Clone)]
pub struct Webhook(Arc<Inner>);

fn reply(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    let mut message = message.into();
    message.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(message)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn is_json(value: Option<&HeaderValue>) -> bool {
    let Some(Ok(v)) = value.map(HeaderValue::to_str) else {
        return false;
    };
    let essence = v.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

impl Webhook {
    pub fn new(
        injector: Injector,
        metrics: Arc<Metrics>,
        audit: AuditSink,
        max_concurrency: usize,
    ) -> Self {
        let max_body = injector.config().injector.max_body_bytes;
        Self(Arc::new(Inner {
            injector,
            metrics,
            audit,
            limit: Semaphore::new(max_concurrency),
            max_body,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            body_budget: Arc::new(Semaphore::new(DEFAULT_BODY_MEMORY.max(max_body))),
            events: None,
        }))
    }

    /// Sets `--body-timeout` and `--max-body-memory`. Must be called before
    /// the webhook is cloned, like [`Self::with_events`].
    pub fn with_body_limits(mut self, timeout: Duration, memory: usize) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(inner) => {
                inner.body_timeout = timeout;
                // One body within the size limit must always fit.
                inner.body_budget = Arc::new(Semaphore::new(
                    memory.max(inner.max_body).min(Semaphore::MAX_PERMITS),
                ));
            }
            None => tracing::warn!("body limits set after the webhook was shared; ignored"),
        }
        self
    }

    /// Also record each injection or denial as a Kubernetes Event.
    /// Must be called before the webhook is cloned; later calls are ignored
    /// with a warning.
    pub fn with_events(mut self, sink: crate::events::EventSink) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(inner) => inner.events = Some(sink),
            None => tracing::warn!("events sink added after the webhook was shared; ignored"),
        }
        self
    }

    pub async fn handle<B>(&self, mut req: Request<B>) -> HttpResponse
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let start = Instant::now();
        let inner = &*self.0;
        if req.uri().path() != "/mutate" {
            return reply(
                StatusCode::NOT_FOUND,
                "not found; the webhook serves POST /mutate",
            );
        }
        if req.method() != Method::POST {
            let mut resp = reply(StatusCode::METHOD_NOT_ALLOWED, "/mutate accepts POST only");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return resp;
        }
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return reply(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json (an AdmissionReview)",
            );
        }
        let too_large = || {
            reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "AdmissionReview larger than {} bytes (injector.maxBodyBytes)",
                    inner.max_body
                ),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let expects_continue = req
            .headers()
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if expects_continue && declared.is_some_and(|n| n > inner.max_body as u64) {
            // The client waits for our go-ahead: refuse without reading.
            return too_large();
        }

        let _in_flight = inner.metrics.in_flight();
        let pending = req.extensions_mut().remove::<BodyPending>();
        // The admission slot is taken only once the whole body is in: a
        // client that sends its body slowly (or never) must not hold one.
        let read = read_body(req.into_body(), inner.max_body, &inner.body_budget);
        let (body, _body_memory) = match tokio::time::timeout(inner.body_timeout, read).await {
            Err(_) => {
                inner.metrics.connection_closed(ConnClosed::BodyTimeout);
                return reply(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "request body not received within {} (--body-timeout)",
                        humantime::format_duration(inner.body_timeout)
                    ),
                );
            }
            Ok(Ok(read)) => read,
            Ok(Err(ReadError::TooLarge)) => return too_large(),
            Ok(Err(ReadError::Body(e))) => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    format!("reading the request body failed: {e}"),
                )
            }
        };
        drop(pending);
        let Ok(_permit) = inner.limit.acquire().await else {
            return reply(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        };

        // The audit line carries every fact about the admission, and nothing
        // inside the review logs at info or above, so the per-admission span
        // (which the JSON formatter serializes on creation and on every
        // `record`) exists only when debug logs are on.
        let debug = tracing::enabled!(tracing::Level::DEBUG);
        let span = if debug {
            tracing::info_span!(
                "admission",
                request_uid = Empty,
                namespace = Empty,
                pod = Empty,
                operation = Empty,
                dry_run = Empty,
                decision = Empty,
            )
        } else {
            tracing::Span::none()
        };
        let reviewed = match inner.injector.review(&body).instrument(span.clone()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(error = %e, "rejected a malformed AdmissionReview");
                return reply(StatusCode::BAD_REQUEST, e.to_string());
            }
        };
        let mut audit = reviewed.audit;
        let elapsed = start.elapsed().as_secs_f64();
        audit.latency_ms = elapsed * 1000.0;
        if debug {
            span.record("request_uid", audit.uid.as_str());
            span.record("namespace", audit.namespace.as_str());
            span.record("pod", audit.pod.as_str());
            span.record("operation", audit.operation.as_str());
            span.record("dry_run", audit.dry_run);
            span.record("decision", audit.decision.as_str());
        }
        inner
            .metrics
            .admission(audit.decision, &audit.namespace, elapsed);
        inner.audit.emit(&audit);
        if let Some(events) = &inner.events {
            // Never for dry runs or skipped pods (`from_audit` decides).
            if let Some(ev) = crate::events::AdmissionEvent::from_audit(&audit, &reviewed.owners) {
                events.spawn(ev);
            }
        }

        let mut resp = Response::new(Full::new(Bytes::from(reviewed.body)));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

enum ReadError {
    TooLarge,
    Body(BoxError),
}

/// Past the limit the rest of a body is read and thrown away (up to this
/// much more), so the client, still sending, reads our 413 instead of a
/// reset connection. Memory stays bounded by the limit either way.
const DISCARD_LIMIT: usize = 16 * 1024 * 1024;

/// Reads at most `max` bytes of body into memory, enforced while reading
/// (a missing or false Content-Length changes nothing). Every byte kept is
/// first taken from `budget`, so all bodies being read at once stay within
/// `--max-body-memory`; the permit returned holds it until the admission is
/// answered.
async fn read_body<B>(
    body: B,
    max: usize,
    budget: &Arc<Semaphore>,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), ReadError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    // Content-Length (when honest) sizes the buffer once, up to a small
    // cap: a declared length costs nothing until its bytes arrive.
    let hint = usize::try_from(body.size_hint().lower()).unwrap_or(max);
    let mut buf = bytes::BytesMut::with_capacity(hint.min(max).min(PREALLOC_MAX));
    let mut held: Option<OwnedSemaphorePermit> = None;
    let mut discarded = 0usize;
    loop {
        // Not `while let`: its temporary (and a non-`Send` body error)
        // would live across the budget wait below.
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|e| ReadError::Body(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if discarded == 0 && buf.len() + data.len() <= max {
            // `max` fits in the budget (see `with_body_limits`), so a frame
            // within it always fits too.
            let n = u32::try_from(data.len()).map_err(|_| ReadError::TooLarge)?;
            let Ok(permit) = budget.clone().acquire_many_owned(n).await else {
                return Err(ReadError::Body("shutting down".into()));
            };
            match &mut held {
                Some(h) => h.merge(permit),
                None => held = Some(permit),
            }
            buf.extend_from_slice(&data);
            continue;
        }
        discarded += data.len();
        if discarded > DISCARD_LIMIT {
            break;
        }
    }
    if discarded > 0 {
        return Err(ReadError::TooLarge);
    }
    Ok((buf.freeze(), held))
}

/// Largest buffer allocated ahead of the bytes, from Content-Length.
const PREALLOC_MAX: usize = 64 * 1024;

impl<B> tower::Service<Request<B>> for Webhook
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

// ---------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------

struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Limits of the HTTPS listener (see the flags of [`WebhookArgs`]).
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// One open connection as the accept loop sees it.
struct ConnState {
    /// Requests handed to the webhook and not answered yet.
    busy: AtomicUsize,
    /// Of those, the ones whose body is not complete yet.
    reading: AtomicUsize,
    /// At least one request answered (the idle timeout applies, not the
    /// first-request one).
    served: AtomicBool,
    /// Since when no request is in flight (accept time at first).
    idle_since: std::sync::Mutex<Instant>,
    /// Told to close to make room for a new connection.
    shed: Notify,
    /// A request finished: the connection's deadline moved.
    answered: Notify,
}

impl ConnState {
    fn idle_since(&self) -> Instant {
        *self.idle_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }

    /// Busy, but only with requests still waiting for their bodies: cutting
    /// it loses no admission the server is working on.
    fn only_reading(&self) -> bool {
        let busy = self.busy.load(Ordering::SeqCst);
        busy > 0 && self.reading.load(Ordering::SeqCst) >= busy
    }

    /// When the connection is next looked at: its idle deadline, or for
    /// one already told to close, the end of its grace.
    fn deadline(&self, limits: &ConnLimits, closing: Option<Instant>) -> Instant {
        if self.is_busy() {
            return Instant::now() + BUSY_RECHECK;
        }
        let idle = self.idle_since();
        match closing {
            // Counted from the last answer too, so hyper can write it.
            Some(since) => since.max(idle) + CLOSE_GRACE,
            None if self.served.load(Ordering::SeqCst) => idle + limits.idle_timeout,
            None => idle + limits.request_timeout,
        }
    }
}

/// Travels with a request (as an extension) until its body is in, so the
/// connection counts as reading meanwhile; see [`ConnState::only_reading`].
#[derive(Clone)]
pub struct BodyPending {
    _reading: Arc<PendingInner>,
}

struct PendingInner(Arc<ConnState>);

impl Drop for PendingInner {
    fn drop(&mut self) {
        self.0.reading.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a request as in flight on its connection until dropped.
struct Busy(Arc<ConnState>);

impl Busy {
    fn new(state: &Arc<ConnState>) -> Self {
        state.busy.fetch_add(1, Ordering::SeqCst);
        Self(state.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.served.store(true, Ordering::SeqCst);
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        self.0.answered.notify_one();
    }
}

/// The open connections, capped at `max_connections`.
struct Conns {
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    table: std::sync::Mutex<ConnTable>,
    emptied: Notify,
}

#[derive(Default)]
struct ConnTable {
    next: u64,
    open: std::collections::HashMap<u64, Arc<ConnState>>,
}

/// A connection's place under the cap; freed when dropped.
struct ConnSlot {
    conns: Arc<Conns>,
    id: u64,
    state: Arc<ConnState>,
}

impl Conns {
    fn new(limits: ConnLimits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            limits,
            metrics,
            table: std::sync::Mutex::new(ConnTable::default()),
            emptied: Notify::new(),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, ConnTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.table().open.len()
    }

    /// A slot for a new connection. At the cap, the connection without
    /// progress the longest (idle, handshaking or waiting for a body) is
    /// told to close and leaves the count at once; with every connection
    /// working on a whole request the new one is refused, so admissions in
    /// progress are never cut for a newcomer.
    fn admit(self: &Arc<Self>) -> Option<ConnSlot> {
        let mut t = self.table();
        if t.open.len() >= self.limits.max_connections {
            // Idle connections and those whose requests are all still
            // waiting for a body are fair game (the latter would end in a
            // 408 anyway, and slow bodies must not fill the cap); oldest
            // first, so a newcomer still in its handshake goes last.
            let victim = t
                .open
                .iter()
                .filter(|(_, c)| !c.is_busy() || c.only_reading())
                .min_by_key(|(_, c)| c.idle_since())
                .map(|(id, _)| *id);
            let Some(id) = victim else {
                drop(t);
                self.metrics.connection_closed(ConnClosed::Refused);
                return None;
            };
            if let Some(c) = t.open.remove(&id) {
                c.shed.notify_one();
            }
            self.metrics.connection_closed(ConnClosed::Shed);
        }
        let id = t.next;
        t.next += 1;
        let state = Arc::new(ConnState {
            busy: AtomicUsize::new(0),
            reading: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: std::sync::Mutex::new(Instant::now()),
            shed: Notify::new(),
            answered: Notify::new(),
        });
        t.open.insert(id, state.clone());
        self.metrics.connections_open(t.open.len());
        Some(ConnSlot {
            conns: self.clone(),
            id,
            state,
        })
    }

    /// Resolves once no connection is open.
    async fn all_closed(&self) {
        loop {
            let notified = self.emptied.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut t = self.conns.table();
        t.open.remove(&self.id);
        let open = t.open.len();
        drop(t);
        self.conns.metrics.connections_open(open);
        if open == 0 {
            self.conns.emptied.notify_waiters();
        }
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    webhook: Webhook,
    slot: ConnSlot,
    drain: CancellationToken,
) {
    let limits = slot.conns.limits;
    let metrics = slot.conns.metrics.clone();
    let state = slot.state.clone();
    let _ = tcp.set_nodelay(true);
    // The handshake is part of the first-request deadline, and a
    // handshaking connection counts against the cap and can be shed, so
    // slow handshakes cannot pile up either.
    let handshake = tokio::time::timeout(limits.request_timeout, acceptor.accept(tcp));
    let tls = tokio::select! {
        r = handshake => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                metrics.connection_closed(ConnClosed::Handshake);
                tracing::debug!("TLS handshake timed out");
                return;
            }
        },
        () = state.shed.notified() => return,
        () = drain.cancelled() => return,
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // hyper's header timeout only runs once HTTP/1 parsing starts; the
    // protocol sniffing before it, HTTP/2 and idleness are bounded by the
    // deadline loop below.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST_SIZE);
    // hyper wants its own service trait; the tower one above is for callers
    // without sockets. Both run `Webhook::handle`.
    let svc_state = state.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        let busy = Busy::new(&svc_state);
        svc_state.reading.fetch_add(1, Ordering::SeqCst);
        req.extensions_mut().insert(BodyPending {
            _reading: Arc::new(PendingInner(svc_state.clone())),
        });
        let webhook = webhook.clone();
        async move {
            let resp = webhook.handle(req).await;
            drop(busy);
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = builder.serve_connection(TokioIo::new(tls), svc);
    let mut conn = std::pin::pin!(conn);
    // Set once the connection was told to finish (graceful shutdown: hyper
    // completes requests in flight, then closes; HTTP/2 sends GOAWAY).
    let mut closing: Option<Instant> = None;
    loop {
        let wake = state.deadline(&limits, closing);
        // Every arm that does not return or continue closes the connection.
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(wake.into()) => {
                // A request may have come and gone since `wake` was set.
                if state.is_busy() || Instant::now() < state.deadline(&limits, closing) {
                    continue;
                }
                if closing.is_some() {
                    // Told to close, no request in flight, still open: a
                    // client that never reads or never acks the GOAWAY.
                    return;
                }
                metrics.connection_closed(ConnClosed::Idle);
            }
            () = state.answered.notified() => continue,
            () = state.shed.notified(), if closing.is_none() => {
                if state.only_reading() {
                    return;
                }
            }
            () = drain.cancelled(), if closing.is_none() => {}
        }
        conn.as_mut().graceful_shutdown();
        closing = Some(Instant::now());
    }
}

/// `vault-injector webhook`.
pub async fn run(args: WebhookArgs) -> anyhow::Result<ExitCode> {
    let WebhookArgs {
        listen,
        tls_cert,
        tls_key,
        admin_listen,
        config,
        log_format,
        drain_timeout,
        max_concurrency,
        tls_reload_interval,
        request_timeout,
        body_timeout,
        idle_timeout,
        max_connections,
        max_body_memory,
        auto_tls,
    } = args;
    let limits = ConnLimits {
        request_timeout,
        idle_timeout,
        max_connections: max_connections as usize,
    };
    let cfg = match &config {
        Some(path) => WebhookConfig::load(path)?,
        None => WebhookConfig::default(),
    };
    crate::logging::init(log_format.unwrap_or(cfg.injector.log_format));

    // Auto-TLS writes the key pair the file reloader below serves, so it
    // must have produced one before the material is validated.
    // The one shutdown mechanism: cancellation tokens. `drain` stops the
    // listener and finishes open connections; `stop`, cancelled once they
    // are done, ends every background task (admin port last, so probes see
    // "not ready" rather than a refused connection while draining).
    let drain = CancellationToken::new();
    let stop = CancellationToken::new();
    let auto_tls_task = if auto_tls.auto_tls {
        let (cert, key) = auto_tls.cert_paths();
        if cert != tls_cert || key != tls_key {
            anyhow::bail!(
                "--auto-tls writes {} and {}; set --tls-cert and --tls-key to those paths",
                cert.display(),
                key.display()
            );
        }
        let client = kube::Client::try_default()
            .await
            .context("auto-TLS needs a Kubernetes client")?;
        Some(
            crate::autotls::spawn(
                auto_tls,
                client,
                stop.clone().cancelled_owned(),
                Duration::from_secs(120),
            )
            .await
            .context("auto-TLS")?,
        )
    } else {
        None
    };

    // Bad TLS material is a startup error, before any socket exists, so a
    // broken Secret never produces a pod that is bound but cannot serve.
    let store = CertStore::load(TlsPaths {
        cert: tls_cert,
        key: tls_key,
    })
    .context("TLS material")?;
    let acceptor = TlsAcceptor::from(Arc::new(store.server_config()?));

    let metrics = Arc::new(Metrics::new());
    if let Some(t) = store.not_after() {
        metrics.tls_not_after(t);
    }
    let admin_state = Arc::new(AdminState::new(metrics.clone()));
    let admin_listener = TcpListener::bind(admin_listen)
        .await
        .with_context(|| format!("binding the admin port {admin_listen}"))?;
    let admin_addr = admin_listener.local_addr()?;
    let admin_stop = CancellationToken::new();
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        admin_state.clone(),
        admin_stop.clone().cancelled_owned(),
    ));
    let reloader = tokio::spawn(store.clone().watch(
        tls_reload_interval,
        metrics.clone(),
        stop.clone(),
    ));

    let (audit_sink, audit_writer) =
        AuditSink::stdout().context("starting the audit writer thread")?;
    let policy_settings = cfg.policy.clone();
    let injector = Injector::try_new(Arc::new(cfg)).context("loading the cluster policy")?;
    let policy_reloader = injector
        .gate()
        .spawn_policy_reloader(&policy_settings, stop.clone());
    let events_enabled = injector.config().events.enabled;
    let mut webhook = Webhook::new(
        injector,
        metrics.clone(),
        audit_sink,
        max_concurrency as usize,
    )
    .with_body_limits(
        body_timeout,
        usize::try_from(max_body_memory).unwrap_or(usize::MAX),
    );
    let conns = Conns::new(limits, metrics);
    if events_enabled {
        let client = kube::Client::try_default()
            .await
            .context("events.enabled needs a Kubernetes client")?;
        let instance = std::env::var("POD_NAME").ok();
        webhook = webhook.with_events(crate::events::EventSink::new(client, instance));
    }
    let mut signals = Signals::new().context("installing signal handlers")?;

    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the webhook port {listen}"))?;
    let addr = listener.local_addr()?;
    admin_state.set_ready(true);
    tracing::info!(listen = %addr, admin = %admin_addr, "webhook serving");

    let signal_name = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => match conns.admit() {
                    Some(slot) => {
                        tokio::spawn(serve_connection(
                            tcp,
                            acceptor.clone(),
                            webhook.clone(),
                            slot,
                            drain.clone(),
                        ));
                    }
                    // Every connection is busy: refusing (closing) this one
                    // keeps the requests in flight and the memory bounded.
                    None => drop(tcp),
                },
                Err(e) => {
                    // Usually EMFILE; back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            name = signals.recv() => break name,
        }
    };

    admin_state.set_ready(false);
    drop(listener);
    let open = conns.len();
    tracing::info!(signal = signal_name, open_connections = open, timeout = ?drain_timeout, "draining");
    drain.cancel();
    tokio::select! {
        () = conns.all_closed() => tracing::info!("drained"),
        () = tokio::time::sleep(drain_timeout) => {
            tracing::warn!(timeout = ?drain_timeout, "drain timeout; exiting with requests still open");
        }
        name = signals.recv() => {
            tracing::error!(signal = name, "second signal during drain; aborting");
            audit_writer.finish().await;
            return Ok(ExitCode::from(130));
        }
    }
    stop.cancel();
    let _ = reloader.await;
    if let Some(r) = policy_reloader {
        let _ = r.await;
    }
    if let Some(t) = auto_tls_task {
        // Lets the leader hand its Lease over before the process ends.
        match tokio::time::timeout(Duration::from_secs(5), t).await {
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "auto-TLS controller stopped with an error")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "auto-TLS controller task failed"),
            Err(_) => tracing::warn!("auto-TLS controller did not stop within 5s"),
            Ok(Ok(Ok(()))) => {}
        }
    }
    drop(webhook);
    audit_writer.finish().await;
    admin_stop.cancel();
    let _ = admin_task.await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn webhook(max_body: usize) -> Webhook {
        let mut cfg = WebhookConfig::default();
        cfg.injector.max_body_bytes = max_body;
        let (sink, _writer) = AuditSink::stdout().unwrap();
        Webhook::new(
            Injector::try_new(Arc::new(cfg)).unwrap(),
            Arc::new(Metrics::new()),
            sink,
            4,
        )
    }

    fn review(uid: &str) -> String {
        serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE",
                "namespace": "default",
                "name": "p",
                "userInfo": {"username": "alice"},
                "object": {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": "p", "namespace": "default"},
                           "spec": {"containers": [{"name": "app", "image": "nginx"}]}},
                "dryRun": false
            }
        })
        .to_string()
    }

    async fn call(wh: &Webhook, req: Request<Full<Bytes>>) -> (StatusCode, String) {
        let resp = wh.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn post(path: &str, ct: Option<&str>, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
        let mut b = Request::post(path);
        if let Some(ct) = ct {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        b.body(Full::new(body.into())).unwrap()
    }

    #[tokio::test]
    async fn routes_and_rejections_without_sockets() {
        let wh = webhook(2048);
        let json = Some("application/json");

        let (s, body) = call(&wh, post("/mutate", json, review("u-1"))).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["response"]["uid"], "u-1");

        let (s, _) = call(
            &wh,
            post(
                "/mutate",
                Some("application/json; charset=utf-8"),
                review("u-2"),
            ),
        )
        .await;
        assert_eq!(s, StatusCode::OK);

        let (s, _) = call(&wh, post("/validate", json, review("u"))).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        let get = Request::get("/mutate")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = wh.clone().oneshot(get).await.unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[header::ALLOW], "POST");

        let (s, body) = call(&wh, post("/mutate", Some("text/plain"), review("u"))).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(body.contains("application/json"), "{body}");
        let (s, _) = call(&wh, post("/mutate", None, review("u"))).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let (s, body) = call(&wh, post("/mutate", json, vec![b' '; 4096])).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("2048"), "{body}");

        let (s, body) = call(&wh, post("/mutate", json, "{not json")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(body.contains("not a valid AdmissionReview"), "{body}");
    }

    #[tokio::test]
    async fn body_limit_holds_without_content_length() {
        // A streamed body has no Content-Length; the limit must still apply
        // while reading.
        let wh = webhook(1024);
        let chunks =
            futures::stream::iter((0..64).map(|_| {
                Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(vec![b' '; 100])))
            }));
        let body = http_body_util::StreamBody::new(chunks);
        let req = Request::post("/mutate")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap();
        let resp = wh.handle(req).await;
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn oversized_declared_body_with_expect_continue_is_refused_unread() {
        let wh = webhook(1024);
        // The body stream would fail if polled: refusing must not read it.
        let body = http_body_util::StreamBody::new(futures::stream::once(async {
            Err::<hyper::body::Frame<Bytes>, _>(std::io::Error::other("must not be read"))
        }));
        let req = Request::post("/mutate")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, "5000")
            .header(header::EXPECT, "100-continue")
            .body(body)
            .unwrap();
        assert_eq!(wh.handle(req).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    /// A body that never completes: headers in, one byte, then silence.
    fn stalled_post() -> Request<impl Body<Data = Bytes, Error = Infallible>> {
        use futures::StreamExt as _;
        let first = futures::stream::once(async {
            Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from_static(b"{")))
        });
        let body = http_body_util::StreamBody::new(first.chain(futures::stream::pending()));
        Request::post("/mutate")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, "10")
            .body(body)
            .unwrap()
    }

    #[tokio::test]
    async fn a_stalled_body_holds_no_admission_slot_and_gets_408() {
        // One slot: before the fix the stalled request held it, and the
        // real review behind it waited forever.
        let mut cfg = WebhookConfig::default();
        cfg.injector.max_body_bytes = 4096;
        let (sink, _writer) = AuditSink::stdout().unwrap();
        let wh = Webhook::new(
            Injector::try_new(Arc::new(cfg)).unwrap(),
            Arc::new(Metrics::new()),
            sink,
            1,
        )
        .with_body_limits(Duration::from_millis(300), 1 << 20);
        let stalled = tokio::spawn({
            let wh = wh.clone();
            async move { wh.handle(stalled_post()).await }
        });
        tokio::task::yield_now().await;
        let real = tokio::time::timeout(
            Duration::from_secs(10),
            call(
                &wh,
                post("/mutate", Some("application/json"), review("real")),
            ),
        )
        .await
        .expect("the real review waited behind a stalled body");
        assert_eq!(real.0, StatusCode::OK, "{}", real.1);
        let resp = tokio::time::timeout(Duration::from_secs(10), stalled)
            .await
            .expect("a stalled body was never timed out")
            .unwrap();
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(
            String::from_utf8_lossy(&body).contains("--body-timeout"),
            "{body:?}"
        );
    }

    #[tokio::test]
    async fn a_declared_length_reserves_no_memory() {
        // The budget is the body limit itself: a stalled body declaring the
        // whole limit must not keep a real, smaller review from being read.
        let mut cfg = WebhookConfig::default();
        cfg.injector.max_body_bytes = 4096;
        let (sink, _writer) = AuditSink::stdout().unwrap();
        let wh = Webhook::new(
            Injector::try_new(Arc::new(cfg)).unwrap(),
            Arc::new(Metrics::new()),
            sink,
            4,
        )
        .with_body_limits(Duration::from_secs(30), 0);
        assert_eq!(wh.0.body_budget.available_permits(), 4096);
        let mut stalled = stalled_post();
        stalled
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("4096"));
        let _stalled = tokio::spawn({
            let wh = wh.clone();
            async move { wh.handle(stalled).await }
        });
        tokio::task::yield_now().await;
        let real = tokio::time::timeout(
            Duration::from_secs(10),
            call(&wh, post("/mutate", Some("application/json"), review("r"))),
        )
        .await
        .expect("real review starved by a declared length");
        assert_eq!(real.0, StatusCode::OK, "{}", real.1);
    }

    #[test]
    fn content_type_essence() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert!(is_json(Some(&h("application/json"))));
        assert!(is_json(Some(&h("Application/JSON ; charset=utf-8"))));
        assert!(!is_json(Some(&h("application/jsonx"))));
        assert!(!is_json(Some(&h("application/yaml"))));
        assert!(!is_json(None));
    }
}
