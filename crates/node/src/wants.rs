//! Payloads this node is owed: withheld stubs it holds of entries it may hold in full.
//!
//! A stub can arrive before the full entry, from a peer that may not pass the payload on (a
//! non-recipient in a mesh). Vectors count seqs, so no sender would ever offer the payload
//! again: the node asks for it instead, with a `Want` frame on each link, and a peer that holds
//! the payload and may send it over that link answers with the full entry.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use intelmesh_core::entry::Header;
use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use intelmesh_store::{DiskStore, Store, StoreError};

use crate::config::Role;
use crate::state::{NodeError, NodeState};

/// An entry by origin and seq.
pub type EntryKey = (OrgId, u64);

/// At most this many payloads are asked for at once; more stubs wait for the next start's scan.
pub const MAX_WANTS: usize = 65_536;

/// The stubs this node holds and is owed the payloads of.
#[derive(Default)]
pub struct Wants {
    inner: Mutex<BTreeSet<EntryKey>>,
}

impl Wants {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<EntryKey>> {
        // A set of keys: a panic elsewhere cannot leave it half-changed.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, key: EntryKey) {
        let mut w = self.lock();
        if w.len() < MAX_WANTS {
            w.insert(key);
        }
    }

    pub fn remove(&self, key: &EntryKey) {
        self.lock().remove(key);
    }

    pub fn contains(&self, key: &EntryKey) -> bool {
        self.lock().contains(key)
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn snapshot(&self) -> BTreeSet<EntryKey> {
        self.lock().clone()
    }
}

/// Whether this node may hold the payload of an entry with this header: it is the origin or a
/// listed recipient, the TLP is not restricted, or the node is a hub (which relays payloads
/// that have someone to reach: sealed ones as envelopes it cannot read).
///
/// A stub of an unrestricted entry is owed too: only the header is signed, so any relay can
/// strip a payload, and a node that logged the stub is sent the entry by no one unless it asks.
pub fn owed(header: &Header, me: &OrgId, hub: bool) -> bool {
    (hub && header.distribution.relayed()) || header.distribution.allows(&header.origin, me)
}

/// The seq of a stored entry if it is a stub whose payload this node is owed.
pub fn owed_stub(raw: &pb::SignedEntry, me: &OrgId, hub: bool) -> Result<Option<u64>, StoreError> {
    if raw.payload.is_some() {
        return Ok(None);
    }
    let (header, _) = intelmesh_core::verify::read_stored(raw)
        .map_err(|e| StoreError::Corrupt(format!("stored stub unreadable: {e}")))?;
    Ok(owed(&header, me, hub).then_some(header.seq))
}

/// The stubs in `store` this node is owed the payloads of, up to [`MAX_WANTS`].
pub fn scan(store: &DiskStore, me: &OrgId, hub: bool) -> Result<Vec<EntryKey>, StoreError> {
    const CHUNK: usize = 1024;
    let mut found = Vec::new();
    for (origin, head) in store.vector()? {
        let mut next = 1;
        while next <= head && found.len() < MAX_WANTS {
            let entries = store.range(&origin, next, CHUNK)?;
            if entries.is_empty() {
                break;
            }
            next += entries.len() as u64;
            for raw in &entries {
                if let Some(seq) = owed_stub(raw, me, hub)? {
                    found.push((origin.clone(), seq));
                }
            }
        }
    }
    Ok(found)
}

/// Fills the node's wants from the stubs in its store (they are kept in memory only), and
/// wakes the links to ask for them.
pub async fn find_wants(state: &Arc<NodeState>) -> Result<(), NodeError> {
    let me = Arc::clone(state);
    let found =
        tokio::task::spawn_blocking(move || scan(&me.store, &me.org, me.cfg.role == Role::Hub))
            .await
            .map_err(|e| NodeError::Join(e.to_string()))??;
    if !found.is_empty() {
        tracing::info!(
            stubs = found.len(),
            "asking peers for payloads this node is owed"
        );
    }
    for key in found {
        state.wants.add(key);
    }
    state.bump();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use intelmesh_core::{Distribution, Tlp};

    fn header(origin: &str, tlp: Tlp, recipients: &[&str]) -> Header {
        let org = |s: &str| OrgId::parse(s).unwrap();
        Header {
            origin: org(origin),
            seq: 1,
            prev_hash: [0; 32],
            payload_commitment: [0; 32],
            payload_len: 0,
            issued_at_unix_ms: 0,
            key_id: intelmesh_core::KeyId([0; 8]),
            distribution: Distribution {
                tlp,
                recipients: recipients.iter().map(|r| org(r)).collect(),
            },
            sealed: false,
        }
    }

    #[test]
    fn stubs_one_may_read_are_owed_unrestricted_ones_too() {
        let (me, other) = (
            OrgId::parse("BR-PF").unwrap(),
            OrgId::parse("FR-PN").unwrap(),
        );
        for tlp in [Tlp::Clear, Tlp::Green, Tlp::Amber] {
            // A relay may have stripped it: someone else holds it in full.
            assert!(owed(&header("AU-AFP", tlp, &[]), &me, false), "{tlp:?}");
            assert!(
                owed(&header("AU-AFP", tlp, &[]), &me, true),
                "{tlp:?} at a hub"
            );
        }
        for tlp in [Tlp::AmberStrict, Tlp::Red] {
            let to_me = header("AU-AFP", tlp, &["BR-PF"]);
            assert!(owed(&to_me, &me, false), "{tlp:?}");
            assert!(!owed(&to_me, &other, false), "{tlp:?} for another");
            assert!(
                owed(&to_me, &other, true),
                "{tlp:?} at a hub, with a recipient"
            );
            assert!(
                !owed(&header("AU-AFP", tlp, &[]), &other, true),
                "{tlp:?} for no one"
            );
            assert!(
                owed(&header("BR-PF", tlp, &[]), &me, false),
                "{tlp:?} of its origin"
            );
        }
    }
}
