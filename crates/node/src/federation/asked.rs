//! Payload asks (`Want`) a peer made on one link, and serving them: full entries this node
//! holds and may send over the link, as soon as it holds them.

use std::collections::BTreeSet;
use std::ops::Bound;
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

/// Fills read per store read, to find the asks they answer.
const FILLS_READ: usize = 1024;
/// Most fills since the last round read one by one; past this, every ask is read instead
/// (not more often than [`REREAD_AFTER_MANY_FILLS`]).
const MAX_FILLS_READ: u64 = 16 * FILLS_READ as u64;
/// How often every ask held as a stub is read again when the sender runs (a stub whose entry
/// was cut and appended again whole leaves no fill record).
const REREAD_ALL_EVERY: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// Least time between two reads of every ask forced by many fills: a peer publishing stubs and
/// then their payloads in bulk must not make each sender round read every open ask again.
const REREAD_AFTER_MANY_FILLS: std::time::Duration = std::time::Duration::from_secs(10);

/// Most asks one round finds still held as stubs before it leaves the rest to the next round:
/// reading 16,384 asks a peer can never see answered is no round's work.
const STUB_READS_PER_ROUND: usize = 2048;

/// Most asks one round reads and then refuses (their payload may not travel over the link)
/// before it leaves the rest to the next round. An honest peer asks only for what it is owed,
/// so this is rarely reached; a peer naming thousands of restricted entries it may not read
/// would otherwise buy a store read of each (a segment decoded) with 17 bytes, every round.
const REFUSED_READS_PER_ROUND: usize = 64;

/// Which asks held as stubs a sender round reads again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reread {
    /// None: no payload was filled since the last round.
    Nothing,
    /// Those the fills since the last round name.
    Filled,
    /// Every one (the periodic read, or more fills than are read one by one).
    All,
    /// None yet: too many fills to read one by one, and every ask was read lately.
    Later,
}

/// What a round reads again, with `fills` made by the store, `fills_at` when the asks were
/// last brought up to date, and every ask last read at `cleared_at`.
fn reread(
    fills: u64,
    fills_at: u64,
    cleared_at: Option<std::time::Instant>,
    now: std::time::Instant,
) -> Reread {
    let since = |at: std::time::Instant| now.saturating_duration_since(at);
    if cleared_at.is_none_or(|at| since(at) >= REREAD_ALL_EVERY) {
        return Reread::All;
    }
    match fills.checked_sub(fills_at) {
        Some(0) => Reread::Nothing,
        Some(new) if new <= MAX_FILLS_READ => Reread::Filled,
        // Many, or a count that went back (a store opened anew): every ask, not too often.
        _ if cleared_at.is_some_and(|at| since(at) < REREAD_AFTER_MANY_FILLS) => Reread::Later,
        _ => Reread::All,
    }
}

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
    let now = std::time::Instant::now();
    match reread(fills, keys.fills_at, keys.cleared_at, now) {
        Reread::Nothing | Reread::Later => {}
        Reread::All => {
            keys.stubs.clear();
            keys.cleared_at = Some(now);
            keys.fills_at = fills;
        }
        Reread::Filled => {
            let mut at = keys.fills_at;
            while at < fills {
                let filled = state
                    .store
                    .fills_after(at, FILLS_READ)
                    .map_err(|e| local(&e))?;
                // Fills come in order, each past `at`; a store that says otherwise ends the read.
                let Some(last) = filled.last().map(|f| f.n).filter(|&n| n > at) else {
                    break;
                };
                for f in filled {
                    keys.stubs.remove(&(f.origin, f.seq));
                }
                at = last;
            }
            keys.fills_at = fills;
        }
    }
    // Most rounds of most links have no ask open: nothing to read, not even the vector.
    if keys.open.is_empty() {
        return Ok(());
    }
    let vector = state.vector().map_err(|e| local(&e))?;
    let mut settled = Vec::new();
    let mut stubs = Vec::new();
    let mut refused = 0;
    // Only asks this node can serve now, those at or below its head of their origin, are
    // visited: a peer may keep thousands of asks past every head open (16,384), and each round
    // walking all of them would be its to command.
    let due = (open_origins(&keys.open).into_iter())
        .filter_map(|origin| Some((origin, *vector.get(origin)?)))
        .flat_map(|(origin, head)| {
            keys.open
                .range((origin.clone(), 0)..=(origin.clone(), head))
        });
    for key in due.filter(|k| !keys.stubs.contains(*k)) {
        // The rest wait for the next round (a change, an ask, or the heartbeat at the latest).
        if batch.is_full()
            || stubs.len() >= STUB_READS_PER_ROUND
            || refused >= REFUSED_READS_PER_ROUND
        {
            break;
        }
        let (origin, seq) = key;
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
            refused += 1;
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

/// The origins `open` holds asks of, each once: a step per origin, however many asks it holds.
fn open_origins(open: &BTreeSet<EntryKey>) -> Vec<&OrgId> {
    let mut origins = Vec::new();
    let mut next = open.first();
    while let Some((origin, _)) = next {
        origins.push(origin);
        let past = (origin.clone(), u64::MAX);
        next = open.range((Bound::Excluded(past), Bound::Unbounded)).next();
    }
    origins
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn open_origins_names_each_origin_once_whatever_its_asks() {
        let org = |o: &str| OrgId::parse(o).expect("org");
        let open: BTreeSet<EntryKey> = [
            (org("AU-AFP"), 1),
            (org("AU-AFP"), u64::MAX),
            (org("BR-PF"), 7),
            (org("FR-OCLCTIC"), 0),
            (org("FR-OCLCTIC"), 9),
        ]
        .into_iter()
        .collect();
        let names: Vec<&str> = open_origins(&open).iter().map(|o| o.as_str()).collect();
        assert_eq!(names, ["AU-AFP", "BR-PF", "FR-OCLCTIC"]);
        assert!(open_origins(&BTreeSet::new()).is_empty());
    }

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
    fn a_round_reads_again_what_was_filled_and_every_ask_seldom() {
        use std::time::{Duration, Instant};
        let now = Instant::now();
        let ago = |s: u64| now.checked_sub(Duration::from_secs(s));
        let Some(lately) = ago(1) else { return };
        assert_eq!(reread(5, 0, None, now), Reread::All, "the first round");
        assert_eq!(reread(5, 5, Some(lately), now), Reread::Nothing);
        assert_eq!(reread(6, 5, Some(lately), now), Reread::Filled);
        assert_eq!(
            reread(5 + MAX_FILLS_READ, 5, Some(lately), now),
            Reread::Filled
        );
        // A peer filling its stubs in bulk, round after round: every ask at most once in
        // REREAD_AFTER_MANY_FILLS.
        assert_eq!(
            reread(6 + MAX_FILLS_READ, 5, Some(lately), now),
            Reread::Later
        );
        assert_eq!(reread(3, 5, Some(lately), now), Reread::Later);
        if let Some(a_while) = ago(REREAD_AFTER_MANY_FILLS.as_secs() + 1) {
            assert_eq!(
                reread(6 + MAX_FILLS_READ, 5, Some(a_while), now),
                Reread::All
            );
            assert_eq!(reread(6, 5, Some(a_while), now), Reread::Filled);
        }
        if let Some(long) = ago(REREAD_ALL_EVERY.as_secs()) {
            assert_eq!(reread(5, 5, Some(long), now), Reread::All);
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
