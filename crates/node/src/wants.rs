//! Payloads this node is owed: withheld stubs it holds of entries it may hold in full.
//!
//! A stub can arrive before the full entry, from a peer that may not pass the payload on (a
//! non-recipient in a mesh). Vectors count seqs, so no sender would ever offer the payload
//! again: the node asks for it instead, with a `Want` frame on each link, and a peer that holds
//! the payload and may send it over that link answers with the full entry.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use intelmesh_core::entry::Header;
use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use intelmesh_store::{DiskStore, Store, StoreError};

use crate::config::Role;
use crate::state::{NodeError, NodeState};

/// An entry by origin and seq.
pub type EntryKey = (OrgId, u64);

/// At most this many payloads are asked for at once; more stubs wait for the next scan of the
/// store ([`refill_periodically`]).
pub const MAX_WANTS: usize = 65_536;

/// How often the store may be scanned again for stubs the wants had no room for.
const RESCAN_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// At most this many of them of one origin: an origin publishing stubs of its own entries by
/// the thousand must leave room for the payloads other origins owe.
pub const MAX_WANTS_PER_ORIGIN: usize = MAX_WANTS / 8;

/// The stubs this node holds and is owed the payloads of.
#[derive(Default)]
pub struct Wants {
    inner: Mutex<Owed>,
}

#[derive(Default)]
struct Owed {
    /// Each owed key, with the number it was added under.
    keys: BTreeMap<EntryKey, u64>,
    /// The owed keys by the number they were added under, so a link asks for what was added
    /// since it last asked without copying the whole set (190 links, 65,536 keys, on every
    /// change).
    by_number: BTreeMap<u64, EntryKey>,
    /// The number the next key added takes.
    next_number: u64,
    /// Raised whenever `keys` changes, so a link's sender looks at them again only then.
    revision: u64,
    per_origin: HashMap<OrgId, usize>,
    /// How many were owed when a stub last found no room, and how many were paid since: once
    /// a quarter of them are, the store is scanned again for the stubs left out.
    left_out_at: Option<(usize, usize)>,
}

impl Wants {
    fn lock(&self) -> std::sync::MutexGuard<'_, Owed> {
        // A set of keys and their counts, changed together under the lock.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, key: EntryKey) {
        let mut w = self.lock();
        let of_origin = w.per_origin.get(&key.0).copied().unwrap_or(0);
        if w.keys.len() >= MAX_WANTS || of_origin >= MAX_WANTS_PER_ORIGIN {
            if !w.keys.contains_key(&key) && w.left_out_at.is_none() {
                w.left_out_at = Some((w.keys.len(), 0));
            }
            return;
        }
        if w.keys.contains_key(&key) {
            return;
        }
        let number = w.next_number;
        w.next_number += 1;
        *w.per_origin.entry(key.0.clone()).or_default() += 1;
        w.by_number.insert(number, key.clone());
        w.keys.insert(key, number);
        w.revision += 1;
    }

    pub fn remove(&self, key: &EntryKey) {
        let mut w = self.lock();
        if let Some(number) = w.keys.remove(key) {
            w.by_number.remove(&number);
            w.revision += 1;
            if let Some((_, paid)) = &mut w.left_out_at {
                *paid += 1;
            }
            if let Some(n) = w.per_origin.get_mut(&key.0) {
                *n -= 1;
                if *n == 0 {
                    w.per_origin.remove(&key.0);
                }
            }
        }
    }

    /// Whether stubs were left out for lack of room and enough room was made since to scan
    /// the store for them again (then not again until more are left out).
    pub fn take_rescan(&self) -> bool {
        let mut w = self.lock();
        match w.left_out_at {
            Some((owed, paid)) if paid >= (owed / 4).max(1) => {
                w.left_out_at = None;
                true
            }
            _ => false,
        }
    }

    pub fn contains(&self, key: &EntryKey) -> bool {
        self.lock().keys.contains_key(key)
    }

    /// How many payloads are owed (as far as the wants had room for them).
    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().keys.is_empty()
    }

    /// Changes whenever the owed set does.
    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    pub fn snapshot(&self) -> BTreeSet<EntryKey> {
        self.lock().keys.keys().cloned().collect()
    }

    /// Up to `max` keys owed that were added after number `after` (`None`: all), in the order
    /// they were added, each with its number: a link asks for these, then for those after the
    /// last number it got. A key paid and owed again is added again, under a new number.
    pub fn added_after(&self, after: Option<u64>, max: usize) -> Vec<(u64, EntryKey)> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let w = self.lock();
        (w.by_number.range((from, Bound::Unbounded)))
            .take(max)
            .map(|(n, k)| (*n, k.clone()))
            .collect()
    }
}

/// Whether this node may hold the payload of an entry with this header: it is the origin or a
/// listed recipient, the TLP is not restricted, or the node is a hub (which relays payloads
/// that have someone to reach: sealed ones as envelopes it cannot read).
///
/// A stub of an unrestricted entry is owed too: only the header is signed, so any relay can
/// strip a payload, and a node that logged the stub is sent the entry by no one unless it asks.
pub fn owed(header: &Header, me: &OrgId, hub: bool) -> bool {
    (hub && header.distribution.relayed(&header.origin))
        || header.distribution.allows(&header.origin, me)
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
        let mut of_origin = 0;
        while next <= head && found.len() < MAX_WANTS && of_origin < MAX_WANTS_PER_ORIGIN {
            let entries = store.range(&origin, next, CHUNK)?;
            if entries.is_empty() {
                break;
            }
            next += entries.len() as u64;
            for raw in &entries {
                if let Some(seq) = owed_stub(raw, me, hub)? {
                    found.push((origin.clone(), seq));
                    of_origin += 1;
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

/// Scans the store again, at most every [`RESCAN_EVERY`], once stubs left out for lack of room
/// may fit ([`Wants::take_rescan`]): a relay stripping payloads by the hundred thousand must
/// not leave this node without them until it restarts.
pub async fn refill_periodically(state: Arc<NodeState>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RESCAN_EVERY) => {}
            _ = state.stopped() => return,
        }
        if state.wants.take_rescan() {
            if let Err(e) = find_wants(&state).await {
                tracing::warn!(error = %e, "could not look again for stubs owed payloads");
            }
        }
    }
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
    fn the_revision_moves_only_when_what_is_owed_changes() {
        let wants = Wants::default();
        let au = OrgId::parse("AU-AFP").unwrap();
        let start = wants.revision();
        wants.add((au.clone(), 1));
        let added = wants.revision();
        assert_ne!(added, start);
        wants.add((au.clone(), 1));
        wants.remove(&(au.clone(), 2));
        assert_eq!(wants.revision(), added, "nothing changed");
        wants.remove(&(au.clone(), 1));
        assert_ne!(wants.revision(), added);
    }

    /// A link asks for what was added since its last ask, in order, without the rest: paid
    /// keys are gone, and a key owed again is asked again.
    #[test]
    fn a_link_asks_for_what_was_added_after_its_last_ask() {
        let wants = Wants::default();
        let au = OrgId::parse("AU-AFP").unwrap();
        let key = |seq: u64| (au.clone(), seq);
        let keys = |got: Vec<(u64, EntryKey)>| got.into_iter().map(|(_, k)| k).collect::<Vec<_>>();
        for seq in [5, 3, 9] {
            wants.add(key(seq));
        }
        let first = wants.added_after(None, 2);
        assert_eq!(keys(first.clone()), [key(5), key(3)]);
        let last = first.last().map(|(n, _)| *n);
        assert_eq!(keys(wants.added_after(last, 10)), [key(9)]);
        // 9 paid, 11 owed, 5 paid and owed again: asked after the last number, 11 then 5.
        wants.remove(&key(9));
        wants.add(key(11));
        wants.remove(&key(5));
        wants.add(key(5));
        assert_eq!(keys(wants.added_after(last, 10)), [key(11), key(5)]);
        assert_eq!(keys(wants.added_after(None, 10)), [key(3), key(11), key(5)]);
        assert_eq!(wants.len(), 3);
    }

    #[test]
    fn one_origins_wants_leave_room_for_the_others() {
        let wants = Wants::default();
        let (loud, quiet) = (OrgId::parse("XX").unwrap(), OrgId::parse("AU-AFP").unwrap());
        for seq in 1..=(MAX_WANTS_PER_ORIGIN as u64 + 10) {
            wants.add((loud.clone(), seq));
        }
        assert_eq!(wants.snapshot().len(), MAX_WANTS_PER_ORIGIN);
        wants.add((quiet.clone(), 7));
        assert!(wants.contains(&(quiet.clone(), 7)));
        // A payload that arrives frees its origin's room.
        wants.remove(&(loud.clone(), 1));
        wants.remove(&(loud.clone(), 1));
        wants.add((loud.clone(), MAX_WANTS_PER_ORIGIN as u64 + 20));
        assert!(wants.contains(&(loud.clone(), MAX_WANTS_PER_ORIGIN as u64 + 20)));
        // Full again: the next one waits for the next scan of the store.
        wants.add((loud.clone(), MAX_WANTS_PER_ORIGIN as u64 + 21));
        assert!(!wants.contains(&(loud, MAX_WANTS_PER_ORIGIN as u64 + 21)));
        assert_eq!(wants.snapshot().len(), MAX_WANTS_PER_ORIGIN + 1);
    }

    #[test]
    fn stubs_left_out_are_looked_for_again_once_a_quarter_of_the_owed_are_paid() {
        let wants = Wants::default();
        let origins: Vec<OrgId> = (0..8)
            .map(|i| OrgId::parse(&format!("O{i}")).unwrap())
            .collect();
        for o in &origins {
            for seq in 1..=MAX_WANTS_PER_ORIGIN as u64 {
                wants.add((o.clone(), seq));
            }
        }
        assert!(!wants.take_rescan(), "nothing left out yet");
        wants.add((origins[0].clone(), u64::MAX));
        assert!(!wants.take_rescan(), "no room made yet");
        let paid = MAX_WANTS / 4;
        for (o, seq) in wants.snapshot().into_iter().take(paid - 1) {
            wants.remove(&(o, seq));
        }
        assert!(!wants.take_rescan(), "a quarter not yet paid");
        let (o, seq) = wants.snapshot().into_iter().next().unwrap();
        wants.remove(&(o, seq));
        assert!(wants.take_rescan());
        assert!(!wants.take_rescan(), "once, until more are left out");

        // Payments count even while other origins' wants arrive.
        let wants = Wants::default();
        let (loud, quiet) = (&origins[0], &origins[1]);
        for seq in 1..=MAX_WANTS_PER_ORIGIN as u64 + 1 {
            wants.add((loud.clone(), seq));
        }
        for seq in 1..=(MAX_WANTS_PER_ORIGIN / 4) as u64 {
            wants.remove(&(loud.clone(), seq));
            wants.add((quiet.clone(), seq));
        }
        assert!(wants.take_rescan());
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
                !owed(&header("AU-AFP", tlp, &["AU-AFP"]), &other, true),
                "{tlp:?} for its origin alone, named: never relayed"
            );
            assert!(
                owed(&header("BR-PF", tlp, &[]), &me, false),
                "{tlp:?} of its origin"
            );
        }
    }
}
