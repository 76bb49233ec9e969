//! A federation in roster mode: real nodes on loopback whose keys and peers come from a roster
//! (`intelmesh_node::provision_roster`: one authority key made here, threshold 1). Only the hub
//! is in the genesis; agencies join through versions the test publishes on the hub
//! (`publish_roster`), as the Admin service would, from their own enrolment requests.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use intelmesh_core::{now_unix_ms, OrgId};
use intelmesh_node::config::Limits;
use intelmesh_node::provision::{loopback_specs_hubs, Federation};
use intelmesh_node::provision_roster::{
    add_members, provision_roster, sign_next, RosterFederation, RosterSetup,
};
use intelmesh_node::RunningNode;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::{sign_document, Roster};
use intelmesh_store::Store;
use prost::Message;

use crate::net::fast_limits;

/// The federation id (the roster log's origin).
pub const FEDERATION: &str = "TEST-FED";

pub struct RosterNet {
    pub dir: tempfile::TempDir,
    pub fed: Federation,
    /// Each agency's enrolment request.
    pub enrolments: BTreeMap<OrgId, pb::SignedEnrolmentRequest>,
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
    let pem = std::fs::read_to_string(pem_path).expect("certificate");
    let facts = intelmesh_node::cert_facts::cert_facts_pem(&pem).expect("a certificate");
    intelmesh_roster::model::normalize_serial(&facts.serial_hex)
}

impl RosterNet {
    /// Provisions a hub and agencies in roster mode (the genesis holds the hub only). Starts
    /// nothing.
    pub fn provisioned(hub: &str, agencies: &[&str], limits: &Limits) -> RosterNet {
        RosterNet::provisioned_hubs(&[hub], agencies, limits)
    }

    /// [`RosterNet::provisioned`] with several hubs, all in the genesis and its hub list; the
    /// first publishes the roster log and is the one `hub` names.
    pub fn provisioned_hubs(hubs: &[&str], agencies: &[&str], limits: &Limits) -> RosterNet {
        let dir = tempfile::tempdir().expect("temp dir");
        let specs = loopback_specs_hubs(hubs, agencies).expect("ports");
        let authority = SigningKey::generate(&mut rand::rngs::OsRng);
        let setup = RosterSetup {
            federation_id: OrgId::parse(FEDERATION).expect("federation id"),
            authority: &authority,
            limits,
            policy: pb::Policy {
                checkpoint_interval_ms: 1_000,
                ..pb::Policy::default()
            },
            operator: "test operator".into(),
        };
        let RosterFederation {
            fed, enrolments, ..
        } = provision_roster(dir.path(), &specs, &setup).expect("provision");
        RosterNet {
            dir,
            fed,
            enrolments,
            hub: OrgId::parse(hubs[0]).expect("hub org"),
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

    /// A hub `HUB` and one agency, admitted by version 2, running it and linked to the hub.
    pub async fn with_one_agency(agency: &str) -> (RosterNet, OrgId, OrgId) {
        let net = RosterNet::with_agencies(&[agency]).await;
        let (hub, member) = (net.hub.clone(), OrgId::parse(agency).expect("agency org"));
        (net, hub, member)
    }

    /// A hub (`HUB`) and `agencies`, all admitted in roster version 2, each following it and
    /// linked to the hub.
    pub async fn with_agencies(agencies: &[&str]) -> RosterNet {
        let mut net = RosterNet::new("HUB", agencies).await;
        let members: Vec<OrgId> = agencies
            .iter()
            .map(|a| OrgId::parse(a).expect("agency org"))
            .collect();
        for m in &members {
            net.start(m).await;
        }
        net.admit_all(&members.iter().collect::<Vec<_>>()).await;
        let hub = net.hub.clone();
        for m in &members {
            net.wait_status(m, Duration::from_secs(20), |s| {
                s.roster_version == 2 && peer(s, &hub).is_some_and(|p| p.connected)
            })
            .await
            .expect("the agency follows its admission and links to the hub");
        }
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

    /// A channel to `org`'s API with its provisioned service certificate.
    pub async fn channel(&self, org: &OrgId) -> tonic::transport::Channel {
        crate::net::service_channel(self.node(org), &self.fed.nodes[org]).await
    }

    /// An `Indicators` client of `org`'s API with its provisioned service certificate.
    pub async fn client(
        &self,
        org: &OrgId,
    ) -> intelmesh_proto::v1::indicators_client::IndicatorsClient<tonic::transport::Channel> {
        intelmesh_proto::v1::indicators_client::IndicatorsClient::new(self.channel(org).await)
    }

    /// Whether `at`'s API finds the domain `publish_domains` published as item `i` of `tag`
    /// for `origin`.
    pub async fn finds_domain(&self, at: &OrgId, origin: &OrgId, tag: &str, i: usize) -> bool {
        let mut client = self.client(at).await;
        client
            .get(pb::GetRequest {
                r#type: pb::IndicatorType::Domain as i32,
                value: published_domain(origin, tag, i),
            })
            .await
            .expect("Get answers")
            .into_inner()
            .found
    }

    /// Asserts that `at` holds `origin`'s log up to `end` and no further: of the `published`
    /// items `publish_domains` gave `tag`, the first `kept` show and the rest do not, and the
    /// store passes `verify_store`.
    pub async fn assert_cut_at(
        &self,
        at: &OrgId,
        origin: &OrgId,
        end: u64,
        (tag, kept, published): (&str, usize, usize),
    ) {
        let state = self.node(at).state();
        assert_eq!(
            state.store.head(origin).unwrap().map(|h| h.seq),
            Some(end),
            "{at}"
        );
        assert!(state.store.range(origin, end + 1, 10).unwrap().is_empty());
        for i in 0..published {
            assert_eq!(
                self.finds_domain(at, origin, tag, i).await,
                i < kept,
                "{at} shows item {i} of {tag} only if it was signed before the cut"
            );
        }
        let keys = state.keys();
        let check = intelmesh_store::verify_store(&state.store, Some(keys.as_ref()))
            .expect("verify-store runs");
        assert!(check.is_ok(), "{at}: {:?}", check.problems);
    }

    /// Publishes `n` GREEN upserts of fresh domains at `org`; returns their seqs.
    pub async fn publish_domains(&self, at: &OrgId, tag: &str, n: usize) -> Vec<u64> {
        let items = (0..n)
            .map(|i| {
                (
                    crate::net::green(),
                    crate::net::domain_upsert(&published_domain(at, tag, i)),
                )
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

    /// A roster log entry at the log's next seq as `at` holds it, carrying `signed`, its
    /// header signed by `key` (a hub's, or one that was).
    pub fn log_entry(
        &self,
        at: &OrgId,
        key: SigningKey,
        signed: pb::SignedRoster,
    ) -> pb::SignedEntry {
        let log = OrgId::parse(FEDERATION).expect("federation id");
        let head = self.node(at).state().store.head(&log).expect("head");
        let payload = pb::Payload {
            body: Some(pb::payload::Body::Roster(signed)),
            ..pb::Payload::default()
        };
        let clear = intelmesh_core::Distribution {
            tlp: intelmesh_core::Tlp::Clear,
            recipients: vec![],
        };
        intelmesh_core::Signer::new(log, key)
            .sign_next(head, now_unix_ms(), &clear, &payload)
            .0
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

    /// Adds `org` as an active agency, from its enrolment request.
    pub async fn admit(&self, org: &OrgId) -> Arc<Roster> {
        self.admit_all(&[org]).await
    }

    /// Adds `orgs` as active agencies in one version, from their enrolment requests.
    pub async fn admit_all(&self, orgs: &[&OrgId]) -> Arc<Roster> {
        self.apply(&add_members(orgs.iter().map(|o| &self.enrolments[*o])))
            .await
    }

    /// Publishes on the hub the next version with `actions` applied (`propose`, as the Admin
    /// service would: a suspension or removal ends the member's keys at its head at the hub).
    pub async fn apply(&self, actions: &[pb::Action]) -> Arc<Roster> {
        let store = &self.node(&self.hub).state().store;
        let head_at_hub = |o: &OrgId| store.head(o).ok().flatten().map_or(0, |h| h.seq);
        self.apply_with_heads(actions, &head_at_hub).await
    }

    /// `apply` with the member heads the proposal was made at (a version proposed some time
    /// before it is published: the member's head at the hub may have moved on meanwhile).
    pub async fn apply_with_heads(
        &self,
        actions: &[pb::Action],
        heads: &dyn Fn(&OrgId) -> u64,
    ) -> Arc<Roster> {
        let signed = sign_next(
            &self.roster(&self.hub),
            actions,
            &self.authority,
            "test",
            heads,
        )
        .expect("the next version");
        self.node(&self.hub)
            .state()
            .publish_roster(signed)
            .await
            .expect("hub publishes the version")
    }

    /// The next version after the hub's with `actions` applied, as `propose` builds it.
    pub fn next_with(&self, actions: &[pb::Action]) -> pb::SignedRoster {
        let store = &self.node(&self.hub).state().store;
        let head_at_hub = |o: &OrgId| store.head(o).ok().flatten().map_or(0, |h| h.seq);
        sign_next(
            &self.roster(&self.hub),
            actions,
            &self.authority,
            "test",
            &head_at_hub,
        )
        .expect("the next version")
    }

    /// Appends `signed` to the hub's roster log as the roster publisher `publisher` (a hub
    /// whose node may not run) would: its log entry signed with that hub's key, handed to the
    /// hub. Waits until the hub follows it.
    pub async fn append_as(&self, publisher: &OrgId, signed: pb::SignedRoster) -> u64 {
        let key = signing_key(&self.fed.nodes[publisher].dir);
        let entry = self.log_entry(&self.hub, key, signed);
        let version = intelmesh_node::state::header_of(&entry).map_or(0, |h| h.seq);
        let report = self
            .node(&self.hub)
            .state()
            .ingest(vec![entry])
            .await
            .expect("ingest");
        assert_eq!(
            report.appended, 1,
            "{publisher}'s version {version}: {report:?}"
        );
        self.wait_status(&self.hub, Duration::from_secs(20), |s| {
            s.roster_version == version
        })
        .await
        .expect("the hub follows the version");
        version
    }

    /// Suspends `org` (its keys end at its head at the hub).
    pub async fn suspend(&self, org: &OrgId) -> Arc<Roster> {
        self.apply(&[suspension(org)]).await
    }

    /// Suspends `org` as proposed when the hub held it up to `seq` (its keys end there,
    /// whatever the hub holds now).
    pub async fn suspend_at(&self, org: &OrgId, seq: u64) -> Arc<Roster> {
        self.apply_with_heads(&[suspension(org)], &|_| seq).await
    }

    /// Hands `at` the roster log entry of `version` from the hub, as a link would (a suspended
    /// member's link may be cut before the version that suspends it reaches it); a duplicate
    /// if it had it. Waits until `at` follows it.
    pub async fn deliver_version(&self, at: &OrgId, version: u64) {
        let entry = self
            .node(&self.hub)
            .state()
            .store
            .range(
                &OrgId::parse(FEDERATION).expect("federation id"),
                version,
                1,
            )
            .expect("the hub's authority log");
        self.node(at).state().ingest(entry).await.expect("ingest");
        self.wait_status(at, Duration::from_secs(20), |s| s.roster_version >= version)
            .await
            .expect("follows the version");
    }

    /// Reinstates `org` (the keys its suspension ended are open again).
    pub async fn reinstate(&self, org: &OrgId) -> Arc<Roster> {
        self.apply(&[pb::Action {
            action: Some(pb::action::Action::Reinstate(pb::Reinstate {
                org: org.to_string(),
            })),
        }])
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

/// The action suspending `org`.
pub fn suspension(org: &OrgId) -> pb::Action {
    pb::Action {
        action: Some(pb::action::Action::Suspend(pb::Suspend {
            org: org.to_string(),
        })),
    }
}

/// The domain `RosterNet::publish_domains` publishes at `origin` as item `i` of `tag`.
fn published_domain(origin: &OrgId, tag: &str, i: usize) -> String {
    format!("{tag}-{i}.{}.example", origin.as_str().to_ascii_lowercase())
}
