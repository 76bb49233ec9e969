//! What a peer holds, as far as this node knows: its vector, raised by its hello, its progress
//! frames and what was sent to it; and the head hashes it reported, so the sender can find
//! where the peer holds the same height as this node under another hash (a split view, to
//! expose by sending this node's entry there).
//!
//! Vectors come from the peer, so only members' origins are kept: names the key list does not
//! know are dropped on arrival, and what the view holds is bounded by the federation's size.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use intelmesh_core::{Hash, Head, OrgId, StaticKeys};
use intelmesh_proto::v1 as pb;

use crate::peer_table::update_or_default;

/// A peer's vector as it reported it, members only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reported {
    pub heads: BTreeMap<OrgId, u64>,
    pub hashes: BTreeMap<OrgId, Hash>,
    /// Names dropped because they are not members (or not org ids at all).
    pub ignored: usize,
}

/// Reads a vector from the wire, keeping members' origins only (and 32-byte hashes only).
pub fn read_vector(wire: Option<pb::VersionVector>, keys: &StaticKeys) -> Reported {
    let mut out = Reported::default();
    let Some(wire) = wire else { return out };
    // A hub takes in every member's progress frames: names are looked up as received, not
    // parsed, and each member's id cloned from the key list.
    for (name, seq) in wire.heads {
        match keys.member(&name) {
            Some(o) => {
                out.heads.insert(o.clone(), seq);
            }
            None => out.ignored += 1,
        }
    }
    for (name, hash) in wire.head_hashes {
        if let (Some(o), Ok(h)) = (keys.member(&name), Hash::try_from(hash.as_slice())) {
            out.hashes.insert(o.clone(), h);
        }
    }
    out
}

/// This node's heads as sent in hellos and progress frames.
pub fn to_wire(heads: &BTreeMap<OrgId, Head>) -> pb::VersionVector {
    pb::VersionVector {
        heads: heads.iter().map(|(o, h)| (o.to_string(), h.seq)).collect(),
        head_hashes: heads
            .iter()
            .map(|(o, h)| (o.to_string(), h.hash.to_vec()))
            .collect(),
    }
}

#[derive(Default)]
struct Inner {
    known: BTreeMap<OrgId, u64>,
    /// The head the peer last reported for each origin: its seq, and its hash if it gave one.
    reported: BTreeMap<OrgId, (u64, Option<Hash>)>,
    /// The seq of each origin whose split view this node last answered.
    answered: BTreeMap<OrgId, u64>,
    /// Falls taken in per origin on this link ([`MAX_FALLS`]).
    falls: BTreeMap<OrgId, u32>,
    /// Since when the peer has held each origin at the same seq while this node found it
    /// behind there ([`PeerView::stalled`]); dropped whenever what it holds rises.
    still_since: BTreeMap<OrgId, Instant>,
    /// The relays (hubs) the peer said it has links with (`Relays` frames), if it said.
    relays: Option<Vec<OrgId>>,
}

/// Falls of one origin's head a link takes in: a cut is rare (a roster version ending a
/// key), and each fall makes this node send again what follows it, so a peer reporting its
/// head up and down without end gets no more resends than this. A new link starts afresh.
const MAX_FALLS: u32 = 4;

/// This node's view of one peer on one link.
#[derive(Default)]
pub struct PeerView {
    inner: Mutex<Inner>,
    /// Wakes the link's sender when what the peer said changes what it is sent
    /// ([`PeerView::set_relays`]).
    pub(super) changed: tokio::sync::Notify,
}

impl PeerView {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Each change is whole under the lock; a panic elsewhere leaves it usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in what the peer reported: raises what it is known to hold, and keeps its head
    /// hashes. A report below the peer's previous one for an origin means the peer cut that
    /// origin's log (a roster version ended a key): what it is known to hold falls to it, so
    /// the seqs after it are sent again when this node has entries there.
    pub fn learn(&self, reported: &Reported) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        for (origin, seq) in &reported.heads {
            let head = (*seq, reported.hashes.get(origin).copied());
            // Origins already listed are updated in place: a hub learns every member's
            // progress frames, and a clone of the name per head was most of this.
            let before = match inner.reported.get_mut(origin) {
                Some(slot) => Some(std::mem::replace(slot, head)),
                None => inner.reported.insert(origin.clone(), head),
            };
            let mut fell = before.is_some_and(|(before, _)| *seq < before);
            if fell {
                let falls = inner.falls.entry(origin.clone()).or_insert(0);
                *falls = falls.saturating_add(1);
                if *falls > MAX_FALLS {
                    fell = false;
                }
            }
            let still_since = &mut inner.still_since;
            update_or_default(&mut inner.known, origin, |known| {
                let now_known = if fell { *seq } else { (*known).max(*seq) };
                if now_known != *known {
                    *known = now_known;
                    still_since.remove(origin);
                }
            });
        }
    }

    /// Notes that the peer holds `origin` up to `seq` (it sent, or was sent, that far).
    pub fn raise(&self, origin: &OrgId, seq: u64) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let still_since = &mut inner.still_since;
        update_or_default(&mut inner.known, origin, |known| {
            if seq > *known {
                *known = seq;
                still_since.remove(origin);
            }
        });
    }

    /// Notes that the peer holds `origin` at most up to `seq`: this node cut the origin's log
    /// there, so what it sent past `seq` may be refused by a peer that cut too.
    pub fn lower(&self, origin: &OrgId, seq: u64) {
        let mut inner = self.lock();
        if let Some(known) = inner.known.get_mut(origin) {
            if seq < *known {
                *known = seq;
                inner.still_since.remove(origin);
            }
        }
    }

    /// Whether the peer, found behind this node on `origin`, has held it at the same seq for
    /// `after` as of `now`: `Err` with the time left if not. The first call after what it
    /// holds rose starts the clock. A relay that keeps taking an origin in, however far
    /// behind, is never stalled: another path is feeding it.
    pub fn stalled(&self, origin: &OrgId, now: Instant, after: Duration) -> Result<(), Duration> {
        let mut inner = self.lock();
        // Asked for every held-back origin of every round: the name is cloned only when the
        // clock starts.
        let since = match inner.still_since.get(origin) {
            Some(since) => *since,
            None => *inner.still_since.entry(origin.clone()).or_insert(now),
        };
        match after.checked_sub(now.saturating_duration_since(since)) {
            Some(left) if !left.is_zero() => Err(left),
            _ => Ok(()),
        }
    }

    /// Keeps the relays the peer said it has links with; wakes the sender if they changed.
    pub fn set_relays(&self, relays: Vec<OrgId>) {
        let mut inner = self.lock();
        if inner.relays.as_ref() != Some(&relays) {
            inner.relays = Some(relays);
            self.changed.notify_one();
        }
    }

    /// The relays the peer said it has links with, if it said.
    pub fn relays(&self) -> Option<Vec<OrgId>> {
        self.lock().relays.clone()
    }

    #[cfg(test)]
    pub fn known(&self, origin: &OrgId) -> u64 {
        self.lock().known.get(origin).copied().unwrap_or(0)
    }

    /// The origins of `ours` the peer is not known to hold up to their head, each with the seq
    /// it is known to hold and our head's seq. One pass over both maps side by side: a sender
    /// runs this each round over every member's head.
    pub fn behind<'a>(&self, ours: &'a BTreeMap<OrgId, Head>) -> Vec<(&'a OrgId, u64, u64)> {
        let inner = self.lock();
        let mut known = inner.known.iter().peekable();
        let mut out = Vec::new();
        for (origin, head) in ours {
            while known.next_if(|(o, _)| *o < origin).is_some() {}
            let have = known
                .next_if(|(o, _)| *o == origin)
                .map_or(0, |(_, seq)| *seq);
            if have < head.seq {
                out.push((origin, have, head.seq));
            }
        }
        out
    }

    /// The seqs where the peer last reported this node's height of an origin under another
    /// hash than `ours`: this node sends its entry there, once per origin and seq.
    pub fn split_views(&self, ours: &BTreeMap<OrgId, Head>) -> Vec<(OrgId, u64)> {
        let mut inner = self.lock();
        let Inner {
            reported, answered, ..
        } = &mut *inner;
        let mut out = Vec::new();
        // Both maps side by side, in their common order (see `behind`).
        let mut ours = ours.iter().peekable();
        for (origin, (seq, hash)) in reported.iter() {
            while ours.next_if(|(o, _)| *o < origin).is_some() {}
            let split = ours
                .next_if(|(o, _)| *o == origin)
                .is_some_and(|(_, h)| h.seq == *seq && hash.is_some_and(|hash| h.hash != hash));
            if split && answered.get(origin) != Some(seq) {
                answered.insert(origin.clone(), *seq);
                out.push((origin.clone(), *seq));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn org(s: &str) -> OrgId {
        OrgId::parse(s).unwrap()
    }

    fn members(names: &[&str]) -> StaticKeys {
        let mut k = StaticKeys::default();
        for (i, n) in names.iter().enumerate() {
            k.insert(
                org(n),
                SigningKey::from_bytes(&[i as u8 + 1; 32]).verifying_key(),
            );
        }
        k
    }

    #[test]
    fn a_peer_is_stalled_on_an_origin_once_it_held_still_there_for_the_time() {
        let view = PeerView::default();
        let (au, br) = (org("AU"), org("BR"));
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let after = secs(2);
        assert_eq!(
            view.stalled(&au, t0, after),
            Err(after),
            "the first look starts the clock"
        );
        assert_eq!(view.stalled(&au, t0 + secs(1), after), Err(secs(1)));
        assert_eq!(view.stalled(&au, t0 + secs(2), after), Ok(()));
        assert_eq!(view.stalled(&au, t0 + secs(9), after), Ok(()));

        // Sent to it: what it holds rose, the clock starts again at the next look.
        view.raise(&au, 3);
        assert_eq!(view.stalled(&au, t0 + secs(10), after), Err(after));
        // A report of no more than it was known to hold leaves the clock running.
        let report = |seq| Reported {
            heads: [(au.clone(), seq)].into_iter().collect(),
            ..Reported::default()
        };
        view.learn(&report(3));
        view.raise(&au, 2);
        assert_eq!(view.stalled(&au, t0 + secs(11), after), Err(secs(1)));
        // One that raises it restarts it.
        view.learn(&report(4));
        assert_eq!(view.stalled(&au, t0 + secs(11), after), Err(after));
        // So does a cut lowering it: what follows the cut is owed again.
        view.lower(&au, 1);
        assert_eq!(view.stalled(&au, t0 + secs(12), after), Err(after));
        // Each origin has its own clock.
        assert_eq!(view.stalled(&br, t0 + secs(13), after), Err(after));
        assert_eq!(view.stalled(&au, t0 + secs(13), after), Err(secs(1)));
    }

    #[test]
    fn only_members_are_kept_from_a_peers_vector() {
        let wire = pb::VersionVector {
            heads: [
                ("AU".to_string(), 3),
                ("MADE-UP".into(), 9),
                ("bad name".into(), 1),
            ]
            .into_iter()
            .collect(),
            head_hashes: [
                ("AU".to_string(), vec![1; 32]),
                ("MADE-UP".into(), vec![2; 32]),
            ]
            .into_iter()
            .collect(),
        };
        let r = read_vector(Some(wire), &members(&["AU", "BR"]));
        assert_eq!(r.heads, [(org("AU"), 3)].into_iter().collect());
        assert_eq!(r.hashes.len(), 1);
        assert_eq!(r.ignored, 2);
    }

    fn report(origin: &str, seq: u64) -> Reported {
        Reported {
            heads: [(org(origin), seq)].into_iter().collect(),
            ..Reported::default()
        }
    }

    #[test]
    fn behind_names_the_origins_the_peer_lacks_with_what_it_holds() {
        let head = |seq| Head {
            seq,
            hash: [seq as u8; 32],
        };
        let ours: BTreeMap<OrgId, Head> = [
            (org("AU"), head(4)),
            (org("BR"), head(2)),
            (org("DE"), head(7)),
            (org("SG"), head(1)),
        ]
        .into_iter()
        .collect();
        let view = PeerView::default();
        // Known: AU complete, BR behind, CC (not ours) ahead, DE unknown, ZZ (not ours).
        view.learn(&Reported {
            heads: [
                (org("AU"), 4),
                (org("BR"), 1),
                (org("CC"), 9),
                (org("ZZ"), 3),
            ]
            .into_iter()
            .collect(),
            ..Reported::default()
        });
        assert_eq!(
            view.behind(&ours),
            vec![(&org("BR"), 1, 2), (&org("DE"), 0, 7), (&org("SG"), 0, 1)]
        );
        assert!(PeerView::default().behind(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn what_a_peer_holds_rises_with_sends_and_falls_only_with_a_cut() {
        let view = PeerView::default();
        view.learn(&report("SG", 5));
        view.raise(&org("SG"), 24);
        assert_eq!(view.known(&org("SG")), 24, "sent up to 24");
        // A progress frame from before the sent entries arrived: not a cut.
        view.learn(&report("SG", 10));
        assert_eq!(view.known(&org("SG")), 24);
        // The peer's own vector fell from 10 to 2: it cut the log.
        view.learn(&report("SG", 2));
        assert_eq!(view.known(&org("SG")), 2);
        // This node cut: nothing past its cut counts as held.
        view.raise(&org("SG"), 30);
        view.lower(&org("SG"), 7);
        assert_eq!(view.known(&org("SG")), 7);
        view.lower(&org("SG"), 9);
        assert_eq!(view.known(&org("SG")), 7, "lowering never raises");
        view.lower(&org("AU"), 3);
        assert_eq!(view.known(&org("AU")), 0);
    }

    #[test]
    fn a_peer_reporting_its_head_up_and_down_gets_a_bounded_number_of_resends() {
        let view = PeerView::default();
        for _ in 0..MAX_FALLS {
            view.learn(&report("SG", 100));
            view.learn(&report("SG", 0));
            assert_eq!(view.known(&org("SG")), 0, "a fall is taken in");
        }
        view.learn(&report("SG", 100));
        view.learn(&report("SG", 0));
        assert_eq!(view.known(&org("SG")), 100, "past the bound, falls are not");
        // Another origin has falls of its own.
        view.learn(&report("AU", 9));
        view.learn(&report("AU", 3));
        assert_eq!(view.known(&org("AU")), 3);
    }

    #[test]
    fn a_peer_at_the_same_height_with_another_hash_is_a_split_view() {
        let view = PeerView::default();
        let ours: BTreeMap<OrgId, Head> = [
            (
                org("AU"),
                Head {
                    seq: 4,
                    hash: [1; 32],
                },
            ),
            (
                org("BR"),
                Head {
                    seq: 2,
                    hash: [2; 32],
                },
            ),
        ]
        .into_iter()
        .collect();
        let reported = Reported {
            heads: [(org("AU"), 4), (org("BR"), 1)].into_iter().collect(),
            hashes: [(org("AU"), [9; 32]), (org("BR"), [9; 32])]
                .into_iter()
                .collect(),
            ignored: 0,
        };
        view.learn(&reported);
        assert_eq!(view.known(&org("AU")), 4);
        assert_eq!(
            view.split_views(&ours),
            vec![(org("AU"), 4)],
            "BR is only behind"
        );
        assert!(
            view.split_views(&ours).is_empty(),
            "each divergence is sent once"
        );
        view.raise(&org("BR"), 2);
        assert_eq!(view.known(&org("BR")), 2);
    }
}
