//! The HTTP serving loop shared by the node's web listeners (the TAXII gateway and the hub
//! console over TLS, the metrics endpoint in plain HTTP): TLS with the API listener's
//! certificate, client certificates checked against the API's client CA (optional or required), HTTP/1.1 and HTTP/2, a handshake deadline, a cap
//! on open connections (and on those of one client address), a deadline for a connection's
//! first request (`limits.connect_timeout_ms` from the accept), an idle deadline per connection
//! (no request worked on nor answer sent, or a request's headers not all in, for
//! `limits.http_idle_ms`) and a graceful stop.
//!
//! Each request carries the [`Connection`] it came on (the client's leaf certificate), as an
//! axum extension, so handlers can tell who is calling.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::ListenerConfig;
use crate::conn_slots::{SourceFull, SourceSlots};
use crate::crowding::Crowd;
use crate::state::NodeState;

/// How long open connections get to finish their requests once the node stops.
const DRAIN: Duration = Duration::from_secs(5);
/// Connections served at once; past it, a connection whose caller never proved who it is
/// makes room (see `crowding`), or the newcomer is closed.
const MAX_CONNECTIONS: usize = 512;
/// Connections closed to make room whose tasks may not have ended yet: slots past
/// [`MAX_CONNECTIONS`] they hold meanwhile.
const CLOSING: usize = 64;
/// Connections one client address may hold at once: one host holding every slot would shut
/// out every other client (HTTP/2 multiplexes a client's requests over one connection).
const MAX_CONNECTIONS_PER_ADDRESS: usize = 64;
/// Connections one network (an IPv4 /24, an IPv6 /48) may hold at once: a few addresses of
/// one site, or the /64s of one IPv6 site, cannot take every slot.
const MAX_CONNECTIONS_PER_NETWORK: usize = 128;
/// Requests one HTTP/2 connection may have open at once.
const MAX_STREAMS: u32 = 64;

pub use crate::tls::ClientCerts;

/// What the TLS handshake told about the caller.
#[derive(Clone)]
pub struct Connection {
    /// The client's address.
    pub peer: std::net::IpAddr,
    /// The client's leaf certificate (DER), when it presented one.
    pub leaf: Option<Arc<Vec<u8>>>,
    /// The current request's note for the audit trail (set per request by an audit layer).
    pub note: crate::audit::Noted,
    /// Set by a handler once a request on the connection authenticated its caller: the
    /// listener then never closes it to make room.
    pub proven: Arc<std::sync::atomic::AtomicBool>,
}

impl Connection {
    /// Marks the connection's caller as authenticated.
    pub fn prove(&self) {
        self.proven.store(true, Ordering::Relaxed);
    }
}

/// TLS with the API listener's certificate and key, client certificates of its client CA,
/// HTTP/2 or HTTP/1.1.
pub fn tls_config(
    api: &ListenerConfig,
    clients: ClientCerts,
) -> anyhow::Result<rustls::ServerConfig> {
    crate::tls::listener_config(api, clients, &[crate::tls::ALPN_H2, b"http/1.1"])
}

/// A bound HTTPS listener (or a plain-HTTP one: the metrics endpoint), ready to serve.
pub struct HttpsServer {
    /// Names the listener in logs ("TAXII", "console", "metrics").
    name: &'static str,
    listener: TcpListener,
    /// `None`: plain HTTP.
    acceptor: Option<TlsAcceptor>,
    router: axum::Router,
    /// For the handshake deadline and the count of refused handshakes.
    state: Arc<NodeState>,
}

impl HttpsServer {
    /// Binds `listen` (`setting` names it in the error) to serve `router` over `tls`.
    pub async fn bind(
        name: &'static str,
        setting: &str,
        listen: SocketAddr,
        tls: rustls::ServerConfig,
        router: axum::Router,
        state: &Arc<NodeState>,
    ) -> anyhow::Result<HttpsServer> {
        let acceptor = Some(TlsAcceptor::from(Arc::new(tls)));
        Self::open(name, setting, listen, acceptor, router, state).await
    }

    /// Binds `listen` to serve `router` in plain HTTP, with the same bounds (for listeners
    /// that carry no secret and sit on a private network: metrics and probes).
    pub async fn bind_plain(
        name: &'static str,
        setting: &str,
        listen: SocketAddr,
        router: axum::Router,
        state: &Arc<NodeState>,
    ) -> anyhow::Result<HttpsServer> {
        Self::open(name, setting, listen, None, router, state).await
    }

    async fn open(
        name: &'static str,
        setting: &str,
        listen: SocketAddr,
        acceptor: Option<TlsAcceptor>,
        router: axum::Router,
        state: &Arc<NodeState>,
    ) -> anyhow::Result<HttpsServer> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {setting} {listen}"))?;
        Ok(HttpsServer {
            name,
            listener,
            acceptor,
            router,
            state: Arc::clone(state),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stopped` turns true, then lets open requests finish (for [`DRAIN`]).
    pub async fn serve(self, mut stopped: watch::Receiver<bool>) {
        let name = self.name;
        let mut connections = JoinSet::new();
        let sources = SourceSlots::new(
            MAX_CONNECTIONS_PER_ADDRESS,
            MAX_CONNECTIONS_PER_NETWORK,
            MAX_CONNECTIONS + CLOSING,
        );
        let crowd = Crowd::new(MAX_CONNECTIONS);
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = stopping(&mut stopped) => break,
            };
            while connections.try_join_next().is_some() {}
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "{name} listener could not accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let taken = match sources.take(peer.ip()) {
                Ok(slot) => Crowd::enter(&crowd, peer.ip())
                    .map(|place| (slot, place))
                    .ok_or_else(|| {
                        format!(
                            "all {MAX_CONNECTIONS} connections open are of callers that signed in"
                        )
                    }),
                Err(full) => Err(match full {
                    SourceFull::Listener(n) => {
                        format!("{n} connections are already open or closing")
                    }
                    SourceFull::Address(n) => {
                        format!("its address already holds {n} open connections")
                    }
                    SourceFull::Network(n) => format!(
                        "its network (an IPv4 /24, an IPv6 /48) already holds {n} open connections"
                    ),
                }),
            };
            let (slot, place) = match taken {
                Ok(taken) => taken,
                Err(full) => {
                    // Counted, and logged at most once per host and interval: a connect loop
                    // must not write a line per refusal.
                    self.state.metrics.handshake_refused(name);
                    let logs = &self.state.handshake_logs;
                    if let Some(held_back) = logs.pass(peer.ip(), "busy", Instant::now()) {
                        tracing::warn!(%peer, held_back, "{name} connection refused: {full}");
                    }
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, router, state) = (
                self.acceptor.clone(),
                self.router.clone(),
                Arc::clone(&self.state),
            );
            let deadline = state.cfg.limits.connect_timeout();
            let stopped = stopped.clone();
            connections.spawn(async move {
                let _slot = slot;
                let idle = state.cfg.limits.http_idle();
                let (proven, close) = (Arc::clone(&place.proven), Arc::clone(&place.close));
                let _place = place;
                let served = async move {
                    let Some(acceptor) = acceptor else {
                        let service = router.layer(axum::Extension(Connection {
                            peer: peer.ip(),
                            leaf: None,
                            note: Default::default(),
                            proven,
                        }));
                        return serve_connection(name, tcp, service, stopped, (deadline, idle))
                            .await;
                    };
                    let Some(tls) =
                        crate::tls_accept::handshake(&state, &acceptor, tcp, peer, deadline, name)
                            .await
                    else {
                        return;
                    };
                    let leaf = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.as_ref().to_vec());
                    let service = router.layer(axum::Extension(Connection {
                        peer: peer.ip(),
                        leaf: leaf.map(Arc::new),
                        note: Default::default(),
                        proven,
                    }));
                    serve_connection(name, tls, service, stopped, (deadline, idle)).await;
                };
                // Closed for room: at once, in the handshake or not; its caller never signed
                // in, so nothing it asked was for anyone's work.
                tokio::select! {
                    _ = served => {}
                    _ = close.notified() => {
                        tracing::debug!(%peer, "{name} connection closed to make room");
                    }
                }
            });
        }
        let drain = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN, drain).await.is_err() {
            connections.abort_all();
        }
    }
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    name: &'static str,
    stream: S,
    service: axum::Router,
    mut stopped: watch::Receiver<bool>,
    (first_request, idle): (Duration, Duration),
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper drops its own header deadline silently.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS);
    let (io, moved) = (stream, Moved::new());
    // A request being worked on, or an answer being sent (its pieces taken: see `PIECE`),
    // keeps its connection from counting as idle; bytes alone do not: a client answering
    // pings, or sending its own (which the server acknowledges, writing while an answer it
    // never reads waits), would hold its slot and the answer for ever.
    let working = Arc::clone(&moved);
    let service = service.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let busy = Busy::new(&working);
            async move {
                let response = next.run(request).await;
                let moved = Arc::clone(&busy.0);
                drop(busy);
                response.map(|body| axum::body::Body::new(Answer::new(body, moved)))
            }
        },
    ));
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "{name} connection ended");
            }
            return;
        }
        _ = stopping(&mut stopped) => {}
        _ = moved.idle_for(idle) => {
            tracing::debug!("{name} connection closed: idle for {idle:?}");
        }
        _ = moved.no_request_within(first_request) => {
            tracing::debug!("{name} connection closed: no request within {first_request:?}");
        }
    }
    conn.as_mut().graceful_shutdown();
    if tokio::time::timeout(DRAIN, conn).await.is_err() {
        tracing::debug!(
            "{name} connection dropped: still busy {DRAIN:?} after it was told to close"
        );
    }
}

/// When a connection last did work: a request ended, or a piece of an answer was taken
/// (milliseconds since it was accepted); how many of its requests are being worked on,
/// and how many answers are being sent.
struct Moved {
    since: Instant,
    last_ms: AtomicU64,
    busy: AtomicU64,
    answering: AtomicU64,
    /// Requests begun on the connection.
    begun: AtomicU64,
}

/// One request being worked on; the connection is not idle while it lasts.
struct Busy(Arc<Moved>);

impl Busy {
    fn new(moved: &Arc<Moved>) -> Busy {
        moved.busy.fetch_add(1, Ordering::Relaxed);
        moved.begun.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(moved))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.note();
    }
}

impl Moved {
    fn new() -> Arc<Moved> {
        Arc::new(Moved {
            since: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            answering: AtomicU64::new(0),
            begun: AtomicU64::new(0),
        })
    }

    fn note(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Returns if no request has begun `within` of the accept, and never otherwise: a client
    /// that connects and asks nothing, or trickles bytes, holds a slot for nothing.
    async fn no_request_within(&self, within: Duration) {
        tokio::time::sleep(within.saturating_sub(self.since.elapsed())).await;
        if self.begun.load(Ordering::Relaxed) > 0 {
            std::future::pending::<()>().await;
        }
    }

    /// Returns once no request was being worked on, and no piece of an answer taken, for
    /// `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            if self.busy.load(Ordering::Relaxed) > 0 {
                self.note();
            }
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let quiet = self.since.elapsed().saturating_sub(last);
            match idle.checked_sub(quiet) {
                Some(left) if !left.is_zero() => tokio::time::sleep(left).await,
                _ => return,
            }
        }
    }
}

/// Most bytes of an answer handed to the connection at a time. hyper asks for an answer's
/// next piece only once it has room to send it (the stream's HTTP/2 window, the socket's
/// buffer), so each piece taken is the client reading; an answer made of one large piece was
/// taken whole at once and left nothing to tell a client reading it from one that stopped.
const PIECE: usize = 16 << 10;

/// An answer handed out in pieces of at most [`PIECE`] bytes, noting each piece taken as its
/// connection's work: a client reading a large answer is not idle, one that stopped reading
/// is.
struct Answer {
    body: axum::body::Body,
    moved: Arc<Moved>,
    /// What is left of the last data frame the body gave.
    rest: axum::body::Bytes,
}

impl Answer {
    /// `body`, an answer on `moved`'s connection, counted as being sent from now on.
    fn new(body: axum::body::Body, moved: Arc<Moved>) -> Answer {
        moved.answering.fetch_add(1, Ordering::Relaxed);
        Answer {
            body,
            moved,
            rest: axum::body::Bytes::new(),
        }
    }

    /// The next piece of `rest`, noted as work.
    fn piece(&mut self) -> http_body::Frame<axum::body::Bytes> {
        let rest = self.rest.split_off(self.rest.len().min(PIECE));
        self.moved.note();
        http_body::Frame::data(std::mem::replace(&mut self.rest, rest))
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.moved.answering.fetch_sub(1, Ordering::Relaxed);
        self.moved.note();
    }
}

impl http_body::Body for Answer {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if !self.rest.is_empty() {
            return Poll::Ready(Some(Ok(self.piece())));
        }
        let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    self.rest = data;
                    Poll::Ready(Some(Ok(self.piece())))
                }
                Err(trailers) => {
                    self.moved.note();
                    Poll::Ready(Some(Ok(trailers)))
                }
            },
            ended => {
                self.moved.note();
                Poll::Ready(ended)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let inner = self.body.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(rest));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint
    }
}

/// Returns once the node stops (at once if it has).
async fn stopping(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}
