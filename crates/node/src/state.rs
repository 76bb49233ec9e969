//! The state a running node shares between its links and its API: store, keys, own signer,
//! the change signal, and the peer table. Entries enter the store only through [`NodeState`]:
//! received ones by `ingest`, its own by `crate::own_entries`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

use intelmesh_core::evidence::{self, CheckedProof, EvidenceError};
use intelmesh_core::{KeyId, OrgId, Signer, StaticKeys};
use intelmesh_proto::v1 as pb;
use intelmesh_store::{DiskStore, Store, StoreError, VersionVector};
use prost::Message;

use crate::config::{NodeConfig, PeerConfig};
pub use crate::node_error::NodeError;
pub use crate::own_entries::{Idempotent, Publication};
pub use crate::peer_table::{PeerState, PeerTable};
use crate::roster_follow::{load_genesis, Follow};
use crate::rotation::PendingKey;
use crate::unverified::{Unverified, UnverifiedLimits};
use crate::wants::Wants;

mod ingest;
use ingest::HoldResend;
pub use ingest::{check_entries, Checked, IngestReport, UnknownKey, VERIFY_AHEAD, VERIFY_CHUNK};

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
    /// Lines about sealed entries that do not open: any member may send such entries.
    pub(crate) unopened_lines: Mutex<crate::log_gate::LineGate>,
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

/// What became of fork proofs received from a peer.
#[derive(Debug, Default)]
pub struct EvidenceReport {
    /// Proofs this node did not hold.
    pub added: u64,
    /// Proofs that do not hold up (the peer vouched for a proof it should have checked).
    pub invalid: Vec<EvidenceError>,
    /// Proofs naming a key this node does not know yet; skipped.
    pub unverifiable: usize,
    /// Proofs whose signatures were checked: a proof checked lately, or again in the same
    /// frame, is not.
    pub checked: usize,
    /// Proofs not checked because the store already keeps all it keeps of their origin.
    pub capped: usize,
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
            unopened_lines: Mutex::default(),
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
            // Moot proofs stay moot (a key's end is never lifted): remembered like stored ones.
            let mut moot = Vec::new();
            let mut this_frame = BTreeSet::new();
            // Origins whose proofs the store holds all it keeps: more of them would be checked
            // (two signature checks each) only to be dropped, and the origin's own member can
            // sign new forks of itself without end.
            let mut held: BTreeMap<String, usize> = BTreeMap::new();
            for proof in proofs {
                // A proof checked lately (the same fork, from any peer), or already in this
                // frame, is not checked again: any member may pass the proofs it holds on,
                // again and again, at two signature checks each.
                let fork = proof_identity(&proof);
                if !this_frame.insert(fork.clone())
                    || crate::rotation::lock(&me.proofs_checked).contains(&fork)
                {
                    continue;
                }
                let of_origin = match held.get(&proof.origin) {
                    Some(&n) => n,
                    None => {
                        let n = OrgId::parse(&proof.origin)
                            .ok()
                            .map_or(Ok(0), |o| me.store.fork_proof_count(&o))?;
                        // Bounded by the frame's proofs (256 at most).
                        held.insert(proof.origin.clone(), n);
                        n
                    }
                };
                if of_origin >= intelmesh_store::MAX_FORK_PROOFS_PER_ORIGIN {
                    report.capped += 1;
                    continue;
                }
                report.checked += 1;
                match evidence::check(proof, keys.as_ref()) {
                    Ok(c) => {
                        *held.entry(c.fork().origin.to_string()).or_default() += 1;
                        stored_now.push(fork);
                        checked.push(c)
                    }
                    Err(e) if e.is_unverifiable_yet() => report.unverifiable += 1,
                    // Moot, not forged: skipped, whoever passed it on.
                    Err(e) if e.is_past_key_end() => {
                        tracing::debug!(error = %e, "fork proof skipped: an entry lies past its key's end");
                        moot.push(fork);
                    }
                    Err(e) => report.invalid.push(e),
                }
            }
            for c in &checked {
                let f = c.fork();
                tracing::debug!(origin = %f.origin, seq = f.seq, kind = f.kind.as_str(), "fork proof received");
            }
            // Nothing to keep (an empty frame, or every proof known): no write, which would
            // wait for the store's lock behind every link's commits.
            if !checked.is_empty() {
                report.added = me.store.add_fork_proofs(checked)?;
            }
            // Only once stored: a proof whose write failed is checked again when it comes.
            let mut recent = crate::rotation::lock(&me.proofs_checked);
            for fork in stored_now.iter().chain(&moot) {
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

/// The header of a stored entry, for routing decisions; `None` if it does not decode (the store
/// only holds verified entries, so that would be corruption).
pub fn header_of(entry: &pb::SignedEntry) -> Option<pb::EntryHeader> {
    pb::EntryHeader::decode(entry.header.as_ref()).ok()
}
