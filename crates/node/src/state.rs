//! The state a running node shares between its links and its API: store, keys, own signer,
//! the change signal, and the peer table. Entries enter the store only through [`NodeState`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use intelmesh_core::chain::ChainError;
use intelmesh_core::evidence::{self, CheckedProof, EvidenceError};
use intelmesh_core::verify::{verify_batch_parallel, Control, VerifyConfig};
use intelmesh_core::{KeyId, OrgId, Signer, StaticKeys, VerifiedEntry, VerifyError};
use intelmesh_proto::v1 as pb;
use intelmesh_store::{ApplyReport, DiskStore, Outcome, Store, StoreError, VersionVector};
use prost::Message;

use crate::config::{NodeConfig, PeerConfig, Role};
pub use crate::node_error::NodeError;
pub use crate::own_entries::{Idempotent, Publication};
pub use crate::peer_table::{PeerState, PeerTable};
use crate::roster_follow::{load_genesis, Follow};
use crate::rotation::PendingKey;
use crate::unverified::{Added, Unverified, UnverifiedLimits};
use crate::wants::{owed, EntryKey, Wants};

/// Entries per rayon task when verifying a received batch. One ed25519 batch check costs less
/// per signature the more it holds: `bench catchup` ran at 51.5k entries/s with 128 and 61.5k/s
/// with 256, and a full 1024-entry frame still spreads over 4 tasks.
pub const VERIFY_CHUNK: usize = 256;

/// How many received batches a link verifies ahead of the one being applied: an entry batch is
/// verified (on all cores) as soon as it is read, so the next batches verify while the current
/// one is applied and flushed (one core, then the disk), and no core waits for the slowest
/// chunk of a batch. Bounds what a link holds in memory.
pub const VERIFY_AHEAD: usize = 4;

pub struct NodeState {
    pub org: OrgId,
    pub cfg: NodeConfig,
    pub store: Arc<DiskStore>,
    /// The members' verifying keys; replaced whole when the key list changes.
    keys: RwLock<Arc<StaticKeys>>,
    /// Replaced by a key rotation (under `own`), so every entry is signed by the key in force.
    signer: RwLock<Arc<Signer>>,
    /// Held while signing and appending own entries, and while rotating the signing key, so
    /// the head cannot move in between.
    pub(crate) own: tokio::sync::Mutex<()>,
    /// The highest seq signed, kept in `marks_dir`: no signing while the store is behind it.
    pub(crate) own_mark: crate::own_mark::OwnMark,
    /// The same for the authority log, which a publisher hub signs (roster mode).
    pub(crate) authority_mark: crate::own_mark::OwnMark,
    /// The store's count of hold-queue expiries last acted on, and when (see
    /// `resend_if_hold_expired`).
    hold_resend: Mutex<HoldResend>,
    /// Fork proofs that checked out lately, so a proof passed on again costs no signature
    /// check.
    proofs_checked: Mutex<crate::seen_lately::SeenLately<ProofIdentity>>,
    /// Refused handshakes' WARN lines, at most one per host and interval (`log_gate`).
    pub(crate) handshake_logs: crate::log_gate::LogGate,
    /// Entries refused lately for their key's range (see `refused_lately`).
    pub(crate) refused_lately: Mutex<crate::refused_lately::RefusedLately>,
    /// Roster mode: this node's new key, rotated in but not yet in the roster (see `rotation`).
    /// Held while the key set is replaced, so no replacement loses the overlay.
    pub(crate) pending_key: Mutex<Option<PendingKey>>,
    /// Bumped after every apply that changed the log; link senders and watchers wait on it.
    changed: tokio::sync::watch::Sender<u64>,
    /// Set when the node shuts down; links end when they see it.
    stopping: tokio::sync::watch::Sender<bool>,
    pub peers: PeerTable,
    /// Stubs held whose payloads this node is owed; links ask their peers for them.
    pub wants: Wants,
    /// Entries received that wait for their signing key to appear in the key list.
    pub unverified: Unverified,
    /// Roster mode: the roster followed (`None` in static mode, keys from a file).
    follow: Option<Follow>,
    /// Own listener certificates' ends, read at start, for expiry warnings (`cert_watch`).
    pub own_certs: crate::cert_watch::OwnCerts,
    /// Event counters for the Prometheus endpoint (`crate::metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Known-benign values (`crate::warninglists`).
    pub(crate) warninglists: RwLock<Arc<intelmesh_interop::Warninglists>>,
    /// The audit trail of API calls (`crate::audit`), set by `start`.
    pub(crate) audit: std::sync::OnceLock<crate::audit::AuditLog>,
    /// This org's encryption keys, current and older (`crate::sealing`).
    pub(crate) decryption: RwLock<Arc<intelmesh_core::sealed::DecryptionKeys>>,
}

/// What became of a batch received from a peer.
#[derive(Debug, Default)]
pub struct IngestReport {
    pub appended: usize,
    pub duplicates: usize,
    pub held: usize,
    /// Entries kept to be verified once their key is known (see `unverified`).
    pub unverifiable: usize,
    pub refused: Vec<VerifyError>,
    /// Refused lately for the same reason, and refused again without a signature check (see
    /// `refused_lately`): a link treats them as `refused`, without logging each again.
    pub refused_again: Vec<VerifyError>,
    pub chain_rejected: Vec<ChainError>,
}

/// What makes two fork proofs the same: the origin, the seq, and the two entries' headers and
/// signatures in either order (a relay may change the detection time or drop payloads freely).
type ProofIdentity = (String, u64, [(Vec<u8>, Vec<u8>); 2]);

fn proof_identity(p: &pb::ForkProof) -> ProofIdentity {
    let part = |e: &Option<pb::SignedEntry>| {
        e.as_ref()
            .map(|e| (e.header.to_vec(), e.signature.to_vec()))
            .unwrap_or_default()
    };
    let (a, b) = (part(&p.kept), part(&p.conflicting));
    let pair = if a <= b { [a, b] } else { [b, a] };
    (p.origin.clone(), p.seq, pair)
}

/// The hold-queue expiries acted on (the store's count then), when, and whether a timer waits
/// to act on more.
#[derive(Default)]
struct HoldResend {
    seen: u64,
    last: Option<std::time::Instant>,
    timer_set: bool,
}

/// Least time between two link restarts for entries that expired from the hold queue.
const HOLD_RESEND_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Entries read ahead from a held one's seq when looking for replays: about one segment.
const HELD_READ_AHEAD: usize = 16;
/// Bytes of held entries read to find a batch's replays: this many times the bytes it brought,
/// plus a base.
const HELD_READ_BUDGET_FACTOR: usize = 4;
const HELD_READ_BUDGET_BASE: usize = 1 << 20;

/// Received entries after verification: those that verified, those that cannot be verified
/// yet (unknown key), and why the others were refused.
#[derive(Debug, Default)]
pub struct Checked {
    pub good: Vec<VerifiedEntry>,
    pub unknown_key: Vec<UnknownKey>,
    pub refused: Vec<VerifyError>,
    /// The key list they were verified under.
    pub keys: Option<Arc<StaticKeys>>,
    /// Entries this node held already, as they came (counted as duplicates, not verified).
    pub held_already: Vec<(OrgId, u64)>,
    /// Entries refused lately, refused again without a signature check.
    pub refused_again: Vec<VerifyError>,
}

/// An entry signed with a key not in this node's key list, as its checked header names it.
#[derive(Debug)]
pub struct UnknownKey {
    pub origin: OrgId,
    pub seq: u64,
    pub key_id: KeyId,
    pub entry: pb::SignedEntry,
}

/// What became of fork proofs received from a peer.
#[derive(Debug, Default)]
pub struct EvidenceReport {
    /// Proofs this node did not hold.
    pub added: u64,
    /// Proofs that do not hold up (the peer vouched for a proof it should have checked).
    pub invalid: Vec<EvidenceError>,
    /// Proofs naming a key this node does not know yet; skipped.
    pub unverifiable: usize,
}

impl NodeState {
    /// The state of a node whose key list must hold its own signing key: every other member
    /// verifies its entries with that list's keys, so a key missing from it would have the
    /// node sign entries that no member accepts.
    pub fn new(
        cfg: NodeConfig,
        store: DiskStore,
        keys: StaticKeys,
        signer: Signer,
    ) -> Result<NodeState, NodeError> {
        own_key_listed(&keys, &signer)?;
        let decryption = crate::sealing::load_decryption(&cfg)?;
        Ok(NodeState::assemble(
            cfg, store, keys, signer, None, decryption,
        ))
    }

    /// The state of a node in roster mode: it follows the genesis its config pins and the
    /// roster log in its store. Its own key need not be in the roster yet (a member enrolled
    /// later): it then starts, receives the roster log, and publishes once a version admits it.
    pub fn following(
        cfg: NodeConfig,
        store: DiskStore,
        signer: Signer,
    ) -> Result<NodeState, NodeError> {
        let roster_cfg = cfg.roster.as_ref().ok_or(NodeError::NotFollowing)?;
        let genesis = load_genesis(roster_cfg).map_err(|e| NodeError::Follow(e.to_string()))?;
        let pending = crate::rotation::pending_at_start(&cfg, &signer)?;
        // A hub signs roster-log entries with a key the roster in force lists and lets sign
        // (`Follow::authority_signer`): after a restart with a rotated key, the old one until
        // a version lists the new, the new one after (and always once the old is reported).
        let roster_log_old = match &pending {
            Some(p) => crate::rotation::kept_old_key(&cfg, p)?
                .map(|k| Signer::new(signer.org().clone(), k)),
            None => None,
        };
        let log_pins = roster_cfg.log_pins().map_err(NodeError::Follow)?;
        let follow = Follow::start(
            &store,
            (genesis, log_pins),
            &signer,
            roster_log_old.as_ref(),
        )
        .map_err(|e| NodeError::Follow(e.to_string()))?;
        let mut keys = follow.current().key_set();
        let pending = pending.filter(|p| p.overlay(&mut keys));
        let decryption = crate::sealing::load_decryption(&cfg)?;
        let state = NodeState::assemble(cfg, store, keys, signer, Some(follow), decryption);
        *crate::rotation::lock(&state.pending_key) = pending;
        Ok(state)
    }

    fn assemble(
        cfg: NodeConfig,
        store: DiskStore,
        keys: StaticKeys,
        signer: Signer,
        follow: Option<Follow>,
        decryption: intelmesh_core::sealed::DecryptionKeys,
    ) -> NodeState {
        let peers = PeerTable::new(cfg.peer.iter().filter_map(|p| OrgId::parse(&p.org).ok()));
        use crate::own_mark::{named_file, OwnMark, AUTHORITY_MARK_FILE, OWN_MARK_FILE};
        let marks = cfg.store.marks_dir.as_deref();
        let named = |file: &str, log: &OrgId, keys: &[KeyId]| {
            named_file(marks, file, signer.org(), (log, keys))
        };
        let own_keys = [signer.key_id()];
        let own_mark = OwnMark::in_dir(
            marks,
            &named(OWN_MARK_FILE, signer.org(), &own_keys),
            signer.org(),
            &own_keys,
        );
        let authority = (follow.as_ref())
            .and_then(|f| f.authority_signer(signer.org(), &keys, &signer))
            .map(|signer| (signer.org().clone(), signer.key_id()));
        let (federation, authority_key) =
            authority.unwrap_or_else(|| (signer.org().clone(), signer.key_id()));
        // Either key this node holds may have written the authority mark: one signing the log
        // after a rotation, then a store restored to before the roster listed it, makes the
        // node sign with the older key again, and the mark must still hold it back.
        let authority_keys = [authority_key, signer.key_id()];
        let authority_mark = OwnMark::in_dir(
            marks,
            &named(AUTHORITY_MARK_FILE, &federation, &authority_keys),
            &federation,
            &authority_keys,
        );
        NodeState {
            own_certs: crate::cert_watch::OwnCerts::read(&cfg),
            org: signer.org().clone(),
            cfg,
            store: Arc::new(store),
            keys: RwLock::new(Arc::new(keys)),
            signer: RwLock::new(Arc::new(signer)),
            own: tokio::sync::Mutex::new(()),
            own_mark,
            authority_mark,
            pending_key: Mutex::new(None),
            proofs_checked: Mutex::default(),
            refused_lately: Mutex::default(),
            handshake_logs: Default::default(),
            hold_resend: Mutex::default(),
            changed: tokio::sync::watch::channel(0).0,
            stopping: tokio::sync::watch::channel(false).0,
            peers,
            wants: Wants::default(),
            unverified: Unverified::default(),
            follow,
            metrics: crate::metrics::Metrics::default(),
            warninglists: RwLock::default(),
            audit: std::sync::OnceLock::new(),
            decryption: RwLock::new(Arc::new(decryption)),
        }
    }

    pub(crate) fn follow(&self) -> Option<&Follow> {
        self.follow.as_ref()
    }

    /// Whether this node may sign with its key under `keys`: in static mode the list must
    /// hold it; in roster mode the roster must have admitted it.
    pub(crate) fn may_sign(&self, keys: &StaticKeys) -> Result<(), NodeError> {
        let signer = self.signer();
        match self.roster() {
            None => own_key_listed(keys, &signer),
            Some(_) if keys.holds(&self.org, &signer.verifying_key()) => Ok(()),
            Some(roster) => Err(NodeError::NotAdmitted {
                org: self.org.clone(),
                key_id: signer.key_id(),
                version: roster.version(),
            }),
        }
    }

    /// Whether the own key may sign `seqs` (this node's next ones) in `keys`: the roster may
    /// have ended it at an earlier seq. A key `keys` lacks is [`Self::may_sign`]'s to refuse.
    pub(crate) fn may_sign_seqs(
        &self,
        keys: &StaticKeys,
        signer: &Signer,
        seqs: std::ops::RangeInclusive<u64>,
    ) -> Result<(), NodeError> {
        let Some(range) = keys.range_of(&self.org, &signer.verifying_key()) else {
            return Ok(());
        };
        let Some(last_seq) = range.last else {
            return Ok(());
        };
        if *seqs.end() <= last_seq {
            return Ok(());
        }
        let key = signer.verifying_key().to_bytes();
        let roster = self.roster();
        let ended_by = roster
            .as_ref()
            .and_then(|r| r.member(&self.org))
            .and_then(|m| m.signing_keys.iter().find(|k| k.public_key == key))
            .and_then(|k| pb::KeyEnd::try_from(k.ended_by).ok())
            .map_or("the roster", |end| match end {
                pb::KeyEnd::Suspension => "suspension",
                pb::KeyEnd::Removal => "removal",
                pb::KeyEnd::Compromise => "compromise report",
                pb::KeyEnd::Rotation => "rotation",
                pb::KeyEnd::Unspecified => "the roster",
            });
        Err(NodeError::OwnKeyEnded {
            org: self.org.clone(),
            key_id: signer.key_id(),
            last_seq,
            next: (*seqs.start()).max(last_seq + 1),
            version: roster.map_or(0, |r| r.version()),
            ended_by,
        })
    }

    /// The key list as it is now.
    pub fn keys(&self) -> Arc<StaticKeys> {
        Arc::clone(&self.keys.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts a new key list in place (checked by the caller).
    pub(crate) fn set_keys(&self, keys: StaticKeys) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
    }

    /// The signer in force (a rotation replaces it).
    pub(crate) fn signer(&self) -> Arc<Signer> {
        Arc::clone(&self.signer.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts a rotated signer in place (the caller holds `own`).
    pub(crate) fn set_signer(&self, signer: Signer) {
        *self.signer.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(signer);
    }

    pub(crate) fn unverified_limits(&self) -> UnverifiedLimits {
        UnverifiedLimits {
            per_origin: self.cfg.limits.unverified_per_origin,
            total_bytes: self.cfg.limits.unverified_total_bytes,
        }
    }

    /// Checks fork proofs received from a peer and keeps the valid new ones (the store caps
    /// them per origin and flags their origins); wakes the links so they pass them on.
    pub async fn receive_evidence(
        self: &Arc<Self>,
        proofs: Vec<pb::ForkProof>,
    ) -> Result<EvidenceReport, NodeError> {
        let me = Arc::clone(self);
        let report = tokio::task::spawn_blocking(move || -> Result<EvidenceReport, NodeError> {
            let keys = me.keys();
            let mut report = EvidenceReport::default();
            let mut checked: Vec<CheckedProof> = Vec::new();
            let mut stored_now = Vec::new();
            for proof in proofs {
                // A proof checked lately (the same fork, from any peer) is not checked again:
                // any member may pass the proofs it holds on, again and again, at two
                // signature checks each.
                let fork = proof_identity(&proof);
                if crate::rotation::lock(&me.proofs_checked).contains(&fork) {
                    continue;
                }
                match evidence::check(proof, keys.as_ref()) {
                    Ok(c) => {
                        stored_now.push(fork);
                        checked.push(c)
                    }
                    Err(e) if e.is_unverifiable_yet() => report.unverifiable += 1,
                    // Moot, not forged: skipped, whoever passed it on.
                    Err(e) if e.is_past_key_end() => {
                        tracing::debug!(error = %e, "fork proof skipped: an entry lies past its key's end");
                    }
                    Err(e) => report.invalid.push(e),
                }
            }
            for c in &checked {
                let f = c.fork();
                tracing::debug!(origin = %f.origin, seq = f.seq, kind = f.kind.as_str(), "fork proof received");
            }
            report.added = me.store.add_fork_proofs(checked)?;
            // Only once stored: a proof whose write failed is checked again when it comes.
            let mut recent = crate::rotation::lock(&me.proofs_checked);
            for fork in &stored_now {
                recent.insert(fork);
            }
            Ok(report)
        })
        .await
        .map_err(|e| NodeError::Join(e.to_string()))??;
        if report.added > 0 {
            self.bump();
        }
        Ok(report)
    }

    pub fn peer_config(&self, org: &OrgId) -> Option<&PeerConfig> {
        self.cfg.peer.iter().find(|p| p.org == org.as_str())
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Tells every link and watcher to end.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Whether [`NodeState::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Resolves once [`NodeState::stop`] was called.
    pub async fn stopped(&self) {
        let mut rx = self.stopping.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub(crate) fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub fn vector(&self) -> Result<VersionVector, StoreError> {
        self.store.vector()
    }

    /// Verifies entries received from a peer (all cores) and applies the good ones durably.
    pub async fn ingest(
        self: &Arc<Self>,
        raws: Vec<pb::SignedEntry>,
    ) -> Result<IngestReport, NodeError> {
        let checked = self.verify_received(raws).await?;
        self.apply_checked(checked).await
    }

    /// The first half of [`NodeState::ingest`]: verification on all cores, off the async
    /// threads. Split out so a link can verify the next batch while the previous one is being
    /// applied.
    pub async fn verify_received(
        self: &Arc<Self>,
        raws: Vec<pb::SignedEntry>,
    ) -> Result<Checked, NodeError> {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let (held_already, raws) = me.without_held(raws);
            let (refused_again, raws) = me.without_refused_lately(raws);
            let verified = raws.len();
            let mut checked = check_entries(
                raws,
                me.keys(),
                &VerifyConfig::at(intelmesh_core::now_unix_ms()),
            );
            checked.held_already = held_already;
            checked.refused_again = refused_again;
            checked.good = me.open_received(std::mem::take(&mut checked.good));
            let held = checked.held_already.len();
            me.metrics.verified_batch(started.elapsed(), verified, held);
            checked
        })
        .await
        .map_err(|e| NodeError::Join(e.to_string()))
    }

    /// `raws` without the entries this node holds already, byte for byte (header, signature,
    /// and the payload if the entry brings one): those cost a store read, not a signature
    /// check, so a peer sending again what it sent (two hubs, a replay) makes no verification
    /// work. Anything else at a held seq goes on to be verified: another header (a fork),
    /// changed bytes (a forgery), a payload for a stub held.
    fn without_held(
        &self,
        raws: Vec<pb::SignedEntry>,
    ) -> (Vec<(OrgId, u64)>, Vec<pb::SignedEntry>) {
        let Ok(heads) = self.store.heads() else {
            return (Vec::new(), raws);
        };
        // Held seqs the batch names, and how many consecutive seqs of one origin follow each
        // (itself included): reads go ahead only over seqs the peer sent, so a stub naming
        // one seq here and there costs one entry's read, not a segment's.
        let named: Vec<Option<(OrgId, u64)>> = raws
            .iter()
            .map(|raw| {
                let h = pb::EntryHeader::decode(raw.header.as_ref()).ok()?;
                let origin = OrgId::parse(&h.origin).ok()?;
                let head = heads.get(&origin)?;
                (h.seq != 0 && h.seq <= head.seq).then_some((origin, h.seq))
            })
            .collect();
        let mut run = vec![1usize; named.len()];
        for i in (0..named.len().saturating_sub(1)).rev() {
            if let (Some((o, s)), Some((next_o, next_s))) = (&named[i], &named[i + 1]) {
                if o == next_o && s.checked_add(1) == Some(*next_s) {
                    run[i] = (run[i + 1] + 1).min(HELD_READ_AHEAD);
                }
            }
        }
        // What the reads may cost, against what the peer sent: stubs of large held entries
        // past it are verified instead, as any entry is.
        let sent: usize = raws.iter().map(|r| r.encoded_len()).sum();
        let mut budget = sent.saturating_mul(HELD_READ_BUDGET_FACTOR) + HELD_READ_BUDGET_BASE;
        let mut held = Vec::new();
        let mut rest = Vec::with_capacity(raws.len());
        let mut read: HashMap<(OrgId, u64), pb::SignedEntry> = HashMap::new();
        for ((raw, key), run) in raws.into_iter().zip(named).zip(run) {
            let stored = key.and_then(|key| {
                if !read.contains_key(&key) && budget > 0 {
                    let entries = self.store.range(&key.0, key.1, run).ok()?;
                    for (i, e) in entries.into_iter().enumerate() {
                        budget = budget.saturating_sub(e.encoded_len());
                        read.insert((key.0.clone(), key.1 + i as u64), e);
                    }
                }
                let stored = read.get(&key)?;
                Some((key, stored))
            });
            match stored {
                // Byte for byte: a changed signature or payload is verified, and a forgery
                // found, as before. A payload this node is owed goes on too, so that its want
                // is settled (the store may hold it already: two links raced).
                Some((key, s))
                    if s.header == raw.header
                        && s.signature == raw.signature
                        && (raw.payload.is_none() || raw.payload == s.payload)
                        && !(raw.payload.is_some() && self.wants.contains(&key)) =>
                {
                    held.push(key)
                }
                _ => rest.push(raw),
            }
        }
        (held, rest)
    }

    /// The second half of [`NodeState::ingest`]: applies the verified entries durably and
    /// reports the refused ones with the outcomes.
    pub async fn apply_checked(
        self: &Arc<Self>,
        checked: Checked,
    ) -> Result<IngestReport, NodeError> {
        let me = Arc::clone(self);
        let report = tokio::task::spawn_blocking(move || -> Result<IngestReport, NodeError> {
            let mut report = IngestReport {
                refused: checked.refused,
                refused_again: checked.refused_again,
                duplicates: checked.held_already.len(),
                ..IngestReport::default()
            };
            let mut good = checked.good;
            let verified_with = checked.keys.clone();
            let (mut unknown, mut used) = (checked.unknown_key, checked.keys);
            loop {
                report.unverifiable += me.keep_unverified(unknown);
                // A key list that changed after these were verified may hold their keys, and
                // its recheck may have run before they were kept: they would wait for the next
                // change. Once kept under the list in force, the next change rechecks them.
                let now = me.keys();
                if used.as_ref().is_none_or(|u| Arc::ptr_eq(u, &now)) {
                    break;
                }
                let again = check_entries(
                    me.unverified.take_all(),
                    Arc::clone(&now),
                    &VerifyConfig::at(intelmesh_core::now_unix_ms()),
                );
                report.unverifiable = 0;
                good.extend(me.open_received(again.good));
                // The queue is shared by every link: what fails now may have come from any
                // peer, so it is dropped and logged, never counted against this link (which
                // would be cut for another's forgery).
                for e in &again.refused {
                    tracing::warn!(error = %e, "an entry that waited for its key does not verify");
                }
                me.resend_if_out_of_range(&again.refused);
                (unknown, used) = (again.unknown_key, Some(now));
            }
            // A compromise cut made since they were verified must not be undone: under the
            // cut lock, the key list in force judges their seqs again (see `roster_follow`).
            let _cutting = me.cut_lock_shared();
            let good = me.drop_ended(good, verified_with.as_ref(), &mut report.refused);
            let good = me.refuse_unfollowable_versions(good, &mut report.refused);
            let watched = me.stubs_to_watch(&good);
            let checkpoints = received_checkpoints(&good);
            let started = std::time::Instant::now();
            let applied = me.store.apply(good)?;
            me.metrics.applied_batch(started.elapsed());
            me.metrics.store_written(&applied.timings);
            me.take_checkpoints(checkpoints);
            me.settle_wants(watched, &applied)?;
            report.appended = applied.released.len();
            for o in applied.outcomes {
                match o {
                    Outcome::Appended | Outcome::PayloadFilled => report.appended += 1,
                    Outcome::Duplicate => report.duplicates += 1,
                    Outcome::Held => report.held += 1,
                    Outcome::Rejected(e) => report.chain_rejected.push(e),
                }
            }
            me.remember_refused(&report.refused);
            Ok(report)
        })
        .await
        .map_err(|e| NodeError::Join(e.to_string()))??;
        if report.appended > 0 {
            self.bump();
        }
        self.resend_if_hold_expired();
        Ok(report)
    }

    /// Restarts every link when any write dropped entries from the hold queue since the last
    /// restart for it, at most once per [`HOLD_RESEND_EVERY`]: their senders count them
    /// delivered, so only restarted links send them again, or the origin's every later entry
    /// waits on the gap. Bounded in rate, since a member can make an entry expire at will
    /// (one past a seq it never sends); one that comes too soon is acted on when the wait is
    /// over, by a timer, not at the next received batch, which a quiet mesh may never send.
    pub(crate) fn resend_if_hold_expired(self: &Arc<Self>) {
        let total = self.store.hold_expired_count();
        let mut r = crate::rotation::lock(&self.hold_resend);
        if total <= r.seen {
            return;
        }
        let since = r.last.map(|at| at.elapsed());
        match since {
            Some(since) if since < HOLD_RESEND_EVERY => {
                if !r.timer_set {
                    r.timer_set = true;
                    let me = Arc::clone(self);
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = tokio::time::sleep(HOLD_RESEND_EVERY - since) => {}
                            _ = me.stopped() => return,
                        }
                        crate::rotation::lock(&me.hold_resend).timer_set = false;
                        me.resend_if_hold_expired();
                    });
                }
            }
            _ => {
                r.seen = total;
                r.last = Some(std::time::Instant::now());
                tracing::warn!("entries held for their predecessors expired: links restart so peers send them again");
                self.unverified.ask_resend();
            }
        }
    }

    /// Keeps entries whose key is unknown until the key list changes; how many were kept.
    fn keep_unverified(&self, unknown: Vec<UnknownKey>) -> usize {
        let limits = self.unverified_limits();
        let keys = self.keys();
        let mut kept = 0;
        for u in unknown {
            let (origin, seq, key_id) = (u.origin.clone(), u.seq, u.key_id);
            let member = keys.is_member(&origin);
            match self
                .unverified
                .add(u.origin, u.seq, u.key_id, u.entry, &limits, member)
            {
                Added::Kept { new_key } => {
                    kept += 1;
                    if new_key {
                        tracing::warn!(%origin, seq, key = %key_id, "entries signed with a key this node's key list does not hold: kept until the list has it");
                    }
                }
                // Once per origin and key: a peer filling the queue on purpose must not fill
                // the log as well.
                Added::Dropped { first: true } => {
                    tracing::warn!(%origin, seq, key = %key_id, "no room for more entries waiting for their key: dropped (sent again when the link restarts)")
                }
                Added::Dropped { first: false } => {
                    tracing::debug!(%origin, seq, key = %key_id, "no room for more entries waiting for their key: dropped")
                }
            }
        }
        kept
    }

    /// Updates the payloads owed after an apply: stubs logged are wanted, filled ones no longer.
    fn settle_wants(
        &self,
        watched: Vec<(usize, EntryKey, bool)>,
        applied: &ApplyReport,
    ) -> Result<(), NodeError> {
        for (i, key, stub) in watched {
            match applied.outcomes.get(i) {
                Some(Outcome::Appended) if stub => self.wants.add(key),
                // A full entry fills the stub, or finds the payload already held (a want the
                // start-up scan added just as the payload arrived).
                Some(Outcome::PayloadFilled | Outcome::Duplicate) if !stub => {
                    self.wants.remove(&key)
                }
                _ => {}
            }
        }
        // Entries held for a gap and logged now: owed stubs among them are wanted too.
        let hub = self.cfg.role == Role::Hub;
        for (origin, seq) in &applied.released {
            for raw in self.store.range(origin, *seq, 1)? {
                if crate::wants::owed_stub(&raw, &self.org, hub)?.is_some() {
                    self.wants.add((origin.clone(), *seq));
                }
            }
        }
        Ok(())
    }

    /// The entries of a batch that change what this node is owed, by position: stubs it may
    /// hold in full (`true`), and full entries for stubs it is waiting on (`false`).
    fn stubs_to_watch(&self, batch: &[VerifiedEntry]) -> Vec<(usize, EntryKey, bool)> {
        let hub = self.cfg.role == Role::Hub;
        let waiting = !self.wants.is_empty();
        let key = |e: &VerifiedEntry| (e.header().origin.clone(), e.header().seq);
        batch
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                if !e.has_payload() {
                    owed(e.header(), &self.org, hub).then(|| (i, key(e), true))
                } else if waiting && self.wants.contains(&key(e)) {
                    Some((i, key(e), false))
                } else {
                    None
                }
            })
            .collect()
    }
}

/// Refuses a signer whose key the key list does not hold for its org.
pub(crate) fn own_key_listed(keys: &StaticKeys, signer: &Signer) -> Result<(), NodeError> {
    if keys.holds(signer.org(), &signer.verifying_key()) {
        Ok(())
    } else {
        Err(NodeError::OwnKeyNotListed {
            org: signer.org().clone(),
            key_id: signer.key_id(),
        })
    }
}

/// The members' roster checkpoints in a verified batch.
fn received_checkpoints(batch: &[VerifiedEntry]) -> Vec<crate::checkpoint::Received> {
    batch
        .iter()
        .filter_map(|e| match e.control() {
            Some(Control::Checkpoint(c)) => Some(crate::checkpoint::Received {
                member: e.header().origin.clone(),
                seq: e.header().seq,
                issued_at_unix_ms: e.header().issued_at_unix_ms,
                checkpoint: c.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Verifies received entries under `keys` (all cores): good, unknown key, refused.
pub fn check_entries(
    raws: Vec<pb::SignedEntry>,
    keys: Arc<StaticKeys>,
    cfg: &VerifyConfig,
) -> Checked {
    let mut checked = Checked::default();
    checked.good.reserve(raws.len());
    // Entries share their buffers (`Bytes`): keeping the batch to hand back the entries whose
    // key is unknown costs a reference count each.
    let kept = raws.clone();
    let results = verify_batch_parallel(raws, keys.as_ref(), cfg, VERIFY_CHUNK);
    for (r, raw) in results.into_iter().zip(kept) {
        match r {
            Ok(v) => checked.good.push(v),
            Err(VerifyError::UnknownKey {
                origin,
                seq,
                key_id,
            }) => checked.unknown_key.push(UnknownKey {
                origin,
                seq,
                key_id,
                entry: raw,
            }),
            Err(e) => checked.refused.push(e),
        }
    }
    checked.keys = Some(keys);
    checked
}

/// The header of a stored entry, for routing decisions; `None` if it does not decode (the store
/// only holds verified entries, so that would be corruption).
pub fn header_of(entry: &pb::SignedEntry) -> Option<pb::EntryHeader> {
    pb::EntryHeader::decode(entry.header.as_ref()).ok()
}
