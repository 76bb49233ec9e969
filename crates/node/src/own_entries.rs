//! A node's own entries: signed under the publish lock (so the head cannot move between
//! signing and appending), verified with the keys in force, appended durably, with an
//! idempotency receipt in the same write when the caller asks for one.

use std::sync::Arc;

use intelmesh_core::sign::ReaderKeys;
use intelmesh_core::verify::{verify_batch_parallel, VerifyConfig};
use intelmesh_core::{Distribution, Hash};
use intelmesh_proto::v1 as pb;
use intelmesh_store::receipt::Receipt;
use intelmesh_store::{Outcome, Store};

use crate::state::{NodeError, NodeState, VERIFY_CHUNK};

impl NodeState {
    /// Signs payloads as this node's org and appends them; returns their seqs once durable.
    pub async fn publish(
        self: &Arc<Self>,
        items: Vec<(Distribution, pb::Payload)>,
    ) -> Result<Vec<u64>, NodeError> {
        self.publish_rejudged(items, None).await
    }

    /// [`publish`](Self::publish), with `rejudge`, a check made of the items before the lock
    /// was taken, made again under it if this node signed since.
    pub async fn publish_rejudged(
        self: &Arc<Self>,
        items: Vec<(Distribution, pb::Payload)>,
        rejudge: Option<Rejudge>,
    ) -> Result<Vec<u64>, NodeError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let me = Arc::clone(self);
        run_to_end(async move {
            let _own = me.own.lock().await;
            me.sign_and_apply(items, None, rejudge).await
        })
        .await
    }

    /// [`publish`](Self::publish) for a request a client may repeat: the first time, signs and
    /// appends the items and keeps `answer(seqs)` as the receipt of `once.key`, in the same
    /// atomic write as the entries; a repeat of the same request gets that answer back and
    /// signs nothing, also after a restart. A key kept for another request is refused.
    pub async fn publish_once(
        self: &Arc<Self>,
        items: Vec<(Distribution, pb::Payload)>,
        once: Idempotent,
        answer: impl FnOnce(&[u64]) -> Vec<u8> + Send + 'static,
        rejudge: Option<Rejudge>,
    ) -> Result<Publication, NodeError> {
        let me = Arc::clone(self);
        run_to_end(async move {
            // Looked up under the publish lock: a repeat sent while the first is still being
            // signed waits for its receipt instead of signing a second time.
            let _own = me.own.lock().await;
            if let Some(answer) = me.earlier_answer(&once).await? {
                return Ok(Publication::Replayed(answer));
            }
            let seqs = me
                .sign_and_apply(items, Some((once, Box::new(answer))), rejudge)
                .await?;
            Ok(Publication::Published(seqs))
        })
        .await
    }

    /// The answer kept for `once.key`, if an earlier request under it was this same request;
    /// a key kept for another request is refused. Receipts are never changed once written, so
    /// this may run without the publish lock (a repeat found here needs no lock at all).
    pub async fn earlier_answer(&self, once: &Idempotent) -> Result<Option<Vec<u8>>, NodeError> {
        let store = Arc::clone(&self.store);
        let key = once.key.clone();
        let earlier = tokio::task::spawn_blocking(move || store.receipt(&key))
            .await
            .map_err(|e| NodeError::Join(e.to_string()))??;
        match earlier {
            Some(r) if r.request == once.request => Ok(Some(r.answer)),
            Some(_) => Err(NodeError::KeyReused),
            None => Ok(None),
        }
    }

    /// Signs, verifies and appends own entries (the caller holds `own`), with a receipt when
    /// one is asked for; returns their seqs once durable.
    async fn sign_and_apply(
        self: &Arc<Self>,
        items: Vec<(Distribution, pb::Payload)>,
        receipt: Option<(Idempotent, AnswerFn)>,
        rejudge: Option<Rejudge>,
    ) -> Result<Vec<u64>, NodeError> {
        if self.cut_due() {
            // A roster version was just installed and its cut is on its way: make it here
            // rather than refuse a caller that saw the version (in Status) before the cut.
            // (Lock order: the publish lock, then the roster's; nothing takes them the other
            // way.) A cut that fails leaves it due, and the check under the cut lock refuses.
            if let Err(e) = self.advance_roster().await {
                tracing::debug!(error = %e, "the due cut could not be made before publishing");
            }
        }
        let keys = self.keys();
        self.may_sign(&keys)?;
        let signer = self.signer();
        let me = Arc::clone(self);
        let seqs = tokio::task::spawn_blocking(move || {
            // Under the cut lock, and against the key list in force: a compromise report
            // followed since `keys` was read may have ended the key and cut the log.
            let _cutting = me.cut_lock_shared();
            if me.cut_due() {
                return Err(NodeError::CutDue);
            }
            // The key list in force now, under the cut lock: what it lets sign, what is sealed
            // to (a member suspended, or its key reported, since the caller's read gets
            // nothing new) and what verifies are one list.
            let keys = me.keys();
            let head = me.store.head(&me.org)?;
            me.own_mark.check(head.map_or(0, |h| h.seq))?;
            // Another publication may have been signed between the caller's check and the lock.
            if let Some(r) = rejudge.filter(|r| r.judged_at != head.map_or(0, |h| h.seq)) {
                (r.check)(&me).map_err(NodeError::Rejudged)?;
            }
            if !items.is_empty() {
                let first = head.map_or(1, |h| h.seq + 1);
                let last = first + (items.len() as u64 - 1);
                me.may_sign_seqs(&keys, &signer, first..=last)?;
            }
            let now = intelmesh_core::now_unix_ms();
            let first = head.map_or(1, |h| h.seq + 1);
            // Once any member has an encryption key, restricted entries are sealed to their
            // readers, and one without a key cannot be named. A node given an encryption key
            // of its own seals whatever others read: a key list that lost every key (an edit,
            // a roster version) refuses such entries, never sends them to relays in clear.
            // One for this node alone never leaves it in full (`route`).
            let for_others =
                (items.iter()).any(|(d, _)| d.tlp.is_restricted() && !d.recipients.is_empty());
            let sealing = keys.seals() || (me.cfg.encryption_key.is_some() && for_others);
            let seal = sealing.then_some(keys.as_ref() as &dyn ReaderKeys);
            let (raws, _) = signer.sign_chain_sealing(head, now, &items, seal)?;
            let seqs: Vec<u64> = (first..first + raws.len() as u64).collect();
            let cfg = VerifyConfig::at(now);
            // Checked in full as a peer will check them, signatures too, before anything is
            // written: an entry stored and sent with a bad signature (a fault while signing, a
            // header changed after) would be refused by every peer for good, and its seq could
            // not be signed again without a fork. Skipping the signature check was measured (a
            // 1000-object TAXII POST, about 1-2 ms of its 20) and not kept.
            let verified = verify_batch_parallel(raws, keys.as_ref(), &cfg, VERIFY_CHUNK)
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(NodeError::OwnVerify)?;
            let verified = me.open_own(verified)?;
            let report = match receipt {
                None => me.store.apply(verified)?,
                Some((once, answer)) => {
                    let receipt = Receipt {
                        request: once.request,
                        at_unix_ms: now,
                        answer: answer(&seqs),
                    };
                    me.store.apply_own(verified, once.key, receipt)?
                }
            };
            me.metrics.store_written(&report.timings);
            for (seq, outcome) in seqs.iter().zip(report.outcomes) {
                if outcome != Outcome::Appended {
                    return Err(NodeError::OwnEntry { seq: *seq, outcome });
                }
            }
            if let Some(&last) = seqs.last() {
                me.own_mark.record(last, &signer.key_id());
            }
            Ok(seqs)
        })
        .await
        .map_err(|e| NodeError::Join(e.to_string()))??;
        self.bump();
        Ok(seqs)
    }
}

/// Runs `work` (which takes the publish lock) as a task of its own, so that it holds the lock
/// until its blocking part is done: a caller that goes away (a reset HTTP/2 stream, a cancelled
/// gRPC call) drops only its wait. Were the lock dropped with the caller's future while the
/// signing thread ran on, the next publication would read the same head and sign a second
/// entry at the same seq, and the federation would hold this node for a fork.
pub(crate) async fn run_to_end<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, NodeError>> + Send + 'static,
) -> Result<T, NodeError> {
    tokio::spawn(work)
        .await
        .map_err(|e| NodeError::Join(e.to_string()))?
}

/// A check a caller made of its items against what this node had signed (such as the
/// audience cap), before the publish lock: made again under the lock if the own log's head
/// moved since, so two publications at once cannot both pass it.
pub struct Rejudge {
    /// The own log's head seq when the check was made (0: empty).
    pub judged_at: u64,
    pub check: RejudgeFn,
}

/// A [`Rejudge`]'s check: why the items are refused, if they are.
pub type RejudgeFn = Box<dyn FnOnce(&NodeState) -> Result<(), String> + Send>;

impl NodeState {
    /// The own log's head seq now (0: empty), for [`Rejudge::judged_at`]; `u64::MAX` when the
    /// store cannot be read, so the check is made again under the lock.
    pub fn own_head_seq(&self) -> u64 {
        match self.store.head(&self.org) {
            Ok(head) => head.map_or(0, |h| h.seq),
            Err(_) => u64::MAX,
        }
    }
}

/// What makes a publication repeatable: the receipt key (the caller's scope and its
/// idempotency key) and a digest of the request, which a repeat must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotent {
    pub key: Vec<u8>,
    pub request: Hash,
}

/// What [`NodeState::publish_once`] did, with the answer to give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Publication {
    /// Signed and durable now: the seqs assigned.
    Published(Vec<u64>),
    /// A repeat: the first request's answer; nothing was signed.
    Replayed(Vec<u8>),
}

/// Makes the answer kept in a receipt from the seqs just assigned.
type AnswerFn = Box<dyn FnOnce(&[u64]) -> Vec<u8> + Send>;
