//! Connecting to a node's local API as a service (mutual TLS with a service certificate).
//!
//! The connector runs the TLS handshake itself and then waits for the node's first bytes (its
//! HTTP/2 settings) before any call is sent. With TLS 1.3 a client finishes its handshake
//! before the server has checked the client certificate, so a node that refuses the
//! certificate would otherwise cut the first call off, and depending on timing the client saw
//! the node's alert or just a broken pipe. Waiting makes a refusal a connect error carrying
//! the alert, always, and a call that fails later is one the node had accepted the client for.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use intelmesh_core::OrgId;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::codegen::Service;
use tonic::transport::{Channel, Endpoint, Uri};

/// How long the TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A channel to `node`'s API at `addr`, presenting `cert`/`key`, trusting `ca`.
pub async fn api_channel(
    addr: SocketAddr,
    node: &OrgId,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<Channel> {
    crate::tls::install_crypto_provider();
    let connector = Connector {
        addr,
        tls: tokio_rustls::TlsConnector::from(Arc::new(crate::tls::client_rustls(ca, cert, key)?)),
        name: ServerName::try_from(crate::pki::node_dns_name(node))?,
    };
    // TLS is the connector's: the URI only names the node for HTTP/2.
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect_with_connector(connector)
        .await?)
}

pub type Indicators = IndicatorsClient<Channel>;

/// Opens mutual-TLS connections to one node and hands them over once the node has spoken.
#[derive(Clone)]
struct Connector {
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl Connector {
    async fn open(self) -> io::Result<TokioIo<Spoken>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let mut tls = self.tls.connect(self.name, tcp).await?;
        // A refused certificate shows here as the node's alert (an error from rustls).
        let mut first = vec![0; 1024];
        let n = tls.read(&mut first).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the node closed the connection right after the TLS handshake",
            ));
        }
        first.truncate(n);
        Ok(TokioIo::new(Spoken {
            first,
            at: 0,
            tls: Box::new(tls),
        }))
    }
}

impl Service<Uri> for Connector {
    type Response = TokioIo<Spoken>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Spoken>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        Box::pin(self.clone().open())
    }
}

/// A TLS stream whose first received bytes were read ahead; they are read again first.
struct Spoken {
    first: Vec<u8>,
    at: usize,
    tls: Box<TlsStream<TcpStream>>,
}

impl AsyncRead for Spoken {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
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

impl AsyncWrite for Spoken {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.tls).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.tls).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }
}
