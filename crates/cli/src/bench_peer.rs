//! The peer side of `bench ingest`: a `Federation.Sync` client that connects to a running node
//! over mutual TLS with a provisioned node certificate and speaks the link protocol as a
//! relaying peer does (hello, entry batches, reading the node's progress).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::federation_client::FederationClient;
use tokio::sync::mpsc;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::Streaming;

use super::net::PATIENCE;

/// The node to connect to: its federation address, its org (the name its certificate must
/// carry) and the CA that certificate chains to.
pub(crate) struct Target<'a> {
    pub addr: SocketAddr,
    pub org: &'a OrgId,
    pub server_ca: &'a Path,
}

/// The certificate and key this peer presents: a node certificate of the federation.
pub(crate) struct Credentials<'a> {
    pub org: &'a OrgId,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// One open `Federation.Sync` stream to the node.
pub(crate) struct PeerLink {
    out: mpsc::Sender<pb::SyncFrame>,
    inbound: Streaming<pb::SyncFrame>,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

/// Connects (TCP, TLS with `me`'s certificate, HTTP/2), opens `Federation.Sync`, sends this
/// peer's hello and reads the node's. The hello says this peer holds `held` (origin → seq):
/// what it sent the node before, so the node does not send it all back on a new link.
pub(crate) async fn open(
    target: &Target<'_>,
    me: &Credentials<'_>,
    max_message_bytes: usize,
    held: &BTreeMap<String, u64>,
) -> anyhow::Result<PeerLink> {
    intelmesh_node::tls::install_crypto_provider();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(target.server_ca, "CA")?))
        .identity(Identity::from_pem(
            read(me.cert, "certificate")?,
            read(me.key, "key")?,
        ))
        .domain_name(intelmesh_node::pki::node_dns_name(target.org));
    let channel = Endpoint::from_shared(format!("https://{}", target.addr))?
        .tls_config(tls)?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connecting to {} at {}", target.org, target.addr))?;
    let mut client = FederationClient::new(channel)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    // Frames wait here only while the stream is flow-controlled; `feed` bounds what is in
    // flight by the node's progress, not by this queue.
    let (out, rx) = mpsc::channel(4);
    let outbound = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (frame, rx))
    });
    let inbound = client
        .sync(outbound)
        .await
        .map_err(|s| anyhow::anyhow!("opening Federation.Sync: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    let mut link = PeerLink { out, inbound };
    link.send(pb::sync_frame::Frame::Hello(pb::Hello {
        org_id: me.org.to_string(),
        roster_version: 1,
        roster_hash: Vec::new(),
        vector: Some(pb::VersionVector {
            heads: held.clone().into_iter().collect(),
            ..Default::default()
        }),
        reaches: vec![me.org.to_string()],
        // `feed` reads how far the node got from each progress frame alone.
        progress_changes: false,
        progress_omits_sent: false,
    }))
    .await?;
    match link.next().await? {
        pb::sync_frame::Frame::Hello(_) => Ok(link),
        other => bail!("the node's first frame is not a hello: {other:?}"),
    }
}

impl PeerLink {
    async fn send(&mut self, frame: pb::sync_frame::Frame) -> anyhow::Result<()> {
        let frame = pb::SyncFrame { frame: Some(frame) };
        if self.out.send(frame).await.is_ok() {
            return Ok(());
        }
        // The request stream is gone: the node ended the call; its status, after the frames it
        // sent before, says why.
        loop {
            self.next().await?;
        }
    }

    /// The node's next frame; an error if the stream ends or nothing comes for [`PATIENCE`].
    async fn next(&mut self) -> anyhow::Result<pb::sync_frame::Frame> {
        loop {
            let item = tokio::time::timeout(PATIENCE, self.inbound.next())
                .await
                .with_context(|| format!("nothing from the node for {PATIENCE:?}"))?;
            match item {
                None => bail!("the node closed the stream"),
                Some(Err(s)) => bail!("the node ended the stream: {:?}: {}", s.code(), s.message()),
                Some(Ok(pb::SyncFrame { frame: Some(f) })) => return Ok(f),
                Some(Ok(pb::SyncFrame { frame: None })) => continue,
            }
        }
    }

    /// Sends the frames `frames` yields, in order, keeping at most `window` entries sent but
    /// not yet covered by the node's progress, until a progress frame shows every origin at its
    /// head in `heads`; `progress` hears each count of entries covered. The frames may come
    /// from a producer still signing them: the node's progress is read while waiting for them.
    /// Returns the time from the call to the progress frame that covers every entry.
    pub(crate) async fn feed<S>(
        &mut self,
        frames: S,
        heads: &BTreeMap<String, u64>,
        window: usize,
        mut progress: impl FnMut(u64),
    ) -> anyhow::Result<Duration>
    where
        S: futures::Stream<Item = Vec<pb::SignedEntry>>,
    {
        let mut frames = std::pin::pin!(frames);
        let total: u64 = heads.values().sum();
        let (mut sent, mut covered, mut exhausted) = (0u64, 0u64, false);
        let started = Instant::now();
        loop {
            if exhausted && covered >= sent && covered < total {
                bail!("the frames ran out with {covered} of the {total} entries covered");
            }
            let room = !exhausted && sent < covered + window as u64;
            // Both futures only poll a stream, so the one not chosen loses nothing.
            tokio::select! {
                frame = frames.next(), if room => match frame {
                    Some(entries) => {
                        sent += entries.len() as u64;
                        self.send(pb::sync_frame::Frame::Entries(pb::EntryBatch { entries }))
                            .await?;
                    }
                    None => exhausted = true,
                },
                frame = self.next() => {
                    if let pb::sync_frame::Frame::Progress(p) = frame? {
                        covered = covered_by(&p, heads);
                        progress(covered);
                        if covered == total {
                            return Ok(started.elapsed());
                        }
                    }
                }
            }
        }
    }
}

/// How many of the entries up to `heads` the node's progress says it holds durably.
fn covered_by(progress: &pb::Progress, heads: &BTreeMap<String, u64>) -> u64 {
    let held = progress.vector.as_ref().map(|v| &v.heads);
    heads
        .iter()
        .map(|(origin, head)| {
            let seq = held.and_then(|h| h.get(origin)).copied().unwrap_or(0);
            seq.min(*head)
        })
        .sum()
}
