//! Several real nodes in this process: mutual TLS on 127.0.0.1, certificates made at test time,
//! a store in a temp dir each.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use intelmesh_core::{Distribution, OrgId, Tlp};
use intelmesh_node::config::Limits;
use intelmesh_node::provision::{provision, Federation, NodeSpec, ProvisionedNode};
use intelmesh_node::RunningNode;
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use intelmesh_store::Store;
use tonic::transport::Channel;

/// Short timers so failure paths show up within a test's patience.
pub fn fast_limits() -> Limits {
    Limits {
        heartbeat_ms: 200,
        dead_after_ms: 3_000,
        stall_after_ms: 3_000,
        backoff_min_ms: 50,
        backoff_max_ms: 400,
        ..Limits::default()
    }
}

pub struct TestNet {
    pub dir: tempfile::TempDir,
    pub fed: Federation,
    pub running: BTreeMap<OrgId, RunningNode>,
}

pub fn org(name: &str) -> OrgId {
    OrgId::parse(name).expect("test org ids are valid")
}

impl TestNet {
    /// Provisions the nodes and links, and starts every node.
    pub async fn new(specs: Vec<NodeSpec>, links: Vec<(OrgId, OrgId)>, limits: Limits) -> TestNet {
        let mut net = TestNet::provisioned(&specs, &links, &limits);
        for s in &specs {
            net.start(&s.org).await;
        }
        net
    }

    /// Provisions the nodes and links without starting any: a test may change a node's config
    /// (`fed.nodes[org].config`) before [`TestNet::start`].
    pub fn provisioned(specs: &[NodeSpec], links: &[(OrgId, OrgId)], limits: &Limits) -> TestNet {
        let dir = tempfile::tempdir().expect("temp dir");
        let fed = provision(dir.path(), specs, links, limits).expect("provision");
        TestNet {
            dir,
            fed,
            running: BTreeMap::new(),
        }
    }

    /// A hub and agencies, each agency dialing the hub.
    pub async fn star(hub: &str, agencies: &[&str]) -> TestNet {
        let specs = intelmesh_node::provision::loopback_specs(hub, agencies).expect("ports");
        let links = intelmesh_node::provision::star_links(&specs);
        TestNet::new(specs, links, fast_limits()).await
    }

    /// One node alone, with `limits`.
    pub async fn alone(org: &str, limits: intelmesh_node::config::Limits) -> TestNet {
        let specs = intelmesh_node::provision::loopback_specs(org, &[]).expect("ports");
        TestNet::new(specs, Vec::new(), limits).await
    }

    pub async fn start(&mut self, org: &OrgId) {
        let cfg = self.fed.nodes[org].config.clone();
        let node = intelmesh_node::start(cfg).await.expect("node starts");
        self.running.insert(org.clone(), node);
    }

    pub async fn stop(&mut self, org: &OrgId) {
        if let Some(node) = self.running.remove(org) {
            node.shutdown().await;
        }
    }

    pub fn node(&self, org: &OrgId) -> &RunningNode {
        &self.running[org]
    }

    /// A channel to `org`'s API, over mTLS with the provisioned service cert.
    pub async fn channel(&self, org: &OrgId) -> Channel {
        service_channel(self.node(org), &self.fed.nodes[org]).await
    }

    /// A raw TLS connection (HTTP/2 agreed) to `addr`, one of `org`'s listeners serving its
    /// API certificate (the API, the TAXII gateway), with the provisioned service certificate:
    /// for tests that speak HTTP/2 by hand.
    pub async fn service_tls(
        &self,
        org: &OrgId,
        addr: std::net::SocketAddr,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let p = &self.fed.nodes[org];
        let tls = intelmesh_node::tls::client_for(org, &p.api_ca, &p.client_cert, &p.client_key)
            .expect("client TLS config");
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tokio_rustls::TlsConnector::from(tls.config.clone())
            .connect(tls.server_name.clone(), tcp)
            .await
            .expect("TLS handshake")
    }

    /// An `Indicators` client of `org`'s API, over mTLS with the provisioned service cert.
    pub async fn client(&self, org: &OrgId) -> IndicatorsClient<Channel> {
        IndicatorsClient::new(self.channel(org).await)
    }

    /// Publishes `n` GREEN upserts of fresh domains at `org`; returns their seqs.
    pub async fn publish_domains(&self, at: &OrgId, tag: &str, n: usize) -> Vec<u64> {
        let items = (0..n)
            .map(|i| {
                (
                    green(),
                    domain_upsert(&format!(
                        "{tag}-{i}.{}.example",
                        at.as_str().to_ascii_lowercase()
                    )),
                )
            })
            .collect();
        self.node(at).state().publish(items).await.expect("publish")
    }

    pub fn vector(&self, at: &OrgId) -> BTreeMap<OrgId, u64> {
        self.node(at).state().store.vector().expect("vector")
    }

    pub fn digest(&self, at: &OrgId) -> [u8; 32] {
        self.node(at).state().store.state_digest().expect("digest")
    }

    /// Waits until every running node has `org` at `seq` or beyond.
    pub async fn wait_for(
        &self,
        origin: &OrgId,
        seq: u64,
        timeout: Duration,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            let behind: Vec<String> = self
                .running
                .keys()
                .filter(|o| self.vector(o).get(origin).copied().unwrap_or(0) < seq)
                .map(ToString::to_string)
                .collect();
            if behind.is_empty() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "after {timeout:?} still behind on {origin}#{seq}: {behind:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until all running nodes hold identical vectors.
    pub async fn wait_converged(&self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let vectors: Vec<_> = self
                .running
                .keys()
                .map(|o| (o.clone(), self.vector(o)))
                .collect();
            if vectors.windows(2).all(|w| w[0].1 == w[1].1) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(format!("no convergence after {timeout:?}: {vectors:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn green() -> Distribution {
    Distribution {
        tlp: Tlp::Green,
        recipients: vec![],
    }
}

pub fn domain_upsert(domain: &str) -> pb::Payload {
    pb::Payload {
        body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
            indicator: Some(pb::IndicatorRef {
                r#type: pb::IndicatorType::Domain as i32,
                value: domain.to_string(),
            }),
            confidence: 75,
            valid_from_unix_ms: 1_700_000_000_000,
            tags: vec!["test".into()],
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A channel to `node`'s API with the service certificate provisioned for it.
pub async fn service_channel(node: &RunningNode, p: &ProvisionedNode) -> Channel {
    intelmesh_node::client::api_channel(
        node.api_addr,
        node.org(),
        &p.api_ca,
        &p.client_cert,
        &p.client_key,
    )
    .await
    .expect("API channel")
}
