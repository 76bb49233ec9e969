//! A federation in roster mode: real nodes on loopback whose keys and peers come from a roster
//! (genesis built with `intelmesh_roster::build_genesis`, one authority key made here,
//! threshold 1). Only the hub is in the genesis; agencies join through versions the test
//! publishes on the hub (`publish_roster`), as the Admin service would.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::{SigningKey, VerifyingKey};
use intelmesh_core::{now_unix_ms, OrgId};
use intelmesh_node::config::{Limits, RosterConfig};
use intelmesh_node::provision::{loopback_specs, provision, Federation};
use intelmesh_node::RunningNode;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::{
    build_genesis, roster_hash, sign_document, AuthorityKey, GenesisSpec, HubMember, Roster,
};
use prost::Message;

use crate::net::fast_limits;

/// The federation id (the roster log's origin).
pub const FEDERATION: &str = "TEST-FED";

pub struct RosterNet {
    pub dir: tempfile::TempDir,
    pub fed: Federation,
    pub hub: OrgId,
    pub authority: SigningKey,
    pub running: BTreeMap<OrgId, RunningNode>,
}

/// The signing key `provision` wrote for a node.
pub fn signing_key(dir: &Path) -> SigningKey {
    intelmesh_node::keys::load_signing_key(&dir.join("signing.key")).expect("signing key")
}

/// The serial of a PEM certificate, in the roster's form.
pub fn cert_serial(pem_path: &Path) -> String {
    let pem = std::fs::read(pem_path).expect("certificate");
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).expect("PEM");
    let raw = intelmesh_node::admission::serial_of(&p.contents).expect("serial");
    intelmesh_roster::model::normalize_serial(&raw)
}

/// A member entry for `org` with `key`, active, as an agency.
pub fn agency_member(org: &OrgId, key: &VerifyingKey) -> pb::Member {
    intelmesh_roster::model::new_member(
        org,
        org.as_str(),
        "SG",
        intelmesh_roster::MemberRole::Agency,
        key,
    )
}

impl RosterNet {
    /// Provisions a hub and agencies, builds and signs the genesis (the hub only), and writes
    /// every node's config in roster mode. Starts nothing.
    pub fn provisioned(hub: &str, agencies: &[&str], limits: &Limits) -> RosterNet {
        let dir = tempfile::tempdir().expect("temp dir");
        let specs = loopback_specs(hub, agencies).expect("ports");
        let mut fed = provision(dir.path(), &specs, &[], limits).expect("provision");
        let hub = OrgId::parse(hub).expect("hub org");
        let authority = SigningKey::generate(&mut rand::rngs::OsRng);
        let hub_node = &fed.nodes[&hub];
        let spec = GenesisSpec {
            federation_id: OrgId::parse(FEDERATION).expect("federation id"),
            authority: vec![AuthorityKey {
                name: "test operator".into(),
                key: authority.verifying_key(),
            }],
            threshold: 1,
            hub_members: vec![HubMember {
                org: hub.clone(),
                display_name: "Hub".into(),
                country: "SG".into(),
                signing_key: signing_key(&hub_node.dir).verifying_key(),
            }],
            ca_certs_pem: vec![std::fs::read_to_string(&fed.federation_ca).expect("CA")],
            hubs: vec![pb::HubAddress {
                org: hub.to_string(),
                address: hub_node.spec.federation.to_string(),
            }],
            policy: pb::Policy {
                checkpoint_interval_ms: 1_000,
                ..pb::Policy::default()
            },
            proposed_by: "test".into(),
        };
        let document = build_genesis(&spec, now_unix_ms()).expect("genesis");
        let signed = pb::SignedRoster {
            signatures: vec![sign_document(&document, &authority, now_unix_ms())],
            document: document.clone(),
        };
        let genesis = dir.path().join("genesis.roster");
        std::fs::write(&genesis, signed.encode_to_vec()).expect("genesis file");
        let pin = hex::encode(roster_hash(&document));
        for node in fed.nodes.values_mut() {
            node.config.keys = None;
            node.config.peer.clear();
            node.config.roster = Some(RosterConfig {
                genesis: genesis.clone(),
                genesis_hash: pin.clone(),
            });
            std::fs::write(
                &node.config_path,
                toml::to_string_pretty(&node.config).expect("config"),
            )
            .expect("config file");
        }
        RosterNet {
            dir,
            fed,
            hub,
            authority,
            running: BTreeMap::new(),
        }
    }

    pub async fn new(hub: &str, agencies: &[&str]) -> RosterNet {
        let mut net = RosterNet::provisioned(hub, agencies, &fast_limits());
        let hub = net.hub.clone();
        net.start(&hub).await;
        net
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

    /// An `Indicators` client of `org`'s API with its provisioned service certificate.
    pub async fn client(
        &self,
        org: &OrgId,
    ) -> intelmesh_proto::v1::indicators_client::IndicatorsClient<tonic::transport::Channel> {
        let p = &self.fed.nodes[org];
        let channel = intelmesh_node::client::api_channel(
            self.node(org).api_addr,
            org,
            &p.api_ca,
            &p.client_cert,
            &p.client_key,
        )
        .await
        .expect("API channel");
        intelmesh_proto::v1::indicators_client::IndicatorsClient::new(channel)
    }

    /// Publishes `n` GREEN upserts of fresh domains at `org`; returns their seqs.
    pub async fn publish_domains(&self, at: &OrgId, tag: &str, n: usize) -> Vec<u64> {
        let items = (0..n)
            .map(|i| {
                let domain = format!("{tag}-{i}.{}.example", at.as_str().to_ascii_lowercase());
                (crate::net::green(), crate::net::domain_upsert(&domain))
            })
            .collect();
        self.node(at).state().publish(items).await.expect("publish")
    }

    pub fn roster(&self, at: &OrgId) -> Arc<Roster> {
        self.node(at).state().roster().expect("roster mode")
    }

    /// The next version after the hub's, with `edit` applied, signed by the authority.
    pub fn next_version(&self, edit: impl FnOnce(&mut pb::RosterDocument)) -> pb::SignedRoster {
        let current = self.roster(&self.hub);
        let mut doc = current.document().clone();
        doc.version += 1;
        doc.prev_hash = current.hash().to_vec();
        doc.issued_at_unix_ms = now_unix_ms();
        doc.change = Some(pb::Change {
            proposed_by: "test".into(),
            actions: vec!["test change".into()],
            reason: String::new(),
        });
        edit(&mut doc);
        let document = doc.encode_to_vec();
        pb::SignedRoster {
            signatures: vec![sign_document(&document, &self.authority, now_unix_ms())],
            document,
        }
    }

    /// Publishes the next version on the hub with `edit` applied.
    pub async fn publish(&self, edit: impl FnOnce(&mut pb::RosterDocument)) -> Arc<Roster> {
        let signed = self.next_version(edit);
        self.node(&self.hub)
            .state()
            .publish_roster(signed)
            .await
            .expect("hub publishes the roster version")
    }

    /// Adds `org` (its provisioned signing key) as an active agency.
    pub async fn admit(&self, org: &OrgId) -> Arc<Roster> {
        let key = signing_key(&self.fed.nodes[org].dir).verifying_key();
        self.publish(|d| d.members.push(agency_member(org, &key)))
            .await
    }

    pub fn status(&self, at: &OrgId) -> pb::StatusResponse {
        intelmesh_node::api::status::status(self.node(at).state()).expect("status")
    }

    /// Waits until `check` holds for `at`'s status; its last status in the error otherwise.
    pub async fn wait_status(
        &self,
        at: &OrgId,
        timeout: Duration,
        check: impl Fn(&pb::StatusResponse) -> bool,
    ) -> Result<pb::StatusResponse, String> {
        let start = Instant::now();
        loop {
            let s = self.status(at);
            if check(&s) {
                return Ok(s);
            }
            if start.elapsed() > timeout {
                return Err(format!("{at} after {timeout:?}: {s:#?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `at` holds `origin` up to `seq`.
    pub async fn wait_holds(&self, at: &OrgId, origin: &OrgId, seq: u64) -> Result<(), String> {
        self.wait_status(at, Duration::from_secs(20), |s| {
            s.vector.get(origin.as_str()).copied().unwrap_or(0) >= seq
        })
        .await
        .map(|_| ())
    }
}

/// The peer `org` in a status.
pub fn peer<'a>(s: &'a pb::StatusResponse, org: &OrgId) -> Option<&'a pb::PeerStatus> {
    s.peers.iter().find(|p| p.org_id == org.as_str())
}
