//! `Roster`: a version that passed the rules, and the rules between two versions (genesis, then
//! strictly sequential, linked, threshold-signed versions); what a roster admits and the key set
//! nodes verify entries with.

use std::collections::{BTreeMap, BTreeSet};

use intelmesh_core::sealed::EncryptionPublic;
use intelmesh_core::sign::ReaderKeys;
use intelmesh_core::{Hash, OrgId, SeqRange, StaticKeys};
use intelmesh_proto::v1 as pb;

use crate::document::{check_document, is_genesis_link, CheckedDocument};
use crate::error::{AuthorityKeys, Refusal, RosterError};
use crate::hash::roster_hash;
use crate::model::{normalize_serial, Authority, CheckedMember, MemberRole, MemberStatus};
use crate::policy::Policy;
use crate::thresholds::require;

/// A roster version this node may follow: well-formed, signed as required and, unless it is the
/// genesis, the successor of a version that was itself followed.
#[derive(Clone, Debug, PartialEq)]
pub struct Roster {
    signed: pb::SignedRoster,
    checked: CheckedDocument,
    hash: Hash,
}

impl Roster {
    /// The first version: version 1, linked to nothing, signed by the threshold of its own
    /// authority keys and, when `pin` is given, with exactly that hash.
    pub fn genesis(signed: &pb::SignedRoster, pin: Option<&Hash>) -> Result<Roster, RosterError> {
        let hash = roster_hash(&signed.document);
        if let Some(pinned) = pin {
            if *pinned != hash {
                return Err(RosterError::PinMismatch {
                    pinned: *pinned,
                    found: hash,
                });
            }
        }
        let checked = check_document(&signed.document)?;
        let version = checked.document.version;
        if version != 1 {
            return Err(RosterError::NotGenesis { version });
        }
        if !is_genesis_link(&checked.prev_hash) {
            return Err(RosterError::GenesisPrevHash);
        }
        require(
            &checked.authority,
            AuthorityKeys::Current,
            version,
            &hash,
            &signed.signatures,
        )?;
        Ok(Roster {
            signed: signed.clone(),
            checked,
            hash,
        })
    }

    /// The version after this one: same federation, version + 1, linked to this version's hash,
    /// signed by this version's authority threshold and, when it changes the authority's keys or
    /// threshold, also by the new one's.
    pub fn next(&self, signed: &pb::SignedRoster) -> Result<Roster, RosterError> {
        let checked = check_document(&signed.document)?;
        if checked.federation_id != self.checked.federation_id {
            return Err(RosterError::FederationMismatch {
                ours: self.checked.federation_id.clone(),
                offered: checked.federation_id.to_string(),
            });
        }
        let hash = roster_hash(&signed.document);
        let (current, offered) = (self.version(), checked.document.version);
        if offered < current {
            return Err(RosterError::Rollback { current, offered });
        }
        if offered == current {
            return Err(RosterError::Replay {
                version: offered,
                identical: hash == self.hash,
            });
        }
        if offered != current + 1 {
            return Err(RosterError::Skipped { current, offered });
        }
        if checked.prev_hash != self.hash {
            return Err(RosterError::PrevHash {
                version: offered,
                expected: self.hash,
                found: checked.prev_hash,
            });
        }
        let signatures = &signed.signatures;
        require(
            self.authority(),
            AuthorityKeys::Current,
            offered,
            &hash,
            signatures,
        )?;
        if !self.authority().same_power(&checked.authority) {
            require(
                &checked.authority,
                AuthorityKeys::New,
                offered,
                &hash,
                signatures,
            )?;
        }
        Ok(Roster {
            signed: signed.clone(),
            checked,
            hash,
        })
    }

    pub fn version(&self) -> u64 {
        self.checked.document.version
    }

    pub fn hash(&self) -> &Hash {
        &self.hash
    }

    /// Also the origin of the roster log.
    pub fn federation_id(&self) -> &OrgId {
        &self.checked.federation_id
    }

    /// The SignedRoster exactly as received (document bytes as signed, every signature).
    pub fn signed(&self) -> &pb::SignedRoster {
        &self.signed
    }

    pub fn document(&self) -> &pb::RosterDocument {
        &self.checked.document
    }

    pub fn members(&self) -> &[pb::Member] {
        &self.checked.document.members
    }

    pub fn member(&self, org: &OrgId) -> Option<&pb::Member> {
        let m = self.checked.members.get(org)?;
        self.checked.document.members.get(m.index)
    }

    /// The member as the rules read it: role, status and keys decoded.
    pub fn member_rules(&self, org: &OrgId) -> Option<&CheckedMember> {
        self.checked.members.get(org)
    }

    /// The key new payloads for `org` are sealed to: the current (last listed) encryption key of
    /// an active member. `None` for a suspended, removed or unknown member, for one without an
    /// encryption key, and for one whose current key a compromise report marked (it lives where
    /// the stolen signing key did), so nothing new is sealed to a member the federation shut
    /// out or to a key a thief may hold.
    pub fn encryption_key(&self, org: &OrgId) -> Option<EncryptionPublic> {
        let m = self.checked.members.get(org)?;
        if m.status != MemberStatus::Active || self.compromised_without_key(org) {
            return None;
        }
        let listed = self.checked.document.members.get(m.index)?;
        if listed
            .encryption_keys
            .last()
            .is_some_and(|k| k.reported_compromised)
        {
            return None;
        }
        m.encryption_keys.last().copied()
    }

    pub fn authority(&self) -> &Authority {
        &self.checked.authority
    }

    /// The hub addresses agencies dial: those of active hub members.
    pub fn hubs(&self) -> Vec<&pb::HubAddress> {
        self.checked
            .document
            .hubs
            .iter()
            .filter(|h| {
                OrgId::parse(&h.org).ok().is_some_and(|org| {
                    self.member_rules(&org)
                        .is_some_and(|m| m.status == MemberStatus::Active)
                })
            })
            .collect()
    }

    /// The one hub that signs the roster log (the federation id's origin): the first active hub
    /// of the `hubs` list holding a key that may sign later versions, or, when that names none,
    /// the first such hub member by org. Every node reads it from the same version, so two hubs never both sign the next
    /// version (that would be two entries at one seq of the authority origin: a fork). The
    /// authority moves the role by reordering `hubs` (or suspending the publisher); the other
    /// hubs only relay the log.
    pub fn roster_publisher(&self) -> Option<OrgId> {
        let listed = self
            .hubs()
            .into_iter()
            .filter_map(|h| OrgId::parse(&h.org).ok())
            .find(|org| self.may_publish(org));
        listed.or_else(|| {
            self.checked
                .members
                .keys()
                .find(|org| self.may_publish(org))
                .cloned()
        })
    }

    /// Whether `org` is an active hub holding a key that may sign the versions after this one
    /// (a hub whose keys were all reported stolen could sign nothing the others accept).
    fn may_publish(&self, org: &OrgId) -> bool {
        self.checked
            .members
            .get(org)
            .is_some_and(|m| (0..m.keys.len()).any(|i| self.signs_later_versions(org, i)))
    }

    pub fn policy(&self) -> Policy {
        Policy::from_proto(self.checked.document.policy.as_ref())
    }

    /// Federation CA certificates (PEM) node certificates must chain to.
    pub fn ca_certs_pem(&self) -> &[String] {
        &self.checked.document.ca_certs_pem
    }

    /// Serials of revoked certificates, in the roster's form ([`normalize_serial`]).
    pub fn revoked_serials(&self) -> &BTreeSet<String> {
        &self.checked.revoked
    }

    /// Removed members whose assertions are withdrawn from every view.
    pub fn withdrawn_orgs(&self) -> BTreeSet<OrgId> {
        self.checked
            .members
            .iter()
            .filter(|(_, m)| {
                self.checked
                    .document
                    .members
                    .get(m.index)
                    .is_some_and(|raw| raw.withdrawn)
            })
            .map(|(org, _)| org.clone())
            .collect()
    }

    /// The keys entries are verified with: every member's signing keys with their seq ranges
    /// (suspended and removed members too, so their entries up to the cut-off stay verifiable),
    /// and the roster log's origin (the federation id) as the authority, with the signing keys of
    /// hub members: a roster log entry's header is signed by the publishing hub, while its
    /// content carries the authority's threshold signatures. Every hub key ever listed may
    /// have signed the versions up to this one, which stay verifiable; only
    /// [`signs_later_versions`](Self::signs_later_versions) keys may sign the versions after
    /// it. It also names each active member's current encryption key, what restricted entries
    /// are sealed to.
    pub fn key_set(&self) -> StaticKeys {
        let mut keys = StaticKeys::default();
        let federation = &self.checked.federation_id;
        keys.set_authority(federation.clone());
        let publisher = self.roster_publisher();
        for (org, m) in &self.checked.members {
            for (i, k) in m.keys.iter().enumerate() {
                keys.insert_range(
                    org.clone(),
                    k.key,
                    SeqRange {
                        first: k.first_seq,
                        last: k.last_seq,
                    },
                );
                if m.role == MemberRole::Hub {
                    // Past this version, only the publisher's keys: a node judges a received
                    // version's content before storing it (`node::roster_admission`), but a
                    // real version re-signed under another header by any other hub's key (in
                    // other hands) would still be a second entry at that seq.
                    let later = self.signs_next_version(org, i, publisher.as_ref());
                    let last = (!later).then(|| self.version());
                    keys.insert_range(federation.clone(), k.key, SeqRange { first: 1, last });
                }
            }
            // What this member's restricted entries are sealed to: only while it is active,
            // so a suspended or removed member is sent nothing new it could read.
            if let Some(key) = self.encryption_key(org) {
                keys.set_encryption_key(org.clone(), key);
            }
        }
        // Once any member listed a key, restricted payloads are sealed for good: suspending
        // the keyed members, or reporting their keys, must not turn relaying back to clear.
        if (self.checked.document.members.iter()).any(|m| !m.encryption_keys.is_empty()) {
            keys.mark_sealing();
        }
        keys
    }

    /// Whether the `index`-th signing key of hub `org` may sign roster log entries after this
    /// version, were its hub the roster publisher: its hub active, and the key not reported
    /// compromised ([`key_set`](Self::key_set) grants it to the publisher's keys alone). A key
    /// in other hands (a suspended or removed hub's, or one reported stolen) putting a version
    /// at the log's next seq, even a real one under a header of its own, would have the real
    /// entry be a second entry at that seq.
    pub fn signs_later_versions(&self, org: &OrgId, index: usize) -> bool {
        let Some(m) = self.checked.members.get(org) else {
            return false;
        };
        let compromised = self
            .checked
            .document
            .members
            .get(m.index)
            .and_then(|raw| raw.signing_keys.get(index))
            .is_some_and(|k| k.ended_by == pb::KeyEnd::Compromise as i32);
        m.role == MemberRole::Hub && m.status == MemberStatus::Active && !compromised
    }

    /// Whether the `index`-th signing key of hub `org` may sign the roster log's entries after
    /// this version: a key of the roster publisher (`publisher`, as
    /// [`roster_publisher`](Self::roster_publisher) names it) that may sign later versions.
    pub fn signs_next_version(&self, org: &OrgId, index: usize, publisher: Option<&OrgId>) -> bool {
        publisher == Some(org) && self.signs_later_versions(org, index)
    }

    /// Whether every signing key of `org` is ended and one of them was reported compromised:
    /// whoever stole that key may hold the member's certificate and encryption key too, and
    /// the member cannot sign again (it re-enrols), so it holds no link, nothing new is sealed
    /// to it and its services are not served. A report with a replacement key leaves it one.
    pub fn compromised_without_key(&self, org: &OrgId) -> bool {
        let Some(m) = self.checked.members.get(org) else {
            return false;
        };
        let compromised = (self.checked.document.members.get(m.index)).is_some_and(|raw| {
            (raw.signing_keys.iter()).any(|k| k.ended_by == pb::KeyEnd::Compromise as i32)
        });
        compromised && m.keys.iter().all(|k| k.last_seq.is_some())
    }

    /// Whether a certificate naming `org` whose validity starts at `not_before_unix_ms`
    /// (`None`: unknown) was issued before a compromise report of `org`'s key, and is refused
    /// for it, recorded or not.
    pub fn issued_before_compromise(&self, org: &OrgId, not_before_unix_ms: Option<i64>) -> bool {
        let from = (self.checked.members.get(org))
            .and_then(|m| self.checked.document.members.get(m.index))
            .map_or(0, |raw| raw.certificates_from_unix_ms);
        from > 0 && not_before_unix_ms.is_none_or(|start| start < from)
    }

    /// Whether `org` may hold a federation link, presenting `cert`: its role if so, why not
    /// otherwise.
    pub fn admits_peer(&self, org: &OrgId, cert: Presented<'_>) -> Result<MemberRole, Refusal> {
        let version = self.version();
        let member = self
            .checked
            .members
            .get(org)
            .ok_or_else(|| Refusal::NotMember {
                org: org.clone(),
                version,
            })?;
        match member.status {
            MemberStatus::Active => {}
            MemberStatus::Suspended => {
                return Err(Refusal::Suspended {
                    org: org.clone(),
                    version,
                })
            }
            MemberStatus::Removed => {
                return Err(Refusal::Removed {
                    org: org.clone(),
                    version,
                })
            }
        }
        if self.compromised_without_key(org) {
            return Err(Refusal::Compromised {
                org: org.clone(),
                version,
            });
        }
        if let Some(serial) = cert.serial_hex.map(normalize_serial) {
            if self.checked.revoked.contains(&serial) {
                return Err(Refusal::CertificateRevoked {
                    org: org.clone(),
                    serial,
                    version,
                });
            }
        }
        if self.issued_before_compromise(org, cert.not_before_unix_ms) {
            return Err(Refusal::CertificateBeforeCompromise {
                org: org.clone(),
                version,
            });
        }
        Ok(member.role)
    }

    /// Every member's org with its role and status, in org order.
    pub fn statuses(&self) -> BTreeMap<&OrgId, (MemberRole, MemberStatus)> {
        self.checked
            .members
            .iter()
            .map(|(org, m)| (org, (m.role, m.status)))
            .collect()
    }
}

/// What the roster judges of a certificate a peer presents; `None` for what could not be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Presented<'a> {
    /// Its serial, in any common spelling.
    pub serial_hex: Option<&'a str>,
    /// When its validity starts.
    pub not_before_unix_ms: Option<i64>,
}

impl ReaderKeys for Roster {
    fn current(&self, org: &OrgId) -> Option<EncryptionPublic> {
        self.encryption_key(org)
    }
}
