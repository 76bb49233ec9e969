//! Provisioning a federation in roster mode (benches, tests): the files of [`provision`], a
//! genesis naming the hubs, signed by one authority key (threshold 1), every config pointing at
//! it with its pin, and each agency's enrolment request (its signing key's proof of possession,
//! its encryption key and the request its node certificate was issued from). Every member's
//! encryption key is in the roster that lists it (hubs in the genesis). Agencies join the way real ones do:
//! through a roster version whose `AddMember` actions carry their requests ([`add_members`],
//! [`sign_next`]), published on a hub while everything runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ed25519_dalek::SigningKey;
use intelmesh_core::sealed::EncryptionPublic;
use intelmesh_core::{now_unix_ms, OrgId};
use intelmesh_proto::v1 as pb;
use intelmesh_roster::enrolment::{sign_enrolment, EnrolmentDetails};
use intelmesh_roster::{
    build_genesis, propose, roster_hash, sign_document, AuthorityKey, GenesisSpec, HubMember,
    ProposeContext, ProposeError, Roster,
};
use prost::Message;

use crate::config::{Limits, NodeConfig, Role, RosterConfig};
use crate::provision::{provision, Federation, NodeSpec};

/// What the federation is and who holds its authority.
pub struct RosterSetup<'a> {
    pub federation_id: OrgId,
    /// The one authority key (threshold 1, as for labs).
    pub authority: &'a SigningKey,
    pub limits: &'a Limits,
    /// Zeros take the defaults.
    pub policy: pb::Policy,
    /// Who provisions, for the audit trail of the genesis and later versions.
    pub operator: String,
}

/// What was written: the node files, the genesis and the agencies' enrolment requests.
pub struct RosterFederation {
    pub fed: Federation,
    pub genesis: PathBuf,
    /// Hex of the genesis roster hash, as every config pins it.
    pub genesis_hash: String,
    /// Each agency's request to join, signed with the signing key written for it.
    pub enrolments: BTreeMap<OrgId, pb::SignedEnrolmentRequest>,
}

/// Writes every node's files under `dir` in roster mode; the hubs among `nodes` are the genesis
/// members and the addresses agencies dial. Starts nothing.
pub fn provision_roster(
    dir: &Path,
    nodes: &[NodeSpec],
    setup: &RosterSetup<'_>,
) -> anyhow::Result<RosterFederation> {
    let mut fed = provision(dir, nodes, &[], setup.limits)?;
    // Roster mode takes keys from the roster, not from a key list.
    std::fs::remove_file(dir.join("registry.toml")).context("removing the static key list")?;
    let hubs: Vec<&NodeSpec> = nodes.iter().filter(|n| n.role == Role::Hub).collect();
    anyhow::ensure!(
        !hubs.is_empty(),
        "a roster-mode federation needs a hub among the nodes"
    );
    let mut hub_members = Vec::new();
    for h in &hubs {
        hub_members.push(HubMember {
            org: h.org.clone(),
            display_name: h.org.to_string(),
            country: String::new(),
            signing_key: signing_key_of(&fed, &h.org)?.verifying_key(),
            encryption_key: Some(encryption_key_of(&fed, &h.org)?),
        });
    }
    let federation_ca = std::fs::read_to_string(&fed.federation_ca)
        .with_context(|| format!("reading {}", fed.federation_ca.display()))?;
    let spec = GenesisSpec {
        federation_id: setup.federation_id.clone(),
        authority: vec![AuthorityKey {
            name: setup.operator.clone(),
            key: setup.authority.verifying_key(),
        }],
        threshold: 1,
        hub_members,
        ca_certs_pem: vec![federation_ca],
        hubs: hubs
            .iter()
            .map(|h| pb::HubAddress {
                org: h.org.to_string(),
                address: h.federation.to_string(),
            })
            .collect(),
        policy: setup.policy,
        proposed_by: setup.operator.clone(),
    };
    let document = build_genesis(&spec, now_unix_ms()).context("building the genesis")?;
    let genesis_hash = hex::encode(roster_hash(&document));
    let signed = pb::SignedRoster {
        signatures: vec![sign_document(&document, setup.authority, now_unix_ms())],
        document,
    };
    let genesis = dir.join("genesis.roster");
    std::fs::write(&genesis, signed.encode_to_vec())
        .with_context(|| format!("writing {}", genesis.display()))?;

    let mut enrolments = BTreeMap::new();
    for node in fed.nodes.values_mut() {
        node.config.keys = None;
        node.config.peer.clear();
        node.config.roster = Some(RosterConfig {
            genesis: genesis.clone(),
            genesis_hash: genesis_hash.clone(),
            log_pins: Vec::new(),
        });
        std::fs::write(&node.config_path, toml::to_string_pretty(&node.config)?)
            .with_context(|| format!("writing {}", node.config_path.display()))?;
        if node.spec.role == Role::Agency {
            let details = EnrolmentDetails {
                org: node.spec.org.clone(),
                display_name: node.spec.org.to_string(),
                country: String::new(),
                csr_pem: node.node_csr_pem.clone(),
                encryption_key: Some(encryption_public(&node.config)?),
            };
            let key = crate::keys::load_signing_key(&node.config.signing_key)?;
            enrolments.insert(
                node.spec.org.clone(),
                sign_enrolment(&details, &key, now_unix_ms()),
            );
        }
    }
    Ok(RosterFederation {
        fed,
        genesis,
        genesis_hash,
        enrolments,
    })
}

/// The signing key `provision` wrote for `org`.
pub fn signing_key_of(fed: &Federation, org: &OrgId) -> anyhow::Result<SigningKey> {
    let node = fed
        .nodes
        .get(org)
        .with_context(|| format!("{org} was not provisioned"))?;
    crate::keys::load_signing_key(&node.config.signing_key)
}

/// The public half of the encryption key `provision` wrote for `org`.
pub fn encryption_key_of(fed: &Federation, org: &OrgId) -> anyhow::Result<EncryptionPublic> {
    let node = fed
        .nodes
        .get(org)
        .with_context(|| format!("{org} was not provisioned"))?;
    encryption_public(&node.config)
}

fn encryption_public(config: &NodeConfig) -> anyhow::Result<EncryptionPublic> {
    let path = config
        .encryption_key
        .as_ref()
        .with_context(|| format!("{} has no encryption key", config.org))?;
    crate::encryption_keys::current_public(path)
}

/// One `AddMember` action (as an agency) per request.
pub fn add_members<'a>(
    requests: impl IntoIterator<Item = &'a pb::SignedEnrolmentRequest>,
) -> Vec<pb::Action> {
    requests
        .into_iter()
        .map(|request| pb::Action {
            action: Some(pb::action::Action::AddMember(pb::AddMember {
                request: Some(request.clone()),
                role: pb::MemberRole::Agency as i32,
            })),
        })
        .collect()
}

/// The version after `current` with `actions` applied, signed by `authority` (threshold 1).
/// `member_heads` gives each member's head seq at the hub (where a suspension cuts its keys).
pub fn sign_next(
    current: &Roster,
    actions: &[pb::Action],
    authority: &SigningKey,
    operator: &str,
    member_heads: &dyn Fn(&OrgId) -> u64,
) -> Result<pb::SignedRoster, ProposeError> {
    let now = now_unix_ms();
    let ctx = ProposeContext {
        proposed_by: operator,
        reason: "",
        now_unix_ms: now,
        member_heads,
    };
    let document = propose(current, actions, &ctx)?;
    Ok(pb::SignedRoster {
        signatures: vec![sign_document(&document, authority, now)],
        document,
    })
}
