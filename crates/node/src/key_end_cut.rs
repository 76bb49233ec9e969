//! Key-end cuts: what a roster version's key ends take out of the log. An entry signed by a
//! key past the seq where the roster ends it is one every node following that version refuses;
//! a node that took it in before the version reached it must let it go too, or the federation's
//! vectors never agree again.
//!
//! Two kinds of end, two reaches:
//! - a compromise report: cut on every node, the member's own included (a thief's entries);
//! - a suspension, removal or rotation: cut on every node but the member's own. A suspension
//!   ends the key at the head the hub held when it was proposed, and the member may have
//!   published past it before the version spread; its own node keeps those entries, which
//!   reach the others again if it is reinstated (the same entries, so no fork).
//!
//! Entries verified under an earlier key list are judged again under the one in force before
//! they are applied (`drop_ended`, under the cut lock), so an entry verified before the version
//! that ends its key cannot put back what the cut removed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use intelmesh_core::verify::{KeyLookup, KeyRegistry, VerifyError};
use intelmesh_core::{KeyId, OrgId, StaticKeys, VerifiedEntry};
use intelmesh_proto::v1 as pb;
use intelmesh_roster::Roster;
use intelmesh_store::{DiskStore, Store, StoreError};

use crate::state::{header_of, NodeError, NodeState};

/// Entries one key-end cut removed from one member's log.
pub(crate) struct Cut {
    origin: OrgId,
    key_id: KeyId,
    ended_by: pb::KeyEnd,
    kept_through: u64,
    removed: u64,
}

impl Cut {
    pub(crate) fn log(&self, version: u64) {
        tracing::warn!(
            origin = %self.origin,
            key = %self.key_id,
            ended_by = self.ended_by.as_str_name(),
            kept_through = self.kept_through,
            removed = self.removed,
            version,
            "the roster ended this key: removed the entries it signed after its last seq"
        );
    }
}

/// The cuts a link's sender has not seen yet: each (origin, seq kept through), or `Overflow`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CutsSince {
    Cuts(Vec<(OrgId, u64)>),
    /// More cuts than the log keeps happened since: the sender must assume any origin was cut.
    Overflow,
}

/// The last key-end cuts this node made, numbered, so that each link's sender lowers what it
/// believes its peer holds of a cut origin. Without it, a sender that counted entries past the
/// cut as sent would never send their seqs again (under a new key, or after a reinstatement)
/// and the peer would hold the later entries forever, waiting for those.
#[derive(Default)]
pub(crate) struct CutLog {
    inner: Mutex<(u64, VecDeque<(OrgId, u64)>)>,
}

/// Cuts kept for senders that have not looked yet (a cut is rare: a roster version ending a
/// key under which entries past its end were already taken in).
const CUT_LOG_LEN: usize = 256;

impl CutLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, VecDeque<(OrgId, u64)>)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, origin: OrgId, kept_through: u64) {
        let mut inner = self.lock();
        inner.0 += 1;
        inner.1.push_back((origin, kept_through));
        if inner.1.len() > CUT_LOG_LEN {
            inner.1.pop_front();
        }
    }

    /// How many cuts were made so far (where a new sender starts).
    pub(crate) fn count(&self) -> u64 {
        self.lock().0
    }

    /// The cuts made after the first `seen`; `seen` becomes the count.
    pub(crate) fn since(&self, seen: &mut u64) -> CutsSince {
        let inner = self.lock();
        let new = inner.0.saturating_sub(*seen);
        *seen = inner.0;
        match usize::try_from(new) {
            Ok(n) if n <= inner.1.len() => {
                CutsSince::Cuts(inner.1.iter().skip(inner.1.len() - n).cloned().collect())
            }
            _ => CutsSince::Overflow,
        }
    }
}

/// Whether this node cuts what a key ended by `end` signed past its end: compromise everywhere,
/// other ends everywhere but on the member's own node (see the module doc).
fn cuts_here(end: pb::KeyEnd, origin: &OrgId, own: &OrgId) -> bool {
    match end {
        pb::KeyEnd::Compromise => true,
        pb::KeyEnd::Rotation | pb::KeyEnd::Suspension | pb::KeyEnd::Removal => origin != own,
        pb::KeyEnd::Unspecified => false,
    }
}

/// Cuts `store` as `roster`'s key ends require: for each member key ended at `L` whose
/// member's log holds an entry at `L + 1` signed by that key, the log is truncated to `L`
/// (what follows chains onto that entry and goes with it), where `cuts_here` says so. An entry
/// at `L + 1` under another key (a replacement starting there) is the member's and stays. The
/// caller keeps entries verified under an older key list from being applied meanwhile.
pub(crate) fn ended_key_cuts(
    store: &DiskStore,
    roster: &Roster,
    own: &OrgId,
) -> Result<Vec<Cut>, StoreError> {
    // A cut asked again after its rebuild failed finds nothing left to cut: its index is
    // finished here.
    if store.finish_index_rebuild()? {
        tracing::info!("the index a cut left to rebuild is rebuilt");
    }
    let mut cuts = Vec::new();
    for member in roster.members() {
        let Ok(origin) = OrgId::parse(&member.org) else {
            continue;
        };
        for key in &member.signing_keys {
            let Some(last) = key.last_seq else {
                continue;
            };
            let end = pb::KeyEnd::try_from(key.ended_by).unwrap_or(pb::KeyEnd::Unspecified);
            if !cuts_here(end, &origin, own) {
                continue;
            }
            // Nearly always nothing lies past the end: look before decoding the key. What the
            // key signed past its end may still wait in the hold queue for a gap below it.
            if store.head(&origin)?.is_none_or(|h| h.seq <= last) {
                if let Ok(public) = <[u8; 32]>::try_from(key.public_key.as_slice()) {
                    let dropped = store.drop_held_signed_after(&origin, last, &public);
                    if dropped > 0 {
                        tracing::warn!(%origin, last, dropped, "dropped held entries a key signed past its end");
                    }
                }
                continue;
            }
            let Some(key_id) = key_id_of(&key.public_key) else {
                continue;
            };
            let Some(next) = store.range(&origin, last + 1, 1)?.pop() else {
                continue;
            };
            let header = header_of(&next).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "{origin}#{}: a logged header does not decode",
                    last + 1
                ))
            })?;
            if header.key_id != key_id.0 {
                continue;
            }
            let report = store.truncate_origin(&origin, last)?;
            cuts.push(Cut {
                origin: origin.clone(),
                key_id,
                ended_by: end,
                kept_through: last,
                removed: report.removed,
            });
        }
    }
    cuts.extend(roster_log_cut(store, roster)?);
    Ok(cuts)
}

/// The roster log past `roster`'s version when a hub key that may not sign the next version
/// ([`Roster::signs_next_version`]: not the publisher's, or ended) signed the next entry: taken in under an older
/// version, it is one no node following this version accepts, and left in place the real
/// next version could never be stored (a second entry at that seq).
pub(crate) fn roster_log_cut(
    store: &DiskStore,
    roster: &Roster,
) -> Result<Option<Cut>, StoreError> {
    let log = roster.federation_id();
    let version = roster.version();
    if store.head(log)?.is_none_or(|h| h.seq <= version) {
        return Ok(None);
    }
    let Some(next) = store.range(log, version + 1, 1)?.pop() else {
        return Ok(None);
    };
    let header = header_of(&next).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "{log}#{}: a logged header does not decode",
            version + 1
        ))
    })?;
    // Only hubs' keys sign the roster log: the others are not decoded (this runs after each
    // stored version at start).
    let hubs = roster
        .members()
        .iter()
        .filter(|m| m.role == pb::MemberRole::Hub as i32);
    let publisher = roster.roster_publisher();
    for member in hubs {
        let Ok(org) = OrgId::parse(&member.org) else {
            continue;
        };
        for (index, key) in member.signing_keys.iter().enumerate() {
            let Some(key_id) = key_id_of(&key.public_key) else {
                continue;
            };
            if header.key_id != key_id.0
                || roster.signs_next_version(&org, index, publisher.as_ref())
            {
                continue;
            }
            let report = store.truncate_origin(log, version)?;
            return Ok(Some(Cut {
                origin: log.clone(),
                key_id,
                ended_by: pb::KeyEnd::try_from(key.ended_by).unwrap_or(pb::KeyEnd::Unspecified),
                kept_through: version,
                removed: report.removed,
            }));
        }
    }
    Ok(None)
}

/// The id of a roster member's key, if its bytes are a public key.
fn key_id_of(public_key: &[u8]) -> Option<KeyId> {
    let public = <[u8; 32]>::try_from(public_key).ok()?;
    let public = ed25519_dalek::VerifyingKey::from_bytes(&public).ok()?;
    Some(KeyId::of(&public))
}

impl NodeState {
    /// Removes from the store what `roster`'s key ends take out (see `ended_key_cuts`), with
    /// the payloads this node waited for among them; wakes links and watchers. Blocking.
    pub(crate) fn cut_ended_keys(&self, roster: &Roster) -> Result<u64, NodeError> {
        let Some(follow) = self.follow() else {
            return Ok(0);
        };
        let _cutting = follow.cutting.write().unwrap_or_else(|p| p.into_inner());
        let cuts = ended_key_cuts(&self.store, roster, &self.org)?;
        let mut removed = 0;
        for cut in &cuts {
            cut.log(roster.version());
            follow.cuts.push(cut.origin.clone(), cut.kept_through);
            removed += cut.removed;
            for (origin, seq) in self.wants.snapshot() {
                if origin == cut.origin && seq > cut.kept_through {
                    self.wants.remove(&(origin, seq));
                }
            }
        }
        if !cuts.is_empty() {
            self.bump();
        }
        self.lower_own_mark(roster)?;
        Ok(removed)
    }

    /// Lowers the own-log mark past each own key the roster ended (see `OwnMark::key_ended`):
    /// what the other nodes cut never comes back to a node whose store lost it.
    fn lower_own_mark(&self, roster: &Roster) -> Result<(), NodeError> {
        let Some(me) = roster.member(&self.org) else {
            return Ok(());
        };
        let held = self.store.head(&self.org)?.map_or(0, |h| h.seq);
        for key in &me.signing_keys {
            if let (Some(last), Some(key_id)) = (key.last_seq, key_id_of(&key.public_key)) {
                self.own_mark.key_ended(&key_id, last, held);
            }
        }
        Ok(())
    }
}

impl NodeState {
    /// Held while entries verified under some key list are judged again and applied (see
    /// `Follow::cutting`); `None` in static mode, where no key is ever cut.
    pub(crate) fn cut_lock_shared(&self) -> Option<std::sync::RwLockReadGuard<'_, ()>> {
        self.follow()
            .map(|f| f.cutting.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The first of `refused` that was refused for its key's range and that the key may sign
    /// once this node follows its roster log to the head: refused only because the version
    /// that opens the range (a reinstatement) came in the same batch, or was verified after
    /// it. The peer counts it delivered, so the link restarts to have it sent again.
    pub(crate) async fn signable_once_followed(
        self: &Arc<Self>,
        refused: &[VerifyError],
    ) -> Result<Option<VerifyError>, NodeError> {
        if !refused.iter().any(VerifyError::is_origin_fault) {
            return Ok(None);
        }
        self.advance_roster().await?;
        let keys = self.keys();
        Ok(refused
            .iter()
            .find(|e| match e {
                VerifyError::KeyNotValidAtSeq {
                    origin,
                    seq,
                    key_id,
                    ..
                } => matches!(keys.key(origin, key_id, *seq), KeyLookup::Valid(_)),
                _ => false,
            })
            .cloned())
    }

    /// `good` without the entries whose seq the key list in force no longer lets their key
    /// sign (a compromise report, suspension or rotation followed since they were verified
    /// under `verified_with`); those join `refused`, as verification under it would refuse them.
    pub(crate) fn drop_ended(
        &self,
        good: Vec<VerifiedEntry>,
        verified_with: Option<&Arc<StaticKeys>>,
        refused: &mut Vec<VerifyError>,
    ) -> Vec<VerifiedEntry> {
        let now = self.keys();
        if verified_with.is_some_and(|k| Arc::ptr_eq(k, &now)) {
            return good;
        }
        good.into_iter()
            .filter(|e| {
                let h = e.header();
                match now.key(&h.origin, &h.key_id, h.seq) {
                    KeyLookup::OutOfRange {
                        first_seq,
                        last_seq,
                        ..
                    } => {
                        refused.push(VerifyError::KeyNotValidAtSeq {
                            origin: h.origin.clone(),
                            seq: h.seq,
                            key_id: h.key_id,
                            first_seq,
                            last_seq,
                        });
                        false
                    }
                    KeyLookup::Valid(_) | KeyLookup::Unknown => true,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_sees_each_cut_once_and_overflow_past_the_log() {
        let log = CutLog::default();
        let mut seen = log.count();
        assert_eq!(log.since(&mut seen), CutsSince::Cuts(vec![]));
        let sg = OrgId::parse("SG-IGCI").unwrap();
        log.push(sg.clone(), 4);
        log.push(sg.clone(), 2);
        assert_eq!(
            log.since(&mut seen),
            CutsSince::Cuts(vec![(sg.clone(), 4), (sg.clone(), 2)])
        );
        assert_eq!(log.since(&mut seen), CutsSince::Cuts(vec![]));
        for i in 0..=CUT_LOG_LEN as u64 {
            log.push(sg.clone(), i);
        }
        assert_eq!(log.since(&mut seen), CutsSince::Overflow);
        log.push(sg.clone(), 7);
        assert_eq!(log.since(&mut seen), CutsSince::Cuts(vec![(sg, 7)]));
    }

    #[test]
    fn a_compromise_is_cut_everywhere_other_ends_everywhere_but_at_the_member() {
        let (sg, hub) = (
            OrgId::parse("SG-IGCI").unwrap(),
            OrgId::parse("HUB").unwrap(),
        );
        let cases = [
            (pb::KeyEnd::Compromise, &sg, true),
            (pb::KeyEnd::Compromise, &hub, true),
            (pb::KeyEnd::Suspension, &sg, false),
            (pb::KeyEnd::Suspension, &hub, true),
            (pb::KeyEnd::Removal, &sg, false),
            (pb::KeyEnd::Removal, &hub, true),
            (pb::KeyEnd::Rotation, &sg, false),
            (pb::KeyEnd::Rotation, &hub, true),
            (pb::KeyEnd::Unspecified, &hub, false),
        ];
        for (end, own, expected) in cases {
            assert_eq!(cuts_here(end, &sg, own), expected, "{end:?} of SG at {own}");
        }
    }
}
