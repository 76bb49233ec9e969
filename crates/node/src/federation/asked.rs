//! Payload asks (`Want`) a peer made on one link, and serving them: full entries this node
//! holds and may send over the link, as soon as it holds them.

use std::collections::BTreeSet;
use std::sync::Mutex;

use intelmesh_core::{OrgId, StaticKeys};
use intelmesh_proto::v1 as pb;
use intelmesh_store::Store;

use super::link::LinkError;
use super::sender::Batch;
use crate::route::{payload_may_travel, LinkReach};
use crate::state::{header_of, NodeState};
use crate::wants::EntryKey;

/// Payloads the peer asked for (`Want`) that this node has not sent yet: it may not hold them in
/// full yet. Bounded; the sender half serves them as they become available.
#[derive(Default)]
pub struct Asked {
    keys: Mutex<AskedKeys>,
    pub(super) added: tokio::sync::Notify,
}

#[derive(Default)]
struct AskedKeys {
    open: BTreeSet<EntryKey>,
    /// Of `open`, those this node held only as stubs when its store had made `fills_at`
    /// payload fills: not read again until it makes another, so a peer's asks cost no store
    /// reads on every change.
    stubs: BTreeSet<EntryKey>,
    fills_at: u64,
    /// When `stubs` was last cleared whole: a stub whose entry was cut and appended again
    /// whole leaves no fill record, so every ask is read again now and then.
    cleared_at: Option<std::time::Instant>,
    /// Asks settled on this link (payload sent, or refused by TLP): an honest peer never asks
    /// for one again on the same link (`sender::next_want` keeps what it asked), so a repeat
    /// is ignored rather than served again, or a 15 KB frame could buy 8 MiB of reads and
    /// sends over and over.
    settled: crate::seen_lately::SeenLately<EntryKey>,
}

impl Asked {
    fn lock(&self) -> std::sync::MutexGuard<'_, AskedKeys> {
        // Sets of keys, each change whole: a panic elsewhere leaves them usable.
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Most asks kept per link; a peer asks again on its next link for what was dropped.
    pub const MAX: usize = 16_384;

    pub(super) fn add(&self, want: pb::Want, members: &StaticKeys) {
        let mut keys = self.lock();
        let mut added = false;
        // Only members' origins are kept, so each ask costs a few dozen bytes whatever the
        // peer sends, and only for entries that can exist.
        for r in want.entries {
            if keys.open.len() >= Self::MAX {
                break;
            }
            let origin = OrgId::parse(&r.origin)
                .ok()
                .filter(|o| members.is_member(o));
            if let (Some(origin), true) = (origin, r.seq > 0) {
                let key = (origin, r.seq);
                if !keys.settled.contains(&key) {
                    added |= keys.open.insert(key);
                }
            }
        }
        drop(keys);
        // Asks already kept wake nothing: a peer repeating them must not keep the sender busy.
        if added {
            self.added.notify_one();
        }
    }

    /// Asks kept and not served yet.
    pub(super) fn len(&self) -> usize {
        self.lock().open.len()
    }
}

/// Fills read to find the asks they answer; more since the last round, and every ask is read.
const FILLS_READ: usize = 1024;
/// How often every ask held as a stub is read again when the sender runs (a stub whose entry
/// was cut and appended again whole leaves no fill record).
const REREAD_ALL_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Adds to `batch`, as far as it has room, the full entries the peer asked for that this node
/// now holds and may send over the link. Asks it can never serve (the payload may not travel
/// over this link) are dropped; the others wait until this node holds the payload.
pub(super) fn serve_asked(
    state: &NodeState,
    link: &LinkReach,
    asked: &Asked,
    batch: &mut Batch,
) -> Result<(), LinkError> {
    let mut keys = asked.lock();
    if keys.open.is_empty() || batch.is_full() {
        return Ok(());
    }
    let local = |e: &dyn std::fmt::Display| LinkError::Local(e.to_string());
    let fills = state.store.fill_count();
    let stale = keys
        .cleared_at
        .is_none_or(|at| at.elapsed() >= REREAD_ALL_EVERY);
    if stale {
        keys.stubs.clear();
        keys.cleared_at = Some(std::time::Instant::now());
        keys.fills_at = fills;
    } else if fills != keys.fills_at {
        // Only the asks whose stub was filled since are read again (a peer filling stubs one
        // at a time must not make each fill cost a read of every ask); past a bound, all are.
        let new = fills.checked_sub(keys.fills_at).unwrap_or(u64::MAX);
        if new > FILLS_READ as u64 {
            keys.stubs.clear();
        } else {
            let filled = state.store.fills_after(keys.fills_at, FILLS_READ);
            for f in filled.map_err(|e| local(&e))? {
                keys.stubs.remove(&(f.origin, f.seq));
            }
        }
        keys.fills_at = fills;
    }
    let vector = state.vector().map_err(|e| local(&e))?;
    let mut settled = Vec::new();
    let mut stubs = Vec::new();
    for key in keys.open.iter().filter(|k| !keys.stubs.contains(*k)) {
        if batch.is_full() {
            break;
        }
        let (origin, seq) = key;
        if vector.get(origin).is_none_or(|head| head < seq) {
            continue;
        }
        let Some(entry) = state
            .store
            .range(origin, *seq, 1)
            .map_err(|e| local(&e))?
            .pop()
        else {
            continue;
        };
        let header = header_of(&entry)
            .ok_or_else(|| LinkError::Local(format!("stored entry of {origin} does not decode")))?;
        if !payload_may_travel(&header, link) {
            state.metrics.refused(crate::metrics::Refusal::Tlp, 1);
            settled.push(key.clone());
        } else if entry.payload.is_some() {
            if !batch.fits(&entry) {
                break;
            }
            batch.push(entry);
            settled.push(key.clone());
        } else {
            stubs.push(key.clone());
        }
    }
    keys.stubs.extend(stubs);
    for key in &settled {
        keys.open.remove(key);
        keys.settled.insert(key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn asks_are_kept_for_members_only_and_bounded() {
        let (au, members) = au_only();
        let asked = Asked::default();
        let refs = |origin: &str, n: u64| -> Vec<pb::EntryRef> {
            (0..n)
                .map(|seq| pb::EntryRef {
                    origin: origin.to_string(),
                    seq,
                })
                .collect()
        };
        let mut entries = refs("MADE-UP", 5_000);
        entries.extend(refs("not an org", 10));
        entries.extend(refs("AU-AFP", 3));
        asked.add(pb::Want { entries }, &members);
        let open = asked.lock().open.clone();
        assert_eq!(
            open.into_iter().collect::<Vec<_>>(),
            vec![(au.clone(), 1), (au.clone(), 2)],
            "seq 0 and non-members are dropped"
        );
        asked.add(
            pb::Want {
                entries: refs("AU-AFP", 3 * Asked::MAX as u64),
            },
            &members,
        );
        assert_eq!(asked.lock().open.len(), Asked::MAX);
    }

    /// A key list of AU-AFP alone.
    fn au_only() -> (OrgId, StaticKeys) {
        let mut members = StaticKeys::default();
        let au = OrgId::parse("AU-AFP").unwrap();
        members.insert(au.clone(), SigningKey::from_bytes(&[1; 32]).verifying_key());
        (au, members)
    }

    /// A `Want` of AU-AFP's entry `seq`.
    fn want(seq: u64) -> pb::Want {
        pb::Want {
            entries: vec![pb::EntryRef {
                origin: "AU-AFP".into(),
                seq,
            }],
        }
    }

    #[test]
    fn an_ask_settled_on_the_link_is_not_kept_again() {
        let (au, members) = au_only();
        let asked = Asked::default();
        asked.add(want(1), &members);
        {
            // As `serve_asked` does once it sent the payload.
            let mut keys = asked.lock();
            keys.open.remove(&(au.clone(), 1));
            keys.settled.insert(&(au.clone(), 1));
        }
        asked.add(want(1), &members);
        asked.add(want(2), &members);
        let open: Vec<_> = asked.lock().open.iter().cloned().collect();
        assert_eq!(open, [(au.clone(), 2)]);
        // The memory of settled asks is bounded: the oldest go first.
        let mut settled = crate::seen_lately::SeenLately::default();
        let max = crate::seen_lately::SeenLately::<EntryKey>::MAX as u64;
        for seq in 1..=(max + 10) {
            settled.insert(&(au.clone(), seq));
        }
        assert!(!settled.contains(&(au.clone(), 10)));
        assert!(settled.contains(&(au.clone(), 11)));
    }

    async fn woken(asked: &Asked) -> bool {
        let wait = asked.added.notified();
        tokio::time::timeout(std::time::Duration::from_millis(20), wait)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn only_a_new_ask_wakes_the_sender() {
        let (_, members) = au_only();
        let asked = Asked::default();
        asked.add(want(1), &members);
        assert!(woken(&asked).await);
        asked.add(want(1), &members);
        assert!(!woken(&asked).await, "an ask already kept woke the sender");
        asked.add(want(2), &members);
        assert!(woken(&asked).await);
    }
}
