//! A hand-driven federation peer: connects to a running node's federation listener over mutual
//! TLS with whatever certificate a test chooses, opens `Federation.Sync`, and lets the test
//! send any frames (or none) and read what comes back, including the final gRPC status.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use intelmesh_core::verify::{verify_batch, VerifyConfig};
use intelmesh_core::{Head, OrgId, Signer, StaticKeys};
use intelmesh_node::pki::{node_dns_name, Issued};
use intelmesh_node::provision::ProvisionedNode;
use intelmesh_node::state::PeerState;
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::federation_client::FederationClient;
use intelmesh_store::{DiskStore, Store, StoreConfig};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status, Streaming};

use crate::net::TestNet;

/// A client certificate and key, PEM.
#[derive(Clone)]
pub struct Credentials {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl Credentials {
    /// The node certificate `provision` wrote for a node (`node.pem` / `node.key`).
    pub fn of_node(node: &ProvisionedNode) -> Credentials {
        Credentials::from_files(&node.dir.join("node.pem"), &node.dir.join("node.key"))
    }

    pub fn from_files(cert: &Path, key: &Path) -> Credentials {
        Credentials {
            cert_pem: std::fs::read(cert).expect("certificate file"),
            key_pem: std::fs::read(key).expect("key file"),
        }
    }

    pub fn from_issued(issued: &Issued) -> Credentials {
        Credentials {
            cert_pem: issued.cert_pem.clone().into_bytes(),
            key_pem: issued.key_pem.clone().into_bytes(),
        }
    }
}

/// Where to connect: a node's federation address, its org (for the server name) and the CA
/// its server certificate chains to.
pub struct Target<'a> {
    pub addr: SocketAddr,
    pub org: &'a OrgId,
    pub server_ca: &'a Path,
}

/// Connects (TCP, TLS, HTTP/2). An error here is a refusal at the handshake.
pub async fn connect(target: &Target<'_>, creds: &Credentials) -> Result<Channel, String> {
    intelmesh_node::tls::install_crypto_provider();
    let ca = std::fs::read(target.server_ca).map_err(|e| format!("reading CA: {e}"))?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(&creds.cert_pem, &creds.key_pem))
        .domain_name(node_dns_name(target.org));
    Endpoint::from_shared(format!("https://{}", target.addr))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// How an attempt to open a raw link ended before any frame was exchanged.
#[derive(Debug)]
pub enum Refused {
    /// TCP/TLS/HTTP2 connection failed while connecting.
    Connect(String),
    /// The connection broke under the first call. With TLS 1.3 the client finishes its side
    /// of the handshake before the server has checked the client certificate, so a server's
    /// refusal of that certificate (a fatal alert) shows up here.
    Transport(String),
    /// The node's `Federation.Sync` answered with an error status.
    Status(Status),
}

impl Refused {
    /// The gRPC code, or `Unavailable` for a connection that never carried a call.
    pub fn code(&self) -> Code {
        match self {
            Refused::Connect(_) | Refused::Transport(_) => Code::Unavailable,
            Refused::Status(s) => s.code(),
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refused::Connect(m) | Refused::Transport(m) => m.clone(),
            Refused::Status(s) => s.message().to_string(),
        }
    }

    /// Whether the connection was refused below gRPC (TLS), so no call reached a service. The
    /// server's fatal alert (e.g. "received fatal alert: UnknownCA") reaches the client only
    /// if the client was reading when it came; otherwise the client sees the connection close.
    pub fn is_transport_refusal(&self) -> bool {
        match self {
            Refused::Connect(_) => true,
            // Which of these a refused handshake shows depends on timing: the alert, the
            // server closing the socket while the client is still writing, or hyper finding
            // the connection gone before it could send the call at all.
            Refused::Transport(m) => [
                "received fatal alert",
                "connection closed",
                "broken pipe",
                "connection reset",
                "connection was not ready",
            ]
            .iter()
            .any(|s| m.contains(s)),
            Refused::Status(_) => false,
        }
    }
}

/// A status tonic made up for a broken connection (it carries the transport error as its
/// source), as opposed to one the server sent.
fn from_transport(s: &Status) -> bool {
    std::error::Error::source(s)
        .is_some_and(|e| e.downcast_ref::<tonic::transport::Error>().is_some())
}

/// What [`RawPeer::next`] saw.
#[derive(Debug)]
pub enum Next {
    Frame(pb::sync_frame::Frame),
    /// The stream ended; `Code::Ok` if the node closed it cleanly.
    End(Status),
    /// Nothing arrived in time.
    Quiet,
}

/// One open `Federation.Sync` stream, driven by the test.
pub struct RawPeer {
    out: mpsc::Sender<pb::SyncFrame>,
    inbound: Streaming<pb::SyncFrame>,
}

/// Frames queued towards the node before `send` waits; small, so a test sees backpressure.
const OUT_QUEUE: usize = 16;

impl RawPeer {
    /// Connects with `creds` and opens `Federation.Sync`. Sends nothing yet.
    pub async fn open(target: &Target<'_>, creds: &Credentials) -> Result<RawPeer, Refused> {
        let channel = connect(target, creds).await.map_err(Refused::Connect)?;
        RawPeer::open_on(channel).await
    }

    pub async fn open_on(channel: Channel) -> Result<RawPeer, Refused> {
        // No client-side caps: the point is to send what the node must refuse.
        let mut client = FederationClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let (out, rx) = mpsc::channel(OUT_QUEUE);
        let response = client.sync(ReceiverStream::new(rx)).await.map_err(|s| {
            if from_transport(&s) {
                Refused::Transport(format!("{s:?}"))
            } else {
                Refused::Status(s)
            }
        })?;
        Ok(RawPeer {
            out,
            inbound: response.into_inner(),
        })
    }

    /// Queues a frame; false if the request stream is gone (the node ended the call).
    pub async fn send(&self, frame: pb::sync_frame::Frame) -> bool {
        self.out
            .send(pb::SyncFrame { frame: Some(frame) })
            .await
            .is_ok()
    }

    /// A hello asking for whole vectors in progress frames, as a peer written before
    /// `progress_changes` does.
    pub async fn hello(&self, org_id: &str, vector: BTreeMap<String, u64>) -> bool {
        self.hello_asking(org_id, vector, false).await
    }

    /// A hello; `progress_changes`: progress frames with only the heads that changed.
    pub async fn hello_asking(
        &self,
        org_id: &str,
        vector: BTreeMap<String, u64>,
        progress_changes: bool,
    ) -> bool {
        self.hello_with(org_id, vector, progress_changes, false)
            .await
    }

    /// A hello; `progress_omits_sent` (with `progress_changes`): progress frames leave out the
    /// heads the node just sent this peer as entries.
    pub async fn hello_with(
        &self,
        org_id: &str,
        vector: BTreeMap<String, u64>,
        progress_changes: bool,
        progress_omits_sent: bool,
    ) -> bool {
        self.send(pb::sync_frame::Frame::Hello(pb::Hello {
            org_id: org_id.to_string(),
            roster_version: 1,
            vector: Some(pb::VersionVector {
                heads: vector.into_iter().collect(),
                ..Default::default()
            }),
            reaches: vec![org_id.to_string()],
            roster_hash: Vec::new(),
            progress_changes,
            progress_omits_sent,
        }))
        .await
    }

    pub async fn entries(&self, entries: Vec<pb::SignedEntry>) -> bool {
        self.send(pb::sync_frame::Frame::Entries(pb::EntryBatch { entries }))
            .await
    }

    /// A sender for frames from another task (heartbeats while the test does something else).
    pub fn sender(&self) -> mpsc::Sender<pb::SyncFrame> {
        self.out.clone()
    }

    /// The next frame, the end of the stream, or `Quiet` after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Next {
        match tokio::time::timeout(wait, self.inbound.next()).await {
            Err(_) => Next::Quiet,
            Ok(None) => Next::End(Status::ok("")),
            Ok(Some(Err(s))) => Next::End(s),
            Ok(Some(Ok(pb::SyncFrame { frame: Some(f) }))) => Next::Frame(f),
            Ok(Some(Ok(pb::SyncFrame { frame: None }))) => Next::Quiet,
        }
    }

    /// The node's hello (its first frame).
    pub async fn expect_hello(&mut self, wait: Duration) -> pb::Hello {
        match self.next(wait).await {
            Next::Frame(pb::sync_frame::Frame::Hello(h)) => h,
            other => panic!("expected the node's hello, got {other:?}"),
        }
    }

    /// Reads (and drops) frames until the node reports holding `origin` at `seq` or beyond
    /// in a Progress or Hello. Err if the stream ends or `wait` passes first.
    pub async fn until_progress(
        &mut self,
        origin: &str,
        seq: u64,
        wait: Duration,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let vector = match self.next(left).await {
                Next::Frame(pb::sync_frame::Frame::Progress(p)) => p.vector,
                Next::Frame(pb::sync_frame::Frame::Hello(h)) => h.vector,
                Next::Frame(_) => continue,
                Next::End(s) => {
                    return Err(format!("stream ended: {:?} {}", s.code(), s.message()))
                }
                Next::Quiet => return Err(format!("no progress to {origin}#{seq} in {wait:?}")),
            };
            let held = vector
                .and_then(|v| v.heads.get(origin).copied())
                .unwrap_or(0);
            if held >= seq {
                return Ok(());
            }
        }
    }

    /// Reads frames until the stream ends and returns its final status (`Code::Ok` for a clean
    /// close). Panics if it does not end within `wait`.
    pub async fn end_status(&mut self, wait: Duration) -> Status {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Next::End(s) => return s,
                Next::Frame(_) => continue,
                Next::Quiet => panic!("stream still open after {wait:?}"),
            }
        }
    }

    /// Spawns a task that sends a heartbeat every `every` until the stream is gone.
    pub fn keep_alive(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let out = self.sender();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let hb = pb::SyncFrame {
                    frame: Some(pb::sync_frame::Frame::Heartbeat(pb::Heartbeat {
                        sent_at_unix_ms: intelmesh_core::now_unix_ms(),
                    })),
                };
                if out.send(hb).await.is_err() {
                    return;
                }
            }
        })
    }
}

/// The signer of `org` from the key `provision` wrote (`<dir>/signing.key`).
pub fn provisioned_signer(node: &ProvisionedNode) -> Signer {
    let key =
        intelmesh_node::keys::load_signing_key(&node.dir.join("signing.key")).expect("signing key");
    Signer::new(node.spec.org.clone(), key)
}

/// `count` GREEN domain upserts of `signer` after `head`, issued now; `tag` makes the domains
/// unique across calls.
pub fn signed_chain(
    signer: &Signer,
    head: Option<Head>,
    count: u64,
    tag: &str,
) -> (Vec<pb::SignedEntry>, Option<Head>) {
    let mut head = head;
    let mut out = Vec::new();
    let now = intelmesh_core::now_unix_ms();
    for _ in 0..count {
        let n = head.map_or(1, |h| h.seq + 1);
        let domain = format!(
            "{tag}-{n}.{}.example",
            signer.org().as_str().to_ascii_lowercase()
        );
        let (entry, next) = signer.sign_next(
            head,
            now,
            &crate::net::green(),
            &crate::net::domain_upsert(&domain),
        );
        out.push(entry);
        head = Some(next);
    }
    (out, head)
}

/// How long the raw-peer helpers wait for the node before failing the test.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Raw links into the nodes of a [`TestNet`], and the peer facts the tests check.
impl TestNet {
    /// Where `at`'s federation listener is, and how to verify its certificate.
    pub fn target(&self, at: &OrgId) -> Target<'_> {
        Target {
            addr: self.node(at).federation_addr,
            org: &self.fed.nodes[at].spec.org,
            server_ca: &self.fed.federation_ca,
        }
    }

    /// The node certificate provisioned for `of`.
    pub fn creds(&self, of: &OrgId) -> Credentials {
        Credentials::of_node(&self.fed.nodes[of])
    }

    /// A raw link into `at` with `of`'s node certificate, after `at` dropped any old link
    /// with `of` (a node accepts one link per peer).
    pub async fn open_as(&self, at: &OrgId, of: &OrgId) -> RawPeer {
        self.wait_link_down(at, of).await;
        RawPeer::open(&self.target(at), &self.creds(of))
            .await
            .unwrap_or_else(|e| panic!("opening a link to {at} as {of}: {e:?}"))
    }

    /// What `at` knows of its link with `peer`.
    pub fn peer_state(&self, at: &OrgId, peer: &OrgId) -> PeerState {
        self.node(at)
            .state()
            .peers
            .snapshot()
            .get(peer)
            .cloned()
            .unwrap_or_default()
    }

    pub async fn wait_for_link(&self, at: &OrgId, peer: &OrgId) {
        wait_until(|| self.peer_state(at, peer).connected, "link up").await;
    }

    /// Waits until `at` no longer has a link with `peer`; returns the link's last error.
    pub async fn wait_link_down(&self, at: &OrgId, peer: &OrgId) -> String {
        wait_until(|| !self.peer_state(at, peer).connected, "link down").await;
        self.peer_state(at, peer).last_error
    }
}

/// Polls `cond` every 20 ms; panics naming `what` after [`PATIENCE`].
pub async fn wait_until(mut cond: impl FnMut() -> bool, what: &str) {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < PATIENCE,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The state digest of a fresh store holding exactly `entries` (all valid, signed by
/// `signers`): what a node that took exactly these must equal.
pub fn reference_digest(entries: &[pb::SignedEntry], signers: &[&Signer]) -> [u8; 32] {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = DiskStore::open(StoreConfig::new(dir.path())).expect("store");
    let mut keys = StaticKeys::default();
    for s in signers {
        keys.insert(s.org().clone(), s.verifying_key());
    }
    let cfg = VerifyConfig::at(intelmesh_core::now_unix_ms());
    let verified = verify_batch(entries.to_vec(), &keys, &cfg)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("reference entries verify");
    store.apply(verified).expect("apply");
    store.state_digest().expect("digest")
}

/// Whether a status carries `code` and its message mentions `needle`; a readable diff if not.
pub fn check_status(s: &Status, code: Code, needle: &str) -> Result<(), String> {
    if s.code() == code && s.message().contains(needle) {
        Ok(())
    } else {
        Err(format!(
            "expected {code:?} mentioning {needle:?}, got {:?}: {}",
            s.code(),
            s.message()
        ))
    }
}
