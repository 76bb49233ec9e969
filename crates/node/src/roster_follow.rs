//! Roster mode: the roster a node follows. It starts from the pinned genesis and the authority
//! log already in the store (origin = federation id, seq = version: the store is the stored
//! roster), advances whenever that log grows (from a link or from this hub's own
//! [`NodeState::publish_roster`]), and each version that passes the rules replaces the key set
//! and tells links, dialers and the checkpoint task (a watch channel). A version the rules
//! refuse is logged at ERROR and shown in status; the node stays on the last good version.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use intelmesh_core::verify::{
    decode_content, verify_batch_parallel, Content, Control, VerifyConfig,
};
use intelmesh_core::{Distribution, Hash, OrgId, Signer, Tlp};
use intelmesh_proto::v1 as pb;
use intelmesh_roster::{Roster, RosterError};
use intelmesh_store::{DiskStore, Outcome, Store, StoreError};
use prost::Message;
use tokio::sync::watch;

use crate::checkpoint::Checkpoints;
use crate::config::RosterConfig;
use crate::key_end_cut::{ended_key_cuts, roster_log_cut, CutLog};
use crate::state::{NodeError, NodeState, VERIFY_CHUNK};

#[path = "roster_authority.rs"]
mod authority;

/// Why a node cannot start following its roster.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("cannot read roster.genesis {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("roster.genesis {path} is not an encoded SignedRoster ({reason}): give the genesis file from the enrolment bundle or `federation init`")]
    Undecodable {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("roster.genesis_hash {0}")]
    BadPin(String),
    #[error("roster.genesis {path} is refused: {error}")]
    Genesis {
        path: std::path::PathBuf,
        error: RosterError,
    },
    #[error("the roster log in the data directory starts with version 1 of hash {found}, not the pinned genesis {pinned}: this store belongs to another federation")]
    OtherFederation { pinned: String, found: String },
    #[error("the roster log in the data directory holds another entry at seq {seq} than roster.log_pins names (a hub key in other hands signed it): move the data directory aside and start again, to take the log from the hubs")]
    OtherLogEntry { seq: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads the genesis a `[roster]` section names and checks it against the pin and the rules.
pub fn load_genesis(cfg: &RosterConfig) -> Result<Roster, FollowError> {
    let path = cfg.genesis.clone();
    let bytes = std::fs::read(&path).map_err(|source| FollowError::Read {
        path: path.clone(),
        source,
    })?;
    let signed =
        pb::SignedRoster::decode(bytes.as_slice()).map_err(|e| FollowError::Undecodable {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let pin = cfg.pin().map_err(FollowError::BadPin)?;
    Roster::genesis(&signed, Some(&pin)).map_err(|error| FollowError::Genesis { path, error })
}

/// The last version refused by the rules, and why.
#[derive(Clone, Debug)]
pub struct Refused {
    pub version: u64,
    pub error: RosterError,
}

/// What a node in roster mode keeps about the roster it follows.
pub struct Follow {
    /// The roster in force; links, the dial set and the checkpoint task wait on its changes.
    current: watch::Sender<Arc<Roster>>,
    /// The hash of every version followed (this node's roster log), to compare checkpoints.
    hashes: Mutex<BTreeMap<u64, Hash>>,
    refused: Mutex<Option<Refused>>,
    /// The last version a received entry carried that the rules refused before it was stored
    /// (`roster_admission`): shown in status while no version at or past it is followed,
    /// never consulted when the stored log is followed.
    pub(crate) rejected: Mutex<Option<Refused>>,
    /// The last roster-log seq a received entry was refused at for not being the pinned one
    /// (`log_pins`): shown in status while the store holds no entry there.
    pub(crate) pin_refused: Mutex<Option<u64>>,
    /// What may sign roster log entries when this node is a hub, under the federation id: its
    /// own signing key, then the key it rotated from if a rotation is pending. Which one signs
    /// is judged against the version in force each time ([`Follow::authority_signer`]): after a
    /// rotation the roster lists the new key, and a report of the old one ends its right.
    authority_signers: Mutex<Vec<Arc<Signer>>>,
    /// One advance (or publication) at a time.
    advancing: tokio::sync::Mutex<()>,
    /// Held shared while entries verified under some key list are applied (their keys judged
    /// again under it by the list in force), exclusively while a key-end cut removes
    /// entries: an entry verified before the version that ends its key, applied after the cut, would
    /// otherwise put back what the cut removed (see [`NodeState::cut_ended_keys`]).
    pub(crate) cutting: std::sync::RwLock<()>,
    /// The cuts made, for links to lower what they believe their peers hold.
    pub(crate) cuts: CutLog,
    /// Whether the cut of the version in force failed (a write error): it is tried again
    /// until it is made, or what the version's key ends take out would stay.
    cut_due: std::sync::atomic::AtomicBool,
    /// The version in force: its keys taken in and its cut made (`current` is set before
    /// both, so that entries waiting for the keys are judged under it). What Status reports:
    /// a client that saw a version there finds its keys, suspensions and cuts in effect.
    in_force: Mutex<Arc<Roster>>,
    pub checkpoints: Checkpoints,
    /// The roster log's entries as the enrolment bundle named them (header hashes, from seq
    /// 1): no other entry is taken at those seqs.
    log_pins: Vec<Hash>,
}

impl Follow {
    /// The header hash the enrolment bundle pinned for the roster log's entry at `seq`.
    pub(crate) fn log_pin(&self, seq: u64) -> Option<&Hash> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.log_pins.get(index)
    }

    /// Follows `genesis`, then every version of the authority log in `store` that passes;
    /// refuses a store whose log differs from `log_pins`.
    /// `own` is this node's signing key, `older` the key it rotated from if a rotation is
    /// pending: both may sign the roster log (see [`Follow::authority_signer`]).
    pub fn start(
        store: &DiskStore,
        (genesis, log_pins): (Roster, Vec<Hash>),
        own: &Signer,
        older: Option<&Signer>,
    ) -> Result<Follow, FollowError> {
        let fed = genesis.federation_id().clone();
        if let Some(first) = stored_version(store, &fed, 1)? {
            let found = intelmesh_roster::roster_hash(&first.document);
            if found != *genesis.hash() {
                return Err(FollowError::OtherFederation {
                    pinned: hex::encode(genesis.hash()),
                    found: hex::encode(found),
                });
            }
        }
        // One version at a time: a roster log entry carries a whole roster.
        for (seq, pin) in (1u64..).zip(&log_pins) {
            let Some(held) = store.range(&fed, seq, 1)?.pop() else {
                break;
            };
            if intelmesh_core::entry::header_hash(&held.header) != *pin {
                return Err(FollowError::OtherLogEntry { seq });
            }
        }
        let genesis = Arc::new(genesis);
        let follow = Follow {
            hashes: Mutex::new(BTreeMap::from([(1, *genesis.hash())])),
            in_force: Mutex::new(Arc::clone(&genesis)),
            current: watch::channel(genesis).0,
            refused: Mutex::new(None),
            rejected: Mutex::new(None),
            pin_refused: Mutex::new(None),
            authority_signers: Mutex::new(
                (std::iter::once(own).chain(older))
                    .map(|s| Arc::new(Signer::new(fed.clone(), s.signing_key().clone())))
                    .collect(),
            ),
            advancing: tokio::sync::Mutex::new(()),
            cutting: std::sync::RwLock::new(()),
            cuts: CutLog::default(),
            cut_due: std::sync::atomic::AtomicBool::new(false),
            checkpoints: Checkpoints::default(),
            log_pins,
        };
        loop {
            // A roster log entry a key the version retired signed past it (taken in under an
            // older version) goes before the next version is judged, as at run time. Members'
            // cuts wait for the last version: an earlier one's end may have been reopened by a
            // reinstatement since, and the entries past it are then the member's own.
            if let Some(cut) = roster_log_cut(store, &follow.current())? {
                cut.log(follow.current().version());
            }
            let Some(next) = follow.next_stored(store)? else {
                break;
            };
            match next {
                Ok(roster) => follow.install(roster),
                Err(refused) => {
                    tracing::error!(version = refused.version, error = %refused.error, "stored roster version refused; following the version before it");
                    *lock(&follow.refused) = Some(refused);
                    break;
                }
            }
        }
        // A crash between following a version that ends a key and cutting what it ends: cut
        // now, before any link or publication runs.
        for cut in ended_key_cuts(store, &follow.current(), own.org())? {
            cut.log(follow.current().version());
        }
        // The node's first key list is made from the version followed now.
        *lock(&follow.in_force) = follow.current();
        Ok(follow)
    }

    pub fn current(&self) -> Arc<Roster> {
        Arc::clone(&self.current.borrow())
    }

    /// The version in force (see the field): what Status and the metrics report.
    pub fn in_force(&self) -> Arc<Roster> {
        Arc::clone(&lock(&self.in_force))
    }

    pub fn changes(&self) -> watch::Receiver<Arc<Roster>> {
        self.current.subscribe()
    }

    pub fn refused(&self) -> Option<Refused> {
        lock(&self.refused).clone()
    }

    /// The hash of this node's roster log at `version`, if it followed that version.
    pub fn hash_at(&self, version: u64) -> Option<Hash> {
        lock(&self.hashes).get(&version).copied()
    }

    /// The next version in the store after the current one, checked against the rules;
    /// `None` when the log holds no more (or the next is a stub, which CLEAR entries never are).
    fn next_stored(
        &self,
        store: &DiskStore,
    ) -> Result<Option<Result<Roster, Refused>>, FollowError> {
        let current = self.current();
        let version = current.version() + 1;
        let Some(signed) = stored_version(store, current.federation_id(), version)? else {
            return Ok(None);
        };
        if let Some(r) = self.refused().filter(|r| r.version == version) {
            // Already refused; nothing after it can link either.
            return Ok(Some(Err(r)));
        }
        Ok(Some(
            current
                .next(&signed)
                .map_err(|error| Refused { version, error }),
        ))
    }

    fn install(&self, roster: Roster) {
        lock(&self.hashes).insert(roster.version(), *roster.hash());
        self.checkpoints.roster_changed(&roster);
        self.current.send_replace(Arc::new(roster));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each change is whole under the lock; a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Version `version` of the roster log of `fed` as it was signed, if this store holds it
/// (seq N of the federation id's log carries version N; there is no version 0).
pub(crate) fn stored_version(
    store: &dyn Store,
    fed: &OrgId,
    version: u64,
) -> Result<Option<pb::SignedRoster>, StoreError> {
    if version == 0 {
        return Ok(None);
    }
    let Some(entry) = store.range(fed, version, 1)?.pop() else {
        return Ok(None);
    };
    let Some(bytes) = entry.payload.as_ref() else {
        return Ok(None);
    };
    match decode_content(bytes) {
        Ok(Content::Control(Control::Roster(signed))) => Ok(Some(signed)),
        // Verified before it was stored: anything else would be corruption.
        _ => Err(StoreError::Corrupt(format!(
            "{fed}#{version}: the roster log holds an entry that is not a roster version"
        ))),
    }
}

/// The payload of a roster log entry (CLEAR: every member reads the roster).
fn roster_payload(signed: pb::SignedRoster) -> pb::Payload {
    pb::Payload {
        body: Some(pb::payload::Body::Roster(signed)),
        ..pb::Payload::default()
    }
}

pub(crate) fn clear() -> Distribution {
    Distribution {
        tlp: Tlp::Clear,
        recipients: Vec::new(),
    }
}

impl NodeState {
    /// The roster this node follows (roster mode), `None` in static mode.
    pub fn roster(&self) -> Option<Arc<Roster>> {
        self.follow().map(Follow::current)
    }

    /// The roster version in force ([`Follow::in_force`]): the one to report to clients.
    pub fn roster_in_force(&self) -> Option<Arc<Roster>> {
        self.follow().map(Follow::in_force)
    }

    /// Resolves on each new roster version (roster mode); `None` in static mode.
    pub fn roster_changes(&self) -> Option<watch::Receiver<Arc<Roster>>> {
        self.follow().map(Follow::changes)
    }

    /// Origins whose assertions the roster withdrew (removed members with `withdrawn`),
    /// hidden from every read; empty in static mode.
    pub fn withdrawn(&self) -> std::collections::BTreeSet<String> {
        self.roster()
            .map(|r| r.withdrawn_orgs().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    /// The last roster version the rules refused, and why: one stored, or else one refused
    /// on receipt that no followed version has passed since.
    pub fn roster_refused(&self) -> Option<Refused> {
        let follow = self.follow()?;
        follow.refused().or_else(|| {
            let rejected = lock(&follow.rejected).clone()?;
            (rejected.version > follow.current().version()).then_some(rejected)
        })
    }

    /// The last roster-log seq an entry was refused at for not being the one `log_pins`
    /// names, while the store holds no entry there yet.
    pub fn roster_pin_refused(&self) -> Option<u64> {
        let follow = self.follow()?;
        let seq = (*lock(&follow.pin_refused))?;
        let fed = follow.current().federation_id().clone();
        let held = self.store.head(&fed).ok().flatten().map_or(0, |h| h.seq);
        (seq > held).then_some(seq)
    }

    /// Advances the followed roster through every new version of the authority log, in order.
    /// To its end even if the caller goes away (a link's receive loop, dropped when the
    /// version it takes in refuses the link's peer): a version installed and left half taken
    /// in (keys, decryption keys, the unverified queue's recheck) would be cut and reported in
    /// force by the next advance without the rest.
    pub async fn advance_roster(self: &Arc<Self>) -> Result<(), NodeError> {
        if self.follow().is_none() {
            return Ok(());
        }
        let me = Arc::clone(self);
        crate::own_entries::run_to_end(async move {
            let Some(follow) = me.follow() else {
                return Ok(());
            };
            let _advancing = follow.advancing.lock().await;
            me.advance_locked(follow).await
        })
        .await
    }

    async fn advance_locked(self: &Arc<Self>, follow: &Follow) -> Result<(), NodeError> {
        if follow.cut_due.load(Ordering::Acquire) {
            self.cut_for(follow).await?;
        }
        loop {
            let me = Arc::clone(self);
            let next = tokio::task::spawn_blocking(move || match me.follow() {
                Some(f) => f.next_stored(&me.store),
                None => Ok(None),
            })
            .await
            .map_err(|e| NodeError::Join(e.to_string()))?
            .map_err(|e| NodeError::Follow(e.to_string()))?;
            match next {
                None => return Ok(()),
                Some(Err(refused)) => {
                    let first_time = follow
                        .refused()
                        .is_none_or(|r| r.version != refused.version);
                    if first_time {
                        tracing::error!(version = refused.version, error = %refused.error, "roster version refused; this node stays on the version before it");
                        *lock(&follow.refused) = Some(refused);
                    }
                    return Ok(());
                }
                Some(Ok(roster)) => {
                    let version = roster.version();
                    let keys = roster.key_set();
                    // Due before the keys change: a key the version lists from a seq below
                    // this node's head (a replacement after a compromise report) must not sign
                    // here before the log is cut back to that seq (`own_entries`).
                    follow.cut_due.store(true, Ordering::Release);
                    follow.install(roster);
                    // The keys go in after the roster is in place, so the entries that waited
                    // for them are checked under the version that brought them.
                    let taken = self.replace_keys(keys).await?;
                    tracing::info!(version, verified_now = taken, "following roster version");
                    // Then what its key ends take out leaves the log: under the new keys
                    // nothing signed past a key's end comes back.
                    self.cut_for(follow).await?;
                }
            }
        }
    }

    /// Makes the cut the version in force calls for; on success it is no longer due.
    async fn cut_for(self: &Arc<Self>, follow: &Follow) -> Result<(), NodeError> {
        let me = Arc::clone(self);
        let roster = follow.current();
        let judged = Arc::clone(&roster);
        tokio::task::spawn_blocking(move || me.cut_ended_keys(&judged))
            .await
            .map_err(|e| NodeError::Join(e.to_string()))??;
        follow.cut_due.store(false, Ordering::Release);
        // Its keys went in before the cut (`advance_locked`): the version is in force now.
        *lock(&follow.in_force) = roster;
        Ok(())
    }

    /// Whether a cut is due (a version was just installed, or a cut failed and waits to be
    /// tried again): nothing of this node's is signed meanwhile.
    pub(crate) fn cut_due(&self) -> bool {
        self.follow()
            .is_some_and(|f| f.cut_due.load(Ordering::Acquire))
    }

    /// Publishes the next roster version (a hub, for the Admin service): checks it against the
    /// rules, signs the authority log entry for it with this hub's signing key, applies it
    /// durably and follows it. Returns the roster now followed.
    pub async fn publish_roster(
        self: &Arc<Self>,
        signed: pb::SignedRoster,
    ) -> Result<Arc<Roster>, NodeError> {
        // To its end even if the caller goes away: a second publication must never read the
        // authority log's head while this one's entry is still being signed and written.
        let me = Arc::clone(self);
        crate::own_entries::run_to_end(async move { me.publish_roster_locked(signed).await }).await
    }

    async fn publish_roster_locked(
        self: &Arc<Self>,
        signed: pb::SignedRoster,
    ) -> Result<Arc<Roster>, NodeError> {
        let follow = self.follow().ok_or(NodeError::NotFollowing)?;
        let _advancing = follow.advancing.lock().await;
        self.advance_locked(follow).await?;
        let current = follow.current();
        let next = current.next(&signed).map_err(NodeError::RosterRefused)?;
        self.append_authority_entry(follow, current.version() + 1, signed)
            .await?;
        self.advance_locked(follow).await?;
        let now = follow.current();
        if now.hash() != next.hash() {
            return Err(NodeError::Follow(format!(
                "roster version {} was appended but this node follows version {}",
                next.version(),
                now.version()
            )));
        }
        Ok(now)
    }

    /// At the first start of a hub: puts the genesis in the authority log if the store has no
    /// version 1 yet, so members that dial it receive the roster log from its start.
    pub async fn publish_genesis_if_needed(self: &Arc<Self>) -> Result<bool, NodeError> {
        let Some(follow) = self.follow() else {
            return Ok(false);
        };
        let _advancing = follow.advancing.lock().await;
        let fed = follow.current().federation_id().clone();
        if self.store.head(&fed)?.is_some() {
            return Ok(false);
        }
        if self.authority_mark.signed() > 0 {
            // This hub signed the log before and its store lost it: the members hold it, and
            // send it back; a genesis signed again would fork the authority log.
            tracing::warn!(federation = %fed, signed = self.authority_mark.signed(), "the roster log this hub signed is not in its store: waiting for its peers to send it back");
            return Ok(false);
        }
        let keys = self.keys();
        let publisher = follow.current().roster_publisher();
        let signer = follow.authority_signer(&self.org, &keys, &self.signer());
        if !signer.is_some_and(|s| keys.holds(&fed, &s.verifying_key()))
            || publisher.as_ref() != Some(&self.org)
        {
            // Not the hub that publishes the log (an agency, or another hub): it receives the
            // log from the publisher. Both hubs putting their own genesis entry at seq 1 would
            // fork the authority origin.
            return Ok(false);
        }
        let genesis = lock(&follow.hashes).get(&1).copied();
        let first = follow.current();
        if first.version() != 1 || genesis != Some(*first.hash()) {
            return Ok(false);
        }
        self.append_authority_entry(follow, 1, first.signed().clone())
            .await?;
        tracing::info!(federation = %fed, "published the genesis in the roster log");
        Ok(true)
    }

    /// Signs `signed` as the authority log's entry `version` with this hub's key and applies it.
    async fn append_authority_entry(
        self: &Arc<Self>,
        follow: &Follow,
        version: u64,
        signed: pb::SignedRoster,
    ) -> Result<(), NodeError> {
        let current = follow.current();
        match current.roster_publisher() {
            Some(publisher) if publisher == self.org => {}
            other => {
                return Err(NodeError::NotRosterPublisher {
                    org: self.org.clone(),
                    publisher: other.map_or_else(|| "no hub".to_string(), |p| p.to_string()),
                    version: current.version(),
                })
            }
        }
        let keys = self.keys();
        let not_signer = || NodeError::NotAuthoritySigner {
            org: self.org.clone(),
            version: follow.current().version(),
        };
        let signer = follow
            .authority_signer(&self.org, &keys, &self.signer())
            .ok_or_else(not_signer)?;
        if !keys.holds(signer.org(), &signer.verifying_key()) {
            return Err(not_signer());
        }
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let head = me.store.head(signer.org())?;
            me.authority_mark
                .check(head.as_ref().map_or(0, |h| h.seq))?;
            let next_seq = head.as_ref().map_or(1, |h| h.seq + 1);
            if next_seq != version {
                return Err(NodeError::Follow(format!(
                    "the roster log is at version {}, so version {version} cannot be appended",
                    next_seq - 1
                )));
            }
            let now = intelmesh_core::now_unix_ms();
            let (entry, _) = signer.sign_next(head, now, &clear(), &roster_payload(signed));
            let verified = verify_batch_parallel(
                vec![entry],
                keys.as_ref(),
                &VerifyConfig::at(now),
                VERIFY_CHUNK,
            )
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(NodeError::OwnVerify)?;
            let report = me.store.apply(verified)?;
            me.metrics.store_written(&report.timings);
            match report.outcomes.first() {
                Some(Outcome::Appended) => {
                    me.authority_mark.record(version, &signer.key_id());
                    Ok(())
                }
                other => Err(NodeError::OwnEntry {
                    seq: version,
                    outcome: other.cloned().unwrap_or(Outcome::Duplicate),
                }),
            }
        })
        .await
        .map_err(|e| NodeError::Join(e.to_string()))??;
        self.bump();
        Ok(())
    }
}

/// How soon a failed cut is tried again on a quiet node.
const CUT_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// Advances the roster whenever the log changes (an append on any link, a recheck of waiting
/// entries), until the node stops. Reading one head per change costs little.
pub async fn follow_log(state: Arc<NodeState>) {
    let Some(fed) = state.roster().map(|r| r.federation_id().clone()) else {
        return;
    };
    let mut changes = state.subscribe();
    loop {
        let behind = match (state.store.head(&fed), state.roster()) {
            (Ok(head), Some(r)) => head.is_some_and(|h| h.seq > r.version()),
            _ => false,
        };
        if behind || state.cut_due() {
            if let Err(e) = state.advance_roster().await {
                tracing::error!(error = %e, "could not advance the roster");
            }
        }
        let retry = state.cut_due();
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = state.stopped() => return,
            _ = tokio::time::sleep(CUT_RETRY), if retry => {}
        }
    }
}
