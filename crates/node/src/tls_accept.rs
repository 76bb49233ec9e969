//! Accepting TLS connections for the gRPC listeners ourselves, so that a refused handshake is
//! logged at WARN with who knocked and why (an unknown CA, no certificate, an expired one) and
//! counted: tonic's own acceptor drops them silently.
//!
//! Each connection gets the handshake deadline; at most [`MAX_HANDSHAKES`] handshakes run at
//! once (more wait in the listen backlog), so a flood of half-open connections is bounded, and
//! one address holds at most `limits.handshakes_per_address` of them, and one network (an
//! IPv4 /24, an IPv6 /48) four times that, so its flood is not (past it a connection is closed
//! at once, not left in the backlog before honest dialers). A
//! finished connection is served only while its client certificate holds fewer than
//! `limits.connections_per_client` others, and the listener fewer than [`MAX_OPEN`]: its slot
//! travels with the stream tonic serves and is given back when tonic drops it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::{CertificateError, Error as TlsError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use crate::conn_slots::{Bounds, Slot, Slots, SourceFull, SourceSlots};
use crate::state::NodeState;

/// Handshakes in progress at once per listener.
const MAX_HANDSHAKES: usize = 256;

/// A network (an IPv4 /24, an IPv6 /48) may have this many times an address's handshakes
/// under way at once: four networks, not sixteen addresses, to fill [`MAX_HANDSHAKES`] at the
/// default of 16 an address.
const ADDRESSES_PER_NETWORK: usize = 4;

/// Connections served at once per listener: a hub's members and their services, with room.
pub const MAX_OPEN: usize = 4096;
/// Connections handed to the server not yet taken by it.
const QUEUE: usize = 64;

/// Why a handshake failed, in words an operator acts on.
pub fn refusal_reason(e: &std::io::Error) -> String {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<TlsError>()) else {
        return e.to_string();
    };
    match tls {
        TlsError::NoCertificatesPresented => "the client presented no certificate".into(),
        TlsError::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the client's certificate is not issued by this listener's client CA (unknown CA)"
                .into()
        }
        TlsError::InvalidCertificate(CertificateError::Expired)
        | TlsError::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            "the client's certificate has expired".into()
        }
        TlsError::InvalidCertificate(CertificateError::NotValidYet)
        | TlsError::InvalidCertificate(CertificateError::NotValidYetContext { .. }) => {
            "the client's certificate is not valid yet".into()
        }
        TlsError::InvalidCertificate(CertificateError::Revoked) => {
            "the client's certificate is revoked".into()
        }
        TlsError::InvalidCertificate(other) => {
            format!("the client's certificate is refused ({other:?}), not one of this listener's client CA")
        }
        TlsError::AlertReceived(alert) => format!("the client ended the handshake: {alert:?}"),
        other => other.to_string(),
    }
}

/// The connections of `listener` that complete a TLS handshake under `config` within
/// `deadline` and find a slot, as a stream for tonic's `serve_with_incoming_shutdown`. `name`
/// ("federation", "api") labels the logs and the refusal counter.
pub fn accepted(
    state: &Arc<NodeState>,
    listener: TcpListener,
    config: rustls::ServerConfig,
    deadline: Duration,
    name: &'static str,
) -> ReceiverStream<std::io::Result<Served>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let state = Arc::clone(state);
    let open = Slots::new(Bounds {
        per_client: state.cfg.limits.connections_per_client,
        total: MAX_OPEN,
    });
    let per_address = state.cfg.limits.handshakes_per_address;
    // A few addresses of one site (or the /64s of one IPv6 site) cannot take every handshake.
    let per_network = per_address.saturating_mul(ADDRESSES_PER_NETWORK);
    let handshaking = SourceSlots::new(per_address, per_network, MAX_HANDSHAKES);
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        loop {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(listener = name, error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let source = match handshaking.take(peer.ip()) {
                Ok(source) => source,
                Err(full) => {
                    let why = match full {
                        SourceFull::Listener(n) => format!("{n} handshakes are under way"),
                        SourceFull::Address(_) => format!("its address has {per_address} handshakes under way ([limits] handshakes_per_address)"),
                        SourceFull::Network(_) => format!("its network (an IPv4 /24, an IPv6 /48) has {per_network} handshakes under way ({ADDRESSES_PER_NETWORK} × [limits] handshakes_per_address)"),
                    };
                    // A handshake refused before it began: counted and logged as one (at most
                    // a line per host and interval).
                    state.metrics.handshake_refused(name);
                    let logs = &state.handshake_logs;
                    if let Some(held_back) = logs.pass(peer.ip(), "busy", std::time::Instant::now())
                    {
                        tracing::warn!(listener = name, %peer, held_back, "connection closed before its TLS handshake: {why}");
                    }
                    continue;
                }
            };
            // tonic sets TCP_NODELAY only on listeners it binds itself; without it, a reply
            // written in pieces waits for the client's delayed ACK (about 40 ms per call).
            let _ = tcp.set_nodelay(true);
            // A client that vanishes (a NAT forgetting the flow, a crashed host) would
            // otherwise hold its connection slot until the node restarts: the kernel probes an
            // idle connection and ends it when the probes go unanswered.
            let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&tcp_keepalive());
            let (acceptor, tx, state) = (acceptor.clone(), tx.clone(), Arc::clone(&state));
            let open = Arc::clone(&open);
            tokio::spawn(async move {
                let _slot = slot;
                let handshake = handshake(&state, &acceptor, tcp, peer, deadline, name).await;
                drop(source);
                let Some(tls) = handshake else {
                    return;
                };
                match Slots::take(&open, client_of(&tls)) {
                    Ok(open) => {
                        let _ = tx.send(Ok(Served { tls, _open: open })).await;
                    }
                    Err(full) => {
                        state.metrics.connection_refused(name);
                        tracing::warn!(listener = name, %peer, reason = %full, "connection closed after its handshake");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Whose a connection is: the digest of its client's certificate (every gRPC listener requires
/// one; a connection without is counted as one anonymous client).
fn client_of(tls: &TlsStream<TcpStream>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
    leaf.map_or([0; 32], |c| Sha256::digest(c.as_ref()).into())
}

/// A connection tonic serves, holding its client's slot until tonic drops it.
pub struct Served {
    tls: TlsStream<TcpStream>,
    _open: Slot<[u8; 32]>,
}

impl AsyncRead for Served {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for Served {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tls).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_shutdown(cx)
    }
}

/// What tonic learns of the connection (its peer certificates for `peer_certs`) is the TLS
/// stream's own.
impl tonic::transport::server::Connected for Served {
    type ConnectInfo = <TlsStream<TcpStream> as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tls.connect_info()
    }
}

/// The client's leaf certificate (DER) of the TLS session a request came in on, as tonic puts
/// it in the request's extensions: for the API server's tower layers, which run before a
/// handler has a `tonic::Request` to ask.
pub fn client_leaf<B>(
    request: &http::Request<B>,
) -> Option<rustls::pki_types::CertificateDer<'static>> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let info = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?;
    info.peer_certs()?.first().cloned()
}

/// One handshake under `deadline`; a refusal or timeout is logged at WARN and counted.
pub(crate) async fn handshake(
    state: &NodeState,
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    deadline: Duration,
    name: &'static str,
) -> Option<TlsStream<TcpStream>> {
    // Every refusal is counted; its line is written at most once per host and interval.
    let pass = |kind| {
        state
            .handshake_logs
            .pass(peer.ip(), kind, std::time::Instant::now())
    };
    match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            state.metrics.handshake_refused(name);
            if let Some(held_back) = pass("refused") {
                tracing::warn!(listener = name, %peer, reason = %refusal_reason(&e), held_back, "TLS handshake refused");
            }
            None
        }
        Err(_) => {
            state.metrics.handshake_refused(name);
            if let Some(held_back) = pass("timeout") {
                tracing::warn!(listener = name, %peer, ?deadline, held_back, "TLS handshake not done in time; connection dropped");
            }
            None
        }
    }
}

/// Probes of an idle connection: the first after a minute, then every 15 s; five unanswered
/// end it (about 2 min 15 s after the peer went silent).
fn tcp_keepalive() -> socket2::TcpKeepalive {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(15));
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
    let keepalive = keepalive.with_retries(5);
    keepalive
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As tokio-rustls reports a handshake failure.
    fn failed(e: TlsError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn refusals_say_what_the_operator_must_fix() {
        let cases = [
            (
                TlsError::InvalidCertificate(CertificateError::UnknownIssuer),
                "unknown CA",
            ),
            (TlsError::NoCertificatesPresented, "no certificate"),
            (
                TlsError::InvalidCertificate(CertificateError::Expired),
                "has expired",
            ),
            (
                TlsError::InvalidCertificate(CertificateError::Revoked),
                "revoked",
            ),
        ];
        for (error, says) in cases {
            let line = refusal_reason(&failed(error));
            assert!(line.contains(says), "{line}");
        }
        let other = refusal_reason(&failed(TlsError::InvalidCertificate(
            CertificateError::BadSignature,
        )));
        assert!(other.contains("refused (BadSignature)"), "{other}");
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        assert_eq!(refusal_reason(&plain), "reset by peer");
    }
}
