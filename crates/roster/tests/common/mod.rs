//! Shared values for the roster tests: a federation `FED` with three authority keys (2 of 3), a
//! hub `HUB`, and helpers to sign, propose and follow versions.
#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use intelmesh_core::sealed::{EncryptionPublic, EncryptionSecret};
use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::enrolment::{sign_enrolment, EnrolmentDetails};
use intelmesh_roster::{
    build_genesis, propose, sign_document, AuthorityKey, GenesisSpec, HubMember, ProposeContext,
    ProposeError, Roster,
};
use prost::Message;

pub const NOW: i64 = 1_800_000_000_000;

pub fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

pub fn org(s: &str) -> OrgId {
    OrgId::parse(s).expect("test org id")
}

/// Authority keys 1, 2, 3 (alice, bob, carol).
pub fn authority_keys() -> [SigningKey; 3] {
    [key(1), key(2), key(3)]
}

pub fn hub_key() -> SigningKey {
    key(10)
}

pub fn spec() -> GenesisSpec {
    let names = ["alice", "bob", "carol"];
    GenesisSpec {
        federation_id: org("FED"),
        authority: authority_keys()
            .iter()
            .zip(names)
            .map(|(k, name)| AuthorityKey {
                name: name.to_string(),
                key: k.verifying_key(),
            })
            .collect(),
        threshold: 2,
        hub_members: vec![HubMember {
            org: org("HUB"),
            display_name: "The Hub".to_string(),
            country: "FR".to_string(),
            signing_key: hub_key().verifying_key(),
            encryption_key: None,
        }],
        ca_certs_pem: vec!["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()],
        hubs: vec![pb::HubAddress {
            org: "HUB".to_string(),
            address: "hub.example:7443".to_string(),
        }],
        policy: pb::Policy::default(),
        proposed_by: "alice".to_string(),
    }
}

pub fn sign(document: &[u8], keys: &[&SigningKey]) -> pb::SignedRoster {
    pb::SignedRoster {
        document: document.to_vec(),
        signatures: keys
            .iter()
            .map(|k| sign_document(document, k, NOW))
            .collect(),
    }
}

pub fn genesis_bytes() -> Vec<u8> {
    build_genesis(&spec(), NOW).expect("genesis spec is valid")
}

pub fn genesis() -> Roster {
    let [a, b, _] = authority_keys();
    Roster::genesis(&sign(&genesis_bytes(), &[&a, &b]), None).expect("genesis follows")
}

pub fn decode(bytes: &[u8]) -> pb::RosterDocument {
    pb::RosterDocument::decode(bytes).expect("document decodes")
}

/// The next version of `current` with its document changed by `edit`, signed by alice and bob.
pub fn edited_next(
    current: &Roster,
    edit: impl FnOnce(&mut pb::RosterDocument),
) -> pb::SignedRoster {
    let mut doc = current.document().clone();
    doc.version = current.version() + 1;
    doc.prev_hash = current.hash().to_vec();
    edit(&mut doc);
    let [a, b, _] = authority_keys();
    sign(&doc.encode_to_vec(), &[&a, &b])
}

pub fn no_heads(_: &OrgId) -> u64 {
    0
}

pub fn try_propose(
    current: &Roster,
    actions: Vec<pb::action::Action>,
    heads: &dyn Fn(&OrgId) -> u64,
) -> Result<Vec<u8>, ProposeError> {
    let actions: Vec<pb::Action> = actions
        .into_iter()
        .map(|a| pb::Action { action: Some(a) })
        .collect();
    let ctx = ProposeContext {
        proposed_by: "alice",
        reason: "test",
        now_unix_ms: NOW,
        member_heads: heads,
    };
    propose(current, &actions, &ctx)
}

/// Proposes `actions`, signs with alice and bob, and follows the result.
pub fn apply(
    current: &Roster,
    actions: Vec<pb::action::Action>,
    heads: &dyn Fn(&OrgId) -> u64,
) -> Roster {
    let bytes = try_propose(current, actions, heads).expect("proposal applies");
    let [a, b, _] = authority_keys();
    current
        .next(&sign(&bytes, &[&a, &b]))
        .expect("next version follows")
}

pub fn enrolment(org_id: &str, signing: &SigningKey) -> pb::SignedEnrolmentRequest {
    enrolment_with(org_id, signing, None)
}

/// An enrolment request that also carries an encryption key.
pub fn enrolment_with(
    org_id: &str,
    signing: &SigningKey,
    encryption_key: Option<EncryptionPublic>,
) -> pb::SignedEnrolmentRequest {
    let details = EnrolmentDetails {
        org: org(org_id),
        display_name: format!("{org_id} agency"),
        country: "AU".to_string(),
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n".into(),
        encryption_key,
    };
    sign_enrolment(&details, signing, NOW)
}

/// The deterministic encryption key number `n` (its public half).
pub fn enc_key(n: u8) -> EncryptionPublic {
    EncryptionSecret::from_bytes(&[n; 32])
        .expect("32 bytes make a key")
        .public()
}

pub fn add_agency(org_id: &str, signing: &SigningKey) -> pb::action::Action {
    pb::action::Action::AddMember(pb::AddMember {
        request: Some(enrolment(org_id, signing)),
        role: pb::MemberRole::Agency as i32,
    })
}

/// Genesis, then version 2 adding agency `AG` with key 20.
pub fn with_agency() -> Roster {
    apply(&genesis(), vec![add_agency("AG", &key(20))], &no_heads)
}

/// `AG`'s key `signing` reported compromised after `last_good_seq`, with key `replacement`
/// (and its proof) to sign from the next seq if given.
pub fn report_compromise(
    signing: u8,
    last_good_seq: u64,
    replacement: Option<u8>,
) -> pb::action::Action {
    let (replacement_key, replacement_proof) = match replacement {
        None => (Vec::new(), Vec::new()),
        Some(n) => (
            key(n).verifying_key().to_bytes().to_vec(),
            intelmesh_roster::enrolment::sign_replacement(&org("AG"), &key(n), last_good_seq + 1),
        ),
    };
    pb::action::Action::ReportCompromise(pb::ReportCompromise {
        org: "AG".into(),
        public_key: key(signing).verifying_key().to_bytes().to_vec(),
        last_good_seq,
        replacement_key,
        replacement_proof,
    })
}
