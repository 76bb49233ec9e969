//! Where verifying keys come from: the `KeyRegistry` a verifier asks, and `StaticKeys`, the
//! fixed set a key list file or a roster version gives (with the members' encryption keys).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ed25519_dalek::VerifyingKey;

use crate::entry::{KeyId, OrgId};
use crate::sealed::EncryptionPublic;
use crate::sign::ReaderKeys;

/// Where verifying keys come from: a config file, or the roster a node follows.
pub trait KeyRegistry: Sync {
    /// The key `origin` signs with under `key_id`, if it is known, and whether it may sign
    /// the origin's entry `seq` (keys are valid for a range of their origin's seqs).
    fn key(&self, origin: &OrgId, key_id: &KeyId, seq: u64) -> KeyLookup;

    /// Whether `origin` is the federation authority, whose log carries roster versions.
    fn is_authority(&self, _origin: &OrgId) -> bool {
        false
    }
}

/// What a registry knows of one (origin, key id) at one seq.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyLookup {
    Valid(VerifyingKey),
    /// Not (yet) known: a member or key this registry has not heard of.
    Unknown,
    /// Known, but not for this seq: ended by a rotation, a compromise report or a suspension,
    /// or not started yet.
    OutOfRange {
        first_seq: u64,
        last_seq: Option<u64>,
        /// The key itself: an entry is blamed on its origin only once its signature is
        /// seen to be the origin's.
        key: VerifyingKey,
    },
}

/// The seqs a key may sign: `first..=last` (open-ended without `last`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqRange {
    pub first: u64,
    pub last: Option<u64>,
}

impl SeqRange {
    pub const ALL: SeqRange = SeqRange {
        first: 1,
        last: None,
    };

    pub fn contains(&self, seq: u64) -> bool {
        seq >= self.first && self.last.is_none_or(|last| seq <= last)
    }
}

/// A fixed set of (org, key, seq range) triples, the authority origin if any, and the members'
/// current encryption keys (what restricted payloads are sealed to).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaticKeys {
    keys: HashMap<(OrgId, KeyId), (VerifyingKey, SeqRange)>,
    orgs: BTreeSet<OrgId>,
    authority: Option<OrgId>,
    encryption: BTreeMap<OrgId, EncryptionPublic>,
    /// The federation seals even with no key to seal to in `encryption` (every keyed member
    /// suspended, or its key reported): see [`StaticKeys::seals`].
    sealing: bool,
}

impl StaticKeys {
    /// `key` may sign every seq of `org`.
    pub fn insert(&mut self, org: OrgId, key: VerifyingKey) {
        self.insert_range(org, key, SeqRange::ALL);
    }

    /// `key` may sign the seqs of `org` in `range`.
    pub fn insert_range(&mut self, org: OrgId, key: VerifyingKey, range: SeqRange) {
        self.orgs.insert(org.clone());
        self.keys.insert((org, KeyId::of(&key)), (key, range));
    }

    /// Names the federation authority's origin (the roster log); its keys are inserted like
    /// any other origin's.
    pub fn set_authority(&mut self, org: OrgId) {
        self.orgs.insert(org.clone());
        self.authority = Some(org);
    }

    pub fn authority(&self) -> Option<&OrgId> {
        self.authority.as_ref()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&OrgId, &VerifyingKey)> {
        self.keys.iter().map(|((org, _), (key, _))| (org, key))
    }

    /// Every key with the seqs it may sign.
    pub fn ranges(&self) -> impl Iterator<Item = (&OrgId, &VerifyingKey, SeqRange)> {
        self.keys
            .iter()
            .map(|((org, _), (key, range))| (org, key, *range))
    }

    /// The origins this list knows (members with keys, and the authority): the federation.
    pub fn members(&self) -> &BTreeSet<OrgId> {
        &self.orgs
    }

    pub fn is_member(&self, org: &OrgId) -> bool {
        self.orgs.contains(org)
    }

    /// The member named `name` exactly, if there is one: a name read from a peer's frame is
    /// checked without parsing it (every member's id is a valid one).
    pub fn member(&self, name: &str) -> Option<&OrgId> {
        self.orgs.get(name)
    }

    /// Whether `org` has a key whose id is `key_id` (at some seq).
    pub fn has_key_id(&self, org: &OrgId, key_id: KeyId) -> bool {
        self.keys.contains_key(&(org.clone(), key_id))
    }

    /// Whether `org` may sign with `key` (at some seq).
    pub fn holds(&self, org: &OrgId, key: &VerifyingKey) -> bool {
        self.keys
            .get(&(org.clone(), KeyId::of(key)))
            .is_some_and(|(k, _)| k == key)
    }

    /// `key` is the encryption key restricted payloads for `org` are sealed to.
    pub fn set_encryption_key(&mut self, org: OrgId, key: EncryptionPublic) {
        self.encryption.insert(org, key);
    }

    /// Whether this federation seals restricted payloads: some member has an encryption key,
    /// or ever listed one ([`StaticKeys::mark_sealing`]). Then every reader of a restricted
    /// entry needs one: a federation that seals never falls back to clear relaying because
    /// the keyed members were suspended or their keys reported.
    pub fn seals(&self) -> bool {
        self.sealing || !self.encryption.is_empty()
    }

    /// The federation seals whatever keys are in force now (a roster lists encryption keys).
    pub fn mark_sealing(&mut self) {
        self.sealing = true;
    }

    /// The seqs `org` may sign with `key`, if it holds it.
    pub fn range_of(&self, org: &OrgId, key: &VerifyingKey) -> Option<SeqRange> {
        self.keys
            .get(&(org.clone(), KeyId::of(key)))
            .filter(|(k, _)| k == key)
            .map(|(_, r)| *r)
    }
}

impl ReaderKeys for StaticKeys {
    fn current(&self, org: &OrgId) -> Option<EncryptionPublic> {
        self.encryption
            .get(org)
            .filter(|_| self.is_member(org))
            .copied()
    }
}

impl KeyRegistry for StaticKeys {
    fn key(&self, origin: &OrgId, key_id: &KeyId, seq: u64) -> KeyLookup {
        // Cloning the OrgId for the lookup is cheap next to a signature check.
        match self.keys.get(&(origin.clone(), *key_id)) {
            None => KeyLookup::Unknown,
            Some((key, range)) if range.contains(seq) => KeyLookup::Valid(*key),
            Some((key, range)) => KeyLookup::OutOfRange {
                first_seq: range.first,
                last_seq: range.last,
                key: *key,
            },
        }
    }

    fn is_authority(&self, origin: &OrgId) -> bool {
        self.authority.as_ref() == Some(origin)
    }
}
