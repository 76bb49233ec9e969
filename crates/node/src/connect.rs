//! Opening a gRPC channel to one node: TCP and the TLS handshake under one deadline, the
//! server proven to be exactly the node meant ([`crate::tls::client_for`]); and saying in one
//! short line why a connection or a link failed.
//!
//! tonic's own TLS applies its connect timeout to TCP only, so a peer that accepts TCP and
//! never answers the ClientHello held a dialer forever; and its verifier checks only the DNS
//! name. So the TLS here is ours: the channel is opened over `http://` (tonic adds no TLS) with
//! a connector that does TCP and TLS itself.
//!
//! The connector also waits, within the same deadline, for the node's first bytes (its HTTP/2
//! settings) before any call is sent. With TLS 1.3 a client finishes its handshake before the
//! server has checked the client certificate, so a node refusing the certificate used to cut
//! the first call off, and the caller saw the alert or a broken pipe depending on timing.
//! Waiting makes a refusal a connect error that carries the node's alert, always.

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tonic::codegen::http::Uri;
use tonic::codegen::Service;
use tonic::transport::{Channel, Endpoint};

use crate::tls::{NodeTls, WrongPeer, ALPN_H2};

/// Longest line [`error_line`] returns; causes are cut there, so no frame dump fills a log.
pub const MAX_LINE: usize = 200;

/// Why a connection to a node could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("TCP connect to {addr} timed out after {after:?}")]
    TcpTimedOut { addr: SocketAddr, after: Duration },
    #[error("cannot connect to {addr}: {}", io_text(.source))]
    Tcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} timed out after {after:?}")]
    TlsTimedOut { addr: SocketAddr, after: Duration },
    /// Our side refused the server's certificate.
    #[error("certificate of {addr} refused: {reason}")]
    CertificateRefused { addr: SocketAddr, reason: String },
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls { addr: SocketAddr, reason: String },
    #[error(
        "{addr} did not agree to HTTP/2 in the TLS handshake (ALPN h2): not an intelmesh node?"
    )]
    NoHttp2 { addr: SocketAddr },
    /// The node ended the connection with a TLS alert right after the handshake: it refused
    /// our certificate.
    #[error(
        "{addr} refused our certificate (TLS alert {alert}{})",
        alert_meaning(alert)
    )]
    Refused { addr: SocketAddr, alert: String },
    #[error("{addr} closed the connection right after the TLS handshake")]
    ClosedAfterHandshake { addr: SocketAddr },
    #[error("{addr} said nothing within {after:?} after the TLS handshake")]
    SilentAfterHandshake { addr: SocketAddr, after: Duration },
}

/// How a channel to a node is set up.
#[derive(Clone, Copy, Debug)]
pub struct ChannelOptions {
    /// TCP connect, TLS handshake and the node's first bytes together must come within this.
    pub deadline: Duration,
    /// HTTP/2 flow-control window this side grants, per stream and per connection; `None`
    /// keeps HTTP/2's 64 KiB (enough for API answers, not for a peer's full frames).
    pub window: Option<u32>,
}

/// A channel to the node `tls` expects, at `addr`; the channel reconnects the same way if its
/// connection drops.
pub async fn node_channel(
    addr: SocketAddr,
    tls: NodeTls,
    options: ChannelOptions,
) -> Result<Channel, tonic::transport::Error> {
    let deadline = options.deadline;
    let connector = NodeConnector {
        addr,
        tls,
        deadline,
    };
    // `http://`: tonic must not add TLS of its own; the connector did it.
    Endpoint::from_shared(format!("http://{addr}"))?
        .http2_keep_alive_interval(Duration::from_secs(10))
        .initial_stream_window_size(options.window)
        .initial_connection_window_size(options.window)
        .connect_with_connector(connector)
        .await
}

/// tonic's connector: ignores the URI (the address and identity are fixed).
#[derive(Clone)]
struct NodeConnector {
    addr: SocketAddr,
    tls: NodeTls,
    deadline: Duration,
}

impl Service<Uri> for NodeConnector {
    type Response = TokioIo<ReadAhead>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move { open(&me).await.map(TokioIo::new) })
    }
}

async fn open(c: &NodeConnector) -> Result<ReadAhead, ConnectError> {
    let (addr, after) = (c.addr, c.deadline);
    let deadline = Instant::now() + c.deadline;
    let tcp = timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::TcpTimedOut { addr, after })?
        .map_err(|source| ConnectError::Tcp { addr, source })?;
    // Replies written in pieces must not wait for delayed ACKs (see `accepted` in lib.rs).
    tcp.set_nodelay(true)
        .map_err(|source| ConnectError::Tcp { addr, source })?;
    let handshake =
        TlsConnector::from(c.tls.config.clone()).connect(c.tls.server_name.clone(), tcp);
    let stream = timeout_at(deadline, handshake)
        .await
        .map_err(|_| ConnectError::TlsTimedOut { addr, after })?
        .map_err(|e| handshake_error(addr, &e))?;
    if stream.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
        return Err(ConnectError::NoHttp2 { addr });
    }
    let presented = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| crate::admission::PeerCert::of_leaf(leaf.as_ref()))
        .unwrap_or_default();
    *c.tls.presented.lock().unwrap_or_else(|p| p.into_inner()) = presented;
    first_bytes(stream, addr, deadline, after).await
}

/// Reads what the node sends first (an accepting node's HTTP/2 settings, or its TLS alert) and
/// keeps it to be read again.
async fn first_bytes(
    mut stream: TlsStream<TcpStream>,
    addr: SocketAddr,
    deadline: Instant,
    after: Duration,
) -> Result<ReadAhead, ConnectError> {
    let mut first = vec![0; 1024];
    let n = timeout_at(deadline, stream.read(&mut first))
        .await
        .map_err(|_| ConnectError::SilentAfterHandshake { addr, after })?
        .map_err(|e| handshake_error(addr, &e))?;
    if n == 0 {
        return Err(ConnectError::ClosedAfterHandshake { addr });
    }
    first.truncate(n);
    Ok(ReadAhead {
        first,
        at: 0,
        tls: Box::new(stream),
    })
}

/// A TLS stream whose first received bytes were read ahead; they are read again first.
pub struct ReadAhead {
    first: Vec<u8>,
    at: usize,
    tls: Box<TlsStream<TcpStream>>,
}

impl AsyncRead for ReadAhead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at < self.first.len() {
            let n = buf.remaining().min(self.first.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.first[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *self.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for ReadAhead {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.tls).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.tls).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }
}

/// Sorts a failed handshake (or first read): the server's alert (its refusal of our
/// certificate), our refusal of the server's certificate, or the connection failing under it.
fn handshake_error(addr: SocketAddr, e: &std::io::Error) -> ConnectError {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::AlertReceived(alert)) => ConnectError::Refused {
            addr,
            alert: format!("{alert:?}"),
        },
        Some(rustls::Error::InvalidCertificate(cert)) => ConnectError::CertificateRefused {
            addr,
            reason: certificate_text(cert),
        },
        Some(other) => ConnectError::Tls {
            addr,
            reason: tls_text(other),
        },
        None => ConnectError::Tls {
            addr,
            reason: io_text(e),
        },
    }
}

/// What an alert a node ended the handshake with says about our certificate, when its name
/// alone does not: rustls sends `certificate_expired` for a certificate outside its validity
/// period either way (expired, or not valid yet).
fn alert_meaning(alert: &str) -> &'static str {
    match alert {
        "CertificateExpired" => {
            ": it has expired or is not valid yet; a certificate valid now is needed"
        }
        _ => "",
    }
}

fn certificate_text(e: &rustls::CertificateError) -> String {
    use crate::cert_facts::utc_text;
    use rustls::CertificateError as C;
    let utc =
        |t: &rustls::pki_types::UnixTime| utc_text(i64::try_from(t.as_secs()).unwrap_or(i64::MAX));
    match e {
        C::Other(rustls::OtherError(inner)) if inner.downcast_ref::<WrongPeer>().is_some() => {
            inner.to_string()
        }
        C::ExpiredContext { time, not_after } => format!(
            "its certificate expired on {} (now {})",
            utc(not_after),
            utc(time)
        ),
        C::Expired => "its certificate has expired".into(),
        C::NotValidYetContext { time, not_before } => format!(
            "its certificate is not valid until {} (now {}): is one of the two clocks wrong?",
            utc(not_before),
            utc(time)
        ),
        C::NotValidYet => "its certificate is not valid yet".into(),
        other => format!("{other:?}"),
    }
}

fn tls_text(e: &rustls::Error) -> String {
    match e {
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateExpired) => format!(
            "the peer refused our certificate (TLS alert CertificateExpired{})",
            alert_meaning("CertificateExpired")
        ),
        rustls::Error::AlertReceived(alert) => {
            format!("the peer ended the TLS handshake ({alert:?}; does it trust our certificate?)")
        }
        rustls::Error::InvalidCertificate(cert) => {
            format!("certificate refused: {}", certificate_text(cert))
        }
        other => other.to_string(),
    }
}

fn io_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset by the peer".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::BrokenPipe => "the peer closed the connection (broken pipe)".into(),
        K::UnexpectedEof => "the peer closed the connection".into(),
        K::TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

/// The cause of a failed connection, call or link in one short line (at most [`MAX_LINE`]
/// characters): the most telling error in the chain (ours, TLS, I/O, a status the peer sent),
/// else the innermost one; never the wrappers' "transport error" or a status's debug dump.
pub fn error_line(err: &(dyn StdError + 'static)) -> String {
    let mut innermost = err;
    let mut level = Some(err);
    while let Some(e) = level {
        if let Some(text) = telling(e) {
            return clip(&text);
        }
        innermost = e;
        level = e.source();
    }
    clip(&innermost.to_string())
}

/// The text of an error that says what happened by itself, or None for a wrapper.
fn telling(e: &(dyn StdError + 'static)) -> Option<String> {
    if let Some(c) = e.downcast_ref::<ConnectError>() {
        return Some(c.to_string());
    }
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(tls_text(r));
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        // I/O errors carry TLS errors inside, where `source` does not reach.
        return Some(
            match io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(r) => tls_text(r),
                None => io_text(io),
            },
        );
    }
    if let Some(s) = e.downcast_ref::<tonic::Status>() {
        // A status tonic made of a broken connection carries it as its source; one without a
        // source was sent by the other end.
        if s.source().is_none() {
            return Some(format!("{:?}: {}", s.code(), s.message()));
        }
    }
    None
}

/// `text` on one line, cut to [`MAX_LINE`] characters.
fn clip(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= MAX_LINE {
        return line;
    }
    let mut cut: String = line.chars().take(MAX_LINE - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_certificate_out_of_its_period_is_named_with_its_dates() {
        use rustls::pki_types::UnixTime;
        let at = |secs| UnixTime::since_unix_epoch(Duration::from_secs(secs));
        let addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let refused = |e: rustls::CertificateError| {
            let io = std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(e),
            );
            handshake_error(addr, &io).to_string()
        };
        assert_eq!(
            refused(rustls::CertificateError::ExpiredContext {
                time: at(1_704_153_600),
                not_after: at(1_704_067_200),
            }),
            "certificate of 127.0.0.1:7001 refused: its certificate expired on 2024-01-01 00:00:00 \
             UTC (now 2024-01-02 00:00:00 UTC)"
        );
        assert!(refused(rustls::CertificateError::NotValidYetContext {
            time: at(1_704_067_200),
            not_before: at(1_704_153_600),
        })
        .contains("not valid until 2024-01-02 00:00:00 UTC (now 2024-01-01 00:00:00 UTC)"));
    }

    #[test]
    fn statuses_sent_by_a_peer_keep_code_and_message() {
        let s = tonic::Status::permission_denied("AU-AFP is not a configured peer of BR-PF");
        assert_eq!(
            error_line(&s),
            "PermissionDenied: AU-AFP is not a configured peer of BR-PF"
        );
    }

    #[test]
    fn wrapped_causes_are_found_and_long_ones_cut() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let tcp = ConnectError::Tcp {
            addr,
            source: refused,
        };
        let boxed: Box<dyn StdError + Send + Sync> = Box::new(tcp);
        let status = tonic::Status::from_error(boxed);
        assert_eq!(
            error_line(&status),
            "cannot connect to 127.0.0.1:7001: connection refused"
        );

        let alert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        );
        assert!(
            error_line(&alert).contains("UnknownCA"),
            "{}",
            error_line(&alert)
        );

        let expired = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateExpired),
        );
        let addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        assert_eq!(
            handshake_error(addr, &expired).to_string(),
            "127.0.0.1:7001 refused our certificate (TLS alert CertificateExpired: it has expired \
             or is not valid yet; a certificate valid now is needed)"
        );

        let dump = tonic::Status::unavailable(format!("h2 protocol error:\n{}", "x".repeat(600)));
        let line = error_line(&dump);
        assert_eq!(line.chars().count(), MAX_LINE);
        assert!(!line.contains('\n') && line.ends_with('…'), "{line}");
    }
}
